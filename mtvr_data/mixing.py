"""The paper's dataset mixes as data, and balancing graded rows to them.

A *mix key* names one cell of a mix: the part (`text`: no tool, `tool`: with the clip tool) and the source,
with Video-R1 split by modality because the paper counts its video and image rows separately, e.g.
`text/charades_sta`, `tool/vidchapters`, `text/video_r1_image`. The same keys serve MTVR-CoT ("text CoT" /
"tool CoT") and MTVR-RL (rows without / with tools), so one `balance` works for both builds.

`COT_TARGETS` is the published MTVR-CoT table (71,320 rows). `RL_TARGETS` holds the published MTVR-RL counts
(the two tool sources, and the approximate ActivityNet / ReXTime / VidChapters counts) plus our own split of
the rest of the ~94k rows without tools, which the paper did not publish: see `RL_OUR_CHOICES`.

Balancing is deterministic and independent of input order (Beam gives no order): within a key, rows are
ranked by an optional preference, then by a seeded hash of the sample id, and the first `target` are kept.
The default is the hash order alone, a uniform subsample: it keeps each source's difficulty distribution as
graded (the medium-difficulty filter already ran, and DGRPO re-weights hard groups itself), rather than
skewing the mix towards the hardest rows. Rows over a target, or under a key the mix does not name, are
rejected with a reason; a key short of its target keeps all its rows and the shortfall is reported (logged
and returned), never silent.

Which targets a build uses is configuration (`balance.mix`, `resolve_mix` -> `MixTargets`): `vital` (the tables
above, the default), `none` (no targets: every row that passes `keep` is kept) or a mapping of cells to integer
counts (scaled by `balance.scale` like the tables) or fractions in [0, 1] (of the rows the cell has when it is
balanced, i.e. after `keep`; not scaled, since they already follow the data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mtvr_data.schema import CotRow, RlRow, Sample, SampleError

log = logging.getLogger(__name__)

R = TypeVar("R")

STAGE = "balance"
#: Reason codes of the rows `balance` rejects.
OVER_TARGET = "over_target"
NOT_IN_MIX = "not_in_mix"

#: Sources whose mix cells are split by modality (the paper counts Video-R1 video and image rows apart).
MODALITY_SPLIT_SOURCES: frozenset[str] = frozenset({"video_r1"})


def mix_key_of(part: str, source: str, modality: str = "video") -> str:
    """The mix key of a part (`text` or `tool`), a source and a modality, e.g. `text/video_r1_image`."""
    if part not in ("text", "tool"):
        raise ValueError(f"part must be 'text' or 'tool', got {part!r}")
    name = f"{source}_{modality}" if source in MODALITY_SPLIT_SOURCES else source
    return f"{part}/{name}"


def mix_key(row: CotRow | RlRow | Sample) -> str:
    """The mix key of a CoT or RL row (part from `row.tools`); a bare `Sample` counts as the text part."""
    if isinstance(row, Sample):
        return mix_key_of("text", row.source, row.modality)
    return mix_key_of("tool" if row.tools else "text", row.sample.source, row.sample.modality)


# --- The mixes --------------------------------------------------------------------------------------------------

#: MTVR-CoT as published (docs/papers.md, "The datasets"): 71,320 rows.
COT_TARGETS: dict[str, int] = {
    "text/charades_sta": 10_608,
    "text/activitynet_captions": 9_494,
    "text/vidchapters": 4_257,
    "text/nextgqa": 3_021,
    "text/rextime": 3_666,
    "text/video_r1_video": 6_993,
    "text/video_r1_image": 8_065,
    "text/longvideo_reason": 7_626,
    "tool/vidchapters": 10_571,
    "tool/longvideo_reason": 7_019,
}

#: MTVR-RL: ~94k rows without tools plus 15,413 tool rows (109,413 in all, the paper's "110k").
RL_TARGETS: dict[str, int] = {
    # Published: the tool part exactly, and approximate counts for three sources without tools.
    "tool/vidchapters": 7_413,
    "tool/longvideo_reason": 8_000,
    "text/activitynet_captions": 12_000,
    "text/rextime": 4_700,
    "text/vidchapters": 7_400,
    # Our choice (not published): the remaining 69,900 of the ~94k, see RL_OUR_CHOICES.
    "text/charades_sta": 12_000,
    "text/nextgqa": 3_400,
    "text/video_r1_video": 30_000,
    "text/video_r1_image": 24_500,
}

#: Why each unpublished RL count is what it is (rendered into the dataset card as a deviation note).
RL_OUR_CHOICES: dict[str, str] = {
    "text/charades_sta": "about all of Charades-STA's 12,408 training queries; the medium-difficulty filter "
    "leaves fewer, so this cell is expected to fall short rather than be cut",
    "text/nextgqa": "NExT-GQA's grounded questions number a few thousand (the CoT set used 3,021); ~3.4k",
    "text/video_r1_video": "the rest of the ~94k goes to Video-R1, split 55:45 video:image because the "
    "benchmarks are video benchmarks",
    "text/video_r1_image": "the image share of the Video-R1 remainder (see text/video_r1_video)",
}


def scale_targets(targets: Mapping[str, int], scale: float) -> dict[str, int]:
    """`targets` times `scale`, rounded half up; any cell with a positive target keeps at least 1 row.

    The floor of 1 is deliberate: `--scale 0.0001` on a demo must still ask for every cell of the paper's
    mix (a demo with no tool rows would test nothing), so small scales over-represent small cells. Cells
    whose target is 0 stay 0. `scale` must be positive and finite; scales above 1 are allowed.
    """
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    out: dict[str, int] = {}
    for key, target in targets.items():
        if target < 0:
            raise ValueError(f"negative target {target} for {key!r}")
        out[key] = 0 if target == 0 else max(1, math.floor(target * scale + 0.5))
    return out


# --- Choosing a mix (`balance.mix`) -------------------------------------------------------------------------------

#: `balance.mix: vital`: the paper's tables (the default); build-rl uses `RL_TARGETS`, build-cot `COT_TARGETS`.
VITAL = "vital"
#: `balance.mix: none`: no targets; every row that passes `keep` is written.
NO_MIX = "none"
#: The `vital` table of each build.
VITAL_TABLES: dict[str, dict[str, int]] = {"rl": RL_TARGETS, "cot": COT_TARGETS}
PARTS = ("text", "tool")
#: The shapes a mix cell may take, for error messages.
CELL_SHAPES = "text/<source> or tool/<source> (video_r1: text/video_r1_video, text/video_r1_image)"


def source_cells(source: str, part: str) -> list[str]:
    """The cells rows of `source` in `part` can fall in: one, or one per modality for a modality-split source."""
    if source in MODALITY_SPLIT_SOURCES:
        return [mix_key_of(part, source, modality) for modality in ("video", "image")]
    return [mix_key_of(part, source)]


def cell_problem(key: Any, sources: Iterable[str]) -> str | None:
    """Why `key` is not a mix cell of any of `sources` (None when it is one)."""
    if not isinstance(key, str):
        return f"cell names are strings, got {key!r}"
    known = {cell for source in sources for part in PARTS for cell in source_cells(source, part)}
    if key in known:
        return None
    part, _, name = key.partition("/")
    hint = ""
    if part in PARTS and name in MODALITY_SPLIT_SOURCES:
        hint = f" ({name} is split by modality: {part}/{name}_video, {part}/{name}_image)"
    return f"unknown cell {key!r}{hint}; cells are {CELL_SHAPES} for a known source"


def amount_problem(key: str, value: Any) -> str | None:
    """Why `value` is not a cell's amount: an integer count >= 0, or a fraction in [0, 1] written as a decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{key!r}: {value!r} is neither a row count (integer) nor a fraction (0.0 to 1.0)"
    if isinstance(value, int):
        return f"{key!r}: negative count {value}" if value < 0 else None
    if not math.isfinite(value) or value < 0:
        return f"{key!r}: fraction {value!r} is not in [0, 1]"
    if value > 1:
        return f"{key!r}: fraction {value!r} is over 1 (a fraction of the cell's rows; write counts as integers)"
    return None


