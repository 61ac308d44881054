"""The benchmarks read by training-source adapters: real test records, the options they add, malformed records."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.benchmarks.conftest import meta, read


def test_charades_sta_test_real_lines(samples):
    ok, errors = read("charades-sta", samples / "charades_sta/charades_sta_test.txt")
    assert errors == [] and len(ok) == 20
    first = ok[0]  # "3MSZA 24.3 30.4##person turn a light on." ; Charades_v1_test length 30.96
    assert (first.video, first.question, first.span, first.duration) == (
        "3MSZA.mp4",
        "person turn a light on.",
        [24.3, 30.4],
        30.96,
    )
    assert first.task == "tg" and meta(first)["category"] == "" and meta(first)["origin"] == "charades_sta_test.txt:1"
    # "AKO6M 12.7 19.9##..." ends past the 18.58 s video. Training clamps it; a benchmark keeps the published
    # window, the one published numbers are scored against (issue 24; the old expectation was the training clamp)
    published = ok[19]
    assert published.span == published.windows[0] == [12.7, 19.9] and published.duration == 18.58
    assert "original_end" not in meta(published) and published.problems() == []


def test_charades_sta_malformed_lines(tmp_path, samples):
    shutil.copy(samples / "charades_sta/Charades_v1_test.csv", tmp_path)
    path = tmp_path / "charades_sta_test.txt"
    path.write_text(
        "3MSZA 24.3 30.4##person turn a light on.\n"
        "3MSZA 24.3##no end\n"
        "3MSZA 40.0 45.0##starts after the video ends.\n"
        "3MSZA 5.0 4.0##backwards.\n"
    )
    ok, errors = read("charades-sta", path)
    # a window past the 30.96 s video is still the published truth: kept (and scored), never dropped
    assert [s.span for s in ok] == [[24.3, 30.4], [40.0, 45.0]]
    assert [(e.location, e.reason) for e in errors] == [
        ("charades_sta_test.txt:2", "bad_line"),
        ("charades_sta_test.txt:4", "end_not_after_start"),
    ]
    assert {e.source for e in errors} == {"charades-sta"}


def test_activitynet_mr_defaults_to_val_2(samples):
    ok, _ = read("activitynet-mr", samples / "activitynet_captions")  # a folder: test.json (= val_2)
    assert len(ok) == 28 and ok[0].video == "v_uqiMw7tQ1Cc.mp4" and ok[0].span == [0.0, 4.14]
    assert ok[0].duration == 55.15 and meta(ok[0])["anet_split"] == "val_2" and ok[0].split == "test"


def test_activitynet_mr_val_1_and_a_mismatched_file(samples):
    ok, _ = read("activitynet-mr", samples / "activitynet_captions", split="val_1")
    assert meta(ok[0])["origin"].startswith("val.json#") and meta(ok[0])["anet_split"] == "val_1"
    with pytest.raises(ValueError, match="val.json is ActivityNet Captions val_1, but split='val_2'"):
        read("activitynet-mr", samples / "activitynet_captions/val.json")
    with pytest.raises(ValueError, match="split must be one of"):
        read("activitynet-mr", samples / "activitynet_captions", split="val_3")


def test_activitynet_mr_span_outside_video(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"v_x": {"duration": 10.0, "timestamps": [[1, 5], [12, 15]], "sentences": ["a", "b"]}}))
    ok, errors = read("activitynet-mr", path)
    # the window past the 10 s video is the published truth: kept as published, not refused
    assert errors == [] and [s.span for s in ok] == [[1.0, 5.0], [12.0, 15.0]]


def test_nextgqa_test_real_row(samples):
    ok, errors = read("nextgqa", samples / "nextgqa/test.csv")
    assert errors == [] and len(ok) == 38
    first = ok[0]  # 10128261054, qid 9: "why did the man on the left turn his face back and walk away"
    assert first.video == "1009/10128261054.mp4" and first.answer == "E" and first.options[4] == "end of match"
    assert first.span == [15.2, 19.0] and first.duration is None and first.fps == 29.97
    assert meta(first)["gsub_duration"] == 19.0  # whole seconds; the probe stage sets the real duration
    assert meta(first)["category"] == "CW" and first.task == "gqa"


def test_nextgqa_multi_span_ground_truth_is_kept_in_windows(samples):
    ok, _ = read("nextgqa", samples / "nextgqa/val.csv")  # gsub_val.json beside it; split is still test
    row = next(s for s in ok if meta(s)["video_id"] == "10001787725" and meta(s)["qid"] == 3)
    assert row.windows == [[12.1, 17.1], [20.0, 23.5], [29.7, 33.2]] and row.span == [12.1, 17.1]
    assert row.split == "test"


def test_nextgqa_answer_not_in_options(tmp_path, samples):
    for name in ("gsub_test.json", "map_vid_vidorID.json"):
        shutil.copy(samples / "nextgqa" / name, tmp_path)
    lines = (samples / "nextgqa/test.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",end of match,", ",not an option,", 1)
    (tmp_path / "test.csv").write_text("\n".join(lines[:3]) + "\n")
    ok, errors = read("nextgqa", tmp_path / "test.csv")
    assert len(ok) == 1 and [(e.location, e.reason) for e in errors] == [("test.csv:2", "answer_not_in_options")]


def test_rextime_github_gt_gives_no_samples_but_says_why(samples):
    ok, errors = read("rextime", samples / "rextime/rextime_val.jsonl")
    assert ok == [] and len(errors) == 15 and {e.reason for e in errors} == {"missing_options"}


def test_rextime_hf_record_category_and_bad_letter(tmp_path):
    base = {
        "qid": "anet_val92",
        "vid": "v_ZMTi498qnPc",
        "duration": 100.5,
        "question": "What does the woman do before smiling at the camera and being watched by the little girl?",
        "options": ["She waves.", "She sits.", "She jumps.", "She sings."],
        "ans": "A",
        "span": [5, 8],
        "category": "sequential",
    }
    path = tmp_path / "rextime_val.json"
    path.write_text(json.dumps([base, {**base, "ans": "E"}, {**base, "span": [99, 120]}]))
    ok, errors = read("rextime", path)
    assert len(ok) == 2 and ok[0].span == [5.0, 8.0] and meta(ok[0])["category"] == "sequential"
    assert ok[1].span == [99.0, 120.0] and "original_end" not in meta(ok[1])  # published, past the 100.5 s video
    assert [e.reason for e in errors] == ["unknown_option"]


def test_longvideo_reason_test_rows(samples):
    ok, errors = read("longvideo-reason", samples / "longvideo-reason/test.jsonl")
    assert errors == [] and [meta(s)["category"] for s in ok] == ["goal", "plot"]
    assert ok[1].video == "longvila_videos/p7ZDHVdWcm8.mp4" and ok[1].answer == "B"
    assert ok[1].options[1] == '"The MacBook sucks because it only has a single port."'


def test_longvideo_reason_bad_json_and_unknown_letter(tmp_path):
    row = {"problem_id": 1, "problem": "Q?  \nA. x  \nB. y  \n", "answer": "<answer>C</answer>", "videos": "v.mp4"}
    path = tmp_path / "test.jsonl"
    path.write_text("{not json\n" + json.dumps(row) + "\n")
    ok, errors = read("longvideo-reason", path)
    assert ok == [] and [(e.location, e.reason) for e in errors] == [
        ("test.jsonl:1", "bad_json"),
        ("test.jsonl:2", "unknown_option"),
    ]


def test_vidchapters_record(samples):
    ok, _ = read("vidchapters", samples / "vidchapters/chapters_sml1k_train.record.json")
    assert ok[0].video == "-1vmZJ-EWtI.mp4" and ok[0].span == [180.0, 501.0] and ok[0].duration == 2595.906
