"""Benchmarks whose test file is in a training source's native format: thin subclasses, no parsing of their own.

Charades-STA test, ActivityNet-MR, VidChapters-7M, NExT-GQA test, ReXTime val and LongVideo-Reason test are
read by the same adapters as the training sources (`mtvr_data.adapters`), so a quirk fixed there (Charades ends
past the video, ActivityNet leading spaces, LongVideo-Reason out-of-order letters) is fixed for evaluation too.
Each class only renames the source to the benchmark, fixes the split to `test` and names the category.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, ClassVar

from mtvr_data.adapters.activitynet_captions import ActivityNetCaptions
from mtvr_data.adapters.base import StrPath, file_name, location
from mtvr_data.adapters.charades_sta import CharadesSTA
from mtvr_data.adapters.longvideo_reason import LongVideoReason
from mtvr_data.adapters.nextgqa import NextGQA
from mtvr_data.adapters.rextime import ReXTime
from mtvr_data.adapters.vidchapters import VidChapters
from mtvr_data.benchmarks.base import BenchmarkAdapter, files_in_folder


class CharadesSTATest(BenchmarkAdapter, CharadesSTA):
    """`charades_sta_test.txt`; durations from `Charades_v1_test.csv` beside it (or `durations=`)."""

    name = "charades-sta"
    description = "Charades-STA test (3,720 queries): charades_sta_test.txt + Charades_v1_test.csv lengths"
    list_questions = False


#: ActivityNet-MR's test part -> the file names it goes by (2D-TAN's copy first, then the official captions.zip).
ANET_FILES: dict[str, tuple[str, ...]] = {"val_2": ("test.json", "val_2.json"), "val_1": ("val.json", "val_1.json")}


def anet_part(path: StrPath, split: str) -> str:
    """The file of ActivityNet part `split` (val_1 / val_2): inside a folder, or the file itself if it is one.

    A file whose name says it is the other part (`val.json` read as val_2) is refused: reporting val_1 numbers
    as val_2 is the mistake this option exists to prevent. Other names are trusted to be the part asked for.
    `path` may be a local path or a URL (a URL "folder" is a prefix holding one of the part's files).
    """
    if split not in ANET_FILES:
        raise ValueError(f"activitynet-mr: split must be one of {sorted(ANET_FILES)}, got {split!r}")
    path = location(path)
    found = files_in_folder(path, ANET_FILES[split])
    if found is not None:
        if found:
            return found[0]
        raise FileNotFoundError(f"activitynet-mr: no {' or '.join(ANET_FILES[split])} in {path} (split {split})")
    other = next(p for p in ANET_FILES if p != split)
    if file_name(path) in ANET_FILES[other]:
        raise ValueError(
            f"activitynet-mr: {file_name(path)} is ActivityNet Captions {other}, but split={split!r}; "
            f"pass split={other!r} to evaluate on it"
        )
    return path


class ActivityNetMR(BenchmarkAdapter, ActivityNetCaptions):
    """ActivityNet Captions as moment retrieval. `split="val_2"` (default: 2D-TAN's `test.json`, what the
    ActivityNet-MR literature calls test) or `"val_1"` (`val.json`); which one VITAL used is not published.
    The part is kept in `meta["anet_split"]`; `Sample.split` stays `test`."""

    name = "activitynet-mr"
    description = "ActivityNet-MR: ActivityNet Captions val_2 (2D-TAN test.json) or val_1 (split=val_1)"
    list_questions = False

    def __init__(self, annotations: str | os.PathLike[str], *, split: str = "val_2", **options: Any) -> None:
        self.anet_split = split
        super().__init__(anet_part(annotations, split), **options)

    def extra_meta(self) -> dict[str, Any]:
        return {"anet_split": self.anet_split}


class VidChaptersTest(BenchmarkAdapter, VidChapters):
    """VidChapters-7M chapters as moment retrieval (chapters json or `chapters_vmr_test.json`)."""

    name = "vidchapters"
    description = "VidChapters-7M chapter grounding test (chapters json / chapters_vmr_test.json)"
    list_questions = False  # chapter titles ("Intro", "Outro") are not questions about one video


class NextGQATest(BenchmarkAdapter, NextGQA):
    """`test.csv` with `gsub_test.json` beside it; every window of a question is kept in `windows`."""

    name = "nextgqa"
    description = "NExT-GQA test: test.csv + gsub_test.json (multi-span ground truth in windows)"
    category_key: ClassVar[str | None] = "type"  # CW / CH / TN / TC / TP


class ReXTimeTest(BenchmarkAdapter, ReXTime):
    """ReXTime val (its public test): the HF `rextime_val.json`; the GitHub GT jsonl has no option texts.

    The GT jsonl still names every test video and question, so it feeds the contamination list even though it
    yields no samples (`missing_options`).
    """

    name = "rextime"
    description = "ReXTime val (public test): HF rextime_val.json (GitHub GT jsonl: contamination list only)"
    category_key: ClassVar[str | None] = "category"  # sequential / cause_effect / means_end (HF file only)

    def contamination_records(self) -> Iterator[tuple[list[str], str]]:
        yield from super().contamination_records()
        for record in self.records():
            value = record.value
            if isinstance(value, dict) and "options" not in value and value.get("vid") and value.get("query"):
                yield [self.video_path(str(value["vid"]))[0]], str(value["query"])


class LongVideoReasonTest(BenchmarkAdapter, LongVideoReason):
    """LongVideo-Reason `test.jsonl` (1,000 rows; the HF parquet test split also reads)."""

    name = "longvideo-reason"
    description = "LongVideo-Reason test (1,000 MCQ, options inlined in the problem text)"
    category_key: ClassVar[str | None] = "problem_type"  # temporal / spatial / goal / plot
