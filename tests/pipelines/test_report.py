"""The build report: plots and HTML from a small hand-made output folder, named, valid, and the same on a rerun, in
a local folder or a bucket."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from PIL import Image

from mtvr_data import storage
from mtvr_data.schema import CotRow, Message, RlRow, Sample
from pipelines.dataset_writer import write_dataset
from pipelines.report import REPORT_DIR, plot_durations, plot_rejections, read_rejections, read_rows, write_report

SOURCES = ("charades_sta", "nextgqa", "longvideo_reason")
TASKS = ("tg", "gqa", "mcq")


def _sample(i: int) -> Sample:
    return Sample(
        id=f"s{i:03d}",
        source=SOURCES[i % 3],
        task=TASKS[i % 3],
        modality="video",
        video=f"v{i}.mp4",
        question=f"What happens in clip {i}?",
        options=["A. one", "B. two"],
        answer="A",
        duration=None if i == 7 else 10.0 + 3.5 * i,
    )


def _rl(i: int) -> RlRow:
    passes = 1 + i % 3
    return RlRow(
        sample=_sample(i),
        num_rollouts=4,
        pass_rate=passes / 4,
        mean_reward=passes / 4,
        difficulty=1 - passes / 4,
        bucket=("hard", "medium", "easy")[i % 3],
        policy="transformers:tiny",
        tools=i % 2 == 0,
    )


def _cot(i: int) -> CotRow:
    messages = [Message("user", "question"), Message("assistant", "<think>t</think><answer>A</answer>")]
    return CotRow(_sample(i), messages, "teacher", "abc", 1.0, 0, True, False)


ACCOUNTING = {
    "stages": [
        {"stage": "read", "in": 41, "kept": 37, "rejected": 4, "by_reason": {"bad_json": 4}, "by_source": {}},
        {"stage": "probe", "in": 37, "kept": 30, "rejected": 7, "by_reason": {"unreadable": 7}, "by_source": {}},
        {"stage": "grade", "in": 30, "kept": 24, "rejected": 6, "by_reason": {"all_passed": 6}, "by_source": {}},
    ],
    "rejected": 17,
}
COT_ACCOUNTING = {
    "stages": [{"stage": "verify", "in": 23, "kept": 12, "rejected": 11, "by_reason": {"wrong": 11}, "by_source": {}}],
    "rejected": 11,
}


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    out = tmp_path / "build"
    write_dataset(out, "rl", [_rl(i) for i in range(24)], validation_fraction=0.2)
    write_dataset(out, "cot", [_cot(i) for i in range(12)])
    (out / "accounting.json").write_text(json.dumps(ACCOUNTING))
    (out / "accounting_cot.json").write_text(json.dumps(COT_ACCOUNTING))
    rejected = out / "rejected"
    rejected.mkdir()
    lines = [{"source": "nextgqa", "location": f"l{i}", "reason": "unreadable", "stage": "probe"} for i in range(7)]
    lines += [{"source": "nextgqa", "location": "x", "reason": "bad_json", "stage": "read"}] * 4
    by_stage: dict[str, list[dict]] = {}
    for line in lines:
        by_stage.setdefault(line["stage"], []).append({**line, "detail": "", "raw": ""})
    for stage, rows in by_stage.items():
        (rejected / f"{stage}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (rejected / "cot").mkdir()  # build-cot's dead letters
    line = {"source": "nextgqa", "location": "y", "reason": "wrong", "stage": "verify", "detail": "", "raw": ""}
    (rejected / "cot" / "verify.jsonl").write_text(json.dumps(line) + "\n")
    probe = {"source": "nextgqa", "location": "l0", "reason": "unreadable", "stage": "probe", "detail": "", "raw": ""}
    (rejected / "cot" / "probe.jsonl").write_text(json.dumps(probe) + "\n")  # the same file, seen by both builds
    return out


def _snapshot(out: Path) -> dict[str, bytes]:
    files = [out / "report.html", *sorted((out / REPORT_DIR).iterdir())]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def test_report_names_every_plot_and_the_accounting(out: Path):
    path = write_report(out)
    assert path == str(out / "report.html")
    text = Path(path).read_text(encoding="utf-8")
    linked = re.findall(r'<img src="([^"]+)"', text)
    expected = {"rows_cot.png", "rows_rl.png", "duration.png", "pass_rate.png", "rejections.png"}
    assert {Path(s).name for s in linked} == expected
    assert {p.name for p in (out / REPORT_DIR).iterdir()} == expected
    for src in linked:
        assert not Path(src).is_absolute() and src.startswith(f"{REPORT_DIR}/")
        with Image.open(out / src) as image:
            assert image.format == "PNG" and image.size == (700, 420)
            image.verify()
    for name, table in (("accounting.json", ACCOUNTING), ("accounting_cot.json", COT_ACCOUNTING)):
        assert name in text
        for stage in table["stages"]:
            cells = "".join(f'<td class="n">{stage[k]}</td>' for k in ("in", "kept", "rejected"))
            assert f"<td>{stage['stage']}</td>{cells}" in text
            for reason in stage["by_reason"]:
                assert reason in text
    assert '<td class="n">17</td>' in text and '<td class="n">11</td>' in text  # the totals
    assert "<td>cot/verify</td><td>wrong</td>" in text and "<td>probe</td><td>unreadable</td>" in text
    assert "2 rows have no duration" in text  # sample 7, once in rl and once in cot
    assert all(f"{code} = " in text for code in TASKS + ("open",))  # the task codes are explained


def test_the_plots_count_every_row_and_show_each_stage_once(out: Path, tmp_path: Path):
    """The duration plot accounts for every row (drawn, or counted as without a duration); the rejections plot has
    one entry per stage and reason, with each build's count beside it, adding up to the dead letters on disk."""
    data = read_rows(out)
    counts = plot_durations(data, str(tmp_path / "duration.png"))
    for config, splits in data.items():
        assert sum(counts[config]) == sum(len(rows) for rows in splits.values())
    assert counts["rl"] == (23, 1) and counts["cot"] == (11, 1)  # sample 7 has no duration
    rejections = read_rejections(out)
    table = plot_rejections(rejections, str(tmp_path / "rejections.png"))
    assert list(table) == [("probe", "unreadable"), ("read", "bad_json"), ("verify", "wrong")]
    assert table[("probe", "unreadable")] == {"rl": 7, "cot": 1} and table[("verify", "wrong")] == {"cot": 1}
    assert sum(n for per in table.values() for n in per.values()) == sum(rejections.values()) == 13


