"""DGRPO: advantages by the formula, the library's GRPO loss when w = 1, video log-probs, and a real step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model.families import get_family
from mtvr_data.rewards import dgrpo_weight
from tests.train.conftest import TRAIN_FAMILIES, dgrpo_config, policy_model
from train.advantages import DgrpoRule, GrpoRule, apply_rule
from train.dgrpo import build_dgrpo_trainer, rl_dataset
from train.rollouts import PolicyRollouts

# --- the advantage rule on hand-computed groups ------------------------------------------------------------


def test_dgrpo_weights_follow_the_formula_on_hand_computed_groups():
    rewards = torch.tensor([[0.0, 1.0], [2.0, 3.0], [1.0, 2.0], [2.5, 2.5]])
    # D = 0.5 -> w = 1; D = 2.5 -> 0.5; D = 1.5 -> 0.75; D = 2.5 -> 0.5
    assert DgrpoRule().weights(rewards).tolist() == [1.0, 0.5, 0.75, 0.5]
    assert GrpoRule().weights(rewards).tolist() == [1.0] * 4
    assert [dgrpo_weight(d) for d in (0.5, 2.5, 1.5)] == [1.0, 0.5, 0.75]


def test_rule_scales_each_groups_advantages_and_keeps_zero_groups_zero():
    totals = torch.tensor([0.0, 1.0, 3.0, 2.0, 2.0, 2.0])  # groups of 2: D = 0.5, 2.5, 2.0
    plain = torch.tensor([-0.7, 0.7, 0.7, -0.7, 0.0, 0.0])
    scaled, weights = apply_rule(DgrpoRule(), totals, plain, 2, slice(0, 6))
    assert weights.tolist() == [1.0, 0.5, 0.5]
    assert torch.allclose(scaled, torch.tensor([-0.7, 0.7, 0.35, -0.35, 0.0, 0.0]))
    # This process's slice only.
    local, _ = apply_rule(DgrpoRule(), totals, plain[2:4], 2, slice(2, 4))
    assert torch.allclose(local, torch.tensor([0.35, -0.35]))


def test_unscorable_rollouts_leave_d_and_an_all_unscorable_group_gets_weight_one():
    totals = torch.tensor([float("nan"), 3.0, float("nan"), float("nan")])
    weights = DgrpoRule().weights(totals.view(-1, 2))
    assert weights.tolist() == [0.5, 1.0]
    assert not torch.isnan(weights).any()


def test_group_size_must_divide_the_rewards():
    with pytest.raises(ValueError, match="groups of 3"):
        apply_rule(DgrpoRule(), torch.zeros(4), torch.zeros(4), 3, slice(0, 4))


# --- trainers on the tiny checkpoint ------------------------------------------------------------------------


def _config(demo_dir: Path, out: Path, **over):
    return dgrpo_config(demo_dir, out, {"beta": 0.01}, **over)


def _fixed_generation(trainer, processor, texts):
    """Replace the trainer's generation with fixed text completions (the same for both trainers compared)."""
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")

    def generate(prompts):
        prompt_ids = [
            tok(f"<|im_start|>user\nQ{i // 2}<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
            for i in range(len(prompts))
        ]
        completion_ids = [tok(t)["input_ids"] + [end] for t in texts]
        completions = [[{"role": "assistant", "content": t}] for t in texts]
        extra = {
            "num_successful_tool_calls": [0] * len(texts),
            "tools": [False] * len(texts),
            "rollout_ok": [True] * len(texts),
        }
        return prompt_ids, completion_ids, None, completions, None, extra, None, []

    trainer._generate = generate


def _text_rows(trainer, n):
    rows = [dict(trainer.train_dataset[i]) for i in range(len(trainer.train_dataset))]
    mcq = [r for r in rows if r["task"] == "mcq"][: n // 2]
    assert len(mcq) == n // 2
    return [r for r in mcq for _ in range(2)]


@pytest.mark.parametrize("rule", ["grpo", "dgrpo"])
def test_w1_loss_equals_trl_plain_grpo_and_dgrpo_scales_it(demo_dir, tmp_path, rule):
    from transformers import AutoProcessor

    from train.dgrpo import build_plain_grpo_trainer

    config = _config(demo_dir, tmp_path / rule, advantage=rule)
    processor = AutoProcessor.from_pretrained(demo_dir / "tiny")
    ours = build_dgrpo_trainer(config, processor=processor)
    plain = build_plain_grpo_trainer(config, processor=processor)
    rows = _text_rows(ours, 4)
    first, second = rows[0], rows[2]
    wrong = next(letter for letter in "ABCDE" if letter != second["answer"])
    # Group 1: right + untagged (D = 1, w = 1); group 2: right + wrong, both well formed (D = 1.5, w = 0.75).
    texts = [
        f"<think>a</think><answer>{first['answer']}</answer>",
        "nothing",
        f"<think>b</think><answer>{second['answer']}</answer>",
        f"<think>c</think><answer>{wrong}</answer>",
    ]
    for trainer in (ours, plain):
        _fixed_generation(trainer, processor, texts)
    out_ours = ours._generate_and_score_completions([dict(r) for r in rows])
    out_plain = plain._generate_and_score_completions([dict(r) for r in rows])
    adv_ours, adv_plain = out_ours["advantages"], out_plain["advantages"]
    assert not torch.isnan(adv_ours).any()
    loss_ours = ours._compute_loss(ours.model, out_ours)
    loss_plain = plain._compute_loss(plain.model, out_plain)
    assert math.isfinite(loss_ours.item())
    if rule == "grpo":
        assert torch.equal(adv_ours, adv_plain)
        assert loss_ours.item() == pytest.approx(loss_plain.item(), rel=1e-6, abs=1e-7)
    else:
        totals = ours._gathered_rewards.nansum(dim=1).view(-1, 2)
        w = torch.tensor([dgrpo_weight(d) for d in totals.mean(dim=1).tolist()]).repeat_interleave(2)
        assert torch.allclose(adv_ours, adv_plain * w)
        assert w.tolist() == [1.0, 1.0, 0.75, 0.75]
        assert adv_ours[2:].abs().sum() > 0


@pytest.mark.parametrize("family", TRAIN_FAMILIES)
def test_policy_rollouts_give_video_logps_equal_to_a_plain_forward(
    demo_dir, tmp_path, scripted_policy, tiny_checkpoints, family
):
    config = _config(demo_dir, tmp_path / "logps", model=policy_model(demo_dir, tiny_checkpoints, family))
    trainer = build_dgrpo_trainer(config)
    assert trainer.rollouts.family == get_family(family)
    rows = [dict(trainer.train_dataset[i]) for i in range(len(trainer.train_dataset))]
    tool_row = {**next(r for r in rows if r["modality"] == "video"), "tools": True}
    batch = trainer.rollouts([tool_row, tool_row], scripted_policy)
    assert all(t.num_successful_tool_calls == 1 for t in batch.trajectories)
    assert all(m["video_grid_thw"].shape[0] == 2 for m in batch.media)  # the video and the clip
    assert all(set(m) <= set(get_family(family).media_fields) for m in batch.media)
    # The tool turn (its clip tokens) is masked in the completion; the policy's own tokens are not.
    video_pad = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    for ids, mask in zip(batch.completion_ids, batch.tool_mask, strict=True):
        assert video_pad in ids and all(m == 0 for i, m in zip(ids, mask, strict=True) if i == video_pad)
        assert sum(mask) > 0
    # Trainer path (padded, batched, media forwarded) vs. one plain forward per row.
    from trl.trainer.utils import pad

    prompt = pad([torch.tensor(p) for p in batch.prompt_ids], padding_value=0, padding_side="left")
    pmask = pad([torch.ones(len(p), dtype=torch.long) for p in batch.prompt_ids], padding_value=0, padding_side="left")
    comp = pad([torch.tensor(c) for c in batch.completion_ids], padding_value=0, padding_side="right")
    cmask = pad(
        [torch.ones(len(c), dtype=torch.long) for c in batch.completion_ids], padding_value=0, padding_side="right"
    )
    trainer._media = batch.media
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([prompt, comp], 1), torch.cat([pmask, cmask], 1), comp.size(1), batch_size=1
        )
    from train.encoding import mm_token_type_ids

    for r, (p, c, media) in enumerate(zip(batch.prompt_ids, batch.completion_ids, batch.media, strict=True)):
        ids = torch.tensor([p + c])
        with torch.no_grad():
            logits = trainer.model(
                input_ids=ids, mm_token_type_ids=mm_token_type_ids(ids, trainer.processing_class), **media
            ).logits
        ref = torch.log_softmax(logits[0, len(p) - 1 : -1].float(), -1).gather(-1, torch.tensor(c)[:, None])[:, 0]
        assert torch.allclose(logps[r, : len(c)], ref, atol=1e-4), (logps[r, : len(c)] - ref).abs().max()


def test_a_failed_rollout_is_unscorable_and_gets_no_advantage(demo_dir, tmp_path, scripted_policy):
    config = _config(demo_dir, tmp_path / "fail")
    trainer = build_dgrpo_trainer(config)
    rows = [dict(trainer.train_dataset[i]) for i in range(len(trainer.train_dataset))]
    good = next(r for r in rows if r["modality"] == "video" and not r["tools"])
    missing = {**good, "id": "missing-video", "video": "no/such/file.mp4"}
    batch = trainer.rollouts([missing, missing, good, good], scripted_policy)
    assert batch.extra_fields()["rollout_ok"] == [False, False, True, True]
    assert batch.tool_mask[0] == [0] and batch.media[0] == {}
    trainer.engine_factory = lambda _: scripted_policy
    out = trainer._generate_and_score_completions([missing, missing, good, good])
    assert out["advantages"][:2].tolist() == [0.0, 0.0]
    assert out["advantages"][2:].abs().sum() > 0
    loss = trainer._compute_loss(trainer.model, out)
    assert math.isfinite(loss.item())


@pytest.mark.parametrize("family", TRAIN_FAMILIES)
def test_one_dgrpo_step_with_the_tool_from_demo_shards(demo_dir, tmp_path, scripted_policy, tiny_checkpoints, family):
    config = _config(demo_dir, tmp_path / "step", model=policy_model(demo_dir, tiny_checkpoints, family))
    # Every video row as a tool row (the row's `tools` column decides whether its rollouts get the tool).
    rows = rl_dataset(config).filter(lambda r: r["modality"] == "video").map(lambda r: {"tools": True})
    trainer = build_dgrpo_trainer(config, train_dataset=rows)
    trainer.engine_factory = lambda _: scripted_policy
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    logs = next(h for h in trainer.state.log_history if "loss" in h)
    assert math.isfinite(logs["loss"])
    assert logs["tools/call_rate"] == 1.0
    assert 0.5 <= logs["advantage_weight/mean"] <= 1.0
    assert scripted_policy.calls > 0
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(after[n], v) for n, v in before.items())


def test_one_dgrpo_step_with_the_tiny_policy_generating(demo_dir, tmp_path):
    """The real path: the policy itself generates through TransformersEngine, then one update."""
    trainer = build_dgrpo_trainer(_config(demo_dir, tmp_path / "real"))
    trainer.train()
    logs = next(h for h in trainer.state.log_history if "loss" in h)
    assert math.isfinite(logs["loss"])
    assert logs["rollouts/failed_rate"] == 0.0
    assert trainer.model.training  # generation mode was restored


def test_policy_rollouts_group_runs_of_the_same_row():
    from train.rollouts import runs_of_same_id

    rows = [{"id": i} for i in "aabbbc"]
    assert runs_of_same_id(rows) == [(0, 2), (2, 3), (5, 1)]
    assert PolicyRollouts.__doc__
