"""ReXTime grounded QA (reasoning across time on ActivityNet and QVHighlights videos).

Two files carry ReXTime annotations, and only one of them can make a multiple-choice question:

- HF `ReXTime/ReXTime` `rextime_{train,val,test_release}.json` (a JSON array, or JSON lines): `qid, vid,
  duration, question, options` (4 texts, no letter), `answer` ("From <s0> to <e0>, <option>."), `ans` (the
  letter), `span` ([s, e] seconds), `category`, `source`. Each record becomes a `gqa` sample: the options,
  the letter as answer, the span; the answer sentence, category and source go to `meta`. UNVERIFIED: no raw
  HF record was seen; the field names come from third-party loaders (VideoMind / MUPA `rextime.py`).
- The official GitHub GT `data/rextime_val.jsonl` (`qid, query, duration, vid, relevant_windows, ans`) has
  no option texts, so each of its lines is a `missing_options` error pointing at the HF file.

Videos: ActivityNet ids (`v_<11-char ytid>`) and QVHighlights clips (`<ytid>_<start>_<end>`) both name their
file stem; `anet_dir` / `qvh_dir` prefix them when the two video roots differ. Windows are integer seconds
and may overshoot the duration a little (`[[0, 130]]` for 129.96 s): clamped, original end kept in `meta`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    fit_span,
    iter_json_items,
    iter_jsonl,
    read_head,
    require,
    to_float,
)
from mtvr_data.adapters.registry import register
from mtvr_data.schema import OPTION_LETTERS, Sample

HF_HINT = "the GitHub GT jsonl has no option texts; use the HF ReXTime/ReXTime rextime_{split}.json instead"


@register
class ReXTime(SourceAdapter):
    name = "rextime"
    description = "ReXTime grounded multiple-choice QA (HF rextime_{split}.json; GitHub GT jsonl is rejected)"

    def __init__(
        self, annotations: str | os.PathLike[str], *, anet_dir: str = "", qvh_dir: str = "", **options
    ) -> None:
        super().__init__(annotations, **options)
        self.anet_dir = anet_dir.strip("/")
        self.qvh_dir = qvh_dir.strip("/")

    def records(self) -> Iterator[RawRecord]:
        """A JSON array (`file#index`) or JSON lines (`file:line`), told apart by the first byte."""
        if read_head(self.annotations).startswith(b"["):
            return iter_json_items(self.annotations)
        return iter_jsonl(self.annotations)

    def video_path(self, vid: str) -> tuple[str, str]:
        """(relative path, dataset the video comes from) of a ReXTime `vid`."""
        if len(vid) == 13 and vid.startswith("v_"):
            folder, dataset = self.anet_dir, "activitynet"
        else:
            folder, dataset = self.qvh_dir, "qvhighlights"
        name = f"{vid}{self.video_ext}"
        return (f"{folder}/{name}" if folder else name), dataset

    def to_samples(self, record: RawRecord) -> list[Sample]:
        rec = record.value
        if isinstance(rec, tuple):  # (index, item) from a JSON array
            rec = rec[1]
        if not isinstance(rec, dict):
            raise AdapterError("bad_value", f"record is a {type(rec).__name__}, not an object")
        if "options" not in rec and "relevant_windows" in rec:
            raise AdapterError("missing_options", HF_HINT)
        options = rec.get("options")
        if not isinstance(options, list) or not options or not all(isinstance(o, str) and o.strip() for o in options):
            raise AdapterError("missing_options", f"options must be a non-empty list of texts, got {options!r}")
        question = require(rec, "question")
        vid = require(rec, "vid")
        letter = str(require(rec, "ans")).strip().upper()
        if len(letter) != 1 or letter not in OPTION_LETTERS[: len(options)]:
            raise AdapterError("unknown_option", f"ans {rec['ans']!r} is not one of {len(options)} options")
        duration = to_float(rec["duration"], "duration") if rec.get("duration") is not None else None
        span_raw = rec.get("span")
        if span_raw is None:
            raise AdapterError("missing_span", "record has no span")
        if not isinstance(span_raw, list) or len(span_raw) != 2:
            raise AdapterError("bad_value", f"span is not a [start, end] pair: {span_raw!r}")
        start, end = to_float(span_raw[0], "span start"), to_float(span_raw[1], "span end")
        span = fit_span(start, end, duration, clamp=self.clamp_spans)
        video, dataset = self.video_path(vid)
        meta: dict[str, Any] = {"qid": rec.get("qid"), "vid": vid, "video_dataset": dataset}
        for key in ("answer", "category", "source"):
            if rec.get(key) is not None:
                meta[key if key != "answer" else "answer_text"] = rec[key]
        if span[1] != end:
            meta["original_end"] = end
        return [
            self.make_sample(
                task="gqa",
                video=video,
                question=question,
                options=[o.strip() for o in options],
                answer=letter,
                answer_type="letter",
                span=span,
                duration=duration,
                meta=meta,
            )
        ]
