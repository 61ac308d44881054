"""Charades-STA on the real published lines, its quirks, and malformed lines."""

from __future__ import annotations

import json

import pytest

from mtvr_data.adapters import make_adapter
from tests.adapters.conftest import split_results


def read(path, **kw):
    return split_results(make_adapter("charades_sta", path, **kw).read())


def test_real_train_lines(samples):
    ok, errors = read(samples / "charades_sta" / "charades_sta_train.txt")
    assert len(ok) == 20 and errors == []
    first = ok[0]
    assert (first.task, first.answer_type, first.video, first.question) == (
        "tg",
        "span",
        "AO8RW.mp4",
        "a person is putting a book on a shelf.",
    )
    assert first.span == [0.0, 6.9] and first.windows == [[0.0, 6.9]]
    assert first.duration == 33.67  # joined from Charades_v1_train.csv `length`
    assert first.split == "train" and json.loads(first.meta)["origin"] == "charades_sta_train.txt:1"


def test_end_past_length_is_clamped_and_recorded(samples):
    ok, _ = read(samples / "charades_sta" / "charades_sta_train.txt")
    phone = ok[1]  # "Y6R7T 20.8 30.0##..." with length 29.42
    assert phone.span == [20.8, 29.42] and phone.meta_dict["original_end"] == 30.0


def test_test_split_and_ids(samples):
    path = samples / "charades_sta" / "charades_sta_test.txt"
    ok, errors = read(path)
    assert errors == [] and {s.split for s in ok} == {"test"}
    assert ok[0].video == "3MSZA.mp4" and ok[0].span == [24.3, 30.4]
    again, _ = read(path)
    assert [s.id for s in ok] == [s.id for s in again]
    assert len({s.id for s in ok}) == len(ok)  # same window, different sentences: different ids


def test_without_durations_file(tmp_path):
    path = tmp_path / "charades_sta_train.txt"
    path.write_text("AO8RW 0.0 6.9##a person is putting a book on a shelf.\n")
    ok, errors = read(path)
    assert ok[0].duration is None and ok[0].span == [0.0, 6.9]


def test_malformed_lines(tmp_path):
    path = tmp_path / "charades_sta_train.txt"
    (tmp_path / "Charades_v1_train.csv").write_bytes(b"id,length\r\nAAAAA,20.0\r\n")
    path.write_bytes(
        b"AAAAA 1.0 5.0##a person opens a door.\n"
        b"AAAAA 1.0 5.0 a person without separator.\n"
        b"AAAAA 5.0 5.0##a person stands still.\n"
        b"AAAAA 8.0 3.0##reversed.\n"
        b"AAAAA 1.0 25.0##ends far past the video.\n"
        b"AAAAA one 2.0##not a number.\n"
        b"AAAAA 1.0 2.0##caf\xe9 in latin-1.\n"
        b"AAAAA 1.0 2.0##\n"
        b"\n"
        b"AAAAA 2.0 21.0##ends just past the length.\n"
    )
    ok, errors = read(path)
    got = [(e.location, e.reason) for e in errors]
    assert got == [
        ("charades_sta_train.txt:2", "bad_line"),
        ("charades_sta_train.txt:3", "end_not_after_start"),
        ("charades_sta_train.txt:4", "end_not_after_start"),
        ("charades_sta_train.txt:5", "span_outside_video"),
        ("charades_sta_train.txt:6", "bad_value"),
        ("charades_sta_train.txt:7", "non_utf8"),
        ("charades_sta_train.txt:8", "missing_field"),
    ]
    assert [s.span for s in ok] == [[1.0, 5.0], [2.0, 20.0]]
    assert errors[5].raw.startswith("AAAAA 1.0 2.0##caf\ufffd")  # bad byte shown, file stays writable
    assert all(e.source == "charades_sta" and e.stage == "read" for e in errors)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_adapter("charades_sta", tmp_path / "nope.txt")
