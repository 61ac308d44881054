"""NExT-QA on the real published rows (answer = 0-based index), the VidOR map, and malformed rows."""

from __future__ import annotations

import csv
import json

import pytest

from mtvr_data.adapters import make_adapter
from tests.adapters.conftest import split_results

HEADER = b"video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"


def read(path, **kw):
    return split_results(make_adapter("nextqa", path, **kw).read())


def test_real_val_rows(samples):
    path = samples / "nextqa" / "val.csv"
    ok, errors = read(path)
    assert len(ok) == 24 and errors == []
    first = ok[0]  # the row quoted in FORMATS.md §4
    assert (first.task, first.answer_type, first.split) == ("mcq", "letter", "val")
    assert first.question == "how do the two man play the instrument"
    assert first.options == [
        "roll the handle",
        "tap their feet",
        "strum the string",
        "hit with sticks",
        "pat with hand",
    ]
    assert first.answer == "A" and first.video == "4010069381.mp4"  # no map beside nextqa/val.csv
    assert (first.width, first.height, first.duration, first.span) == (640, 480, None, None)
    assert first.meta_dict == {
        "video_id": "4010069381",
        "qid": 6,
        "type": "CH",
        "frame_count": 369,
        "origin": "val.csv:2",
    }
    with open(path, newline="") as fh:
        published = list(csv.DictReader(fh))
    assert [s.answer for s in ok] == ["ABCDE"[int(r["answer"])] for r in published]
    assert {s.meta_dict["type"] for s in ok} == {"CW", "CH", "TN", "TC", "TP", "DL", "DC", "DO"}
    assert ok[11].answer == "E" and ok[11].meta_dict["type"] == "DL"  # 7508439506, answer index 4


def test_real_test_rows_and_stable_ids(samples):
    path = samples / "nextqa" / "test.csv"
    ok, errors = read(path)
    assert len(ok) == 16 and errors == [] and {s.split for s in ok} == {"test"}
    assert ok[1].question == "where is this place" and ok[1].answer == "B" and ok[1].options[1] == "river"
    assert (ok[1].width, ok[1].height) == (500, 375)
    again, _ = read(path)
    assert [s.id for s in ok] == [s.id for s in again]
    assert len({s.id for s in ok}) == len(ok)


def test_explicit_vid_map(tmp_path, samples):
    vid_map = samples / "nextgqa" / "map_vid_vidorID.json"  # the real map ships with NExT-GQA's samples
    path = tmp_path / "val.csv"
    path.write_bytes(
        HEADER + b"10001787725,1021,640,360,why is the baby smiling,4,3,CW,excited about the food,"
        b"playing with the dog,lady tickles him,playing with adult,happy\n"
    )
    ok, errors = read(path, vid_map=vid_map)
    assert errors == [] and ok[0].video == "1009/10001787725.mp4" and ok[0].answer == "E"
    # The sample map holds only the 12 NExT-GQA sample videos: real NExT-QA rows are not in it, and say so.
    ok, errors = read(samples / "nextqa" / "val.csv", vid_map=vid_map)
    assert ok == [] and len(errors) == 24 and {e.reason for e in errors} == {"bad_value"}
    assert errors[0].location == "val.csv:2" and "4010069381" in errors[0].detail


def test_map_auto_discovered_and_disabled(tmp_path):
    path = tmp_path / "test.csv"
    path.write_bytes(HEADER + b"123,300,640,480,what is it,0,1,DO,cat,dog,cow,hen,pig\n")
    (tmp_path / "map_vid_vidorID.json").write_text(json.dumps({"123": "0042/123"}))
    assert read(path)[0][0].video == "0042/123.mp4"
    assert read(path, vid_map=False)[0][0].video == "123.mp4"
    with pytest.raises(FileNotFoundError):
        make_adapter("nextqa", path, vid_map=tmp_path / "absent.json")


def test_video_id_column_is_accepted(tmp_path):
    path = tmp_path / "val.csv"
    path.write_bytes(
        b"video_id,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
        b"123,300,640,480,what is it,3,1,DO,cat,dog,cow,hen,pig\n"
    )
    ok, errors = read(path)
    assert errors == [] and ok[0].video == "123.mp4" and ok[0].answer == "D"