def _half_up(value: float) -> int:
    return math.floor(value + 0.5)


@dataclass(frozen=True, slots=True)
class MixTargets:
    """The targets a build balances to, once `balance.mix` and `balance.scale` are resolved (travels to the workers).

    `counts`: cell -> rows (already scaled); `fractions`: cell -> share of the rows the cell has when it is balanced
    (after `keep`), rounded half up, not scaled; `keep_all`: the `none` mix, every cell keeps every row. A cell in
    neither mapping is not in the mix (its rows are `not_in_mix`) unless `keep_all`.
    """

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    fractions: dict[str, float] = field(default_factory=dict)
    keep_all: bool = False

    def has_cell(self, key: str) -> bool:
        return self.keep_all or key in self.counts or key in self.fractions

    @property
    def cells(self) -> list[str]:
        """The cells the mix names, sorted (none for the `none` mix: it names no cell and refuses none)."""
        return sorted(set(self.counts) | set(self.fractions))

    def target(self, key: str, available: int) -> int | None:
        """Rows `key` keeps out of `available`; None when the cell is not in the mix."""
        if self.keep_all:
            return available
        if key in self.counts:
            return self.counts[key]
        if key in self.fractions:
            return _half_up(self.fractions[key] * available)
        return None

    def describe(self) -> str | dict[str, int | float]:
        """What the card and stats say the mix was: `vital`, `none`, or the mapping as configured (counts scaled)."""
        if self.name in (VITAL, NO_MIX):
            return self.name
        return {k: self.counts.get(k, self.fractions.get(k, 0)) for k in self.cells}


