"""VidChapters-7M chapters as moment retrieval: each chapter title is a query, its chapter the span.

Three layouts are read (told apart by the file's first line):

(a) Chapter-Llama's re-packaged chapters json (the one real record seen, `chapters_sml1k_train.json`):
    `{vid: {"duration": s, "title", "description", "channel_id", "view_count", "chapters": {"<int s>": label}}}`.
(b) The official `chapters.pkl`/json layout: the same, with `"chapters": [{"label": str, "time": s}, ...]`.
    For (a) and (b) chapter i spans [time_i, time_{i+1}] (the last ends at `duration`); times must increase
    strictly in file order, else the whole video is `bad_value`. Like the official `chapters_to_vmr.py`,
    a chapter covering >= 90% of the video is dropped, as an error record `chapter_covers_video`.
    The first chapter need not start at 0 (the real record starts at 180 s); the gap is no chapter.
(c) `chapters_vmr_{split}.json` (JSON lines written by `chapters_to_vmr.py`). UNVERIFIED: no raw line was
    seen; the layout is read from the script. val/test lines hold one chapter (`vid` = str(k) + youtube id,
    `query` a string, `relevant_windows` [[s, e]]); train lines hold a whole video (`query` a list,
    `relevant_windows` a list of [[s, e]]). `duration` is int(duration), so last-chapter ends overshoot it by
    < 1 s and are clamped. The 90% rule was already applied by the script and is not re-applied.

Locations are `file#vid[i]` for (a)/(b) and `file:line` (`file:line[i]` for train lines) for (c).
The video file is `<youtube id><video_ext>`; the video title is kept in `meta` for (a)/(b).
"""

from __future__ import annotations

import json
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
    open_binary,
    printable,
    require,
    to_float,
)
from mtvr_data.adapters.registry import register
from mtvr_data.schema import Sample

#: The official script drops a chapter whose window is at least this share of the video.
COVERS_VIDEO = 0.9
YOUTUBE_ID_LEN = 11


