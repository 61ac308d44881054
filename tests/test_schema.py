"""Sample ids are stable and `validate_sample` names what is wrong with a record."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from mtvr_data.schema import SAMPLE_SCHEMA, Sample, option_letter, sample_id, validate_sample


def tg(**kw) -> Sample:
    base = dict(
        id="x",
        source="s",
        task="tg",
        modality="video",
        video="v.mp4",
        question="q",
        answer_type="span",
        span=[1.0, 2.0],
        windows=[[1.0, 2.0]],
        duration=10.0,
    )
    base.update(kw)
    return Sample(**base)


def test_id_is_stable_across_processes():
    args = ("nextgqa", "1009/1.mp4", "why did the boy run", ["a", "b"], "B", [1.2, 5.8])
    code = f"from mtvr_data.schema import sample_id; print(sample_id(*{args!r}))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout.strip()
    assert other == sample_id(*args)
    assert sample_id(*args).startswith("nextgqa-") and len(sample_id(*args)) == len("nextgqa-") + 16


def test_id_changes_with_target_not_with_float_noise():
    a = sample_id("s", "v", "q", [], "", [1.0, 2.0])
    assert a == sample_id("s", "v", "q", [], "", [1.0000001, 2.0])
    assert a != sample_id("s", "v", "q", [], "", [1.0, 2.5])
    assert a != sample_id("s", "v", "other q", [], "", [1.0, 2.0])
    assert a != sample_id("t", "v", "q", [], "", [1.0, 2.0])


def test_valid_samples_have_no_problems():
    assert validate_sample(tg()) == []
    mcq = tg(task="mcq", answer_type="letter", options=["a", "b", "c"], answer="C", span=None, windows=[])
    assert validate_sample(mcq) == []
    image = tg(task="open", modality="image", answer_type="number", answer="4", span=None, windows=[], duration=None)
    assert validate_sample(image) == []


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"task": "caption"}, "unknown_task"),
        ({"modality": "audio"}, "unknown_modality"),
        ({"question": "  "}, "empty_question"),
        ({"span": [2.0, 2.0], "windows": [[2.0, 2.0]]}, "end_not_after_start"),
        ({"span": [5.0, 11.0], "windows": [[5.0, 11.0]]}, "span_outside_video"),
        ({"span": [-1.0, 1.0], "windows": [[-1.0, 1.0]]}, "span_outside_video"),
        ({"span": [1.0, float("nan")], "windows": [[1.0, float("nan")]]}, "bad_span"),
        ({"span": None, "windows": []}, "missing_span"),
        ({"task": "mcq", "answer_type": "letter", "span": None, "windows": []}, "missing_options"),
        (
            {
                "task": "mcq",
                "answer_type": "letter",
                "options": ["a", "b"],
                "answer": "C",
                "span": None,
                "windows": [],
            },
            "unknown_option",
        ),
        ({"task": "open", "answer_type": "text", "answer": "", "span": None, "windows": []}, "missing_answer"),
        ({"modality": "image"}, "span_on_image"),
        ({"windows": [[3.0, 4.0], [1.0, 2.0]]}, "span_not_first_window"),
    ],
)
def test_problems_are_named(changes, code):
    assert code in validate_sample(tg(**changes))


def test_schema_matches_dataclass_and_letters():
    assert SAMPLE_SCHEMA.names == [f.name for f in dataclasses.fields(Sample)]
    assert option_letter(0) == "A" and option_letter(4) == "E"
    with pytest.raises(ValueError):
        option_letter(26)
    with pytest.raises(AttributeError):
        tg().colour = "red"  # slotted: typos fail loudly
