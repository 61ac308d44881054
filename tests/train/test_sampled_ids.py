"""DGRPO trains on the ids the engine sampled, not on a re-encoding of their text (issue 18, "the sampled tokens")."""

from __future__ import annotations

import math

import torch

from model.engine_api import Completion, GenerationRequest
from model.trajectory import ANSWER, TOKEN_BUDGET, Trajectory, Turn
from tests.train.conftest import ScriptedPolicy, dgrpo_config
from train.dgrpo import build_dgrpo_trainer
from train.encoding import Encoded
from train.rollouts import splice_sampled_ids


class CharIdsPolicy(ScriptedPolicy):
    """The scripted replies, returned with ids that spell the text one character per token: a tokenization that
    decodes to the same text but that re-encoding never gives (the tokenizer merges characters)."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        #: (request key, completion index) -> the ids returned
        self.sampled: dict[tuple[str, int], list[int]] = {}

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        out = await super().generate(requests)
        for request, group in zip(requests, out, strict=True):
            for k, completion in enumerate(group):
                ids = [i for ch in completion.text for i in self.tokenizer.encode(ch, add_special_tokens=False)]
                completion.token_ids = ids
                self.sampled[(request.key, k)] = ids
        return out

    def turns_of(self, rollout: int) -> list[list[int]]:
        """The ids returned for one rollout: turn 0 (completion `rollout` of the group's first request), turn 1."""
        first = next(ids for (key, k), ids in self.sampled.items() if not key.endswith("/t1") and k == rollout)
        second = next(ids for (key, _), ids in self.sampled.items() if key.endswith(f"/{rollout}/t1"))
        return [first, second]


def _trained(ids: list[int], mask: list[int]) -> list[int]:
    return [i for i, m in zip(ids, mask, strict=True) if m]


def test_a_rollout_whose_sampled_ids_differ_from_the_reencoding_trains_on_the_sampled_ids(demo_dir, tmp_path):
    trainer = build_dgrpo_trainer(dgrpo_config(demo_dir, tmp_path / "ids", {"beta": 0.01}))
    tok = trainer.processing_class.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    rows = [dict(trainer.train_dataset[i]) for i in range(len(trainer.train_dataset))]
    tool_row = {**next(r for r in rows if r["modality"] == "video"), "tools": True}
    policy = CharIdsPolicy(tok)
    batch = trainer.rollouts([tool_row, tool_row], policy)
    for trajectory, ids, mask in zip(batch.trajectories, batch.completion_ids, batch.tool_mask, strict=True):
        assert trajectory.num_tool_calls == 1 and len(trajectory.turns) == 2  # a tool turn sits between the two
        sampled = [t.token_ids for t in trajectory.turns]
        for turn, turn_ids in zip(trajectory.turns, sampled, strict=True):  # the construction: ids differ
            assert turn_ids != tok.encode(turn.text, add_special_tokens=False)
            assert tok.decode(turn_ids) == turn.text
        # Trained: each turn's sampled ids and the template's <|im_end|> (both turns stopped on a stop string).
        assert _trained(ids, mask) == [i for turn_ids in sampled for i in [*turn_ids, end]]
    assert batch.reencoded_turns == [0, 0] and trainer.rollouts.id_sources["reencoded"] == 0

    # Through the trainer: the ids the loss reads (completion x tool mask) are the engine's.
    policy.sampled.clear()
    trainer.engine_factory = lambda _: policy
    out = trainer._generate_and_score_completions([tool_row, tool_row])
    keep = out["completion_mask"] * out["tool_mask"]
    for r in range(2):
        trained = out["completion_ids"][r][keep[r].bool()].tolist()
        assert trained == [i for turn_ids in policy.turns_of(r) for i in [*turn_ids, end]]
    loss = trainer._compute_loss(trainer.model, out)
    assert math.isfinite(loss.item())


def _encoded() -> Encoded:
    # prompt [1, 2] | header [3] | turn 0 [10, 11, 99] | tool [4, 5] | header [3] | turn 1 [12, 99] | newline [6]
    ids = [1, 2, 3, 10, 11, 99, 4, 5, 3, 12, 99, 6]
    trainable = [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    return Encoded(ids, trainable, spans=[(3, 6), (9, 11)])


def _trajectory(finish: str, *token_ids: list[int] | None) -> Trajectory:
    turns = [Turn("t", "stop", 0, 0, 8, token_ids=ids) for ids in token_ids]
    return Trajectory("s", 0, True, turns, finish_reason=finish)


def test_splicing_keeps_template_tokens_around_the_sampled_ids():
    ids, mask, reencoded = splice_sampled_ids(_encoded(), _trajectory(ANSWER, [20, 21, 22], [23, 99]), 99, {99})
    assert ids == [1, 2, 3, 20, 21, 22, 99, 4, 5, 3, 23, 99]  # <|im_end|> added once; newline after it dropped
    assert mask == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1]
    assert reencoded == 0


def test_a_cut_off_turn_gets_no_end_token_and_text_only_turns_fall_back_counted():
    ids, mask, reencoded = splice_sampled_ids(_encoded(), _trajectory(TOKEN_BUDGET, None, [23, 24]), 99, {99})
    assert ids == [1, 2, 3, 10, 11, 99, 4, 5, 3, 23, 24]
    assert reencoded == 1
    ids, _, reencoded = splice_sampled_ids(_encoded(), _trajectory(TOKEN_BUDGET, [20], None), 99, {99})
    assert ids == [1, 2, 3, 20, 99, 4, 5, 3, 12]  # the template's end after the cut-off turn is dropped too
    assert reencoded == 1


def test_sampled_media_placeholders_fall_back_to_the_reencoding():
    ids, _, reencoded = splice_sampled_ids(
        _encoded(), _trajectory(ANSWER, [20, 7], [23]), 99, frozenset({99}), frozenset({7})
    )
    assert ids[3:6] == [10, 11, 99] and reencoded == 1


def test_the_transformers_engine_returns_the_ids_it_sampled(demo_dir):
    from model.engine_api import SamplingSettings
    from model.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(str(demo_dir / "tiny"), device="cpu", batch_size=2)
    messages = [{"role": "user", "content": [{"type": "text", "text": "Say something."}]}]
    settings = SamplingSettings(n=2, max_new_tokens=8, stop=(), seed=3)
    torch.manual_seed(0)
    (completions,) = engine.generate_sync([GenerationRequest(messages, settings)])
    for c in completions:
        assert c.token_ids is not None and len(c.token_ids) == c.completion_tokens
        assert engine.tokenizer.decode(c.token_ids, skip_special_tokens=True) == c.text
