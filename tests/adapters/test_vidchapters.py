"""VidChapters-7M: the real Chapter-Llama record, the official chapter lists, chapters_vmr lines, and faults."""

from __future__ import annotations

import json

from mtvr_data.adapters import make_adapter
from tests.adapters.conftest import split_results


def read(path, **kw):
    return split_results(make_adapter("vidchapters", path, **kw).read())


def test_real_record(samples):
    ok, errors = read(samples / "vidchapters" / "chapters_sml1k_train.record.json")
    assert errors == [] and len(ok) == 12 and {s.split for s in ok} == {"train"}
    first, last = ok[0], ok[-1]
    assert (first.task, first.answer_type, first.video) == ("tg", "span", "-1vmZJ-EWtI.mp4")
    assert first.question == "Seane shares her history with OCD, anxiety and drug abuse"
    assert first.span == [180.0, 501.0] and first.duration == 2595.906  # first chapter starts at 180 s, not 0
    assert last.question == "Seane shares her superpower" and last.span == [2415.0, 2595.906]
    assert [s.span[0] for s in ok[1:]] == [s.span[1] for s in ok[:-1]]  # each chapter ends where the next starts
    meta = ok[6].meta_dict
    assert meta["title"].startswith("If You Ever Experience Anxiety") and meta["chapter_index"] == 6
    assert meta["num_chapters"] == 12 and meta["origin"] == "chapters_sml1k_train.record.json#-1vmZJ-EWtI[6]"
    assert ok[6].question == "Seane rejects \u201cwhite saviorism\u201d and confronts her own power and privilege"


def test_ids_stable_and_distinct(samples):
    path = samples / "vidchapters" / "chapters_sml1k_train.record.json"
    ok, _ = read(path)
    again, _ = read(path)
    assert [s.id for s in ok] == [s.id for s in again] and len({s.id for s in ok}) == 12


def test_official_chapter_lists_and_faults(tmp_path):
    path = tmp_path / "chapters_val.json"
    data = {
        "aaaaaaaaaaa": {
            "duration": 100.0,
            "title": "t",
            "chapters": [
                {"label": "Intro", "time": 0},
                {"label": "Main part", "time": 8},
                {"label": "Outro", "time": 95.5},
            ],
        },
        "bbbbbbbbbbb": {"duration": 100.0, "chapters": [{"label": "Intro", "time": 0}, {"label": "All", "time": 5}]},
        "ccccccccccc": {"duration": 100.0, "chapters": [{"label": "A", "time": 10}, {"label": "B", "time": 10}]},
        "ddddddddddd": {"chapters": [{"label": "A", "time": 0}]},
        "eeeeeeeeeee": {
            "duration": 50.0,
            "chapters": [{"label": "A", "time": 0}, {"label": " ", "time": 10}, {"label": "late", "time": 60}],
        },
        "fffffffffff": {"duration": 50.0, "chapters": [{"label": "A"}]},
        "ggggggggggg": {"duration": 50.0, "chapters": [{"label": "A", "time": "1:00"}]},
        "hhhhhhhhhhh": {"duration": 50.0, "chapters": "none"},
        "iiiiiiiiiii": {"duration": 50.0, "chapters": []},
    }
    path.write_text(json.dumps(data, indent=2))
    ok, errors = read(path)
    assert [(e.location, e.reason) for e in errors] == [
        ("chapters_val.json#bbbbbbbbbbb[1]", "chapter_covers_video"),  # [5, 100] is 95% of the video
        ("chapters_val.json#ccccccccccc", "bad_value"),  # times must increase strictly
        ("chapters_val.json#ddddddddddd", "missing_field"),  # no duration: the last chapter has no end
        ("chapters_val.json#eeeeeeeeeee[1]", "missing_field"),  # blank label
        ("chapters_val.json#eeeeeeeeeee[2]", "span_outside_video"),  # starts after the video ends
        ("chapters_val.json#fffffffffff", "missing_field"),
        ("chapters_val.json#ggggggggggg", "bad_value"),  # times are seconds, not clock strings
        ("chapters_val.json#hhhhhhhhhhh", "bad_value"),
        ("chapters_val.json#iiiiiiiiiii", "missing_field"),  # no chapters: reported, not silently skipped
    ]
    assert "90%" in errors[0].detail
    assert [(s.question, s.span) for s in ok] == [
        ("Intro", [0.0, 8.0]),
        ("Main part", [8.0, 95.5]),  # 87.5% of the video: kept
        ("Outro", [95.5, 100.0]),
        ("Intro", [0.0, 5.0]),
        ("A", [0.0, 10.0]),
    ]
    assert ok[0].split == "val" and ok[0].video == "aaaaaaaaaaa.mp4" and ok[0].meta_dict["title"] == "t"
    # the threshold is an option (the official rule is 0.9)
    strict, _ = read(path, covers_video=0.8)
    assert ("Main part", [8.0, 95.5]) not in [(s.question, s.span) for s in strict]


