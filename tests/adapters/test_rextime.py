"""ReXTime: the real GitHub GT jsonl (no options: rejected with a pointer), and the HF json layout.

No raw HF record exists in the samples, so the HF-layout records below reuse the real GT lines' qid, vid,
duration, question, window and letter, with option texts and the answer sentence written for the test.
"""

from __future__ import annotations

import json

from mtvr_data.adapters import make_adapter
from tests.adapters.conftest import split_results


def read(path, **kw):
    return split_results(make_adapter("rextime", path, **kw).read())


def test_real_github_gt_lines_have_no_options(samples):
    ok, errors = read(samples / "rextime" / "rextime_val.jsonl")
    assert ok == [] and len(errors) == 15
    assert [e.location for e in errors] == [f"rextime_val.jsonl:{n}" for n in range(1, 16)]
    assert {e.reason for e in errors} == {"missing_options"}
    assert "rextime_{split}.json" in errors[0].detail
    assert '"qid": "anet_val92"' in errors[1].raw


OPTIONS = ["She dances in the yard.", "She reads a book.", "She paints a fence.", "She rides a bike."]


def hf_record(**kw):
    rec = {
        "qid": "anet_val1314",
        "vid": "v_NDK0XQnsnmA",
        "duration": 129.96,
        "question": "Why do kids and adults ride bumper cars and intentionally bump into each other?",
        "options": OPTIONS,
        "answer": "From <s0> to <e0>, She rides a bike.",
        "ans": "D",
        "span": [0, 130],
        "category": "cause_effect",
        "source": "ActivityNet_val_2",
    }
    rec.update(kw)
    return rec


QVH = {
    "qid": "qvh_val241",
    "vid": "2I9-kvemtSU_510.0_660.0",
    "duration": 150,
    "span": [0, 28],
    "ans": "A",
    "question": "What were the woman and man doing before they showed reactions like verbal exclamations?",
    "source": "qvhighlights_val",
    "category": "sequential",
}


def test_hf_array_layout(tmp_path):
    path = tmp_path / "rextime_val.json"
    path.write_text(json.dumps([hf_record(), hf_record(**QVH)], indent=2))
    ok, errors = read(path)
    assert errors == [] and len(ok) == 2
    anet, qvh = ok
    assert (anet.task, anet.answer_type, anet.answer, anet.split) == ("gqa", "letter", "D", "val")
    assert anet.options == OPTIONS and anet.video == "v_NDK0XQnsnmA.mp4"
    # the integer window [0, 130] overshoots the 129.96 s video: clamped, original kept
    assert anet.span == [0.0, 129.96] and anet.windows == [[0.0, 129.96]] and anet.duration == 129.96
    meta = anet.meta_dict
    assert meta["original_end"] == 130.0 and meta["answer_text"] == "From <s0> to <e0>, She rides a bike."
    assert (meta["category"], meta["source"], meta["video_dataset"]) == (
        "cause_effect",
        "ActivityNet_val_2",
        "activitynet",
    )
    assert meta["origin"] == "rextime_val.json#0"
    assert qvh.video == "2I9-kvemtSU_510.0_660.0.mp4" and qvh.span == [0.0, 28.0] and qvh.answer == "A"
    assert qvh.meta_dict["video_dataset"] == "qvhighlights" and "original_end" not in qvh.meta_dict


def test_hf_jsonl_layout_same_ids_and_video_dirs(tmp_path):
    array, lines = tmp_path / "rextime_train.json", tmp_path / "rextime_train.jsonl"
    records = [hf_record(), hf_record(**QVH)]
    array.write_text(json.dumps(records))
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))
    a, _ = read(array)
    b, _ = read(lines)
    assert [s.id for s in a] == [s.id for s in b] and a[0].id != a[1].id
    assert b[0].meta_dict["origin"] == "rextime_train.jsonl:1"
    c, _ = read(lines, anet_dir="activitynet/videos/", qvh_dir="qvhighlights")
    assert [s.video for s in c] == ["activitynet/videos/v_NDK0XQnsnmA.mp4", "qvhighlights/2I9-kvemtSU_510.0_660.0.mp4"]
    assert c[0].id != a[0].id  # the video path is part of what the id hashes


def test_malformed_records(tmp_path):
    path = tmp_path / "rextime_val.jsonl"
    rows = [
        hf_record(ans="E"),
        hf_record(options=[]),
        {k: v for k, v in hf_record().items() if k != "options"},
        hf_record(span=None),
        hf_record(span=[50, 40]),
        hf_record(span=[0, 140]),
        hf_record(question=""),
        hf_record(options=["a", "b", "", "d"]),
        hf_record(span=[1, 2, 3]),
        {
            "qid": "anet_val92",
            "query": "q?",
            "duration": 100.5,
            "vid": "v_ZMTi498qnPc",
            "relevant_windows": [[5, 8]],
            "ans": "A",
        },
    ]
    path.write_bytes(
        b"".join(json.dumps(r).encode() + b"\n" for r in rows)
        + b'{"qid": "x", "question": "caf\xe9"}\n'
        + b"not json\n"
        + json.dumps(hf_record()).encode()
    )
    ok, errors = read(path)
    name = "rextime_val.jsonl"
    assert [(e.location, e.reason) for e in errors] == [
        (f"{name}:1", "unknown_option"),
        (f"{name}:2", "missing_options"),
        (f"{name}:3", "missing_options"),
        (f"{name}:4", "missing_span"),
        (f"{name}:5", "end_not_after_start"),
        (f"{name}:6", "span_outside_video"),
        (f"{name}:7", "missing_field"),
        (f"{name}:8", "missing_options"),
        (f"{name}:9", "bad_value"),
        (f"{name}:10", "missing_options"),
        (f"{name}:11", "non_utf8"),
        (f"{name}:12", "bad_json"),
    ]
    assert "rextime_{split}.json" in errors[9].detail and "rextime_{split}.json" not in errors[1].detail
    assert len(ok) == 1 and ok[0].answer == "D"


def test_bad_array_item(tmp_path):
    path = tmp_path / "rextime_test_release.json"
    path.write_text(json.dumps([hf_record(), "oops"]))
    ok, errors = read(path)
    assert ok[0].split == "test"
    assert [(e.location, e.reason) for e in errors] == [("rextime_test_release.json#1", "bad_value")]
