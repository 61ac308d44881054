"""NExT-QA (multiple choice): `{train,val,test}.csv`.

Columns `video,frame_count,width,height,question,answer,qid,type,a0..a4`; `answer` is a 0-based int index
into a0..a4. NExT-GQA, which reuses these videos, stores the answer TEXT instead, and so does the NExT-QA
re-export in the NExT-GQA repository: a non-integer answer is matched to the option it equals (`answer_index`;
no match is `answer_not_in_options`, two equal options `ambiguous_answer`). The first column is `video` here and
`video_id` in NExT-GQA; both are accepted. The question text is kept as published: lower case, no "?" ("s"
stands for "'s").

The id includes the qid (`sample_id(..., upstream_id=qid)`): NExT-QA publishes the same question, options and
answer twice for one video under two qids (val.csv, qid 9 and qid 0 of one video), and both are kept apart.

Videos live in the VidOR layout `<NNNN>/<video_id>.mp4`; `map_vid_vidorID.json` (video_id -> "NNNN/video_id")
is found beside the CSV or given as `vid_map=` (`vid_map=False` ignores it and names videos `<video_id>.mp4`);
the CSV and the map may be local paths or URLs.
A video missing from a map that is in use is an error (`bad_value`): the row would point at no file.
`frame_count` gives no fps, so the duration is left to the probe stage; it is kept in `meta`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from mtvr_data import storage
from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    file_name,
    iter_csv,
    load_json,
    location,
    require,
    sibling,
)
from mtvr_data.adapters.registry import register
from mtvr_data.schema import Sample, option_letter

#: The option columns of both NExT-QA and NExT-GQA, in letter order (a0 -> A).
OPTION_COLUMNS: tuple[str, ...] = ("a0", "a1", "a2", "a3", "a4")
VID_MAP_NAME = "map_vid_vidorID.json"


def read_options(row: dict[str, Any]) -> list[str]:
    """The five option texts (stripped); a missing or empty column is `missing_field`."""
    return [str(require(row, col)).strip() for col in OPTION_COLUMNS]


def read_int(row: dict[str, Any], key: str) -> int:
    """An int column (`frame_count`, `width`, `height`), else `bad_value`."""
    text = str(require(row, key)).strip()
    try:
        return int(text)
    except ValueError:
        raise AdapterError("bad_value", f"{key} is not an integer: {text!r}") from None


def qid_key(row: dict[str, Any]) -> str:
    """The qid as published ("3"); an int-looking qid is normalised ("03" -> "3") to match gsub's keys."""
    text = str(require(row, "qid")).strip()
    return str(int(text)) if text.lstrip("-").isdigit() else text


def meta_qid(qid: str) -> int | str:
    return int(qid) if qid.lstrip("-").isdigit() else qid


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def answer_index(answer: str, options: list[str]) -> int:
    """Index of the one option equal to the answer text (exact, else ignoring case and spacing).

    No equal option is `answer_not_in_options`; two equal options (NExT-GQA test.csv has a row whose answer
    "happy" is two of its options) is `ambiguous_answer`, never silently the first letter.
    """
    for same in (lambda o: o == answer, lambda o: _norm(o) == _norm(answer)):
        hits = [i for i, option in enumerate(options) if same(option)]
        if len(hits) > 1:
            letters = ", ".join(option_letter(i) for i in hits)
            raise AdapterError("ambiguous_answer", f"answer {answer!r} equals more than one option ({letters})")
        if hits:
            return hits[0]
    raise AdapterError("answer_not_in_options", f"answer {answer!r} equals none of the options")


def read_answer(row: dict[str, Any], options: list[str]) -> int:
    """The option index of the `answer` column: an int is the 0-based index (NExT-QA); any other text is the
    answer text, matched to its option (NExT-GQA and the NExT-QA re-export in the NExT-GQA repository)."""
    answer_text = str(require(row, "answer")).strip()
    try:
        index = int(answer_text)
    except ValueError:
        return answer_index(answer_text, options)
    if not 0 <= index < len(options):
        raise AdapterError("unknown_option", f"answer index {index} outside a0..a{len(options) - 1}")
    return index


@register
class NextQA(SourceAdapter):
    name = "nextqa"
    description = "NExT-QA multiple-choice QA (CSV, answer = 0-based option index; VidOR video layout)"

    def __init__(
        self,
        annotations: str | os.PathLike[str],
        *,
        vid_map: str | os.PathLike[str] | bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(annotations, **options)
        if vid_map is False:
            self.vid_map_path: str | None = None
        elif vid_map is None or vid_map is True:
            candidate = sibling(self.annotations, VID_MAP_NAME)
            self.vid_map_path = candidate if storage.exists(candidate) else None
        else:
            self.vid_map_path = location(vid_map)
        self.vid_map: dict[str, str] | None = self._load_vid_map(self.vid_map_path) if self.vid_map_path else None
        self.vid_map_name = file_name(self.vid_map_path) if self.vid_map_path else ""

    def _load_vid_map(self, path: str) -> dict[str, str]:
        """video_id -> "NNNN/video_id"; a missing or malformed map is refused at once, not per row."""
        if not storage.exists(path):
            raise FileNotFoundError(f"{self.name}: video map {path} does not exist")
        try:
            data = load_json(path)
        except AdapterError as exc:
            raise ValueError(f"{self.name}: {exc.detail}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.name}: {file_name(path)} is not a JSON object (video_id -> NNNN/video_id)")
        return {str(k).strip(): str(v).strip() for k, v in data.items()}

    def video_path(self, video_id: str) -> str:
        """`NNNN/<video_id><ext>` through the map when one is in use, else `<video_id><ext>`."""
        if self.vid_map is None:
            return f"{video_id}{self.video_ext}"
        mapped = self.vid_map.get(video_id)
        if not mapped:
            raise AdapterError("bad_value", f"video {video_id!r} is not in {self.vid_map_name}")
        return f"{mapped}{self.video_ext}"

    def video_id(self, row: dict[str, Any]) -> str:
        """The `video` column (NExT-QA) or `video_id` (NExT-GQA, and NExT-QA re-exports)."""
        key = "video" if "video" in row else "video_id"
        return str(require(row, key)).strip()

    def records(self) -> Iterator[RawRecord]:
        return iter_csv(self.annotations)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        row = record.value
        vid = self.video_id(row)
        question = str(require(row, "question"))
        options = read_options(row)
        index = read_answer(row, options)
        qid = qid_key(row)
        meta = {
            "video_id": vid,
            "qid": meta_qid(qid),
            "type": str(row.get("type") or "").strip(),
            "frame_count": read_int(row, "frame_count"),
        }
        return [
            self.make_sample(
                task="mcq",
                video=self.video_path(vid),
                question=question,
                options=options,
                answer=option_letter(index),
                answer_type="letter",
                width=read_int(row, "width"),
                height=read_int(row, "height"),
                meta=meta,
                upstream_id=qid,  # qid is unique within a video, and the video is keyed
            )
        ]
