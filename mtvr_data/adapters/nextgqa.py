"""NExT-GQA (grounded QA): NExT-QA questions with the time windows that answer them.

`{val,test}.csv` has the columns `video_id,frame_count,width,height,question,answer,qid,type,a0..a4`, where
`answer` is the answer TEXT (NExT-QA stores an index): the letter is A + the index of the option it equals.
The windows come from `gsub_{split}.json` beside the CSV (or `gsub=`):
`{video_id: {"duration": int_s, "location": {"<qid>": [[s, e], ...]}, "fps": float}}`, seconds with one
decimal. A question may have several disjoint windows: all of them become `windows`, sorted by start, and the
first is the primary `span`. qid is unique only within a video, hence the (video_id, qid) lookup.

Only val and test have grounding upstream, so there is no gsub for train: the adapter refuses to start
without one (FileNotFoundError) rather than yielding QA rows that claim to be grounded. gsub's `duration`
is whole seconds, rounded (a 21.45 s video is 21): it is not the length of the file, so it is kept in
`meta["gsub_duration"]` and the sample's `duration` is left to the probe stage (frame_count stays in `meta`).
Windows are kept as published: read time applies the shared span rules (`fit_span` without a duration) and
refuses only a window ending more than `SPAN_TOLERANCE_S` past gsub's duration; `normalize.apply_probe` then
fits them to the probed duration (the published windows go to `meta["original_windows"]` whenever a window is
changed). An answer text equal to two options is `ambiguous_answer`.
The question text is kept as published: lower case, no "?". Video paths follow `nextqa` (VidOR map).
"""

from __future__ import annotations

import os
from typing import Any

from mtvr_data import storage
from mtvr_data.adapters.base import (
    SPAN_TOLERANCE_S,
    AdapterError,
    RawRecord,
    file_name,
    file_stem,
    fit_span,
    load_json,
    location,
    require,
    sibling,
    to_float,
)
from mtvr_data.adapters.nextqa import NextQA, answer_index, meta_qid, qid_key, read_int, read_options
from mtvr_data.adapters.registry import register
from mtvr_data.schema import Sample, option_letter


@register
class NextGQA(NextQA):
    name = "nextgqa"
    description = "NExT-GQA grounded QA (CSV with answer text + gsub_{split}.json windows in seconds)"

    def __init__(
        self, annotations: str | os.PathLike[str], *, gsub: str | os.PathLike[str] | None = None, **options: Any
    ) -> None:
        super().__init__(annotations, **options)
        self.gsub_path = location(gsub) if gsub else self._find_gsub()
        if self.gsub_path is None or not storage.exists(self.gsub_path):
            looked = self.gsub_path or " or ".join(self._gsub_candidates())
            raise FileNotFoundError(
                f"{self.name}: no grounding file for {file_name(self.annotations)} (looked for {looked}); NExT-GQA "
                f"publishes gsub_val.json and gsub_test.json only; pass gsub=<path> to name one"
            )
        try:
            data = load_json(self.gsub_path)
        except AdapterError as exc:
            raise ValueError(f"{self.name}: {exc.detail}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.name}: {file_name(self.gsub_path)} is not a JSON object keyed by video_id")
        self.gsub: dict[str, Any] = {str(k).strip(): v for k, v in data.items()}
        self.gsub_name = file_name(self.gsub_path)

    def _gsub_candidates(self) -> list[str]:
        names = dict.fromkeys([f"gsub_{file_stem(self.annotations)}.json", f"gsub_{self.split}.json"])
        return [sibling(self.annotations, n) for n in names]

    def _find_gsub(self) -> str | None:
        return next((p for p in self._gsub_candidates() if storage.exists(p)), None)

    def _windows(self, vid: str, qid: str) -> tuple[list[list[float]], float | None, float | None, list[Any] | None]:
        """(windows sorted by start, gsub duration, fps, the published windows if the span rules changed one)."""
        entry = self.gsub.get(vid)
        if not isinstance(entry, dict):
            raise AdapterError("missing_span", f"video {vid} is not in {self.gsub_name}")
        location = entry.get("location")
        raw = location.get(qid) if isinstance(location, dict) else None
        if not raw:
            raise AdapterError("missing_span", f"no location for qid {qid} of video {vid} in {self.gsub_name}")
        duration = to_float(entry["duration"], "duration") if entry.get("duration") is not None else None
        fps = to_float(entry["fps"], "fps") if entry.get("fps") is not None else None
        if not isinstance(raw, list) or not all(isinstance(w, list) and len(w) == 2 for w in raw):
            raise AdapterError("bad_value", f"location of qid {qid} is not a list of [start, end]: {raw!r}")
        published = [[to_float(s, "start"), to_float(e, "end")] for s, e in raw]
        # No clamp to gsub's rounded duration: the probe stage fits the windows to the real file.
        windows = [fit_span(s, e, None, clamp=self.clamp_spans) for s, e in published]
        for start, end in windows:
            if self.clamp_spans and duration is not None and end > duration + SPAN_TOLERANCE_S:
                raise AdapterError(
                    "span_outside_video",
                    f"span [{start}, {end}] ends past the duration {duration} s of {vid} in {self.gsub_name}",
                )
        return sorted(windows), duration, fps, (raw if windows != published else None)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        row = record.value
        vid = self.video_id(row)
        question = str(require(row, "question"))
        options = read_options(row)
        index = answer_index(str(require(row, "answer")).strip(), options)
        qid = qid_key(row)
        windows, gsub_duration, fps, fitted_from = self._windows(vid, qid)
        meta: dict[str, Any] = {
            "video_id": vid,
            "qid": meta_qid(qid),
            "type": str(row.get("type") or "").strip(),
            "frame_count": read_int(row, "frame_count"),
            "gsub_duration": gsub_duration,
        }
        if fitted_from is not None:
            meta["original_windows"] = fitted_from
        return [
            self.make_sample(
                task="gqa",
                video=self.video_path(vid),
                question=question,
                options=options,
                answer=option_letter(index),
                answer_type="letter",
                span=windows[0],
                windows=windows,
                fps=fps,
                width=read_int(row, "width"),
                height=read_int(row, "height"),
                meta=meta,
                upstream_id=qid,
            )
        ]
