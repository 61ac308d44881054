"""QVHighlights moment retrieval: `highlight_{train,val,test}_release.jsonl` from jayleicn/moment_detr.

Each line is one query: `qid` (int), `query`, `duration` (int seconds), `vid` = "{ytid}_{start}_{end}" (the
150 s clip's offsets in the YouTube video; it is also the clip's file stem), `relevant_windows` ([[s, e], ...],
int seconds on a 2 s grid, up to 25 windows), `relevant_clip_ids` and `saliency_scores` (per 2 s clip).
A query becomes one `tg` sample: `windows` = all its windows in time order, `span` = the first of them.
The test file has no ground truth (`relevant_windows` absent), so its lines are `missing_span` errors.
The per-clip arrays are highlight-detection labels, not grounding targets: only their count goes to `meta`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mtvr_data.adapters.base import AdapterError, RawRecord, SourceAdapter, fit_span, iter_jsonl, require, to_float
from mtvr_data.adapters.registry import register
from mtvr_data.schema import Sample

#: "{ytid}_{start}_{end}"; the YouTube id itself may contain "_" (e.g. "_6hnl_BrFvs_360.0_510.0").
_VID = re.compile(r"^(?P<ytid>.+)_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")


@register
class QVHighlights(SourceAdapter):
    name = "qvhighlights"
    description = "QVHighlights moment retrieval (moment_detr highlight_*_release.jsonl)"

    def records(self) -> Iterator[RawRecord]:
        return iter_jsonl(self.annotations)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        line = record.value
        query = require(line, "query")
        vid = require(line, "vid")
        if not isinstance(query, str) or not isinstance(vid, str):
            raise AdapterError("bad_value", "query and vid must be strings")
        duration = to_float(require(line, "duration"), "duration")
        raw_windows = line.get("relevant_windows")
        if not raw_windows:
            raise AdapterError("missing_span", "no relevant_windows (the test release has no ground truth)")
        if not isinstance(raw_windows, list):
            raise AdapterError("bad_value", f"relevant_windows is not a list: {raw_windows!r}")
        windows, clamped = [], []
        for window in sorted(raw_windows, key=_window_key):
            if not isinstance(window, list) or len(window) != 2:
                raise AdapterError("bad_value", f"window is not a [start, end] pair: {window!r}")
            start, end = to_float(window[0], "window start"), to_float(window[1], "window end")
            fitted = fit_span(start, end, duration)
            if fitted[1] != end:
                clamped.append([start, end])
            windows.append(fitted)
        meta: dict[str, Any] = {"qid": line.get("qid"), "vid": vid}
        if m := _VID.match(vid):
            meta.update(ytid=m["ytid"], clip_start=float(m["start"]), clip_end=float(m["end"]))
        if isinstance(line.get("relevant_clip_ids"), list):
            meta["num_relevant_clips"] = len(line["relevant_clip_ids"])
        if clamped:
            meta["original_windows_clamped"] = clamped
        return [
            self.make_sample(
                task="tg",
                answer_type="span",
                video=f"{vid}{self.video_ext}",
                question=query,
                span=windows[0],
                windows=windows,
                duration=duration,
                meta=meta,
            )
        ]


def _window_key(window: Any) -> tuple[float, float]:
    """Time order of a window; malformed ones sort first and are rejected by the loop."""
    try:
        return float(window[0]), float(window[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return float("-inf"), float("-inf")
