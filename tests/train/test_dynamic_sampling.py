"""Dynamic sampling (DAPO's filter_groups): flat groups are replaced by groups of further prompts that carry signal."""

from __future__ import annotations

import math

import pytest

from model.engine_api import GenerationRequest
from tests.train.conftest import GOOD, TextPolicy, dgrpo_config
from train.dgrpo import build_dgrpo_trainer
from train.dynamic_sampling import DynamicSamplingSettings, GroupFilter
from train.rollouts import runs_of_same_id


class FlatFor(TextPolicy):
    """Every rollout of a sample in `flat` gets the same untagged reply (a zero-variance group); the others
    alternate a right answer and an untagged one (a group with spread)."""

    def __init__(self, flat: set[str], answers: dict[str, str]) -> None:
        super().__init__()
        self.flat = flat
        self.answers = answers

    def reply(self, request: GenerationRequest, index: int) -> str:
        sample = request.key.split("/")[0].split("#")[0]
        if sample in self.flat or index % 2:
            return "I am not sure."
        return GOOD.format(answer=self.answers[sample])


def _setup(demo_dir, tmp_path, **over):
    config = dgrpo_config(demo_dir, tmp_path, {"beta": 0.0}, tools=False, **over)
    trainer = build_dgrpo_trainer(config)
    rows = [dict(trainer.train_dataset[i]) for i in range(len(trainer.train_dataset))]
    return trainer, rows


def test_flat_groups_are_replaced_from_further_prompts_and_rows_follow(demo_dir, tmp_path):
    trainer, rows = _setup(demo_dir, tmp_path / "ds", dynamic_sampling={"max_rounds": 2})
    video = [r for r in rows if r["modality"] == "video"]
    first, second, spare = video[0], video[1], video[2]
    policy = FlatFor({first["id"], second["id"]}, {r["id"]: r["answer"] for r in rows})
    # Further prompts: one more flat sample first (round 1 refills one group only), then the spare with spread.
    drawn = iter([[dict(second), dict(spare)], [dict(spare)]])
    group_filter = GroupFilter(DynamicSamplingSettings(max_rounds=2), lambda n: next(drawn)[:n])
    batch_rows = [dict(first), dict(first), dict(spare), dict(spare), dict(second), dict(second)]
    batch = trainer.rollouts(batch_rows, policy)
    out, report = group_filter(batch_rows, batch, policy, trainer.rollouts)
    assert report.zero_variance_before == pytest.approx(2 / 3)
    assert report.zero_variance_after == 0.0
    assert (report.rounds, report.replaced, report.prompts_drawn) == (2, 2, 3)
    assert len(out) == 6 and len(runs_of_same_id(batch_rows)) == 3  # shape kept; refilled groups stay apart
    # Each refilled group is the spare's, and its rows (what TRL scores) are the spare's too.
    for start in (0, 4):
        assert [r["answer"] for r in batch_rows[start : start + 2]] == [spare["answer"]] * 2
        rewards = [t.reward.total for t in out.trajectories[start : start + 2]]
        assert max(rewards) > min(rewards)


def test_groups_still_flat_after_the_last_round_stay(demo_dir, tmp_path):
    trainer, rows = _setup(demo_dir, tmp_path / "ds2")
    video = [r for r in rows if r["modality"] == "video"]
    policy = FlatFor({r["id"] for r in rows}, {})
    group_filter = GroupFilter(DynamicSamplingSettings(max_rounds=1), lambda n: [dict(video[1])] * n)
    batch_rows = [dict(video[0]), dict(video[0])]
    out, report = group_filter(batch_rows, trainer.rollouts(batch_rows, policy), policy, trainer.rollouts)
    assert (report.zero_variance_before, report.zero_variance_after, report.replaced) == (1.0, 1.0, 0)
    assert batch_rows[0]["id"] == video[0]["id"] and len(out) == 2


def test_the_option_runs_in_a_training_step_with_dgrpo_and_logs_both_shares(demo_dir, tmp_path):
    trainer, rows = _setup(demo_dir, tmp_path / "ds3", dynamic_sampling=True)
    assert trainer.group_filter is not None
    flat = {r["id"] for r in rows if r["modality"] != "video"}  # every non-video row's group is flat
    trainer.engine_factory = lambda _: FlatFor(flat, {r["id"]: r["answer"] for r in rows})
    trainer.train()
    logs = next(h for h in trainer.state.log_history if "loss" in h)
    assert math.isfinite(logs["loss"])
    assert logs["dynamic_sampling/zero_variance_after"] <= logs["dynamic_sampling/zero_variance_before"]
    assert logs["advantage/zero_variance_share"] == logs["dynamic_sampling/zero_variance_after"]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_rounds"):
        DynamicSamplingSettings(max_rounds=0)
