"""What makes two questions "the same": one normalisation shared by dedup and the contamination filter.

Dedup (two training rows asking the same thing about the same video) and the benchmark-contamination
filter (a training row asking an evaluation question, or about an evaluation video) must agree on what
"same question" and "same video" mean, or a row could pass one and be caught by the other. Both read
`normalise_question` and `video_key` from here; neither depends on Beam.

Contamination lists are JSON-lines files, one object per line naming a benchmark item:

    {"video": "v_abc123.mp4", "question": "What does the man do after he sits down?", "benchmark": "..."}

- `video` (optional): a file name or path; it is compared by `video_key` (basename without extension),
  so `videos/v_abc123.mp4`, `v_abc123.webm` and `v_abc123` all name the same video.
- `question` (optional): compared after `normalise_question`.
- `benchmark` (optional): where the entry comes from, for people reading the list; not matched.

A line needs at least one of `video` and `question`. A training row is dropped when its video key is
listed **or** its normalised question is listed (the two are independent: a listed line with both fields
contributes one video and one question). Blank lines are skipped; anything else that is not such an
object is an error naming `file:line`, since a silently short list would let contamination through.
"""

from __future__ import annotations

import io
import json
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mtvr_data import storage

_PUNCT = re.compile(r"[^\w\s]", flags=re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalise_question(text: str) -> str:
    """`text` reduced to what a reader compares: NFKC, case-folded, punctuation dropped, spaces collapsed.

    >>> normalise_question("  What does the MAN do -- after he sits down? ")
    'what does the man do after he sits down'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _PUNCT.sub(" ", text).replace("_", " ")
    return _SPACE.sub(" ", text).strip()


def video_key(video: str) -> str:
    """The name a video is known by across datasets: its basename without the extension.

    >>> video_key("videos/charades/AO8RW.mp4")
    'AO8RW'
    """
    name = PurePosixPath(video.replace("\\", "/")).name
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


@dataclass(slots=True)
class ContaminationList:
    """Listed benchmark video keys and normalised questions, and where each came from (for error details)."""

    videos: dict[str, str] = field(default_factory=dict)
    questions: dict[str, str] = field(default_factory=dict)

    def match(self, video: str, question: str) -> str | None:
        """Why a row with this video and question is contaminated, or None when it is clean."""
        key = video_key(video)
        if key in self.videos:
            return f"video {key!r} is listed in {self.videos[key]}"
        norm = normalise_question(question)
        if norm and norm in self.questions:
            return f"question {norm!r} is listed in {self.questions[norm]}"
        return None

    def __len__(self) -> int:
        return len(self.videos) + len(self.questions)


def load_contamination(paths: Iterable[str | os.PathLike[str]]) -> ContaminationList:
    """Read contamination lists (format in the module docstring); raises ValueError naming `file:line`.

    A list may be a local path or a URL (`s3://...`), read through `mtvr_data.storage`.
    """
    out = ContaminationList()
    for given in paths:
        text = os.fspath(given)
        path = text if "://" in text else str(Path(text))  # a URL as written; never through Path
        filename = storage.name(path)
        with io.TextIOWrapper(storage.open_read(path), encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{filename}:{lineno}"
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not a JSON object ({exc})") from exc
                if not isinstance(entry, dict) or not (entry.get("video") or entry.get("question")):
                    raise ValueError(
                        f"{path}:{lineno}: each line must be an object with a 'video' and/or a 'question' "
                        f'string, e.g. {{"video": "v_abc.mp4", "question": "What happens first?"}}'
                    )
                video, question = entry.get("video"), entry.get("question")
                for name, value in (("video", video), ("question", question)):
                    if value is not None and not isinstance(value, str):
                        raise ValueError(f"{path}:{lineno}: {name!r} must be a string, got {type(value).__name__}")
                if video:
                    out.videos.setdefault(video_key(video), where)
                if question and normalise_question(question):
                    out.questions.setdefault(normalise_question(question), where)
    return out
