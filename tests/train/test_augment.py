"""DA-Aug: the decision by the sign and size of Delta_R, the replay buffer, hints that are prefixes of the best
answer-conditioned trace, noise that changes only the augmented sample's frames, and the trainer's logs."""

from __future__ import annotations

import math
import re

import pytest
import torch

from model.engine_api import GenerationRequest
from tests.train.conftest import TextPolicy, dgrpo_config
from train.augment import (
    HINT,
    AugmentSettings,
    Decision,
    DifficultyAugmenter,
    ReplayBuffer,
    decide,
    hint_prefix,
    reasoning_of,
)
from train.config import TrainConfigError, config_from_dict
from train.dgrpo import build_dgrpo_trainer

NOTE = re.compile(r"The correct final answer is: (.+)")
TRACE = "<think>I look at the start. Then the middle shows it. So the answer follows. Done.</think>"


class HintAwarePolicy(TextPolicy):
    """Given the answer note it writes `TRACE` and that answer (every 2nd try a wrong one, so the best trace must
    be chosen); given a DA-Aug hint, its even tries answer "A" in tags and its odd tries stay untagged (so the
    group's rewards spread); a question in `replies` gets its reply; otherwise an untagged reply. Records the
    user turns it saw."""

    name = model = "hint-aware"

    def __init__(self, replies: dict[str, str] | None = None) -> None:
        super().__init__()
        self.user_texts: list[str] = []
        self.replies = replies or {}

    def reply(self, request: GenerationRequest, index: int) -> str:
        user = request.messages[1]["content"][-1]["text"]
        if index == 0:
            self.user_texts.append(user)
        note = NOTE.search(user)
        if note:
            return f"{TRACE}<answer>{note.group(1).strip() if index % 2 == 0 else 'Z'}</answer>"
        if "(Hint)" in user:
            return "<think>With the hint.</think><answer>A</answer>" if index % 2 == 0 else "Still unsure."
        return next((r for q, r in self.replies.items() if q in user), "I am not sure.")


# --- decisions ------------------------------------------------------------------------------------------------


def test_decision_follows_the_sign_and_size_of_delta():
    s = AugmentSettings(threshold=0.25, noise_std=16.0, noise_max_std=96.0, hint_base_steps=1)
    assert decide(0.1, s).action == "none" and decide(-0.25, s).action == "none"  # |Delta| <= threshold
    assert decide(math.nan, s).action == "none"
    hard_small, hard_big = decide(0.4, s), decide(2.2, s)
    assert (hard_small.action, hard_small.steps) == ("hint", 1)  # round(0.4) + 1
    assert (hard_big.action, hard_big.steps) == ("hint", 3)  # round(2.2) + 1: longer for a larger |Delta|
    easy_small, easy_big = decide(-0.5, s), decide(-2.0, s)
    assert easy_small == Decision("noise", -0.5, strength=16.0 * 1.5)
    assert easy_big.strength == pytest.approx(16.0 * 3.0) and easy_big.strength > easy_small.strength
    assert decide(-10.0, s).strength == 96.0  # capped
    masked = AugmentSettings(easy="mask", mask_ratio=0.25, mask_max_ratio=0.75)
    assert decide(-2.0, masked) == Decision("mask", -2.0, strength=0.5)
    assert decide(-9.0, masked).strength == 0.75
    with pytest.raises(ValueError, match="easy"):
        AugmentSettings(easy="blur")


def test_replay_buffer_keeps_the_most_recent_window():
    buffer = ReplayBuffer(3)
    assert buffer.reference([1.0, 3.0, math.nan]) == 2.0  # empty: the batch's own mean
    buffer.push([0.0, 1.0, math.nan, 2.0, 3.0])
    assert list(buffer.values) == [1.0, 2.0, 3.0]
    assert buffer.reference([10.0]) == 2.0


def test_hint_is_a_prefix_of_the_reasoning_and_grows_with_steps():
    reasoning = reasoning_of(TRACE + "<answer>B</answer>")
    assert reasoning.startswith("I look at the start.")
    prefixes = [hint_prefix(reasoning, k) for k in (1, 2, 3, 9)]
    assert prefixes[0] == "I look at the start."
    assert all(reasoning.startswith(p) for p in prefixes)
    assert [len(p) for p in prefixes] == sorted(len(p) for p in prefixes) and prefixes[-1] == reasoning
    assert hint_prefix(reasoning, 3, "word") == "I look at"
    assert hint_prefix("", 2) == "" and reasoning_of("no tags") == ""


# --- on the demo shards ---------------------------------------------------------------------------------------


def _trainer(demo_dir, tmp_path, **over):
    tree = {
        "tools": False,
        "augment": {"threshold": 0.25, "hint_samples": 2},
        "rollout": {"max_new_tokens": 32, "max_total_tokens": 64},
        **over,
    }
    return build_dgrpo_trainer(dgrpo_config(demo_dir, tmp_path / "aug", {"per_device_train_batch_size": 6}, **tree))


def _three_video_groups(trainer):
    rows = [dict(trainer.train_dataset[i]) for i in range(len(trainer.train_dataset))]
    picked: list[dict] = []
    for row in rows:
        if row["modality"] == "video" and all(row["question"] != p["question"] for p in picked):
            picked.append(row)
    assert len(picked) >= 3
    return [r for r in picked[:3] for _ in range(2)]


