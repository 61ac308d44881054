"""LongVideo-Reason (NVlabs Long-RL): HF rows as JSONL (`file:line`) or the HF parquet itself (`file#row`).

Fields: `problem_id`, `problem`, `data_type`, `problem_type` (temporal / spatial / goal / plot in test,
"general" in validation), `reasoning` (a CoT paragraph, no `<think>`), `videos` ("longvila_videos/<ytid>.mp4",
also .webm/.mkv; used as is) and `answer` (`"<answer>B</answer>"`).

The options are inlined in `problem`: the question, then one line per option, `"A. text  "` (two trailing
spaces, the block ends with "\\n"). Parsing goes by the letters, never the position: validation (and some
test rows) list them out of order ("B. .. A. .. C. .."), so options are put back in letter order
(`meta["options_reordered"]`). The question is the text before the first option line.

Malformed upstream rows, and the codes they get: no option line (test problem_id 379, 857) and a single
"option" (147: the generator's leaked reasoning in place of four options) -> `missing_options`; an option
with no text ("B. " in 148 and 154) -> `bad_value`; a repeated letter -> `duplicate_option_letter`; letters
with a gap (A, B, D) or text after the options that is not an option line -> `bad_value`; an answer letter
that is not an option -> `unknown_option`; an option that is leaked generator text ("##### Cross-segment
analysis:", "REASONS:", "**Key Reasoning**: ...", sometimes the gold answer) -> `generator_text`
(`video_r1.check_generator_text`; FORMATS.md section 8 has the counts). Reordering is `video_r1.order_options`,
shared with the Video-R1 (and Video-R1-eval) reading. The answer tag is read as in `video_r1` (no tag: the whole text).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq

from mtvr_data import storage
from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    StrPath,
    clean_text,
    file_name,
    file_suffix,
    iter_jsonl,
    location,
    open_binary,
    printable,
    require,
)
from mtvr_data.adapters.registry import register
from mtvr_data.adapters.video_r1 import answer_from_solution, answer_letter, check_generator_text, order_options
from mtvr_data.schema import Sample

#: One inlined option line: "A. text" (the text may be empty: an upstream defect reported as bad_value).
OPTION_LINE = re.compile(r"^\s*([A-Z])\.(?:\s+(.*))?$")
PARQUET_BATCH_ROWS = 256


def parse_problem(problem: str) -> tuple[str, list[str], bool]:
    """(question, option texts in letter order, whether the letters were out of order) of an inlined problem."""
    lines = [line.rstrip() for line in problem.split("\n")]
    first = next((i for i, line in enumerate(lines) if OPTION_LINE.match(line)), None)
    if first is None:
        raise AdapterError("missing_options", 'no option line ("A. ...") in the problem')
    question = "\n".join(lines[:first]).strip()
    if not question:
        raise AdapterError("missing_field", "no question text before the options")
    lettered: list[tuple[str, str]] = []
    for line in lines[first:]:
        match = OPTION_LINE.match(line)
        if match:
            lettered.append((match.group(1), (match.group(2) or "").strip()))
        elif line.strip():
            raise AdapterError("bad_value", f"text after the options that is not an option line: {line[:80]!r}")
    if len(lettered) < 2:
        raise AdapterError("missing_options", f"only {len(lettered)} option line: {lettered[0][1][:80]!r}")
    options, reordered = order_options(lettered)
    return question, options, reordered


def iter_parquet(path: StrPath) -> Iterator[RawRecord]:
    """Rows of a parquet file, read in small batches (never the whole table), as `file#row` records.

    A local file is handed to pyarrow by path; a URL as the seekable reader `storage` opens (pyarrow reads the
    footer, then each row group's byte ranges, so an object is not downloaded whole).
    """
    path, name = location(path), file_name(path)
    try:
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(open_binary(path)) if storage.is_url(path) else path
            batches = pq.ParquetFile(source).iter_batches(batch_size=PARQUET_BATCH_ROWS)
            row = 0
            for batch in batches:
                for value in batch.to_pylist():
                    yield RawRecord(
                        f"{name}#{row}",
                        value=value,
                        raw=printable(json.dumps(value, ensure_ascii=False, default=str)),
                    )
                    row += 1
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid / ArrowIOError derive from these
        yield RawRecord(name, error=AdapterError("bad_value", f"{name} is not readable parquet: {exc}"))


@register
class LongVideoReason(SourceAdapter):
    name = "longvideo_reason"
    description = "LongVideo-Reason (Long-RL) MCQ with inlined, possibly out-of-order options (JSONL or HF parquet)"

    def records(self) -> Iterator[RawRecord]:
        if file_suffix(self.annotations).lower() == ".parquet":
            return iter_parquet(self.annotations)
        return iter_jsonl(self.annotations)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        rec: dict[str, Any] = record.value
        question, options, reordered = parse_problem(clean_text(str(require(rec, "problem"))))
        answer, tagged = answer_from_solution(require(rec, "answer"))
        letter = answer_letter(answer, len(options))
        check_generator_text(options, letter)
        meta: dict[str, Any] = {
            "problem_id": rec.get("problem_id"),
            "problem_type": rec.get("problem_type") or "",
            "reasoning": rec.get("reasoning") or "",
        }
        if reordered:
            meta["options_reordered"] = True
        if not tagged:
            meta["answer_tag"] = False
        return [
            self.make_sample(
                task="mcq",
                video=str(require(rec, "videos")).strip(),
                question=question,
                options=options,
                answer=letter,
                answer_type="letter",
                meta=meta,
            )
        ]
