"""One home per task: every task family on every real record of the vendored sample files, and the rule that no
module outside `mtvr_data.tasks` decides what a task means.

The round trip is what the families promise together: the teacher's expected answer, written as the prompt's
format line asks, is read back by the same family as fully right by the reward, the pass rule and the benchmark
metric, whether the truth comes from the `Sample` or from dataset columns as the trainers see it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from model.prompts import question_text
from model.teacher import expected_answer
from mtvr_data.adapters import make_adapter
from mtvr_data.benchmarks.registry import read_benchmark
from mtvr_data.eval_metrics import failed_result, score_sample
from mtvr_data.rewards import make_task_reward_fn, task_reward
from mtvr_data.schema import TASKS, Sample, validate_sample
from mtvr_data.tasks import FAMILIES, GroundTruth, UnknownTaskError, family
from mtvr_data.tasks.answer_terms import answer_metric, answer_reward
from tests.adapters.conftest import SAMPLES, split_results
from tests.adapters.test_unique_ids import BENCHMARK_FILES, SOURCE_FILES

ROOT = Path(__file__).resolve().parents[1]


def real_samples() -> list[Sample]:
    out: list[Sample] = []
    for source, files in sorted(SOURCE_FILES.items()):
        for rel, options in files:
            out += split_results(make_adapter(source, SAMPLES / rel, **options).read())[0]
    for benchmark, rels in sorted(BENCHMARK_FILES.items()):
        for rel in rels:
            out += [s for s in read_benchmark(benchmark, SAMPLES / rel) if isinstance(s, Sample)]
    return out


REAL = real_samples()


def columns_of(samples: list[Sample]) -> dict[str, list]:
    """The samples as TRL hands a reward its dataset columns (what the RL shards hold)."""
    names = ("id", "task", "answer_type", "answer", "source", "options", "span", "windows")
    return {n: [getattr(s, n) for s in samples] for n in names}


def test_every_task_has_a_family_and_unknown_tasks_are_named():
    assert sorted(FAMILIES) == sorted(TASKS)
    with pytest.raises(UnknownTaskError, match="known tasks: mcq, open, tg, gqa"):
        family("caption")


def test_the_real_records_cover_every_task_and_answer_type():
    assert {s.task for s in REAL} == set(TASKS)
    assert {s.answer_type for s in REAL} >= {"letter", "number", "regression", "text", "span"}
    assert len(REAL) > 500


@pytest.mark.parametrize("task", TASKS)
def test_the_expected_answer_of_every_real_record_is_fully_right(task):
    samples = [s for s in REAL if s.task == task]
    assert samples
    for s in samples:
        assert validate_sample(s) == [], s.id
        written = f"<think>t</think><answer>{expected_answer(s)}</answer>"
        reward = task_reward(s, written)
        assert reward.passed, (s.id, expected_answer(s), reward)
        result = score_sample(s, written, benchmark="b", setting="x")
        assert result.correct, (s.id, expected_answer(s), result)
        if family(task).grounded:
            # the expected answer writes the span to 2 decimals: IoU is 1 up to that rounding
            assert reward.iou is not None and reward.iou > 0.99, (s.id, reward)
            assert result.iou is not None and result.iou > 0.99
        else:
            assert (reward.value, result.score) == (1.0, 1.0), (s.id, expected_answer(s), reward, result)
        # the format line the prompt shows is the family's, last in the question text
        assert question_text(s).endswith(family(task).answer_format(GroundTruth.of(s)))


def test_rewards_from_columns_equal_rewards_from_samples_on_real_records():
    samples = REAL[::7]
    completions = [f"<answer>{expected_answer(s)}</answer>" for s in samples]
    wrong = ["<answer>B, from 1 to 2 seconds</answer>"] * len(samples)
    fn = make_task_reward_fn()
    for texts in (completions, wrong):
        from_columns = fn(texts, **columns_of(samples))
        assert from_columns == [task_reward(s, t).value for s, t in zip(samples, texts, strict=True)]
    assert GroundTruth.from_columns(columns_of(samples), 0) == GroundTruth.of(samples[0])


@pytest.mark.parametrize(
    "answer",
    ["B", "B, since option A is wrong", "B is correct, not C", "(C)", "C or D", "The answer is A.", "", "E", "b"],
)
def test_reward_and_metric_read_one_letter_the_same_way(answer):
    """The letter rule is one: the reward's and the metric's scores and readings agree on every letter answer."""
    truth = GroundTruth(task="mcq", answer="B", answer_type="letter", num_options=4)
    assert answer_reward(truth, answer) == answer_metric(truth, answer)


def test_options_need_a_letter_answer():
    """Options with a text answer used to be scored as a letter by the metric and as text by the reward."""
    s = Sample(
        id="x", source="x", task="mcq", modality="video", video="v.mp4", question="q", options=["happy", "sad"],
        answer="happy", answer_type="text",
    )  # fmt: skip
    assert "options_without_letter_answer" in validate_sample(s)


def test_failed_results_keep_the_family_shape():
    tg = next(s for s in REAL if s.task == "tg")
    gqa = next(s for s in REAL if s.task == "gqa")
    mcq = next(s for s in REAL if s.task == "mcq")
    shapes = [
        (r.iou, r.iop) for r in (failed_result(s, benchmark="b", setting="x", reason="r") for s in (tg, gqa, mcq))
    ]
    assert shapes == [(0.0, None), (0.0, 0.0), (None, None)]


#: Modules allowed to name tasks: the families, the schema's list of tasks, and the places records are MADE
#: (adapters and benchmark readers set a record's task; they never decide what it means).
ALLOWED = ("mtvr_data/tasks/", "mtvr_data/schema.py", "mtvr_data/adapters/", "mtvr_data/benchmarks/")


def _task_comparisons(path: Path) -> list[int]:
    """Lines where `<x>.task` (or a variable named `task`) is compared with a task name."""
    names = set(TASKS)
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        is_task = any(
            (isinstance(o, ast.Attribute) and o.attr == "task") or (isinstance(o, ast.Name) and o.id == "task")
            for o in operands
        )
        constants = {
            c.value
            for o in operands
            for c in ([o] if isinstance(o, ast.Constant) else getattr(o, "elts", []))
            if isinstance(c, ast.Constant)
        }
        if is_task and constants & names:
            lines.append(node.lineno)
    return lines


def test_no_module_outside_the_families_branches_on_a_task_name(tmp_path):
    found = {}
    for package in ("mtvr_data", "model", "pipelines", "train"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(ALLOWED):
                continue
            if lines := _task_comparisons(path):
                found[rel] = lines
    assert found == {}
    # the check is not vacuous: the shapes the old code used are found
    probe = tmp_path / "probe.py"
    probe.write_text('if s.task == "tg":\n    pass\nif sample.task in ("tg", "gqa"):\n    pass\nok = task != "mcq"\n')
    assert _task_comparisons(probe) == [1, 3, 5]
