"""Video-MME (native rows): one question per row, or the official template's questions grouped per video.

Rows (HF `lmms-lab/Video-MME` parquet, or a JSON array of its rows; the EasyVideoR1 copy keeps them too):
`video_id` ("001"), `duration` ("short" | "medium" | "long": a length CATEGORY, not seconds), `domain`,
`sub_category`, `url`, `videoID` (the YouTube id, also the video's file stem), `question_id` ("001-1"),
`task_type`, `question`, `options` (4 strings already prefixed "A. "), `answer` (a letter). The official
`output_test_template.json` nests the question fields under each video's `questions` list; those items are
read one by one (`file#video[j]`). That template is invalid JSON as shipped (trailing commas), which is
reported as one `bad_json` error rather than repaired: a guessed repair could silently drop a question.

Category: `duration`, the split Video-MME's own tables report (short / medium / long); `task_type`,
`domain` and `sub_category` are kept in `meta` for other groupings. The video is `<videoID><video_ext>`; the
template has no `videoID`, so its rows are `missing_field` (its `video_id` "001" names no file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    file_suffix,
    iter_json_items,
    printable,
    require,
)
from mtvr_data.adapters.longvideo_reason import iter_parquet
from mtvr_data.adapters.video_r1 import answer_letter, strip_prefixes
from mtvr_data.benchmarks.base import BenchmarkAdapter
from mtvr_data.schema import Sample

VIDEO_FIELDS = ("video_id", "duration", "domain", "sub_category", "url", "videoID")
DURATIONS = frozenset({"short", "medium", "long"})


class VideoMMERows(SourceAdapter):
    """Reads Video-MME's native rows; `VideoMME` (below) is the benchmark adapter built on it."""

    name = "video-mme-rows"

    def records(self) -> Iterator[RawRecord]:
        if file_suffix(self.annotations).lower() == ".parquet":
            yield from iter_parquet(self.annotations)
            return
        for rec in iter_json_items(self.annotations):
            if rec.error is not None:
                yield rec
                continue
            _, row = rec.value
            if isinstance(row, dict) and isinstance(row.get("questions"), list):
                video = {k: row[k] for k in VIDEO_FIELDS if k in row}
                for j, item in enumerate(row["questions"]):
                    value = {**video, **item} if isinstance(item, dict) else item
                    raw = printable(json.dumps(value, ensure_ascii=False))
                    yield RawRecord(f"{rec.location}[{j}]", value=value, raw=raw)
            else:
                yield RawRecord(rec.location, value=row, raw=rec.raw)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        row: Any = record.value
        if not isinstance(row, dict):
            raise AdapterError("bad_value", f"record is a {type(row).__name__}, not an object")
        duration = str(require(row, "duration")).strip()
        if duration not in DURATIONS:
            raise AdapterError("bad_value", f"duration {duration!r} is not one of short / medium / long")
        options = row.get("options")
        if not isinstance(options, list) or not options:
            raise AdapterError("missing_options", f"options must be a non-empty list, got {options!r}")
        texts = strip_prefixes(options)
        letter = answer_letter(str(require(row, "answer")), len(texts))
        youtube = str(require(row, "videoID")).strip()
        meta = {k: row[k] for k in ("video_id", "question_id", "task_type", "domain", "sub_category") if k in row}
        meta.update(duration=duration, youtube_id=youtube)
        return [
            self.make_sample(
                task="mcq",
                video=f"{youtube}{self.video_ext}",
                question=str(require(row, "question")),
                options=texts,
                answer=letter,
                answer_type="letter",
                meta=meta,
            )
        ]


class VideoMME(BenchmarkAdapter, VideoMMERows):
    name = "video-mme"
    description = "Video-MME: HF parquet rows, a JSON array of them, or the official per-video template"
    category_key: ClassVar[str | None] = "duration"