def test_augmenter_hints_hard_noises_easy_and_leaves_the_rest(demo_dir, tmp_path):
    from model.teacher import expected_answer
    from mtvr_data.parquet_io import row_to_record

    trainer = _trainer(demo_dir, tmp_path)
    augmenter: DifficultyAugmenter = trainer.augmenter
    assert augmenter is not None and augmenter.settings.window == 100
    rows = _three_video_groups(trainer)
    # Group 0 gets untagged replies (hard), group 1 the right answer (easy), group 2 a well-formed wrong one.
    right = expected_answer(row_to_record("rl", rows[2]).sample)
    policy = HintAwarePolicy(
        {
            rows[2]["question"]: f"<think>Seen.</think><answer>{right}</answer>",
            rows[4]["question"]: "<think>Seen.</think><answer>nothing fits</answer>",
        }
    )
    batch = trainer.rollouts(rows, policy)
    means = [sum(t.reward.total for t in batch.trajectories[i : i + 2]) / 2 for i in (0, 2, 4)]
    assert means[0] + 0.5 < means[2] < means[1] - 0.5, means
    augmenter.buffer.push([means[2]] * 5)  # a scripted buffer whose mean is group 2's
    new, report = augmenter(rows, batch, policy, trainer.rollouts, step=7)
    assert [d.action for d in report.decisions] == ["hint", "noise", "none"]
    assert report.hints == 1 and report.perturbed == 1 and report.hint_failed == 0
    assert report.decisions[0].delta == pytest.approx(means[2] - means[0])
    assert report.decisions[1].delta == pytest.approx(means[2] - means[1])
    # The hint: a prefix of the best (right-answer) answer-conditioned trace, in the user turn of the re-rollout.
    hinted = [u for u in policy.user_texts if "(Hint)" in u]
    assert hinted, "the hard sample was not rolled out again with its hint"
    prefix = hinted[0].split("(Hint) A good line of reasoning for this question begins: ", 1)[1]
    steps = report.decisions[0].steps
    assert reasoning_of(TRACE).startswith(prefix) and prefix == hint_prefix(reasoning_of(TRACE), steps)
    assert HINT.format(prefix=prefix) in hinted[0]
    # The hard group's rollouts were replaced (the hint made the policy answer); the untouched group was kept.
    assert (
        "With the hint" in new.completions[0][-1]["content"] and new.completions[1][-1]["content"] == "Still unsure."
    )
    assert new.trajectories[4] is batch.trajectories[4] and new.trajectories[5] is batch.trajectories[5]
    # The noise changed only the easy sample's frames: its prompt video differs, the other groups' are equal.
    assert not torch.equal(new.media[2]["pixel_values_videos"], batch.media[2]["pixel_values_videos"])
    assert torch.equal(new.media[4]["pixel_values_videos"], batch.media[4]["pixel_values_videos"])
    assert torch.equal(new.media[0]["pixel_values_videos"], batch.media[0]["pixel_values_videos"])
    assert new.prompt_ids[2] == batch.prompt_ids[2]  # same words, other pixels
    assert len(augmenter.buffer.values) == 8  # the 5 scripted means, then this batch's 3


def test_augmenter_refuses_groups_split_across_processes(demo_dir, tmp_path):
    trainer = _trainer(demo_dir, tmp_path)
    rows = _three_video_groups(trainer)[:5]
    with pytest.raises(ValueError, match="whole groups"):
        trainer.augmenter(rows, trainer.rollouts(rows, HintAwarePolicy()), HintAwarePolicy(), trainer.rollouts)
    with pytest.raises(TrainConfigError, match="augment"):
        config_from_dict({"kind": "dgrpo", "model": "m", "data": "d", "output_dir": "o", "augment": "yes"})


def test_training_step_logs_the_vanishing_advantage_share_before_and_after(demo_dir, tmp_path):
    trainer = _trainer(demo_dir, tmp_path, augment={"threshold": 0.0, "hint_samples": 2})
    policy = HintAwarePolicy()
    trainer.engine_factory = lambda _: policy
    trainer.augmenter.buffer.push([2.0] * 10)  # every group is below the recent average: all get hints
    trainer.train()
    logs = next(h for h in trainer.state.log_history if "loss" in h)
    assert logs["augment/zero_variance_before"] == 1.0  # untagged replies: every group's rewards are equal
    assert logs["augment/hint_count"] == 3 and logs["augment/perturb_count"] == 0
    # With the hints, one try of each group writes a tagged answer and the other does not: every group's rewards
    # spread, so no advantage vanishes in what the loss trains on.
    assert logs["advantage/zero_variance_share"] == 0.0
    assert logs["augment/delta_r_mean"] > 0 and logs["augment/augmented_share"] == 1.0


def test_a_group_whose_video_is_missing_is_left_alone_and_stays_unscorable(demo_dir, tmp_path):
    trainer = _trainer(demo_dir, tmp_path)
    rows = _three_video_groups(trainer)
    rows[0] = rows[1] = {**rows[0], "id": "missing-video", "video": "no/such/file.mp4"}
    policy = HintAwarePolicy()
    batch = trainer.rollouts(rows, policy)
    trainer.augmenter.buffer.push([5.0])  # every scorable group is far below: they get hints
    new, report = trainer.augmenter(rows, batch, policy, trainer.rollouts)
    assert [d.action for d in report.decisions] == ["none", "hint", "hint"]
    assert math.isnan(report.decisions[0].delta) and len(report.all_deltas) == 2
    assert new.extra_fields()["rollout_ok"][:2] == [False, False]
    assert new.trajectories[0] is batch.trajectories[0] and new.trajectories[0].finish_reason == "media_error"