def resolve_mix(mix: str | Mapping[str, int | float], build: str, scale: float = 1.0) -> MixTargets:
    """`balance.mix` as targets for `build` (`rl` or `cot`): `vital` is that build's table scaled by `scale`, `none`
    keeps every row, a mapping's integer counts are scaled like the tables (`scale_targets`) and its fractions are
    kept as given (they already follow the data). Raises ValueError on a mix `parse`-time checks would refuse."""
    if mix == VITAL:
        return MixTargets(VITAL, counts=scale_targets(VITAL_TABLES[build], scale))
    if mix == NO_MIX:
        return MixTargets(NO_MIX, keep_all=True)
    if not isinstance(mix, Mapping):
        raise ValueError(f"unknown mix {mix!r}; use {VITAL}, {NO_MIX} or a mapping of cells to counts or fractions")
    for key, value in mix.items():
        problem = amount_problem(key, value)
        if problem:
            raise ValueError(problem)
    counts = {k: v for k, v in mix.items() if isinstance(v, int)}
    fractions = {k: float(v) for k, v in mix.items() if isinstance(v, float)}
    return MixTargets("mapping", counts=scale_targets(counts, scale), fractions=fractions)


# --- Balancing -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyReport:
    """How one mix key fared: its target, the rows offered, kept and rejected, and the shortfall."""

    key: str
    target: int
    available: int
    kept: int
    rejected: int

    @property
    def shortfall(self) -> int:
        """Rows the key lacks to reach its target (0 when met)."""
        return max(0, self.target - self.kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "available": self.available,
            "kept": self.kept,
            "rejected": self.rejected,
            "shortfall": self.shortfall,
        }


