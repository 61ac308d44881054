"""LongVideoBench (native): `lvb_val.json`, a JSON array of multiple-choice questions about long videos.

Fields read: `video_id`, `video_path` ("<vid>.mp4"), `question`, `candidates` (3-5 texts, no letters),
`correct_choice` (0-based int), `duration` (seconds), `duration_group` (the length bucket: 15 / 60 / 600 /
3600), `question_category` (TOS, T2A, S2E, ...), `level`, `topic_category`, `id`, `position`,
`subtitle_path`, `starting_timestamp_for_subtitles`. The test file (`lvb_test_wo_gt.json`) has no
`correct_choice`: its rows are `missing_field`, there being no answer to score.

Category: `duration_group`, the split LongVideoBench's leaderboard reports; `question_category` and `level`
stay in `meta`. Many questions refer to subtitles ("which subtitles appear at the same time as ..."): the
subtitle file is named in `meta["subtitle_path"]` for an evaluation that interleaves them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mtvr_data.adapters.base import AdapterError, RawRecord, require, to_float
from mtvr_data.benchmarks.base import BenchmarkAdapter, JsonRows
from mtvr_data.schema import Sample, option_letter

META_FIELDS = (
    "id",
    "video_id",
    "question_category",
    "level",
    "topic_category",
    "position",
    "subtitle_path",
    "starting_timestamp_for_subtitles",
    "question_wo_referring_query",
)


class LongVideoBenchRows(JsonRows):
    """Reads LongVideoBench's native json; `LongVideoBench` (below) is the benchmark adapter built on it."""

    name = "longvideobench-rows"

    def to_samples(self, record: RawRecord) -> list[Sample]:
        row = record.value
        candidates = row.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise AdapterError("missing_options", f"candidates must be a non-empty list, got {candidates!r}")
        options = [str(c).strip() for c in candidates]
        if "" in options:
            raise AdapterError("bad_value", f"candidate {options.index('')} has no text")
        choice = require(row, "correct_choice")
        if isinstance(choice, bool) or not isinstance(choice, int):
            raise AdapterError("bad_value", f"correct_choice is not an integer index: {choice!r}")
        if not 0 <= choice < len(options):
            raise AdapterError("unknown_option", f"correct_choice {choice} outside the {len(options)} candidates")
        video = str(row.get("video_path") or f"{require(row, 'video_id')}{self.video_ext}").strip()
        duration = to_float(row["duration"], "duration") if row.get("duration") is not None else None
        meta: dict[str, Any] = {k: row[k] for k in META_FIELDS if k in row}
        meta["duration_group"] = "" if row.get("duration_group") is None else str(row["duration_group"])
        return [
            self.make_sample(
                task="mcq",
                video=video,
                question=str(require(row, "question")),
                options=options,
                answer=option_letter(choice),
                answer_type="letter",
                duration=duration,
                meta=meta,
            )
        ]


class LongVideoBench(BenchmarkAdapter, LongVideoBenchRows):
    name = "longvideobench"
    description = "LongVideoBench lvb_val.json (1,337 MCQ; the test file has no answers)"
    category_key: ClassVar[str | None] = "duration_group"