def test_malformed_rows(tmp_path):
    path = tmp_path / "val.csv"
    opts = b",cat,dog,cow,hen,pig\n"
    path.write_bytes(
        HEADER
        + b"".join(
            [
                b"123,300,640,480,what is it,2,1,DO" + opts,  # 2 ok
                b"123,300,640,480,what is it,5,2,DO" + opts,  # 3 index past a4
                b"123,300,640,480,what is it,-1,3,DO" + opts,  # 4 negative index
                b"123,300,640,480,what is it,two,4,DO" + opts,  # 5 text equal to no option
                b"123,300,640,480,what is it,1.0,5,DO" + opts,  # 6 not an int, equal to no option
                b"123,300,640,480,what is it,1,6,DO,cat,dog,cow,,pig\n",  # 7 empty a3
                b"123,300,640,480,what is \xe9t,1,7,DO" + opts,  # 8 non-UTF-8
                b"123,300,640,480,what is it,1,8,DO,cat\n",  # 9 cell count
                b"123,300,640,480,,1,9,DO" + opts,  # 10 empty question
                b"123,many,640,480,what is it,1,10,DO" + opts,  # 11 frame_count not an int
                b",300,640,480,what is it,1,11,DO" + opts,  # 12 no video
            ]
        )
    )
    ok, errors = read(path)
    assert {e.location: e.reason for e in errors} == {
        "val.csv:3": "unknown_option",
        "val.csv:4": "unknown_option",
        "val.csv:5": "answer_not_in_options",
        "val.csv:6": "answer_not_in_options",
        "val.csv:7": "missing_field",
        "val.csv:8": "non_utf8",
        "val.csv:9": "bad_line",
        "val.csv:10": "missing_field",
        "val.csv:11": "bad_value",
        "val.csv:12": "missing_field",
    }
    assert len(ok) == 1 and ok[0].answer == "C" and ok[0].options[2] == "cow"
    assert "a3" in next(e.detail for e in errors if e.location == "val.csv:7")


def _vendored_rows(samples) -> tuple[list[str], list[dict[str, str]]]:
    with open(samples / "nextqa" / "val.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write_rows(path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_one_question_under_two_qids_gets_two_ids(samples, tmp_path):
    """val.csv publishes one question, options and answer twice for one video (qid 9 and qid 0): two rows, two ids."""
    fields, rows = _vendored_rows(samples)
    twin = rows[0]  # the real row of FORMATS.md §4, published again under another qid
    path = tmp_path / "val.csv"
    _write_rows(path, fields, [{**twin, "qid": "9"}, {**twin, "qid": "0"}])
    ok, errors = read(path, vid_map=False)
    assert errors == [] and len(ok) == 2
    assert [s.meta_dict["qid"] for s in ok] == [9, 0]
    assert ok[0].id != ok[1].id and ok[0].id.startswith("nextqa-")
    assert (ok[0].question, ok[0].options, ok[0].answer) == (ok[1].question, ok[1].options, ok[1].answer)
    again, _ = read(path, vid_map=False)
    assert [s.id for s in again] == [s.id for s in ok]  # still stable


def test_reexport_with_answer_text_reads_like_the_native_file(samples, tmp_path):
    """The NExT-QA re-export in the NExT-GQA repository: `video_id` column, answer TEXT instead of the index."""
    fields, rows = _vendored_rows(samples)
    exported = [{**r, "answer": r[f"a{r['answer']}"]} for r in rows]
    exported = [{("video_id" if k == "video" else k): v for k, v in r.items()} for r in exported]
    path = tmp_path / "val.csv"
    _write_rows(path, ["video_id", *fields[1:]], exported)
    ok, errors = read(path, vid_map=False)
    native, _ = read(samples / "nextqa" / "val.csv", vid_map=False)
    assert errors == [] and len(ok) == len(native) == 24
    assert [s.answer for s in ok] == [s.answer for s in native]
    assert [s.id for s in ok] == [s.id for s in native]  # the same question, whichever way it was stored


def test_answer_text_equal_to_two_options_is_ambiguous(tmp_path):
    path = tmp_path / "val.csv"
    path.write_bytes(HEADER + b"123,300,640,480,how does the girl feel,happy,1,CW,sad,happy,angry,happy,tired\n")
    ok, errors = read(path)
    assert ok == [] and [(e.location, e.reason) for e in errors] == [("val.csv:2", "ambiguous_answer")]
    assert "B, D" in errors[0].detail
