"""The paper's mixes as data, scaling, and deterministic balancing with reported shortfalls."""

from __future__ import annotations

import logging
import random

import pytest

from mtvr_data.mixing import (
    COT_TARGETS,
    NOT_IN_MIX,
    OVER_TARGET,
    RL_OUR_CHOICES,
    RL_TARGETS,
    balance,
    mix_key,
    mix_key_of,
    scale_targets,
)
from mtvr_data.schema import SampleError
from tests.pipelines.test_dataset_writer import make_rl, make_sample


def test_paper_totals() -> None:
    assert sum(COT_TARGETS.values()) == 71_320
    assert sum(v for k, v in COT_TARGETS.items() if k.startswith("tool/")) == 10_571 + 7_019
    tool = {k: v for k, v in RL_TARGETS.items() if k.startswith("tool/")}
    assert tool == {"tool/vidchapters": 7_413, "tool/longvideo_reason": 8_000} and sum(tool.values()) == 15_413
    assert sum(v for k, v in RL_TARGETS.items() if k.startswith("text/")) == 94_000
    assert (RL_TARGETS["text/activitynet_captions"], RL_TARGETS["text/rextime"]) == (12_000, 4_700)
    assert RL_TARGETS["text/vidchapters"] == 7_400
    # Every unpublished count is documented as ours.
    assert set(RL_OUR_CHOICES) == {"text/charades_sta", "text/nextgqa", "text/video_r1_video", "text/video_r1_image"}


def test_keys_split_video_r1_by_modality() -> None:
    assert mix_key_of("text", "video_r1", "image") == "text/video_r1_image"
    assert mix_key_of("tool", "vidchapters", "video") == "tool/vidchapters"
    row = make_rl(1)  # video_r1, image, no tools
    assert mix_key(row) == "text/video_r1_image" and mix_key(row.sample) == "text/video_r1_image"
    with pytest.raises(ValueError):
        mix_key_of("sft", "x")


def test_scale_targets() -> None:
    tiny = scale_targets(RL_TARGETS, 0.0001)
    assert set(tiny) == set(RL_TARGETS) and all(v >= 1 for v in tiny.values())
    assert tiny["text/video_r1_video"] == 3 and tiny["tool/vidchapters"] == 1
    assert scale_targets(COT_TARGETS, 1.0) == COT_TARGETS
    assert scale_targets({"a": 0, "b": 10}, 0.5) == {"a": 0, "b": 5}
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            scale_targets(RL_TARGETS, bad)


def test_balance_cuts_to_target_and_reports_shortfall(caplog: pytest.LogCaptureFixture) -> None:
    rows = [make_rl(i) for i in range(60)]  # sources cycle charades_sta / video_r1 image / nextgqa; 1 in 4 tools
    counts: dict[str, int] = {}
    for r in rows:
        counts[mix_key(r)] = counts.get(mix_key(r), 0) + 1
    targets = {"text/charades_sta": 5, "text/video_r1_image": 100, "text/nextgqa": 0, "tool/charades_sta": 2}
    with caplog.at_level(logging.WARNING):
        result = balance(rows, targets, seed=3)
    kept, rejected = result
    by_key = {k: sum(1 for r in kept if mix_key(r) == k) for k in targets}
    assert by_key == {
        "text/charades_sta": 5,
        "text/video_r1_image": counts["text/video_r1_image"],
        "text/nextgqa": 0,
        "tool/charades_sta": 2,
    }
    assert len(kept) + len(rejected) == len(rows)
    assert all(isinstance(e, SampleError) and e.stage == "balance" for e in rejected)
    reasons = {e.reason for e in rejected}
    assert reasons == {OVER_TARGET, NOT_IN_MIX}  # tool/video_r1_image and tool/nextgqa have no target
    short = 100 - counts["text/video_r1_image"]
    assert result.shortfalls == {"text/video_r1_image": short}
    assert result.report["text/video_r1_image"].to_dict()["available"] == counts["text/video_r1_image"]
    assert "text/video_r1_image short of its target" in caplog.text
    assert result.report_dict()["text/nextgqa"]["rejected"] == counts["text/nextgqa"]


