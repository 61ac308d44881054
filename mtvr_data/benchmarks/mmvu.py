"""MMVU (native): `validation.json`, a JSON array of 1,000 questions (the test split's answers are hidden).

Fields: `id` ("validation_N"), `video` (an HF URL `.../resolve/main/videos/<Subject>/<n>.mp4`), `youtube_url`,
`question_type` ("multiple-choice" | "open-ended"), `metadata` {subject, textbook, knowledge, rationale},
`question`, `choices` (a dict "A".."E", ALWAYS present: empty strings for open-ended), `answer` (a letter for
multiple choice, free text for open-ended).

- The video path is the part of the URL after `/resolve/main/` (`videos/Chemistry/0.mp4`), the layout of the
  HF repository and of the Video-R1-eval copy; a value that is not such a URL is kept as given.
- Multiple choice: choices in letter order; trailing empty choices are dropped, an empty one before a
  non-empty one is `bad_value`. Open-ended: `open` / `text` (scored by ROUGE like Video-R1 free-form).
- Category: `metadata.subject` (27 subjects), MMVU's own breakdown; `question_type` stays in `meta`.
- Id: the sample id includes MMVU's `id` (`sample_id(..., upstream_id=id)`): distinct questions can agree on
  everything else (`validation_941` and `validation_943` did), and each must keep its own row.
- Contamination: the file stem (`0`) is an index within a subject folder, not an id, so only the YouTube id
  of `youtube_url` names the video in the list.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mtvr_data.adapters.base import AdapterError, RawRecord, require
from mtvr_data.adapters.video_r1 import answer_letter
from mtvr_data.benchmarks.base import BenchmarkAdapter, JsonRows, youtube_id
from mtvr_data.schema import Sample

HF_MARKER = "/resolve/main/"
QUESTION_TYPES = ("multiple-choice", "open-ended")


def video_path(url: str) -> str:
    """`videos/<Subject>/<n>.mp4` of an HF resolve URL; anything else unchanged."""
    url = url.strip()
    return url.split(HF_MARKER, 1)[1] if HF_MARKER in url else url


def letter_choices(choices: Any) -> list[str]:
    """Choice texts in letter order without trailing empties; a gap is `bad_value`."""
    if not isinstance(choices, dict) or not choices:
        raise AdapterError("missing_options", f"choices must be a non-empty mapping A..E, got {choices!r}")
    texts = [str(choices[letter]).strip() for letter in sorted(choices)]
    while texts and not texts[-1]:
        texts.pop()
    if not texts:
        raise AdapterError("missing_options", "a multiple-choice question whose choices are all empty")
    if "" in texts:
        raise AdapterError("bad_value", f"choice {sorted(choices)[texts.index('')]} is empty but later ones are not")
    return texts


class MMVURows(JsonRows):
    """Reads MMVU's native `validation.json`; `MMVU` (below) is the benchmark adapter built on it."""

    name = "mmvu-rows"

    def to_samples(self, record: RawRecord) -> list[Sample]:
        row = record.value
        question_type = str(require(row, "question_type")).strip()
        if question_type not in QUESTION_TYPES:
            raise AdapterError("bad_value", f"question_type {question_type!r} is not one of {QUESTION_TYPES}")
        answer = str(require(row, "answer")).strip()
        metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        meta: dict[str, Any] = {
            "mmvu_id": row.get("id"),
            "question_type": question_type,
            "subject": str(metadata.get("subject") or ""),
        }
        ytid = youtube_id(row.get("youtube_url"))
        if ytid:
            meta["youtube_id"] = ytid
        if question_type == "multiple-choice":
            options = letter_choices(row.get("choices"))
            task, answer_type, answer = "mcq", "letter", answer_letter(answer, len(options))
        else:
            options, task, answer_type = [], "open", "text"
        mmvu_id = str(row.get("id") or "").strip()
        return [
            self.make_sample(
                task=task,
                video=video_path(str(require(row, "video"))),
                question=str(require(row, "question")),
                options=options,
                answer=answer,
                answer_type=answer_type,
                meta=meta,
                upstream_id=mmvu_id or None,
            )
        ]


class MMVU(BenchmarkAdapter, MMVURows):
    name = "mmvu"
    description = "MMVU validation.json (1,000: 625 multiple-choice, 375 open-ended)"
    category_key: ClassVar[str | None] = "subject"

    def contamination_videos(self, sample: Sample) -> list[str]:
        ytid = sample.meta_dict.get("youtube_id")
        return [ytid] if ytid else []
