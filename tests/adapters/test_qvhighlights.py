"""QVHighlights on the real moment_detr lines, multi-window queries, the GT-less test file, malformed lines."""

from __future__ import annotations

import json

from mtvr_data.adapters import make_adapter
from tests.adapters.conftest import split_results


def read(path, **kw):
    return split_results(make_adapter("qvhighlights", path, **kw).read())


def test_real_val_lines(samples):
    ok, errors = read(samples / "qvhighlights" / "highlight_val_release.jsonl")
    assert errors == [] and len(ok) == 10 and {s.split for s in ok} == {"val"}
    first = ok[0]
    assert (first.task, first.answer_type, first.video) == ("tg", "span", "NUsG9BgSes0_210.0_360.0.mp4")
    assert first.question == "A girl and her mother cooked while talking with each other on facetime."
    assert first.span == [82.0, 150.0] and first.windows == [[82.0, 150.0]] and first.duration == 150.0
    assert first.meta_dict == {
        "qid": 2579,
        "vid": "NUsG9BgSes0_210.0_360.0",
        "ytid": "NUsG9BgSes0",
        "clip_start": 210.0,
        "clip_end": 360.0,
        "num_relevant_clips": 34,
        "origin": "highlight_val_release.jsonl:1",
    }
    assert ok[2].windows == [[56.0, 76.0], [96.0, 150.0]] and ok[2].span == [56.0, 76.0]
    short = next(s for s in ok if s.meta_dict["qid"] == 8737)  # a 126 s clip
    assert short.duration == 126.0 and short.span == [0.0, 16.0]


def test_real_train_many_windows(samples):
    ok, errors = read(samples / "qvhighlights" / "highlight_train_release.jsonl")
    assert errors == [] and len(ok) == 10
    assert ok[0].windows == [
        [72.0, 82.0],
        [84.0, 94.0],
        [96.0, 106.0],
        [108.0, 118.0],
        [120.0, 130.0],
        [136.0, 142.0],
        [144.0, 146.0],
    ]
    assert ok[0].span == ok[0].windows[0]
    assert "saliency_scores" not in ok[0].meta and "relevant_clip_ids" not in ok[0].meta


def test_test_release_has_no_ground_truth(samples):
    ok, errors = read(samples / "qvhighlights" / "highlight_test_release.jsonl")
    assert ok == []
    assert [(e.location, e.reason) for e in errors] == [
        (f"highlight_test_release.jsonl:{n}", "missing_span") for n in range(1, 6)
    ]
    assert '"qid": 3158' in errors[0].raw


def test_ids_stable_and_distinct(samples):
    path = samples / "qvhighlights" / "highlight_train_release.jsonl"
    ok, _ = read(path)
    again, _ = read(path)
    assert [s.id for s in ok] == [s.id for s in again]
    assert len({s.id for s in ok}) == len(ok)  # qid 750 and 6804 share a window [120, 134]: other clips


def test_window_order_clamp_and_underscored_ytid(tmp_path):
    path = tmp_path / "highlight_val_release.jsonl"
    line = {
        "qid": 1,
        "query": "a boat on a lake",
        "duration": 150,
        "vid": "_6hnl_BrFvs_360.0_510.0",
        "relevant_windows": [[100, 110], [10, 20], [140, 151]],
        "relevant_clip_ids": [5, 6],
    }
    path.write_text(json.dumps(line) + "\n")
    (s,), errors = read(path)
    assert errors == []
    assert s.windows == [[10.0, 20.0], [100.0, 110.0], [140.0, 150.0]] and s.span == [10.0, 20.0]
    assert s.video == "_6hnl_BrFvs_360.0_510.0.mp4"
    assert s.meta_dict["ytid"] == "_6hnl_BrFvs" and s.meta_dict["original_windows_clamped"] == [[140.0, 151.0]]


def test_malformed_lines(tmp_path):
    path = tmp_path / "highlight_train_release.jsonl"
    base = {"qid": 1, "query": "q", "duration": 150, "vid": "abcdefghijk_0.0_150.0", "relevant_windows": [[0, 10]]}

    def line(**kw):
        return json.dumps({**base, **kw}).encode() + b"\n"

    path.write_bytes(
        line()
        + b'{"qid": 2, "query": "cut off\n'
        + b'{"qid": 3, "query": "caf\xe9", "duration": 150, "vid": "v", "relevant_windows": [[0, 2]]}\n'
        + line(query="")
        + line(relevant_windows=[[10, 10]])
        + line(relevant_windows=[[0, 10], [140, 160]])
        + line(relevant_windows=[[0, 10, 12]])
        + line(relevant_windows=[])
        + line(duration=None)
        + b"[1, 2]\n"
        + line(vid="no-offsets", query="still fine")
    )
    ok, errors = read(path)
    name = "highlight_train_release.jsonl"
    assert [(e.location, e.reason) for e in errors] == [
        (f"{name}:2", "bad_json"),
        (f"{name}:3", "non_utf8"),
        (f"{name}:4", "missing_field"),
        (f"{name}:5", "end_not_after_start"),
        (f"{name}:6", "span_outside_video"),
        (f"{name}:7", "bad_value"),
        (f"{name}:8", "missing_span"),
        (f"{name}:9", "missing_field"),
        (f"{name}:10", "bad_json"),
    ]
    assert [s.question for s in ok] == ["q", "still fine"]
    assert "ytid" not in ok[1].meta_dict and ok[1].video == "no-offsets.mp4"
