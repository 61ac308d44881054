"""A model stage's failure budget: too many samples lost to the machinery (engine errors, a dead server) fail the
build with exit 1 before anything is committed, so a failing server never replaces a good dataset with an empty one.

Why after the pipeline and before the commit: the accounting table (`pipelines.accounting`) already counts every
sample a model stage lost and why. The machinery's reasons (`MACHINERY_REASONS`: the run raised, or too few rollouts
or chains ended by the model) are told apart from the data's (a path outside its root, a prompt too long, a question
every rollout answered right), which are the build's business, not the server's. Raising here leaves the staged
files uncommitted: the previous complete build in the folder stays what readers load (`dataset_writer.commit_config`).
"""

from __future__ import annotations

from typing import Any

#: Per model stage (as the accounting names it): the dead-letter reasons that mean the machinery failed.
MACHINERY_REASONS: dict[str, frozenset[str]] = {
    "grade": frozenset({"grading_error", "grading_failed"}),
    "teacher": frozenset({"teacher_error", "teacher_failed"}),
}


class StageFailedError(RuntimeError):
    """A model stage lost more samples to the machinery than its failure budget allows (exit 1)."""


def failed_samples(table: dict[str, Any], stage: str) -> tuple[int, int, dict[str, int]]:
    """(samples in, samples the machinery lost, those by reason) of `stage` in an accounting table."""
    row = next((r for r in table.get("stages", []) if r["stage"] == stage), None)
    if row is None:
        return 0, 0, {}
    reasons = {k: v for k, v in row["by_reason"].items() if k in MACHINERY_REASONS.get(stage, frozenset())}
    return int(row["in"]), sum(reasons.values()), reasons


def check_failure_budget(table: dict[str, Any], stage: str, *, max_fraction: float, max_count: int) -> None:
    """Raise `StageFailedError` when `stage` lost more than max(`max_count`, `max_fraction` x its input) samples to
    the machinery; the message names the stage, the counts and the commonest reasons. `max_count` is the floor that
    lets a small build lose a few samples."""
    seen, failed, reasons = failed_samples(table, stage)
    allowed = max(max_count, int(max_fraction * seen))
    if failed <= allowed:
        return
    common = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    raise StageFailedError(
        f"stage {stage}: {failed} of {seen} samples failed in the machinery ({common}), over its failure budget of "
        f"{allowed} (max_failed_fraction {max_fraction:g}, max_failed {max_count}); nothing was committed, the "
        f"previous build in the folder is unchanged; the failed samples are in rejected/{stage}.jsonl of the "
        f"staging folder's records"
    )
