"""MMVU ids include MMVU's own question id: two published questions that agree on everything else stay two rows."""

from __future__ import annotations

import json

from mtvr_data.schema import sample_id
from tests.benchmarks.conftest import meta, read


def test_questions_equal_but_for_their_mmvu_id_get_two_ids(samples, tmp_path):
    """validation_941 and validation_943 shared one id: same video, question, choices and answer."""
    rows = json.loads((samples / "mmvu" / "validation.json").read_text(encoding="utf-8"))
    for row in rows[:2]:  # an open-ended and a multiple-choice real row, each published again under another id
        path = tmp_path / "validation.json"
        path.write_text(json.dumps([{**row, "id": "validation_941"}, {**row, "id": "validation_943"}]))
        ok, errors = read("mmvu", path)
        assert errors == [] and len(ok) == 2
        assert [meta(s)["mmvu_id"] for s in ok] == ["validation_941", "validation_943"]
        assert ok[0].id != ok[1].id and all(s.id.startswith("mmvu-") for s in ok)
        assert (ok[0].question, ok[0].options, ok[0].answer) == (ok[1].question, ok[1].options, ok[1].answer)


def test_real_rows_ids_are_keyed_by_mmvu_id(samples):
    ok, errors = read("mmvu", samples / "mmvu" / "validation.json")
    assert errors == [] and len(ok) == 8 and len({s.id for s in ok}) == 8
    first = ok[0]
    expected = sample_id("mmvu", first.video, first.question, first.options, first.answer, None, "validation_0")
    assert first.id == expected
