"""The shared readers: a bad record costs one error record, never the read."""

from __future__ import annotations

import pytest

from mtvr_data.adapters import available_sources, get_adapter
from mtvr_data.adapters.base import AdapterError, SourceAdapter, fit_span, iter_csv, iter_json_items, iter_jsonl
from mtvr_data.adapters.registry import UnknownSourceError


def test_jsonl_reader(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": \n[1, 2]\n\n{"b": "\xff"}\n{"c": 3}\n')
    recs = list(iter_jsonl(path))
    assert [(r.location, r.error.code if r.error else None) for r in recs] == [
        ("a.jsonl:1", None),
        ("a.jsonl:2", "bad_json"),
        ("a.jsonl:3", "bad_json"),
        ("a.jsonl:5", "non_utf8"),
        ("a.jsonl:6", None),
    ]
    assert recs[-1].value == {"c": 3}


def test_json_items_reader(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'{"k1": {"x": 1}, "k2": {"x": "caf\xe9"}}')
    recs = list(iter_json_items(path))
    assert [(r.location, r.error.code if r.error else None) for r in recs] == [
        ("a.json#k1", None),
        ("a.json#k2", "non_utf8"),
    ]
    path.write_text('[{"x": 1}, {"x": 2}]')
    assert [r.location for r in iter_json_items(path)] == ["a.json#0", "a.json#1"]
    path.write_text('{"k1": {"x": 1},')
    (only,) = list(iter_json_items(path))
    assert only.location == "a.json" and only.error.code == "bad_json"


def test_csv_reader(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b'id,text\r\n1,"multi\r\nline"\r\n2,caf\xe9\r\n3,a,b\r\n4,ok\r\n')
    recs = list(iter_csv(path))
    assert [(r.location, r.error.code if r.error else None) for r in recs] == [
        ("a.csv:2", None),
        ("a.csv:4", "non_utf8"),
        ("a.csv:5", "bad_line"),
        ("a.csv:6", None),
    ]
    assert recs[0].value == {"id": "1", "text": "multi\r\nline"}


def test_fit_span():
    assert fit_span(1, 2, None) == [1.0, 2.0]
    assert fit_span(1, 11.5, 10.0) == [1.0, 10.0]
    for args, code in [
        ((2, 2, None), "end_not_after_start"),
        ((-0.5, 2, None), "span_outside_video"),
        ((1, 12.5, 10.0), "span_outside_video"),
        ((10.0, 11.0, 10.0), "span_outside_video"),
    ]:
        with pytest.raises(AdapterError) as info:
            fit_span(*args)
        assert info.value.code == code


def test_registry_knows_every_source():
    expected = {
        "charades_sta",
        "activitynet_captions",
        "vidchapters",
        "nextgqa",
        "nextqa",
        "rextime",
        "video_r1",
        "longvideo_reason",
        "qvhighlights",
    }
    assert expected <= set(available_sources())
    for name in available_sources():
        cls = get_adapter(name)
        assert issubclass(cls, SourceAdapter) and cls.name == name and cls.description
    with pytest.raises(UnknownSourceError, match="known sources: .*charades_sta"):
        get_adapter("charades")


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("charades_sta_test.txt", "test"),
        ("val_1.json", "val"),
        ("gsub_val.json", "val"),
        ("train.csv", "train"),
        ("x.json", "train"),
        ("highlight_test_release.jsonl", "test"),
        ("contest.json", "train"),
    ],
)
def test_split_from_file_name(tmp_path, name, split):
    assert SourceAdapter.guess_split(tmp_path / name) == split
