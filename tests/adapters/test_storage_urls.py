"""Annotation files on an object store: every adapter reads an `s3://` copy of the real records (side files found
beside it there too) into the same samples and errors as the local file, and a missing URL fails the way a missing
local file does. The store is a real moto S3 server on loopback (`s3_server`, tests/conftest.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtvr_data import storage
from mtvr_data.adapters import make_adapter
from mtvr_data.schema import Sample, SampleError
from pipelines.config import SourceConfig
from pipelines.transforms import DEAD, _ReadSourceFn
from tests.adapters.conftest import SAMPLES, split_results

#: (source, file under tests/fixtures/samples, adapter options): each way a file is read (lines, CSV, a JSON object,
#: a JSON array or lines told apart by sniffing its head) and every side file an adapter finds next to its
#: annotations (Charades lengths CSV, NExT-GQA gsub and VidOR map); parquet has its own test below.
CASES = [
    ("charades_sta", "charades_sta/charades_sta_train.txt", {}),
    ("activitynet_captions", "activitynet_captions/val.json", {}),
    ("nextgqa", "nextgqa/test.csv", {}),
    ("rextime", "rextime/rextime_val.jsonl", {}),
    ("video_r1", "video-r1/Video-R1-Videos.json", {}),
    ("vidchapters", "vidchapters/chapters_sml1k_train.record.json", {}),
]


def read_all(source: str, path, **options) -> tuple[list[Sample], list[SampleError]]:
    return split_results(make_adapter(source, path, **options).read())


@pytest.mark.parametrize(("source", "rel", "options"), CASES, ids=[c[1] for c in CASES])
def test_an_s3_copy_reads_the_same_samples_and_errors(s3_samples: str, source: str, rel: str, options) -> None:
    local = read_all(source, SAMPLES / rel, **options)
    remote = read_all(source, storage.join(s3_samples, rel), **options)
    assert local[0] or local[1], "the fixture must yield records for the comparison to mean anything"
    assert remote == local  # ids, spans, durations, meta (origin `file:line` / `file#key`) and every error


def test_side_files_are_found_next_to_a_url(s3_samples: str) -> None:
    charades = make_adapter("charades_sta", storage.join(s3_samples, "charades_sta/charades_sta_train.txt"))
    assert charades.durations_path == storage.join(s3_samples, "charades_sta/Charades_v1_train.csv")
    local = make_adapter("charades_sta", SAMPLES / "charades_sta/charades_sta_train.txt")
    assert charades.durations and charades.durations == local.durations
    gqa = make_adapter("nextgqa", storage.join(s3_samples, "nextgqa/test.csv"))
    assert gqa.gsub_path == storage.join(s3_samples, "nextgqa/gsub_test.json")
    assert gqa.vid_map_path == storage.join(s3_samples, "nextgqa/map_vid_vidorID.json") and gqa.vid_map
    # an explicit side file may be a URL too (a gsub beside nothing it could be guessed from)
    explicit = read_all(
        "nextgqa", SAMPLES / "nextgqa/val.csv", gsub=storage.join(s3_samples, "nextgqa/gsub_val.json"), vid_map=False
    )
    assert explicit == read_all("nextgqa", SAMPLES / "nextgqa/val.csv", vid_map=False)


def test_a_missing_url_fails_like_a_missing_local_file(s3_server, s3_samples: str, tmp_path) -> None:
    url = s3_server.prefix("nowhere", "charades_sta_train.txt")
    local = tmp_path / "charades_sta_train.txt"
    for path in (url, local):
        with pytest.raises(FileNotFoundError, match=rf"charades_sta: annotation file {path} does not exist"):
            make_adapter("charades_sta", path)
    # NExT-GQA without a gsub beside it: the same refusal, naming where it looked
    storage.write_bytes(s3_server.prefix("gqa-alone", "test.csv"), (SAMPLES / "nextgqa/test.csv").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no grounding file for test.csv \(looked for s3://.*/gsub_test.json"):
        make_adapter("nextgqa", s3_server.prefix("gqa-alone", "test.csv"))


def test_a_missing_url_is_the_same_dead_letter_in_the_read_stage(s3_server, tmp_path) -> None:
    """`ReadSources` turns a lost annotation file into one `annotations_unreadable` dead letter, URL or not."""

    def dead_letters(annotations: str) -> list[SampleError]:
        fn = _ReadSourceFn()
        fn.setup()
        out = list(fn.process(SourceConfig(source="charades_sta", annotations=annotations)))
        return [o.value for o in out if getattr(o, "tag", None) == DEAD]

    url = s3_server.prefix("nowhere", "charades_sta_train.txt")
    local = str(tmp_path / "charades_sta_train.txt")
    (remote_error,), (local_error,) = dead_letters(url), dead_letters(local)
    assert (remote_error.reason, remote_error.location, remote_error.stage) == ("annotations_unreadable", url, "read")
    assert (local_error.reason, local_error.location) == ("annotations_unreadable", local)
    assert remote_error.detail == local_error.detail.replace(local, url)


def test_parquet_on_s3_reads_like_the_local_file(s3_server, tmp_path) -> None:
    rows = [json.loads(line) for line in (SAMPLES / "longvideo-reason/test.jsonl").read_text().splitlines()]
    local = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), local, row_group_size=1)
    url = storage.write_bytes(s3_server.prefix("parquet", local.name), local.read_bytes())
    remote = read_all("longvideo_reason", url)
    assert remote == read_all("longvideo_reason", local) and len(remote[0]) == len(rows)
    assert [s.meta_dict["origin"] for s in remote[0]] == [f"{local.name}#{i}" for i in range(len(rows))]
    broken = storage.write_bytes(s3_server.prefix("parquet", "broken.parquet"), b"not a parquet file at all")
    ok, errors = read_all("longvideo_reason", broken)
    assert ok == [] and [(e.location, e.reason) for e in errors] == [("broken.parquet", "bad_value")]