def test_balance_is_deterministic_and_order_free() -> None:
    rows = [make_rl(i) for i in range(90)]
    targets = {"text/charades_sta": 7, "text/video_r1_image": 4, "text/nextgqa": 3}
    first = balance(rows, targets, seed=1)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    again = balance(shuffled, targets, seed=1)
    assert [r.sample.id for r in first.kept] == [r.sample.id for r in again.kept]
    assert [e.location for e in first.rejected] == [e.location for e in again.rejected]
    other = balance(rows, targets, seed=2)
    assert {r.sample.id for r in other.kept} != {r.sample.id for r in first.kept}


def test_prefer_ranks_first() -> None:
    rows = [make_rl(i) for i in range(0, 90, 3)]  # charades_sta only
    rows = [r for r in rows if not r.tools]
    kept, _ = balance(rows, {"text/charades_sta": 3}, prefer=lambda r: r.difficulty)
    hardest = sorted((r.difficulty for r in rows), reverse=True)[:3]
    assert sorted((r.difficulty for r in kept), reverse=True) == hardest


def test_balance_on_bare_samples() -> None:
    samples = [make_sample(i) for i in range(9)]
    kept, rejected = balance(samples, {"text/charades_sta": 1, "text/video_r1_image": 3, "text/nextgqa": 3})
    assert len(kept) == 7 and [e.reason for e in rejected] == [OVER_TARGET, OVER_TARGET]


# --- balance.mix: vital, none or a mapping ---------------------------------------------------------------------------


def test_resolve_mix_vital_none_and_a_mapping() -> None:
    from mtvr_data.mixing import NO_MIX, VITAL, resolve_mix

    assert resolve_mix(VITAL, "rl", 0.5).counts == scale_targets(RL_TARGETS, 0.5)
    assert resolve_mix(VITAL, "cot").counts == COT_TARGETS and resolve_mix(VITAL, "cot").describe() == "vital"
    none = resolve_mix(NO_MIX, "rl")
    assert none.cells == [] and none.has_cell("text/anything") and none.target("text/x", 7) == 7
    mix = resolve_mix({"text/charades_sta": 10, "tool/vidchapters": 0.25, "text/nextqa": 0}, "rl", scale=0.5)
    assert mix.counts == {"text/charades_sta": 5, "text/nextqa": 0} and mix.fractions == {"tool/vidchapters": 0.25}
    # A fraction is of the rows the cell has when it is balanced, rounded half up, and not scaled.
    assert [mix.target("tool/vidchapters", n) for n in (0, 1, 2, 4, 10)] == [0, 0, 1, 1, 3]
    assert mix.target("text/charades_sta", 100) == 5 and mix.target("text/rextime", 9) is None
    assert mix.describe() == {"text/charades_sta": 5, "text/nextqa": 0, "tool/vidchapters": 0.25}
    for bad in ({"text/x": -1}, {"text/x": 1.5}, {"text/x": True}, {"text/x": float("nan")}, "paper"):
        with pytest.raises(ValueError):
            resolve_mix(bad, "rl")


def test_cells_of_a_source_and_what_is_not_a_cell() -> None:
    from mtvr_data.mixing import cell_problem, source_cells

    assert source_cells("video_r1", "text") == ["text/video_r1_video", "text/video_r1_image"]
    assert source_cells("nextqa", "tool") == ["tool/nextqa"]
    sources = ["charades_sta", "video_r1"]
    assert cell_problem("tool/charades_sta", sources) is None and cell_problem("text/video_r1_image", sources) is None
    assert "text/<source> or tool/<source>" in cell_problem("text/charades", sources)
    assert "split by modality" in cell_problem("text/video_r1", sources)
    assert "text/<source>" in cell_problem("both/charades_sta", sources)


def test_a_fraction_balances_what_the_cell_has() -> None:
    from mtvr_data.mixing import resolve_mix

    key = mix_key(make_rl(0))
    rows = [r for r in map(make_rl, range(200)) if mix_key(r) == key][:8]
    assert len(rows) == 8
    target = resolve_mix({key: 0.5}, "rl").target(key, len(rows))
    kept, rejected = balance(rows, {key: target}, seed=1)
    assert len(kept) == 4 and len(rejected) == 4 and {e.reason for e in rejected} == {OVER_TARGET}