def test_rerun_writes_the_same_bytes_and_drops_stale_plots(out: Path):
    write_report(out)
    first = _snapshot(out)
    (out / REPORT_DIR / "old_plot.png").write_bytes(b"stale")
    write_report(out)
    assert _snapshot(out) == first


def test_empty_output_folder(tmp_path: Path):
    text = Path(write_report(tmp_path)).read_text(encoding="utf-8")
    assert "No shards" in text and "No accounting file" in text and "<img" not in text


def _upload(local: Path, url: str) -> None:
    """Copy every file of a local folder under `url`, through storage."""
    for path in storage.list_files(str(local)):
        storage.write_bytes(storage.join(url, storage.relative(path, str(local))), storage.read_bytes(path))


def _remote_snapshot(url: str) -> dict[str, bytes]:
    files = [storage.join(url, "report.html"), *storage.glob(storage.join(url, REPORT_DIR, "*"))]
    return {storage.relative(p, url): storage.read_bytes(p) for p in files}


def test_report_into_a_bucket_writes_the_same_bytes_as_into_a_folder(out: Path, s3_server):
    url = s3_server.prefix("report", uuid.uuid4().hex)
    _upload(out, url)
    storage.write_bytes(storage.join(url, REPORT_DIR, "old_plot.png"), b"stale")  # removed like a local one
    assert write_report(out) == str(out / "report.html")
    assert write_report(url) == f"{url}/report.html"
    local = _snapshot(out)
    assert len(local) == 6 and _remote_snapshot(url) == local


def test_empty_bucket_prefix(s3_server):
    url = s3_server.prefix("report", uuid.uuid4().hex)
    text = storage.read_text(write_report(url))
    assert "No shards" in text and "No accounting file" in text and "<img" not in text
    assert storage.glob(storage.join(url, REPORT_DIR, "*")) == []
