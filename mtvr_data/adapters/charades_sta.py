"""Charades-STA (temporal grounding): `charades_sta_{split}.txt` lines `"<VID> <start> <end>##<sentence>"`.

The file has no durations; they come from the Charades v1 metadata CSV (`Charades_v1_{split}.csv`,
column `length`), found beside the annotation file or given as `durations=` (either may be a path or a URL).
Ends overshoot the length by up to 1.54 s upstream and are clamped (the original end is kept in `meta`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from mtvr_data import storage
from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    fit_span,
    iter_csv,
    iter_lines,
    location,
    sibling,
    span_meta,
    to_float,
)
from mtvr_data.adapters.registry import register
from mtvr_data.schema import Sample


@register
class CharadesSTA(SourceAdapter):
    name = "charades_sta"
    description = "Charades-STA temporal grounding (TALL/2D-TAN txt + Charades v1 CSV lengths)"

    def __init__(
        self, annotations: str | os.PathLike[str], *, durations: str | os.PathLike[str] | None = None, **options
    ) -> None:
        super().__init__(annotations, **options)
        self.durations_path = location(durations) if durations else self._find_durations()
        self.durations: dict[str, float] = self._load_durations() if self.durations_path else {}

    def _find_durations(self) -> str | None:
        for name in (f"Charades_v1_{self.split}.csv", "Charades_v1.csv"):
            candidate = sibling(self.annotations, name)
            if storage.exists(candidate):
                return candidate
        return None

    def _load_durations(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for rec in iter_csv(self.durations_path):
            if rec.error is None and rec.value.get("id") and rec.value.get("length"):
                try:
                    out[rec.value["id"].strip()] = to_float(rec.value["length"], "length")
                except AdapterError:
                    continue
        return out

    def records(self) -> Iterator[RawRecord]:
        return iter_lines(self.annotations)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        head, sep, sentence = record.value.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3:
            raise AdapterError("bad_line", 'expected "<VID> <start> <end>##<sentence>"')
        if not sentence.strip():
            raise AdapterError("missing_field", "empty sentence after ##")
        vid = parts[0]
        start, end = to_float(parts[1], "start"), to_float(parts[2], "end")
        duration = self.durations.get(vid)
        span = fit_span(start, end, duration, clamp=self.clamp_spans)
        meta = {"vid": vid, **span_meta(start, end, span)}
        return [
            self.make_sample(
                task="tg",
                answer_type="span",
                video=f"{vid}{self.video_ext}",
                question=sentence,
                span=span,
                duration=duration,
                meta=meta,
            )
        ]