@dataclass(frozen=True, slots=True)
class Balanced(Generic[R]):
    """The result of `balance`. Unpacks as `(kept, rejected)`; `report` holds the per-key accounting.

    `rejected` are `SampleError` dead letters (stage `balance`, reason `over_target` or `not_in_mix`) so they
    join the other stages' rejections unchanged.
    """

    kept: list[R]
    rejected: list[SampleError]
    report: dict[str, KeyReport] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.kept, self.rejected))

    @property
    def shortfalls(self) -> dict[str, int]:
        """Keys below their target and by how many rows."""
        return {k: r.shortfall for k, r in sorted(self.report.items()) if r.shortfall}

    def report_dict(self) -> dict[str, dict[str, Any]]:
        """The report as plain JSON-ready data, keys sorted (for stats.json and the card)."""
        return {k: self.report[k].to_dict() for k in sorted(self.report)}


def _sample_of(row: Any) -> Sample | None:
    if isinstance(row, Sample):
        return row
    sample = getattr(row, "sample", None)
    return sample if isinstance(sample, Sample) else None


def _default_id(row: Any) -> str:
    sample = _sample_of(row)
    if sample is None:
        raise TypeError(f"cannot find a sample id on {type(row).__name__}; pass id_fn=")
    return sample.id


def stable_rank(seed: int, sample_id: str) -> str:
    """The seeded hash that orders rows within a key: same seed and id, same place, on every machine."""
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()


def _reject(row: Any, row_id: str, key: str, reason: str, detail: str) -> SampleError:
    sample = _sample_of(row)
    raw = json.dumps({"id": row_id, "key": key}, ensure_ascii=False, sort_keys=True)
    return SampleError(
        source=sample.source if sample is not None else key.partition("/")[2],
        location=row_id,
        reason=reason,
        detail=detail,
        stage=STAGE,
        raw=raw,
    )


def balance(
    rows: Iterable[R],
    targets: Mapping[str, int],
    key_fn: Callable[[R], str] = mix_key,  # type: ignore[assignment]
    seed: int = 0,
    *,
    prefer: Callable[[R], float] | None = None,
    id_fn: Callable[[R], str] = _default_id,
) -> Balanced[R]:
    """Keep at most `targets[key]` rows per mix key; reject the rest with a reason. Deterministic.

    Within a key, rows rank by `prefer(row)` (higher first) when given, then by `stable_rank(seed, id)`, then by
    id and input position (only to order exact duplicates). `kept` is returned sorted by (key, rank), so the
    result does not depend on the order rows arrive in. A key short of its target keeps all its rows; its
    shortfall is logged as a warning and listed in `report`.
    """
    groups: dict[str, list[tuple[tuple[Any, ...], R]]] = defaultdict(list)
    for position, row in enumerate(rows):
        key = key_fn(row)
        row_id = id_fn(row)
        rank = (-prefer(row) if prefer is not None else 0.0, stable_rank(seed, row_id), row_id, position)
        groups[key].append((rank, row))

    kept: list[R] = []
    rejected: list[SampleError] = []
    report: dict[str, KeyReport] = {}
    for key in sorted(set(groups) | set(targets)):
        ranked = sorted(groups.get(key, []), key=lambda item: item[0])
        if key not in targets:
            for _, row in ranked:
                detail = f"mix key {key!r} has no target in this mix"
                rejected.append(_reject(row, id_fn(row), key, NOT_IN_MIX, detail))
            report[key] = KeyReport(key, 0, len(ranked), 0, len(ranked))
            continue
        target = targets[key]
        kept.extend(row for _, row in ranked[:target])
        for place, (_, row) in enumerate(ranked[target:], start=target + 1):
            detail = f"{key}: target {target}, {len(ranked)} available, ranked {place}"
            rejected.append(_reject(row, id_fn(row), key, OVER_TARGET, detail))
        report[key] = KeyReport(key, target, len(ranked), min(target, len(ranked)), max(0, len(ranked) - target))

    result: Balanced[R] = Balanced(kept, rejected, report)
    for key, short in result.shortfalls.items():
        r = report[key]
        log.warning("balance: %s short of its target by %d (target %d, %d available)", key, short, r.target, r.kept)
    return result