@register
class VidChapters(SourceAdapter):
    name = "vidchapters"
    description = "VidChapters-7M chapter grounding (chapters json, official chapter lists, chapters_vmr jsonl)"

    def __init__(self, annotations: str | os.PathLike[str], *, covers_video: float = COVERS_VIDEO, **options) -> None:
        super().__init__(annotations, **options)
        self.covers_video = covers_video

    # --- walking the files --------------------------------------------------------------------------------------

    def is_vmr(self, probe_lines: int = 20) -> bool:
        """True for `chapters_vmr` JSON lines: a line alone is an object with `relevant_windows`.

        The first lines that parse decide (a bad first line must not turn a JSONL file into one `bad_json`);
        a pretty-printed chapters json has no line that parses to an object.
        """
        with open_binary(self.annotations) as fh:
            for _, data in zip(range(probe_lines), fh, strict=False):
                try:
                    line = json.loads(data)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(line, dict):
                    return "relevant_windows" in line
        return False

    def records(self) -> Iterator[RawRecord]:
        if self.is_vmr():
            yield from self._vmr_records()
            return
        for rec in iter_json_items(self.annotations):
            if rec.error is not None:
                yield rec
                continue
            try:
                yield from self._chapters(rec.location, *rec.value)
            except AdapterError as exc:
                yield RawRecord(rec.location, raw=rec.raw, error=exc)

    def _chapters(self, location: str, vid: str, entry: Any) -> list[RawRecord]:
        """One record per chapter of a video, with its window; the video is checked as a whole first."""
        if not isinstance(entry, dict):
            raise AdapterError("bad_value", f"video entry is a {type(entry).__name__}, not an object")
        duration = to_float(require(entry, "duration"), "duration")
        chapters = require(entry, "chapters")
        if isinstance(chapters, dict):  # (a) {"<seconds>": label}
            pairs = [(to_float(t, "chapter time"), label) for t, label in chapters.items()]
        elif isinstance(chapters, list):  # (b) [{"label", "time"}]
            pairs = []
            for i, chapter in enumerate(chapters):
                if not isinstance(chapter, dict):
                    raise AdapterError("bad_value", f"chapter {i} is not an object")
                pairs.append((to_float(require(chapter, "time"), f"chapter {i} time"), chapter.get("label")))
        else:
            raise AdapterError("bad_value", f"chapters is a {type(chapters).__name__}, not an object or list")
        if not pairs:  # else the video would vanish without a record
            raise AdapterError("missing_field", "video has no chapters")
        times = [t for t, _ in pairs]
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise AdapterError("bad_value", f"chapter times do not increase strictly: {times}")
        out = []
        for i, (start, label) in enumerate(pairs):
            end = times[i + 1] if i + 1 < len(times) else duration
            value = {
                "vid": vid,
                "index": i,
                "count": len(pairs),
                "label": label,
                "start": start,
                "end": end,
                "duration": duration,
                "title": entry.get("title"),
            }
            raw = printable(json.dumps({"vid": vid, "time": start, "label": label}, ensure_ascii=False))
            out.append(RawRecord(f"{location}[{i}]", value=value, raw=raw))
        return out

    def _vmr_records(self) -> Iterator[RawRecord]:
        for rec in iter_jsonl(self.annotations):
            if rec.error is not None:
                yield rec
                continue
            line = rec.value
            try:
                query, windows = require(line, "query"), require(line, "relevant_windows")
                if not isinstance(query, list):  # val/test: one chapter per line
                    yield RawRecord(rec.location, value=self._vmr_value(line, query, windows, None), raw=rec.raw)
                    continue
                if not query:
                    raise AdapterError("missing_field", "query is an empty list")
                if not isinstance(windows, list) or len(windows) != len(query):
                    have = len(windows) if isinstance(windows, list) else type(windows).__name__
                    raise AdapterError("length_mismatch", f"{len(query)} queries but {have} window lists")
            except AdapterError as exc:
                yield RawRecord(rec.location, raw=rec.raw, error=exc)
                continue
            for i, (q, w) in enumerate(zip(query, windows, strict=True)):
                raw = printable(json.dumps({"vid": line.get("vid"), "query": q, "windows": w}, ensure_ascii=False))
                yield RawRecord(f"{rec.location}[{i}]", value=self._vmr_value(line, q, w, i), raw=raw)

    @staticmethod
    def _vmr_value(line: dict[str, Any], query: Any, windows: Any, index: int | None) -> dict[str, Any]:
        return {
            "vmr": True,
            "qid": line.get("qid"),
            "vid": line.get("vid"),
            "duration": line.get("duration"),
            "label": query,
            "windows": windows,
            "index": index,
        }

    # --- one chapter -> one sample ---------------------------------------------------------------------------

    def to_samples(self, record: RawRecord) -> list[Sample]:
        value = record.value
        label = value["label"]
        if label is not None and not isinstance(label, str):
            raise AdapterError("bad_value", f"chapter label is not text: {label!r}")
        if not label or not label.strip():
            raise AdapterError("missing_field", f"chapter has no label: {label!r}")
        if value.get("vmr"):
            return [self._vmr_sample(value, label)]
        start, end, duration = value["start"], value["end"], value["duration"]
        if start >= duration:  # the last chapter would end before it starts: say where the fault is
            raise AdapterError("span_outside_video", f"chapter starts at {start} s, not before the end ({duration} s)")
        if end - start >= self.covers_video * duration:
            raise AdapterError(
                "chapter_covers_video",
                f"chapter [{start}, {end}] covers >= {self.covers_video:.0%} of the {duration} s video "
                "(dropped, as chapters_to_vmr.py does)",
            )
        span = fit_span(start, end, duration, clamp=self.clamp_spans)
        meta = {
            "vid": value["vid"],
            "chapter_index": value["index"],
            "num_chapters": value["count"],
            "title": value["title"],
        }
        return [
            self.make_sample(
                task="tg",
                answer_type="span",
                video=f"{value['vid']}{self.video_ext}",
                question=label,
                span=span,
                duration=duration,
                meta=meta,
            )
        ]

    def _vmr_sample(self, value: dict[str, Any], label: str) -> Sample:
        vid = value["vid"]
        if not isinstance(vid, str) or not vid.strip():
            raise AdapterError("missing_field", f"missing field 'vid' (got {vid!r})")
        ytid, prefix = vid[-YOUTUBE_ID_LEN:], vid[:-YOUTUBE_ID_LEN]
        if len(vid) < YOUTUBE_ID_LEN or (prefix and not prefix.isdigit()):
            raise AdapterError("bad_value", f"vid {vid!r} is neither a YouTube id nor str(k) + YouTube id")
        if value["duration"] is None:
            raise AdapterError("missing_field", "missing field 'duration'")
        duration = to_float(value["duration"], "duration")
        windows = value["windows"]
        if not isinstance(windows, list):
            raise AdapterError("bad_value", f"relevant_windows is not a list: {windows!r}")
        if not windows:
            raise AdapterError("missing_span", "relevant_windows is empty")
        spans, clamped = [], []
        for window in windows:
            if not isinstance(window, list) or len(window) != 2:
                raise AdapterError("bad_value", f"window is not a [start, end] pair: {window!r}")
            start, end = to_float(window[0], "window start"), to_float(window[1], "window end")
            spans.append(fit_span(start, end, duration, clamp=self.clamp_spans))
            if spans[-1][1] != end:
                clamped.append([start, end])
        meta: dict[str, Any] = {"qid": value["qid"], "vid": vid}
        if prefix:  # val/test: str(k) + youtube id, k = chapter index within the video
            meta["chapter_index"] = int(prefix)
        elif value["index"] is not None:
            meta["chapter_index"] = value["index"]
        if clamped:
            meta["original_windows_clamped"] = clamped
        return self.make_sample(
            task="tg",
            answer_type="span",
            video=f"{ytid}{self.video_ext}",
            question=label,
            span=spans[0],
            windows=spans,
            duration=duration,
            meta=meta,
        )
