"""Video-MMMU (native): `{perception,comprehension,adaptation}_video.json`, 300 questions per track.

Layout: `{"<Track>": {"<n>": {"id": "<split>_<Subject>_<k>" (the video stem), "link_selected": YouTube URL,
"question", "options": [texts, usually 10; [] for open questions], "answer": letter (or a value for open),
"question_type"?}}}`. Only Adaptation has `question_type` ("multiple-choice" | "open" | null). Options carry no
letter prefix: A-J index them from 0. Each question is located `file#<Track>/<n>`.

- A question with options is multiple choice (also when `question_type` is null, as Adaptation "49" is).
  "open", or no options, is an open question: `number` when the answer parses as one (Video-R1-eval maps open
  to "numerical"), else `text`.
- Adaptation questions embed `<image 1>`, an image given beside the video that this file does not carry. The
  text is kept as published and `meta["needs_image"]` marks the row, so an evaluation can report or skip them.

Category: the track (Perception / Comprehension / Adaptation), the split Video-MMMU reports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    file_name,
    iter_json_items,
    printable,
    require,
)
from mtvr_data.adapters.video_r1 import answer_letter, is_number
from mtvr_data.benchmarks.base import BenchmarkAdapter, youtube_id
from mtvr_data.schema import Sample

TRACKS = ("Perception", "Comprehension", "Adaptation")
_IMAGE_REF = re.compile(r"<image \d+>")


class VideoMMMUTracks(SourceAdapter):
    """Reads Video-MMMU's native track files; `VideoMMMU` (below) is the benchmark adapter built on it."""

    name = "video-mmmu-tracks"

    def records(self) -> Iterator[RawRecord]:
        name = file_name(self.annotations)
        for rec in iter_json_items(self.annotations):
            if rec.error is not None:
                yield rec
                continue
            track, items = rec.value
            if track not in TRACKS or not isinstance(items, dict):
                error = AdapterError("bad_value", f"top-level key {track!r} is not a track ({', '.join(TRACKS)})")
                yield RawRecord(rec.location, raw=rec.raw, error=error)
                continue
            for key, item in items.items():
                raw = printable(json.dumps({key: item}, ensure_ascii=False))
                yield RawRecord(f"{name}#{track}/{key}", value=(track, key, item), raw=raw)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        track, key, item = record.value
        if not isinstance(item, dict):
            raise AdapterError("bad_value", f"question {key} is a {type(item).__name__}, not an object")
        question = str(require(item, "question"))
        answer = str(require(item, "answer")).strip()
        options = item.get("options") or []
        if not isinstance(options, list):
            raise AdapterError("bad_value", f"options is not a list: {options!r}")
        question_type = item.get("question_type")
        meta: dict[str, Any] = {"track": track, "key": key, "question_type": question_type}
        ytid = youtube_id(item.get("link_selected"))
        if ytid:
            meta["youtube_id"] = ytid
        if _IMAGE_REF.search(question):
            meta["needs_image"] = True
        if question_type == "open" or not options:
            task, answer_type, texts = "open", ("number" if is_number(answer) else "text"), []
        else:
            texts = [str(o).strip() for o in options]
            if not all(texts):
                raise AdapterError("bad_value", f"option {texts.index('')} of question {key} has no text")
            task, answer_type = "mcq", "letter"
            answer = answer_letter(answer, len(texts))
        return [
            self.make_sample(
                task=task,
                video=f"{str(require(item, 'id')).strip()}{self.video_ext}",
                question=question,
                options=texts,
                answer=answer,
                answer_type=answer_type,
                meta=meta,
            )
        ]


class VideoMMMU(BenchmarkAdapter, VideoMMMUTracks):
    name = "video-mmmu"
    description = "Video-MMMU: {perception,comprehension,adaptation}_video.json (3 tracks x 300)"
    category_key: ClassVar[str | None] = "track"

    def contamination_videos(self, sample: Sample) -> list[str]:
        ytid = sample.meta_dict.get("youtube_id")
        return [sample.video] + ([ytid] if ytid else [])
