"""The native adapters of the general benchmarks: Video-MME, Video-MMMU, MMVU, LongVideoBench."""

from __future__ import annotations

import json
import re

from tests.benchmarks.conftest import DERIVED, meta, read


def test_video_mme_native_fields_of_the_derived_copy(samples):
    ok, errors = read("video-mme", samples / f"video-mme/{DERIVED}/videomme.json", format="native")
    assert errors == [] and [meta(s)["category"] for s in ok] == ["short", "medium", "long"]
    first = ok[0]  # question_id 001-1, videoID fFjv93ACGo8, answer C
    assert first.video == "fFjv93ACGo8.mp4" and first.answer == "C"
    assert first.options == ["Apples.", "Candles.", "Berries.", "The three kinds are of the same number."]
    assert meta(first)["task_type"] == "Counting Problem" and meta(first)["question_id"] == "001-1"


def test_video_mme_template_is_invalid_json_as_shipped(samples):
    ok, errors = read("video-mme", samples / "video-mme/output_test_template.json")
    assert ok == [] and [(e.location, e.reason) for e in errors] == [("output_test_template.json", "bad_json")]


def test_video_mme_template_grouped_questions_need_the_youtube_id(samples, tmp_path):
    text = re.sub(r",(\s*[}\]])", r"\1", (samples / "video-mme/output_test_template.json").read_text())
    path = tmp_path / "template.json"
    path.write_text(text)
    ok, errors = read("video-mme", path)
    assert ok == [] and len(errors) == 9 and errors[1].location == "template.json#0[1]"
    assert {e.reason for e in errors} == {"missing_field"} and "videoID" in errors[0].detail
    data = json.loads(text)
    data[0]["videoID"] = "fFjv93ACGo8"
    data[0]["questions"][1]["answer"] = "E"
    data[0]["questions"][2]["options"] = ["A. 1.", "A. 4."]
    path.write_text(json.dumps(data))
    ok, errors = read("video-mme", path)
    assert len(ok) == 1 and ok[0].answer == "C" and meta(ok[0])["category"] == "short"
    assert [e.reason for e in errors][:2] == ["unknown_option", "duplicate_option_letter"]


def test_video_mmmu_tracks(samples):
    ok, errors = read("video-mmmu", samples / "videommmu")
    assert errors == [] and len(ok) == 11
    first = ok[0]  # Perception "0": dev_Biology_3, answer G of 10 bare options
    assert first.video == "dev_Biology_3.mp4" and first.answer == "G" and len(first.options) == 10
    assert first.options[6] == "4, 5" and meta(first)["category"] == "Perception"
    assert meta(first)["youtube_id"] == "U7YqCUd_ZfA"
    adaptation = {meta(s)["key"]: s for s in ok if meta(s)["category"] == "Adaptation"}
    assert adaptation["13"].task == "open" and adaptation["13"].answer == "12.97"
    assert adaptation["13"].answer_type == "number" and adaptation["13"].options == []
    assert adaptation["49"].task == "mcq" and adaptation["49"].answer == "C"  # question_type null, options given
    assert meta(adaptation["0"])["needs_image"] is True and "<image 1>" in adaptation["0"].question


def test_video_mmmu_malformed(tmp_path):
    item = {"id": "dev_X_1", "question": "q?", "options": ["a", "b"], "answer": "B"}
    data = {"Perception": {"0": item, "1": {**item, "answer": "K"}, "2": {**item, "question": ""}}, "Bogus": {}}
    path = tmp_path / "perception_video.json"
    path.write_text(json.dumps(data))
    ok, errors = read("video-mmmu", path)
    assert len(ok) == 1 and [(e.location, e.reason) for e in errors] == [
        ("perception_video.json#Perception/1", "unknown_option"),
        ("perception_video.json#Perception/2", "missing_field"),
        ("perception_video.json#Bogus", "bad_value"),
    ]


def test_mmvu_validation(samples):
    ok, errors = read("mmvu", samples / "mmvu/validation.json")
    assert errors == [] and len(ok) == 8
    open_q, mc = ok[0], ok[1]  # validation_0 (open-ended, Art), validation_1 (MC, Chemistry, answer A)
    assert (open_q.task, open_q.answer_type, open_q.answer, open_q.options) == ("open", "text", "Dolly Zoom", [])
    assert open_q.video == "videos/Art/0.mp4" and meta(open_q)["category"] == "Art"
    assert mc.task == "mcq" and mc.answer == "A" and mc.options == ["10.0", "5.0", "12.0", "15.0", "20.0"]
    assert meta(mc)["youtube_id"] == "6HuyUxJBY3E" and meta(ok[7])["youtube_id"] == "7KJCUGS0jPM"  # URL has a space


def test_mmvu_malformed(tmp_path):
    row = {
        "id": "validation_1",
        "video": "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main/videos/Chemistry/0.mp4",
        "question_type": "multiple-choice",
        "question": "q?",
        "choices": {"A": "x", "B": "", "C": "z", "D": "", "E": ""},
        "answer": "A",
        "metadata": {"subject": "Chemistry"},
    }
    path = tmp_path / "validation.json"
    path.write_text(
        json.dumps(
            [row, {**row, "choices": {"A": "x", "B": "y"}, "answer": "D"}, {**row, "question_type": "x"}, "a string"]
        )
    )
    ok, errors = read("mmvu", path)
    assert ok == [] and [e.reason for e in errors] == ["bad_value", "unknown_option", "bad_value", "bad_value"]
    assert "not an object" in errors[-1].detail


def test_longvideobench_val(samples):
    ok, errors = read("longvideobench", samples / "longvideobench/lvb_val.json")
    assert errors == [] and len(ok) == 4
    first = ok[0]  # 86CxyhFV9MI_0, correct_choice 1, duration 190.16, TOS
    assert first.video == "86CxyhFV9MI.mp4" and first.answer == "B" and first.duration == 190.16
    assert meta(first)["category"] == "600" and meta(first)["question_category"] == "TOS"
    assert ok[2].answer == "E" and len(ok[2].options) == 5  # QJ6sjg7SXOQ, correct_choice 4


def test_longvideobench_malformed(tmp_path, samples):
    rows = json.loads((samples / "longvideobench/lvb_val.json").read_text())
    del rows[0]["correct_choice"]  # the test file's rows: no answer
    rows[1]["correct_choice"] = 7
    rows[2]["candidates"] = []
    rows.append([1, 2])  # a row that is not an object
    path = tmp_path / "lvb.json"
    path.write_text(json.dumps(rows))
    ok, errors = read("longvideobench", path)
    assert len(ok) == 1 and [(e.location, e.reason) for e in errors] == [
        ("lvb.json#0", "missing_field"),
        ("lvb.json#1", "unknown_option"),
        ("lvb.json#2", "missing_options"),
        ("lvb.json#4", "bad_value"),
    ]
