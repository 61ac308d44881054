"""Temporal IoU of predicted and true windows, and VITAL's per-source Scale(IoU; a, b).

Kept apart from `rewards` because grounding metrics (mIoU, R@0.5) in evaluation use the same functions as
the grounding reward, and a window means the same thing in both: [start, end] float seconds, end > start.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

NO_SCALE: tuple[float, float] = (0.0, 1.0)
#: Scale(IoU; a, b) per source (docs/papers.md). Sources not listed are not rescaled (`NO_SCALE`): the paper gives
#: (a, b) only for these, and the identity keeps raw IoU meaningful for anything else.
IOU_SCALE: dict[str, tuple[float, float]] = {
    "charades_sta": (0.2, 0.8),
    "activitynet_captions": (0.2, 0.8),
    "vidchapters": (0.0, 0.5),
    # grounded QA: the scale applies to the span term
    "nextgqa": (0.2, 0.8),
    "rextime": (0.2, 0.8),
    # benchmark rows (`mtvr_data.benchmarks`) carry the benchmark's name as source; the ones whose name differs
    # from their training source's get its scale too, so a reward on a test row means what it means in training
    "charades-sta": (0.2, 0.8),
    "activitynet-mr": (0.2, 0.8),
}


def _valid_window(w: Sequence[float] | None) -> bool:
    return (
        w is not None
        and len(w) == 2
        and all(isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(t) for t in w)
        and w[0] < w[1]
        and math.isfinite(w[1] - w[0])
    )


def temporal_iou(pred: Sequence[float] | None, gt: Sequence[float] | None) -> float:
    """|pred ∩ gt| / |pred ∪ gt| for [start, end] windows: 0.0 for disjoint or touching, 1.0 for equal.

    Degenerate input (None, not a pair, NaN/inf, end <= start, a length that overflows) scores 0.0: a point
    is not a window, so a zero-length prediction can never be rewarded.

    >>> temporal_iou((0, 10), (5, 15))
    0.3333333333333333
    """
    if not (_valid_window(pred) and _valid_window(gt)):
        return 0.0
    inter = min(pred[1], gt[1]) - max(pred[0], gt[0])
    if inter <= 0:
        return 0.0
    union = max(pred[1], gt[1]) - min(pred[0], gt[0])
    return min(1.0, inter / union)


def best_iou(pred: Sequence[float] | None, windows: Sequence[Sequence[float]]) -> float:
    """The highest `temporal_iou` of `pred` with any ground-truth window (several are valid); 0.0 if none."""
    return max((temporal_iou(pred, w) for w in windows), default=0.0)


def temporal_iop(pred: Sequence[float] | None, gt: Sequence[float]) -> float:
    """Intersection over the PREDICTED window's length (NExT-GQA's IoP): how much of the evidence lies in the truth.

    As the official NExT-GQA evaluation defines it, a zero-length prediction (a point) has IoP 1.0 when the point
    lies inside the truth (ends included) and 0.0 otherwise. None, non-finite or reversed windows score 0.0.

    >>> temporal_iop((2, 4), (0, 10)), temporal_iop((8, 12), (0, 10)), temporal_iop((5, 5), (0, 10))
    (1.0, 0.5, 1.0)
    """
    if pred is None or len(pred) != 2 or len(gt) != 2:
        return 0.0
    p0, p1, g0, g1 = (float(t) for t in (*pred, *gt))
    if not all(math.isfinite(t) for t in (p0, p1, g0, g1)) or p1 < p0 or g1 < g0:
        return 0.0
    if p1 == p0:
        return 1.0 if g0 <= p0 <= g1 else 0.0
    inter = min(p1, g1) - max(p0, g0)
    return max(0.0, min(1.0, inter / (p1 - p0)))


def best_iop(pred: Sequence[float] | None, windows: Sequence[Sequence[float]]) -> float:
    """The highest IoP of `pred` over the ground-truth windows (taken independently of the best IoU)."""
    return max((temporal_iop(pred, w) for w in windows), default=0.0)


def format_window(span: Sequence[float]) -> str:
    """A window as rewards and evaluation report what was read: "12.50-18.00"."""
    return f"{span[0]:.2f}-{span[1]:.2f}"


def scale_iou(iou: float, a: float, b: float) -> float:
    """Scale(IoU; a, b) = clamp((IoU - a) / (b - a), 0, 1). (0, 1) is the identity; NaN IoU scores 0.0.

    >>> scale_iou(0.25, 0.0, 0.5), scale_iou(0.1, 0.2, 0.8), scale_iou(0.9, 0.2, 0.8)
    (0.5, 0.0, 1.0)
    """
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise ValueError(f"IoU scale needs finite a < b, got ({a}, {b})")
    if not math.isfinite(iou):
        return 0.0
    return min(1.0, max(0.0, (iou - a) / (b - a)))


def iou_scale_for(source: str, overrides: Mapping[str, tuple[float, float]] | None = None) -> tuple[float, float]:
    """(a, b) for `source`: `overrides` first, then `IOU_SCALE`, else `NO_SCALE`."""
    if overrides is not None and source in overrides:
        return overrides[source]
    return IOU_SCALE.get(source, NO_SCALE)
