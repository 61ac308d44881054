"""ActivityNet Captions as moment retrieval: `{"v_<ytid>": {"duration", "timestamps", "sentences"}}`.

The official `captions.zip` ships `train.json`, `val_1.json` and `val_2.json`; 2D-TAN's copies are
`train.json`, `val.json` (= val_1) and `test.json` (= val_2), and ActivityNet-MR papers call val_2 "test".
`timestamps[i]` (seconds, int or float) pairs with `sentences[i]`; every sentence becomes one `tg` sample,
located `file#v_id[i]` so one bad span costs only its own sentence. Quirks (FORMATS.md section 2): sentences
after the first carry a leading space (stripped); 2 train spans have start > end (`end_not_after_start`);
ends overshoot the duration in 29 train / 5 val_1 / 1 val_2 spans (clamped, original end kept in `meta`).
A video whose two lists differ in length is rejected whole (`length_mismatch`): the pairing is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    fit_span,
    iter_json_items,
    printable,
    require,
    span_meta,
    to_float,
)
from mtvr_data.adapters.registry import register
from mtvr_data.schema import Sample


@register
class ActivityNetCaptions(SourceAdapter):
    name = "activitynet_captions"
    description = "ActivityNet Captions moment retrieval (train / val_1 / val_2 json; 2D-TAN train/val/test)"

    def records(self) -> Iterator[RawRecord]:
        for rec in iter_json_items(self.annotations):
            if rec.error is not None:
                yield rec
                continue
            vid, entry = rec.value
            try:
                yield from self._sentences(rec.location, vid, entry)
            except AdapterError as exc:
                yield RawRecord(rec.location, raw=rec.raw, error=exc)

    def _sentences(self, location: str, vid: str, entry: Any) -> list[RawRecord]:
        """One record per (timestamp, sentence) pair; the whole video is checked before any is yielded."""
        if not isinstance(entry, dict):
            raise AdapterError("bad_value", f"video entry is a {type(entry).__name__}, not an object")
        duration = to_float(require(entry, "duration"), "duration")
        timestamps, sentences = require(entry, "timestamps"), require(entry, "sentences")
        if not isinstance(timestamps, list) or not isinstance(sentences, list):
            raise AdapterError("bad_value", "timestamps and sentences must be lists")
        if len(timestamps) != len(sentences):
            raise AdapterError("length_mismatch", f"{len(timestamps)} timestamps but {len(sentences)} sentences")
        if not sentences:  # else the video would vanish without a record
            raise AdapterError("missing_field", "video has no sentences")
        out = []
        for i, (stamp, sentence) in enumerate(zip(timestamps, sentences, strict=True)):
            value = {"vid": vid, "index": i, "duration": duration, "timestamp": stamp, "sentence": sentence}
            raw = printable(json.dumps({"vid": vid, "timestamp": stamp, "sentence": sentence}, ensure_ascii=False))
            out.append(RawRecord(f"{location}[{i}]", value=value, raw=raw))
        return out

    def to_samples(self, record: RawRecord) -> list[Sample]:
        value = record.value
        stamp, sentence = value["timestamp"], value["sentence"]
        if not isinstance(sentence, str) or not sentence.strip():
            raise AdapterError("missing_field", f"sentence {value['index']} is empty")
        if not isinstance(stamp, list) or len(stamp) != 2:
            raise AdapterError("bad_value", f"timestamp is not a [start, end] pair: {stamp!r}")
        start, end = to_float(stamp[0], "start"), to_float(stamp[1], "end")
        duration = value["duration"]
        span = fit_span(start, end, duration, clamp=self.clamp_spans)
        # span_meta ignores float noise: 2D-TAN's durations (70.28999999999999) would mark a clamp of 1e-14 s.
        meta: dict[str, Any] = {"vid": value["vid"], "sentence_index": value["index"], **span_meta(start, end, span)}
        return [
            self.make_sample(
                task="tg",
                answer_type="span",
                video=f"{value['vid']}{self.video_ext}",
                question=sentence.strip(),
                span=span,
                duration=duration,
                meta=meta,
            )
        ]