def test_chapters_json_faults(tmp_path):
    path = tmp_path / "chapters_train.json"
    path.write_bytes(
        b'{"aaaaaaaaaaa": {"duration": 30, "chapters": {"0": "ok", "12": "caf\\u00e9"}},\n'
        b' "bbbbbbbbbbb": {"duration": 30, "chapters": {"10": "b", "5": "a"}},\n'
        b' "ccccccccccc": {"duration": 30, "chapters": {"0": "fine", "20": "caf\xe9"}},\n'
        b' "ddddddddddd": {"duration": 30, "chapters": {"0": "x", "two": "y"}},\n'
        b' "eeeeeeeeeee": {"duration": 30, "chapters": {"0": 7, "5": null}}}\n'
    )
    ok, errors = read(path)
    assert [(e.location, e.reason) for e in errors] == [
        ("chapters_train.json#bbbbbbbbbbb", "bad_value"),  # keys out of time order
        ("chapters_train.json#ccccccccccc", "non_utf8"),  # a latin-1 byte costs only its video
        ("chapters_train.json#ddddddddddd", "bad_value"),  # a key that is not seconds
        ("chapters_train.json#eeeeeeeeeee[0]", "bad_value"),  # label is not text
        ("chapters_train.json#eeeeeeeeeee[1]", "missing_field"),
    ]
    assert [(s.question, s.span) for s in ok] == [("ok", [0.0, 12.0]), ("caf\u00e9", [12.0, 30.0])]
    assert errors[1].raw.startswith('{"ccccccccccc"') and "\ufffd" in errors[1].raw


def test_not_json(tmp_path):
    path = tmp_path / "chapters.json"
    path.write_text('{"aaaaaaaaaaa": {"duration": 30,\n  "chapters": {"0": "x"}')
    ok, errors = read(path)
    assert ok == [] and [(e.location, e.reason) for e in errors] == [("chapters.json", "bad_json")]


def test_vmr_lines(tmp_path):
    """chapters_vmr_{split}.json as chapters_to_vmr.py writes it (layout from the script; no raw line seen)."""
    path = tmp_path / "chapters_vmr_val.json"
    lines = [
        {
            "qid": 0,
            "query": "Intro",
            "vid": "0abcdefghijk",
            "duration": 100,
            "split": "val",
            "relevant_windows": [[0.0, 30.5]],
        },
        {
            "qid": 1,
            "query": "Outro",
            "vid": "1abcdefghijk",
            "duration": 100,
            "split": "val",
            "relevant_windows": [[30.5, 100.7]],
        },
        {
            "qid": 2,
            "query": ["A", "B"],
            "vid": "-1vmZJ-EWtI",
            "duration": 60,
            "split": "train",
            "relevant_windows": [[[0.0, 40.0]], [[40.0, 60.4]]],
        },
        {"qid": 3, "query": ["A", "B"], "vid": "-1vmZJ-EWtI", "duration": 60, "relevant_windows": [[[0.0, 40.0]]]},
        {"qid": 4, "query": "C", "vid": "2abcdefghijk", "duration": 100, "relevant_windows": [[50, 50]]},
        {"qid": 5, "query": "D", "vid": "xyabcdefghijk", "duration": 100, "relevant_windows": [[1, 2]]},
        {"qid": 6, "query": "E", "vid": "3abcdefghijk", "duration": 100, "relevant_windows": []},
        {
            "qid": 7,
            "query": ["F", ""],
            "vid": "-1vmZJ-EWtI",
            "duration": 60,
            "relevant_windows": [[[0.0, 10.0]], [[10.0, 20.0]]],
        },
        {"qid": 8, "query": "G", "vid": "4abcdefghijk", "relevant_windows": [[1, 2]]},
        {"qid": 9, "query": "H", "vid": "5abcdefghijk", "duration": 100, "relevant_windows": {"0": [1, 2]}},
        {"qid": 10, "query": [], "vid": "-1vmZJ-EWtI", "duration": 60, "relevant_windows": []},
    ]
    path.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines) + b'{"qid": 11, "query": \n')
    ok, errors = read(path)
    name = "chapters_vmr_val.json"
    assert [(e.location, e.reason) for e in errors] == [
        (f"{name}:4", "length_mismatch"),
        (f"{name}:5", "end_not_after_start"),
        (f"{name}:6", "bad_value"),  # "xy" is not a chapter index
        (f"{name}:7", "missing_span"),
        (f"{name}:8[1]", "missing_field"),
        (f"{name}:9", "missing_field"),
        (f"{name}:10", "bad_value"),
        (f"{name}:11", "missing_field"),
        (f"{name}:12", "bad_json"),
    ]
    intro, outro, a, b, f = ok
    assert (intro.video, intro.question, intro.span, intro.duration) == ("abcdefghijk.mp4", "Intro", [0.0, 30.5], 100)
    assert intro.meta_dict == {"qid": 0, "vid": "0abcdefghijk", "chapter_index": 0, "origin": f"{name}:1"}
    # duration is int(duration) upstream: the last chapter overshoots it by < 1 s and is clamped
    assert outro.span == [30.5, 100.0] and outro.meta_dict["original_windows_clamped"] == [[30.5, 100.7]]
    assert outro.meta_dict["chapter_index"] == 1 and outro.split == "val"
    assert (a.video, a.span, a.meta_dict["origin"]) == ("-1vmZJ-EWtI.mp4", [0.0, 40.0], f"{name}:3[0]")
    assert (b.question, b.span, b.meta_dict["chapter_index"]) == ("B", [40.0, 60.0], 1)
    assert f.question == "F"
    again, _ = read(path)
    assert [s.id for s in ok] == [s.id for s in again] and len({s.id for s in ok}) == 5


def test_vmr_detected_past_a_bad_first_line(tmp_path):
    path = tmp_path / "chapters_vmr_test.json"
    good = {"qid": 0, "query": "Intro", "vid": "0abcdefghijk", "duration": 100, "relevant_windows": [[0, 5]]}
    path.write_bytes(b"{broken\n" + json.dumps(good).encode() + b"\n")
    ok, errors = read(path)
    assert [(e.location, e.reason) for e in errors] == [("chapters_vmr_test.json:1", "bad_json")]
    assert ok[0].span == [0.0, 5.0] and ok[0].split == "test"
