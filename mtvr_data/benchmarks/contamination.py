"""Export the benchmarks' videos and questions as a contamination list the training builds filter against.

The list is what `mtvr_data.dedup.load_contamination` reads: JSON lines, each naming a `benchmark` and one
`video` or one `question`. It is made by the same adapters that read the test sets for evaluation, so "the
items we evaluate on" and "the items kept out of training" cannot drift apart.

What is listed, per benchmark:
- every video (the sample's path, compared by `dedup.video_key`), plus the YouTube id where the annotation
  names one (`contamination_videos`; MMVU's `<subject>/<n>.mp4` stems are indices, so only its YouTube ids);
- the questions, except where they are not specific to one item: grounding queries and chapter titles, and
  the template questions of MVBench, MLVU and VSI-Bench (`list_questions`), and any question the benchmark
  asks of more than one video. Listed, such a sentence would drop every training row that uses it.

The output is sorted and free of duplicates, so re-exporting the same files gives the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mtvr_data import storage
from mtvr_data.adapters.base import location
from mtvr_data.benchmarks.registry import annotation_files, get_benchmark, make_benchmark_adapter
from mtvr_data.dedup import normalise_question, video_key


@dataclass(slots=True)
class ExportSummary:
    """What one export wrote: lines per benchmark, and the records the adapters rejected."""

    #: Where the list was written: a local path or a URL.
    out: str
    videos: dict[str, int] = field(default_factory=dict)
    questions: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        rows = [f"{'benchmark':<18} {'videos':>7} {'questions':>9} {'rejected':>8}"]
        for name in self.videos:
            rows.append(f"{name:<18} {self.videos[name]:>7} {self.questions[name]:>9} {self.rejected[name]:>8}")
        total = sum(self.videos.values()) + sum(self.questions.values())
        return "\n".join([*rows, f"{total} lines written to {self.out}"])


def benchmark_entries(name: str, annotations: Any, **options: Any) -> tuple[list[dict[str, str]], int]:
    """(sorted contamination lines of one benchmark, number of records its adapters rejected)."""
    spec = get_benchmark(name)
    videos: dict[str, str] = {}
    questions: dict[str, tuple[str, set[frozenset[str]]]] = {}
    rejected = 0
    list_questions = True
    for path in annotation_files(spec, annotations):
        adapter = make_benchmark_adapter(name, path, **options)
        list_questions = list_questions and adapter.list_questions
        for names, question in adapter.contamination_records():
            for video in names:
                if video:
                    videos.setdefault(video_key(video), video)
            norm = normalise_question(question)
            if norm:  # one video may go by several names (path, YouTube id): count videos, not names
                questions.setdefault(norm, (question.strip(), set()))[1].add(frozenset(map(video_key, names)))
        rejected += sum(n for reason, n in adapter.counts.items() if reason.startswith("error:"))
    lines = [{"benchmark": name, "video": videos[k]} for k in sorted(videos)]
    if list_questions:
        lines += [
            {"benchmark": name, "question": text}
            for norm, (text, keys) in sorted(questions.items())
            if len(keys) <= 1  # a question asked of several videos is a template, not an item
        ]
    return lines, rejected


def export_contamination(
    benchmarks: Iterable[tuple[str, Any]], out: str | os.PathLike[str], **options: Any
) -> ExportSummary:
    """Write the contamination list of `(benchmark name, annotation file / folder / files)` pairs to `out`.

    `out` and the annotation files may be local paths or URLs (`mtvr_data.storage`); the list is written whole or
    not at all (a local file is replaced atomically, an object is one upload).

    A name given twice has its files read together. `options` go to every adapter (e.g. `video_ext`).
    Lines are unique across benchmarks (the first benchmark naming an item keeps it), in the order given.
    """
    grouped: dict[str, list[Any]] = {}
    for name, files in benchmarks:
        get_benchmark(name)  # an unknown name fails before anything is read
        grouped.setdefault(name, []).extend(files if isinstance(files, list) else [files])
    summary = ExportSummary(storage.check(location(out)))  # an unknown scheme fails before anything is read
    seen: set[tuple[str, str]] = set()
    text: list[str] = []
    for name, files in grouped.items():
        lines, rejected = benchmark_entries(name, files, **options)
        summary.videos[name] = summary.questions[name] = 0
        summary.rejected[name] = rejected
        for line in lines:
            kind = "video" if "video" in line else "question"
            key = (kind, video_key(line[kind]) if kind == "video" else normalise_question(line[kind]))
            if key in seen:
                continue
            seen.add(key)
            (summary.videos if kind == "video" else summary.questions)[name] += 1
            text.append(json.dumps(line, ensure_ascii=False, sort_keys=True))
    storage.write_text(summary.out, "".join(t + "\n" for t in text))
    return summary
