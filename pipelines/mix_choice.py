"""The mix a build balances to: `balance.mix` resolved for build-rl or build-cot, and checked against the sources.

Why a check before the pipeline: a source (or a `tools:` setting) whose rows have no cell in the chosen mix would be
graded by the model and then rejected, every row, at `balance` as `not_in_mix`: hours of model work for an empty
dataset and exit 0. `build_targets` refuses such a config as one `ConfigError` line (exit 2), before any model
loads, naming the cells the source could use.

Which cells a source can reach: in build-rl, its entry's part (`tools:`, else `grade.rollout.tools`); in build-cot,
the teacher's routing decides per sample (`model.teacher.wants_tool_chain`), so a source in `teach.tool_sources`
reaches the tool cells and the others the text cells, and also the tool cells when `teach.long_video_s` is set
(long videos); images and modality-split sources always reach a text cell.
"""

from __future__ import annotations

from typing import Any

from model.config_error import ConfigError
from mtvr_data.mixing import MODALITY_SPLIT_SOURCES, MixTargets, resolve_mix, source_cells
from pipelines.config import BuildConfig


def _describe(mix: Any) -> str:
    return f"the {mix} mix" if isinstance(mix, str) else "the balance.mix mapping"


def reachable_cells(config: BuildConfig, build: str, default_tools: bool, teach: Any = None) -> dict[str, list[str]]:
    """Entry label (`source (tools: x)`) -> the mix cells its rows can fall in, for `build` (`rl` or `cot`)."""
    out: dict[str, list[str]] = {}
    for entry in config.sources:
        for source in entry.row_sources():
            if build == "rl":
                tools = default_tools if entry.tools is None else entry.tools
                parts = ["tool" if tools else "text"]
                label = f"source {source!r} (tools: {str(tools).lower()})"
            else:
                tool_sources = tuple(getattr(teach, "tool_sources", ()) or ())
                long_video = getattr(teach, "long_video_s", None) is not None
                parts = ["tool"] if source in tool_sources else ["text"] + (["tool"] if long_video else [])
                if source in MODALITY_SPLIT_SOURCES and "text" not in parts:
                    parts.insert(0, "text")  # its images are always taught without the tool
                label = f"source {source!r} (teacher: {'/'.join(parts)} chains)"
            out[label] = [cell for part in parts for cell in source_cells(source, part)]
    return out


def build_targets(config: BuildConfig, build: str, default_tools: bool, teach: Any = None) -> MixTargets:
    """The targets of `config`'s `balance.mix` for `build`; a `ConfigError` when a source has no cell in it."""
    mix = config.balance.mix
    try:
        targets = resolve_mix(mix, build, config.balance.scale)
    except ValueError as exc:
        raise ConfigError(f"balance.mix: {exc}") from None
    if targets.keep_all:
        return targets
    for label, cells in reachable_cells(config, build, default_tools, teach).items():
        if not any(targets.has_cell(cell) for cell in cells):
            raise ConfigError(
                f"balance.mix: {label} has no cell in {_describe(mix)} of build-{build}, so all its rows would be "
                f"rejected after grading; it could use {', '.join(cells)} (add it to a balance.mix mapping, or use "
                f"mix: none); the mix has {', '.join(targets.cells)}"
            )
    return targets
