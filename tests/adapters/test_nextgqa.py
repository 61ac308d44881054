"""NExT-GQA on the real published rows (val/test CSV + gsub + VidOR map), its quirks, and malformed rows."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import pytest

from mtvr_data.adapters import make_adapter
from tests.adapters.conftest import split_results

HEADER = "video_id,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"


def read(path, **kw):
    return split_results(make_adapter("nextgqa", path, **kw).read())


def by_origin(samples_):
    return {s.meta_dict["origin"]: s for s in samples_}


def test_real_val_rows(samples):
    ok, errors = read(samples / "nextgqa" / "val.csv")
    assert len(ok) == 39 and errors == []
    assert {s.task for s in ok} == {"gqa"} and {s.split for s in ok} == {"val"}
    row = by_origin(ok)["val.csv:8"]  # the row quoted in FORMATS.md §3
    assert row.question == "why did the woman hold the baby when the baby moved to the edge of the sofa"
    assert row.options == ["go somewhere", "support herself", "talking to kids", "for balance", "protect from falling"]
    assert (row.answer, row.answer_type) == ("E", "letter")  # answer TEXT "protect from falling" is a4
    assert row.span == [1.2, 5.8] and row.windows == [[1.2, 5.8]]
    # gsub's whole-second duration is not the file's length: kept in meta, the probe stage sets `duration`
    assert (row.duration, row.fps, row.width, row.height) == (None, 29.97, 640, 360)
    assert row.meta_dict["gsub_duration"] == 34.0
    assert row.video == "1009/10001787725.mp4"  # map_vid_vidorID.json found beside the CSV
    meta = row.meta_dict
    assert (meta["qid"], meta["type"], meta["video_id"], meta["frame_count"]) == (1, "CW", "10001787725", 1021)
    assert "original_windows" not in meta


def test_every_letter_names_the_published_answer_text(samples):
    path = samples / "nextgqa" / "val.csv"
    ok, _ = read(path)
    with open(path, newline="") as fh:
        answers = [r["answer"] for r in csv.DictReader(fh)]
    assert [s.options["ABCDE".index(s.answer)] for s in ok] == answers


def test_several_windows_sorted_and_first_is_span(samples):
    ok = by_origin(read(samples / "nextgqa" / "val.csv")[0])
    smiling = ok["val.csv:31"]  # qid 3 of 10001787725: three disjoint windows
    assert smiling.question == "why is the baby smiling" and smiling.answer == "E"
    assert smiling.windows == [[12.1, 17.1], [20.0, 23.5], [29.7, 33.2]] and smiling.span == [12.1, 17.1]
    forwards = ok["val.csv:17"]  # qid 7: four windows, the last one ends exactly at the 34 s duration
    assert forwards.windows == [[0.1, 2.6], [16.0, 19.6], [22.3, 25.8], [30.3, 34.0]]
    assert forwards.answer == "A"


def test_real_test_rows_and_stable_ids(samples):
    path = samples / "nextgqa" / "test.csv"
    ok, errors = read(path)
    assert len(ok) == 38 and errors == [] and {s.split for s in ok} == {"test"}
    first = ok[0]
    assert first.question == "why did the man on the left turn his face back and walk away"
    assert first.answer == "E" and first.duration is None and first.fps == 29.97
    assert first.meta_dict["gsub_duration"] == 19.0
    ten_fps = [s for s in ok if s.meta_dict["video_id"] == "10173643695"]
    assert ten_fps and {s.fps for s in ten_fps} == {10.0} and {s.meta_dict["gsub_duration"] for s in ten_fps} == {30.0}
    again, _ = read(path)
    assert [s.id for s in ok] == [s.id for s in again]
    assert len({s.id for s in ok}) == len(ok)


def test_missing_gsub_fails_at_construction(tmp_path, samples):
    shutil.copy(samples / "nextgqa" / "val.csv", tmp_path / "train.csv")
    with pytest.raises(FileNotFoundError, match="gsub_train.json"):
        make_adapter("nextgqa", tmp_path / "train.csv")
    ok, errors = read(tmp_path / "train.csv", gsub=samples / "nextgqa" / "gsub_val.json")
    assert len(ok) == 39 and errors == [] and ok[0].split == "train"
    assert ok[0].video == "10030609934.mp4"  # no map beside this CSV: the bare id


def test_vid_map_false_and_explicit(tmp_path, samples):
    ok, _ = read(samples / "nextgqa" / "val.csv", vid_map=False)
    assert ok[0].video == "10030609934.mp4"
    ok, _ = read(samples / "nextgqa" / "val.csv", vid_map=False, video_ext=".webm")
    assert ok[0].video == "10030609934.webm"


def write_case(tmp_path, rows: list[bytes], gsub: dict, vid_map: dict | None = None):
    path = tmp_path / "val.csv"
    path.write_bytes(HEADER.encode() + b"".join(rows))
    (tmp_path / "gsub_val.json").write_text(json.dumps(gsub))
    if vid_map is not None:
        (tmp_path / "map_vid_vidorID.json").write_text(json.dumps(vid_map))
    return path


OPTS = b"run,walk,sit,jump,swim"


def test_malformed_rows(tmp_path):
    gsub = {
        "111": {
            "duration": 30,
            "fps": 25.0,
            "location": {
                "1": [[3.0, 5.0]],
                "2": [[8.0, 8.0]],
                "3": [[1.0, 40.0]],
                "4": [[20.0, 31.5], [2.0, 4.0]],
                "5": [[2.0, 4.0]],
                "6": [[2.0, 4.0]],
                "7": [[2.0, 4.0]],
                "8": "nope",
                "9": [["a", 4.0]],
                "11": [[2.0, 4.0]],
            },
        }
    }
    path = write_case(
        tmp_path,
        [
            b"111,750,640,360,what does the boy do,walk,1,TN," + OPTS + b"\n",  # 2 ok
            b"111,750,640,360,what does the boy do,walk,2,TN," + OPTS + b"\n",  # 3 end == start
            b"111,750,640,360,what does the boy do,walk,3,TN," + OPTS + b"\n",  # 4 far past 30 s
            b"111,750,640,360,what does the boy do,walk,4,TN," + OPTS + b"\n",  # 5 kept as published, sorted
            b"111,750,640,360,what does the boy do,fly,5,TN," + OPTS + b"\n",  # 6 answer not in options
            b"111,750,640,360,what does the boy do,walk,10,TN," + OPTS + b"\n",  # 7 no location for qid 10
            b"222,750,640,360,what does the boy do,walk,1,TN," + OPTS + b"\n",  # 8 video not in gsub
            b"111,750,640,360,what does the boy do \xff,walk,6,TN," + OPTS + b"\n",  # 9 non-UTF-8
            b"111,750,640,360,what does the boy do,walk,7,TN,run,walk\n",  # 10 cell count
            b"111,750,640,360,,walk,7,TN," + OPTS + b"\n",  # 11 empty question
            b"111,750,wide,360,what does the boy do,walk,7,TN," + OPTS + b"\n",  # 12 width not an int
            b"111,750,640,360,what does the boy do,walk,8,TN," + OPTS + b"\n",  # 13 location not a list
            b"111,750,640,360,what does the boy do,walk,9,TN," + OPTS + b"\n",  # 14 start not a number
            b"111,750,640,360,what does the boy do,  Walk ,11,TN," + OPTS + b"\n",  # 15 case/space-insensitive
            b"111,750,640,360,what does the boy do,walk,,TN," + OPTS + b"\n",  # 16 no qid
        ],
        gsub,
    )
    ok, errors = read(path)
    got = {e.location: e.reason for e in errors}
    assert got == {
        "val.csv:3": "end_not_after_start",
        "val.csv:4": "span_outside_video",
        "val.csv:6": "answer_not_in_options",
        "val.csv:7": "missing_span",
        "val.csv:8": "missing_span",
        "val.csv:9": "non_utf8",
        "val.csv:10": "bad_line",
        "val.csv:11": "missing_field",
        "val.csv:12": "bad_value",
        "val.csv:13": "bad_value",
        "val.csv:14": "bad_value",
        "val.csv:16": "missing_field",
    }
    assert {e.source for e in errors} == {"nextgqa"}
    rows = by_origin(ok)
    assert rows["val.csv:2"].span == [3.0, 5.0] and rows["val.csv:2"].answer == "B"
    assert rows["val.csv:2"].video == "111.mp4" and rows["val.csv:2"].duration is None
    assert rows["val.csv:2"].meta_dict["gsub_duration"] == 30.0
    past = rows["val.csv:5"]  # 1.5 s past gsub's rounded 30 s: kept as published, the probe stage fits it
    assert past.windows == [[2.0, 4.0], [20.0, 31.5]] and past.span == [2.0, 4.0]
    assert "original_windows" not in past.meta_dict
    assert rows["val.csv:15"].answer == "B"
    assert len(ok) == 3


def test_video_missing_from_map(tmp_path):
    gsub = {
        "111": {"duration": 30, "fps": 25.0, "location": {"1": [[3.0, 5.0]]}},
        "222": {"duration": 30, "fps": 25.0, "location": {"1": [[3.0, 5.0]]}},
    }
    path = write_case(
        tmp_path,
        [
            b"111,750,640,360,what does the boy do,walk,1,TN," + OPTS + b"\n",
            b"222,750,640,360,what does the boy do,walk,1,TN," + OPTS + b"\n",
        ],
        gsub,
        vid_map={"111": "0001/111"},
    )
    ok, errors = read(path)
    assert [s.video for s in ok] == ["0001/111.mp4"]
    assert [(e.location, e.reason) for e in errors] == [("val.csv:3", "bad_value")]
    assert "map_vid_vidorID.json" in errors[0].detail


def test_bad_gsub_file(tmp_path):
    path = write_case(tmp_path, [b"111,750,640,360,q,walk,1,TN," + OPTS + b"\n"], {})
    (tmp_path / "gsub_val.json").write_text("{not json")
    with pytest.raises(ValueError, match="gsub_val.json"):
        make_adapter("nextgqa", path)


def test_answer_text_equal_to_two_options_is_a_dead_letter(tmp_path):
    """test.csv has a row whose answer "happy" is two of its options: no silent first letter."""
    gsub = {"111": {"duration": 30, "fps": 25.0, "location": {"1": [[3.0, 5.0]], "2": [[6.0, 9.0]]}}}
    path = write_case(
        tmp_path,
        [
            b"111,750,640,360,how does the girl feel at the end,happy,1,CW,sad,happy,angry,happy,tired\n",
            b"111,750,640,360,how does the girl feel at the start,sad,2,CW,sad,happy,angry,happy,tired\n",
        ],
        gsub,
    )
    ok, errors = read(path)
    assert [(e.location, e.reason) for e in errors] == [("val.csv:2", "ambiguous_answer")]
    assert "'happy'" in errors[0].detail and "B, D" in errors[0].detail
    assert [s.answer for s in ok] == ["A"]  # an answer equal to one option only is still fine


def test_same_question_under_two_qids_gets_two_ids(tmp_path):
    gsub = {"111": {"duration": 30, "fps": 25.0, "location": {"9": [[3.0, 5.0]], "0": [[3.0, 5.0]]}}}
    row = b",TN," + OPTS + b"\n"
    path = write_case(
        tmp_path,
        [b"111,750,640,360,what does the boy do,walk,9" + row, b"111,750,640,360,what does the boy do,walk,0" + row],
        gsub,
    )
    ok, errors = read(path)
    assert errors == [] and [s.meta_dict["qid"] for s in ok] == [9, 0]
    assert ok[0].id != ok[1].id and (ok[0].span, ok[0].answer) == (ok[1].span, ok[1].answer)


def test_window_past_gsub_rounded_duration_is_fitted_to_the_probed_duration(tmp_path):
    """gsub says 21 s for a 21.45 s video: read time keeps [15.0, 21.45]; the probe stage decides."""
    from mtvr_data.normalize import apply_probe
    from mtvr_data.video_probe import MediaInfo, ProbeResult

    gsub = {"111": {"duration": 21, "fps": 29.97, "location": {"1": [[15.0, 21.45], [1.0, 4.0]]}}}
    path = write_case(tmp_path, [b"111,643,640,360,what does the boy do,walk,1,TN," + OPTS + b"\n"], gsub)
    ok, errors = read(path)
    assert errors == [] and len(ok) == 1
    row = ok[0]
    assert row.windows == [[1.0, 4.0], [15.0, 21.45]] and row.duration is None
    assert row.meta_dict["gsub_duration"] == 21.0 and "original_windows" not in row.meta_dict

    def probed(duration: float) -> ProbeResult:
        info = MediaInfo(duration, 29.97, round(duration * 29.97), 640, 360, "h264", "decord")
        return ProbeResult("111.mp4", info, None)

    exact = apply_probe(dataclasses.replace(row), probed(21.45))  # the real file: nothing to fit
    assert exact.windows == [[1.0, 4.0], [15.0, 21.45]] and exact.duration == 21.45
    assert "original_windows" not in exact.meta_dict
    shorter = apply_probe(dataclasses.replace(row), probed(21.3))  # a file 0.15 s shorter: clamped, recorded
    assert shorter.windows == [[1.0, 4.0], [15.0, 21.3]] and shorter.span == [1.0, 4.0]
    assert shorter.meta_dict["original_windows"] == [[1.0, 4.0], [15.0, 21.45]]
    assert shorter.id == row.id
    far = apply_probe(dataclasses.replace(row), probed(12.0))  # a different (cut) file: refused, not clamped
    assert far.reason == "span_outside_video" and far.stage == "probe"
