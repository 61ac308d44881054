"""ActivityNet Captions on the real 2D-TAN entries, its quirks, and malformed video entries."""

from __future__ import annotations

import json

from mtvr_data.adapters import make_adapter
from tests.adapters.conftest import split_results


def read(path, **kw):
    return split_results(make_adapter("activitynet_captions", path, **kw).read())


def test_real_train_entries(samples):
    ok, errors = read(samples / "activitynet_captions" / "train.json")
    assert errors == [] and len(ok) == 27  # 8 videos, 3+6+2+3+4+3+3+3 sentences
    first, second = ok[0], ok[1]
    assert (first.task, first.answer_type, first.video, first.split) == ("tg", "span", "v_QOlSCBRmfWY.mp4", "train")
    assert first.question == "A young woman is seen standing in a room and leads into her dancing."
    assert first.span == [0.83, 19.86] and first.windows == [[0.83, 19.86]] and first.duration == 82.73
    # the leading space of later sentences is stripped
    assert second.question == "The girl dances around the room while the camera captures her movements."
    assert second.meta_dict == {"vid": "v_QOlSCBRmfWY", "sentence_index": 1, "origin": "train.json#v_QOlSCBRmfWY[1]"}
    assert all(s.options == [] and s.answer == "" for s in ok)


def test_integer_times_become_floats_and_splits(samples):
    ok, errors = read(samples / "activitynet_captions" / "test.json")
    assert errors == [] and len(ok) == 28 and {s.split for s in ok} == {"test"}
    assert ok[0].video == "v_uqiMw7tQ1Cc.mp4" and ok[0].span == [0.0, 4.14]
    assert all(isinstance(t, float) for s in ok for t in s.span)
    val, errors = read(samples / "activitynet_captions" / "val.json")
    assert errors == [] and len(val) == 33 and {s.split for s in val} == {"val"}
    # two leading spaces upstream ("  The coach helps ...")
    assert val[1].question.startswith("The coach helps the guy in red")
    assert val[1].span == [13.79, 54.32] and val[1].duration == 55.15


def test_official_file_names_give_splits(tmp_path):
    entry = {"v_x": {"duration": 10.0, "timestamps": [[1, 2]], "sentences": ["a man runs."]}}
    for name, split in (("val_1.json", "val"), ("val_2.json", "val"), ("train.json", "train")):
        (tmp_path / name).write_text(json.dumps(entry))
        ok, _ = read(tmp_path / name)
        assert ok[0].split == split
    ok, _ = read(tmp_path / "val_2.json", split="test")  # ActivityNet-MR "test" = val_2, chosen by the config
    assert ok[0].split == "test"


def test_ids_stable_and_distinct(samples):
    path = samples / "activitynet_captions" / "train.json"
    ok, _ = read(path)
    again, _ = read(path)
    assert [s.id for s in ok] == [s.id for s in again]
    assert len({s.id for s in ok}) == len(ok)
    # the same video appears in val and test with other sentences: ids differ
    val, _ = read(samples / "activitynet_captions" / "val.json")
    assert not {s.id for s in val} & {s.id for s in ok}


def test_malformed_entries(tmp_path):
    path = tmp_path / "train.json"
    entries = {
        "v_good": {
            "duration": 20.0,
            "timestamps": [[0, 5], [6.5, 21.2], [8, 3]],
            "sentences": ["first.", " overshoots by 1.2 s.", " reversed."],
        },
        "v_mismatch": {"duration": 20.0, "timestamps": [[0, 5], [5, 9]], "sentences": ["only one."]},
        "v_noduration": {"timestamps": [[0, 5]], "sentences": ["no duration."]},
        "v_far": {
            "duration": 20.0,
            "timestamps": [[1, 30], [4, 4], ["a", 3], [1]],
            "sentences": ["far past.", " empty span.", " not a number.", " not a pair."],
        },
        "v_empty": {"duration": 20.0, "timestamps": [[1, 3]], "sentences": ["   "]},
        "v_list": [1, 2],
        "v_nothing": {"duration": 20.0, "timestamps": [], "sentences": []},
    }
    text = json.dumps(entries)
    path.write_bytes(
        text[:-1].encode() + b', "v_bytes": {"duration": 9, "timestamps": [[1, 2]], "sentences": ["caf\xe9."]}}'
    )
    ok, errors = read(path)
    got = [(e.location, e.reason) for e in errors]
    assert got == [
        ("train.json#v_good[2]", "end_not_after_start"),
        ("train.json#v_mismatch", "length_mismatch"),
        ("train.json#v_noduration", "missing_field"),
        ("train.json#v_far[0]", "span_outside_video"),
        ("train.json#v_far[1]", "end_not_after_start"),
        ("train.json#v_far[2]", "bad_value"),
        ("train.json#v_far[3]", "bad_value"),
        ("train.json#v_empty[0]", "missing_field"),
        ("train.json#v_list", "bad_value"),
        ("train.json#v_nothing", "missing_field"),
        ("train.json#v_bytes", "non_utf8"),
    ]
    assert [(s.question, s.span) for s in ok] == [("first.", [0.0, 5.0]), ("overshoots by 1.2 s.", [6.5, 20.0])]
    assert ok[1].meta_dict["original_end"] == 21.2 and "original_end" not in ok[0].meta_dict
    assert "2 timestamps but 1 sentences" in errors[1].detail
    assert all(e.source == "activitynet_captions" and e.stage == "read" for e in errors)


def test_file_that_is_not_json(tmp_path):
    path = tmp_path / "val_1.json"
    path.write_text('{"v_a": {"duration": 3,')
    ok, errors = read(path)
    assert ok == [] and [(e.location, e.reason) for e in errors] == [("val_1.json", "bad_json")]
