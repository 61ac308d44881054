"""Every adapter (training sources and benchmarks) gives distinct ids on every vendored sample file it reads.

Two distinct upstream questions sharing an id would be merged (or one dropped) by dedup, caches and resumes, so
an id must tell apart every published question. The tables below name, for each registered adapter, the vendored
files it reads (the same paths its own tests use); a newly registered adapter must be added to them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from mtvr_data.adapters import make_adapter
from mtvr_data.adapters.registry import available_sources
from mtvr_data.benchmarks.registry import available_benchmarks, read_benchmark
from mtvr_data.schema import Sample
from tests.adapters.conftest import SAMPLES, split_results
from tests.benchmarks.conftest import DERIVED

#: Training source -> (vendored file, adapter options) it reads.
SOURCE_FILES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "activitynet_captions": [(f"activitynet_captions/{n}.json", {}) for n in ("train", "val", "test")],
    "charades_sta": [(f"charades_sta/charades_sta_{n}.txt", {}) for n in ("train", "test")],
    "longvideo_reason": [("longvideo-reason/test.jsonl", {}), ("longvideo-reason/val.jsonl", {})],
    "nextgqa": [("nextgqa/val.csv", {}), ("nextgqa/test.csv", {})],
    "nextqa": [("nextqa/val.csv", {"vid_map": False}), ("nextqa/test.csv", {"vid_map": False})],
    "qvhighlights": [(f"qvhighlights/highlight_{n}_release.jsonl", {}) for n in ("train", "val", "test")],
    "rextime": [("rextime/rextime_val.jsonl", {})],
    "samples": [("own_samples/charades_sta_test.samples.jsonl", {})],
    "vidchapters": [("vidchapters/chapters_sml1k_train.record.json", {})],
    "video_r1": [("video-r1/Video-R1-COT-165k.card-example.json", {}), ("video-r1/Video-R1-Videos.json", {})],
}

#: Benchmark -> vendored files or folders (native and Video-R1-eval copies) `read_benchmark` reads.
BENCHMARK_FILES: dict[str, list[str]] = {
    "charades-sta": ["charades_sta"],
    "activitynet-mr": ["activitynet_captions"],
    "vidchapters": ["vidchapters/chapters_sml1k_train.record.json"],
    "nextgqa": ["nextgqa", "nextgqa/val.csv"],
    "rextime": ["rextime/rextime_val.jsonl"],
    "longvideo-reason": ["longvideo-reason", f"longvideo-reason/{DERIVED}/longvideoreason.json"],
    "video-mme": ["video-mme/output_test_template.json", f"video-mme/{DERIVED}/videomme.json"],
    "video-mmmu": ["videommmu", f"videommmu/{DERIVED}/videommmu.json"],
    "mmvu": ["mmvu/validation.json", f"mmvu/{DERIVED}/mmvu-all.json"],
    "mvbench": [f"mvbench/{DERIVED}/mvbench.json"],
    "mlvu": [f"mlvu/{DERIVED}/mlvu.json"],
    "vsi-bench": [f"vsi-bench/{DERIVED}/vsibench.json"],
    "longvideobench": ["longvideobench/lvb_val.json", f"longvideobench/{DERIVED}/longvideobench.json"],
}


def repeated(ids: list[str]) -> dict[str, int]:
    return {i: n for i, n in Counter(ids).items() if n > 1}


def test_every_registered_adapter_is_covered():
    assert sorted(SOURCE_FILES) == available_sources()
    assert sorted(BENCHMARK_FILES) == sorted(available_benchmarks())


@pytest.mark.parametrize("source", sorted(SOURCE_FILES))
def test_source_ids_are_unique_per_file_and_across_its_files(source):
    all_ids: list[str] = []
    for rel, options in SOURCE_FILES[source]:
        ok, _ = split_results(make_adapter(source, SAMPLES / rel, **options).read())
        ids = [s.id for s in ok]
        assert repeated(ids) == {}, f"{source} on {rel}"
        all_ids += ids
    assert repeated(all_ids) == {}, source


@pytest.mark.parametrize("benchmark", sorted(BENCHMARK_FILES))
def test_benchmark_ids_are_unique_per_file(benchmark):
    for rel in BENCHMARK_FILES[benchmark]:
        ok = [item for item in read_benchmark(benchmark, SAMPLES / rel) if isinstance(item, Sample)]
        assert repeated([s.id for s in ok]) == {}, f"{benchmark} on {rel}"


def test_vendored_files_yield_samples():
    """The uniqueness checks above are not vacuous: the files they read hold samples."""
    counted = {
        source: sum(len(split_results(make_adapter(source, SAMPLES / rel, **opts).read())[0]) for rel, opts in files)
        for source, files in SOURCE_FILES.items()
    }
    assert [s for s, n in counted.items() if n == 0] == ["rextime"]  # the GitHub GT jsonl has no option texts
