"""The `samples` source: rows already in the Sample schema (Parquet or JSON lines) read back through the base adapter,
with the same checks and dead letters as any native record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtvr_data.adapters import make_adapter
from mtvr_data.adapters.samples import SamplesSource
from mtvr_data.parquet_io import read_parquet, write_parquet
from mtvr_data.schema import Sample, SampleError
from pipelines.cli import main
from tests.adapters.conftest import SAMPLES, split_results

OWN = SAMPLES / "own_samples" / "charades_sta_test.samples.jsonl"


def read(path: Path) -> tuple[list[Sample], list[SampleError]]:
    return split_results(make_adapter("samples", path).read())


def test_mtvr_samples_output_fed_back_in_gives_the_same_rows(tmp_path, demo_corpus) -> None:
    """`mtvr samples` on a demo source, then its Parquet (and the same rows as JSON lines) as a `samples` source."""
    out = tmp_path / "nextgqa.parquet"
    args = [
        "samples",
        "--source",
        "nextgqa",
        "--annotations",
        str(demo_corpus / "annotations" / "nextgqa" / "train.csv"),
    ]
    assert main([*args, "--videos", str(demo_corpus / "videos"), "--out", str(out)]) == 0
    written = read_parquet(out, "sample")
    assert written and all(isinstance(s, Sample) for s in written)

    again, errors = read(out)
    assert errors == [] and again == written  # Sample by Sample: id, source, probed facts, meta with its origin

    lines = tmp_path / "nextgqa.jsonl"
    lines.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in written), encoding="utf-8")
    from_lines, errors = read(lines)
    assert errors == [] and from_lines == written
    assert SamplesSource.row_sources(out) == SamplesSource.row_sources(lines) == {"nextgqa"}


def test_rows_without_an_origin_get_where_they_were_read(tmp_path) -> None:
    row = json.loads(OWN.read_text().splitlines()[0])
    row["meta"] = {"vid": "3MSZA"}  # a mapping is accepted for meta
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (sample,), _ = read(path)
    assert sample.meta_dict == {"vid": "3MSZA", "origin": "mine.jsonl:1"} and sample.id == row["id"]


def test_bad_rows_are_dead_letters_with_reasons_never_silent_drops(tmp_path) -> None:
    good = json.loads(OWN.read_text().splitlines()[0])
    missing = {k: v for k, v in good.items() if k != "question"}
    lines = [
        json.dumps(good),
        '{"id": "x", "source": "charades_sta", ',  # malformed JSON
        json.dumps(missing),
        json.dumps({**good, "id": "w", "width": "wide"}),  # wrong type
        json.dumps({**good, "id": "s", "span": "0 to 5"}),
        json.dumps({**good, "id": "u", "colour": "red"}),  # not a Sample field
        json.dumps({**good, "id": "t", "span": None, "windows": []}),  # a tg sample without its span
        json.dumps({**good, "id": "m", "meta": "{not json"}),
        json.dumps({**good, "id": "q", "question": "x" * 9_000}),
        "[1, 2]",
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ok, errors = read(path)
    assert [s.id for s in ok] == [good["id"]]
    assert len(ok) + len(errors) == len(lines)  # every line accounted for
    by_line = {e.location: (e.reason, e.detail) for e in errors}
    assert by_line["bad.jsonl:2"][0] == "bad_json"
    assert by_line["bad.jsonl:3"][0] == "missing_field" and "'question'" in by_line["bad.jsonl:3"][1]
    assert by_line["bad.jsonl:4"][0] == "bad_value" and "width must be an integer" in by_line["bad.jsonl:4"][1]
    assert by_line["bad.jsonl:5"][0] == "bad_value" and "span must be a [start, end] pair" in by_line["bad.jsonl:5"][1]
    assert by_line["bad.jsonl:6"][0] == "bad_value" and "unknown field 'colour'" in by_line["bad.jsonl:6"][1]
    assert by_line["bad.jsonl:7"][0] == "missing_span"  # validate_sample, as for any adapter
    assert by_line["bad.jsonl:8"][0] == "bad_value" and "meta is not JSON" in by_line["bad.jsonl:8"][1]
    assert by_line["bad.jsonl:9"][0] == "question_too_long"
    assert by_line["bad.jsonl:10"][0] == "bad_json"
    assert {e.stage for e in errors} == {"read"} and {e.source for e in errors} == {"samples"}


def test_a_parquet_row_missing_a_field_or_an_unreadable_file(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = [json.loads(line) for line in OWN.read_text().splitlines()[:2]]
    table = pa.Table.from_pylist([{k: v for k, v in row.items() if k != "video"} for row in good])
    pq.write_table(table, tmp_path / "novideo.parquet")
    ok, errors = read(tmp_path / "novideo.parquet")
    assert ok == [] and [(e.location, e.reason) for e in errors] == [
        ("novideo.parquet#0", "missing_field"),
        ("novideo.parquet#1", "missing_field"),
    ]
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    ok, errors = read(tmp_path / "junk.parquet")
    assert ok == [] and [(e.location, e.reason) for e in errors] == [("junk.parquet", "bad_parquet")]
    write_parquet(tmp_path / "good.parquet", [Sample.from_dict(r) for r in good], kind="sample")
    assert [s.id for s in read(tmp_path / "good.parquet")[0]] == [r["id"] for r in good]


def test_a_missing_file_is_refused_like_any_adapter(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="samples: annotation file"):
        make_adapter("samples", tmp_path / "none.parquet")
