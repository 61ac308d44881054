"""Benchmark name -> how to read it: the one table the evaluation harness and the contamination list share.

`read_benchmark(name, annotations, **options)` is the entry point: it picks the adapter (the native one, or
the Video-R1-eval one when the file is in that derived format), expands a folder or a list of files, and
yields `Sample`s (split "test", source = the benchmark name, meta with "benchmark" and "category") and
`SampleError`s, never stopping on a bad record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mtvr_data.adapters.base import StrPath, file_suffix, location, open_binary
from mtvr_data.benchmarks.base import BenchmarkAdapter, files_in_folder
from mtvr_data.benchmarks.longvideobench import LongVideoBench
from mtvr_data.benchmarks.mmvu import MMVU
from mtvr_data.benchmarks.native_sources import (
    ActivityNetMR,
    CharadesSTATest,
    LongVideoReasonTest,
    NextGQATest,
    ReXTimeTest,
    VidChaptersTest,
)
from mtvr_data.benchmarks.video_mme import VideoMME
from mtvr_data.benchmarks.video_mmmu import VideoMMMU
from mtvr_data.benchmarks.video_r1_eval import DERIVED_BENCHMARKS, VideoR1Eval
from mtvr_data.schema import Sample, SampleError

METRICS = ("accuracy", "grounding", "grounded_qa")
FORMATS = ("auto", "native", "video-r1-eval")
#: How far into a JSON file the format sniff looks for a Video-R1-eval key.
SNIFF_BYTES = 65536
_SOLUTION_KEY = re.compile(rb'"solution"\s*:')


class UnknownBenchmarkError(LookupError):
    """A benchmark name that is not in `BENCHMARKS`."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark: its names, metric, what "category" means for it, and how its files are read."""

    name: str
    display: str
    metric: str
    description: str
    #: The adapter of the native file; None where only the derived Video-R1-eval copy exists.
    adapter: type[BenchmarkAdapter] | None
    #: What `meta["category"]` holds for this benchmark ("" = none), in words, for docs and reports.
    category: str
    #: File names looked for when `annotations` is a folder (all that exist are read, in this order).
    files: tuple[str, ...] = ()
    #: The training source whose adapter reads the native file (same IoU scale, same quirks); None if none.
    training_source: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"{self.name}: metric must be one of {METRICS}, got {self.metric!r}")


_SPECS = (
    BenchmarkSpec(
        "charades-sta",
        "Charades-STA",
        "grounding",
        "Charades-STA test: 3,720 queries on 1,334 videos (lengths from Charades_v1_test.csv)",
        CharadesSTATest,
        "",
        ("charades_sta_test.txt",),
        "charades_sta",
    ),
    BenchmarkSpec(
        "activitynet-mr",
        "ActivityNet-MR",
        "grounding",
        "ActivityNet Captions moment retrieval: val_2 (2D-TAN test.json) by default, val_1 with split=val_1",
        ActivityNetMR,
        "",
        (),  # the adapter picks the file of the requested part inside a folder
        "activitynet_captions",
    ),
    BenchmarkSpec(
        "vidchapters",
        "VidChapters-7M",
        "grounding",
        "VidChapters-7M chapter grounding (chapters json or chapters_vmr_test.json)",
        VidChaptersTest,
        "",
        ("chapters_vmr_test.json",),
        "vidchapters",
    ),
    BenchmarkSpec(
        "nextgqa",
        "NExT-GQA",
        "grounded_qa",
        "NExT-GQA test: test.csv + gsub_test.json, every answering window kept",
        NextGQATest,
        "question type (CW, CH, TN, TC, TP)",
        ("test.csv",),
        "nextgqa",
    ),
    BenchmarkSpec(
        "rextime",
        "ReXTime",
        "grounded_qa",
        "ReXTime val (its public test): HF rextime_val.json; the GitHub GT jsonl lacks option texts",
        ReXTimeTest,
        "category (sequential, cause_effect, means_end); HF file only",
        ("rextime_val.json", "rextime_val.jsonl"),
        "rextime",
    ),
    BenchmarkSpec(
        "longvideo-reason",
        "LongVideo-Reason",
        "accuracy",
        "LongVideo-Reason test: 1,000 long-video MCQ (options inlined)",
        LongVideoReasonTest,
        "problem_type (temporal, spatial, goal, plot)",
        ("test.jsonl", "test.parquet"),
        "longvideo_reason",
    ),
    BenchmarkSpec(
        "video-mme",
        "Video-MME",
        "accuracy",
        "Video-MME: 900 videos x 3 MCQ",
        VideoMME,
        "duration (short, medium, long)",
        ("videomme.json",),
    ),
    BenchmarkSpec(
        "video-mmmu",
        "Video-MMMU",
        "accuracy",
        "Video-MMMU: 300 lecture videos, Perception / Comprehension / Adaptation tracks",
        VideoMMMU,
        "track (Perception, Comprehension, Adaptation); '' in the derived copy",
        ("perception_video.json", "comprehension_video.json", "adaptation_video.json"),
    ),
    BenchmarkSpec(
        "mmvu",
        "MMVU",
        "accuracy",
        "MMVU validation: 1,000 expert-domain questions (625 MCQ, 375 open-ended)",
        MMVU,
        "subject (metadata.subject; the path's subject folder in the derived copy)",
        ("validation.json",),
    ),
    BenchmarkSpec(
        "mvbench",
        "MVBench",
        "accuracy",
        "MVBench: 20 tasks x 200 MCQ; derived Video-R1-eval copy only (3,586 rows)",
        None,
        "task (inferred from problem_id block + video folder; '' when they disagree)",
        ("mvbench.json",),
    ),
    BenchmarkSpec(
        "mlvu",
        "MLVU",
        "accuracy",
        "MLVU test MCQ; derived Video-R1-eval copy only (502 rows)",
        None,
        "video group from the file stem test_<group>_<n> (surveil, sports, order, ...)",
        ("mlvu.json",),
    ),
    BenchmarkSpec(
        "vsi-bench",
        "VSI-Bench",
        "accuracy",
        "VSI-Bench: 5,130 spatial questions (MCQ and numeric); derived Video-R1-eval copy only",
        None,
        "question type (original_question_type: object_counting, route_planning, ...)",
        ("vsibench.json",),
    ),
    BenchmarkSpec(
        "longvideobench",
        "LongVideoBench",
        "accuracy",
        "LongVideoBench val: 1,337 MCQ on long videos with subtitles",
        LongVideoBench,
        "duration_group (15, 60, 600, 3600 s buckets)",
        ("lvb_val.json", "longvideobench.json"),
    ),
)

BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in _SPECS}


def available_benchmarks() -> list[str]:
    """Benchmark names in the order of the results tables (grounding, grounded QA, then general QA)."""
    return list(BENCHMARKS)


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of benchmark `name`; the error lists the known names."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UnknownBenchmarkError(
            f"unknown benchmark {name!r}; known benchmarks: {', '.join(available_benchmarks())}"
        ) from None


def is_derived_file(path: StrPath) -> bool:
    """Whether a JSON file is a Video-R1-eval copy: a `"solution":` key in its first `SNIFF_BYTES` bytes."""
    if file_suffix(path).lower() not in (".json", ".jsonl"):
        return False
    with open_binary(path) as fh:
        return bool(_SOLUTION_KEY.search(fh.read(SNIFF_BYTES)))


def annotation_files(spec: BenchmarkSpec, annotations: StrPath | list[StrPath]) -> list[str]:
    """The files to read: a list as given, a folder's `spec.files` that exist, or the one path (paths or URLs)."""
    if isinstance(annotations, list | tuple):
        return [p for a in annotations for p in annotation_files(spec, a)]
    path = location(annotations)
    found = files_in_folder(path, spec.files) if spec.files else None
    if found is not None:
        if not found:
            raise FileNotFoundError(f"{spec.name}: none of {', '.join(spec.files)} in {path}")
        return found
    return [path]


def make_benchmark_adapter(name: str, path: StrPath, *, format: str = "auto", **options: Any) -> BenchmarkAdapter:
    """The adapter reading one file of benchmark `name`: native, or Video-R1-eval (`format`, or sniffed)."""
    spec = get_benchmark(name)
    if format not in FORMATS:
        raise ValueError(f"{name}: format must be one of {FORMATS}, got {format!r}")
    path = location(path)
    derived = format == "video-r1-eval" or (format == "auto" and (spec.adapter is None or is_derived_file(path)))
    if derived:
        if spec.name not in DERIVED_BENCHMARKS:
            raise ValueError(f"{name}: no Video-R1-eval reading (its derived copy is not ground truth)")
        return VideoR1Eval(path, benchmark=spec.name, **options)
    if spec.adapter is None:
        raise ValueError(f"{name}: no native adapter (only the Video-R1-eval copy is known); use format='auto'")
    return spec.adapter(path, **options)


def read_benchmark(name: str, annotations: StrPath | list[StrPath], **options: Any) -> Iterator[Sample | SampleError]:
    """Every test sample (and rejected record) of benchmark `name` from its file(s), in file order.

    `annotations` is a file, a folder (its `spec.files` are read) or a list of files, each a local path or a URL
    (`s3://...`, read through `mtvr_data.storage`). `options` go to the adapter (e.g. `split="val_1"` for
    activitynet-mr, `durations=` for charades-sta, `video_ext=`), plus `format="auto" | "native" | "video-r1-eval"`.
    Unknown names raise `UnknownBenchmarkError`; a missing file raises FileNotFoundError before anything is read.
    """
    spec = get_benchmark(name)
    adapters = [make_benchmark_adapter(name, path, **options) for path in annotation_files(spec, annotations)]
    for adapter in adapters:
        yield from adapter.read()


def benchmark_option_names(name: str) -> frozenset[str]:
    """The options `read_benchmark(name, ...)` accepts: `format` and the keyword options of the adapters that may
    read its files (native and Video-R1-eval)."""
    from mtvr_data.adapters.registry import option_names

    spec = get_benchmark(name)
    names = {"format"}
    if spec.adapter is not None:
        names |= option_names(spec.adapter)
    if spec.name in DERIVED_BENCHMARKS:
        names |= option_names(VideoR1Eval) - {"benchmark"}
    return frozenset(names)
