"""The benchmark table, `read_benchmark`'s contract on every benchmark's real records, and the IoU scales."""

from __future__ import annotations

import pytest

from mtvr_data import storage
from mtvr_data.benchmarks import BENCHMARKS, UnknownBenchmarkError, available_benchmarks, get_benchmark
from mtvr_data.benchmarks.registry import annotation_files
from mtvr_data.rewards import task_reward
from mtvr_data.temporal_iou import iou_scale_for
from tests.benchmarks.conftest import DERIVED, meta, read

#: Every benchmark on its real sample file: (name, path under samples, samples expected).
REAL = [
    ("charades-sta", "charades_sta/charades_sta_test.txt", 20),
    ("activitynet-mr", "activitynet_captions/test.json", 28),
    ("vidchapters", "vidchapters/chapters_sml1k_train.record.json", 12),
    ("nextgqa", "nextgqa/test.csv", 38),
    ("longvideo-reason", "longvideo-reason/test.jsonl", 2),
    ("video-mme", f"video-mme/{DERIVED}/videomme.json", 3),
    ("video-mmmu", "videommmu", 11),
    ("mmvu", "mmvu/validation.json", 8),
    ("mvbench", f"mvbench/{DERIVED}/mvbench.json", 10),
    ("mlvu", f"mlvu/{DERIVED}/mlvu.json", 9),
    ("vsi-bench", f"vsi-bench/{DERIVED}/vsibench.json", 10),
    ("longvideobench", "longvideobench/lvb_val.json", 4),
]


def test_table_names_metrics_and_displays():
    assert available_benchmarks() == [
        "charades-sta",
        "activitynet-mr",
        "vidchapters",
        "nextgqa",
        "rextime",
        "longvideo-reason",
        "video-mme",
        "video-mmmu",
        "mmvu",
        "mvbench",
        "mlvu",
        "vsi-bench",
        "longvideobench",
    ]
    metrics = {name: spec.metric for name, spec in BENCHMARKS.items()}
    assert {n for n, m in metrics.items() if m == "grounding"} == {"charades-sta", "activitynet-mr", "vidchapters"}
    assert {n for n, m in metrics.items() if m == "grounded_qa"} == {"nextgqa", "rextime"}
    assert get_benchmark("video-mmmu").display == "Video-MMMU"
    assert get_benchmark("vidchapters").display == "VidChapters-7M"
    assert [n for n, s in BENCHMARKS.items() if s.adapter is None] == ["mvbench", "mlvu", "vsi-bench"]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownBenchmarkError, match="unknown benchmark 'charades'.*charades-sta.*longvideobench"):
        get_benchmark("charades")
    with pytest.raises(UnknownBenchmarkError):
        list(read_benchmark_gen("nope"))


def read_benchmark_gen(name):
    from mtvr_data.benchmarks import read_benchmark

    return read_benchmark(name, "unused.json")


@pytest.mark.parametrize(("name", "path", "count"), REAL, ids=[r[0] for r in REAL])
def test_every_sample_is_a_tagged_test_row(samples, name, path, count):
    ok, errors = read(name, samples / path)
    assert errors == [] and len(ok) == count
    for sample in ok:
        assert sample.split == "test" and sample.source == name and sample.id.startswith(f"{name}-")
        assert meta(sample)["benchmark"] == name and isinstance(meta(sample)["category"], str)
        assert sample.problems() == []


def test_a_split_other_than_test_is_refused(samples):
    with pytest.raises(TypeError, match="always read as split 'test'"):
        read("charades-sta", samples / "charades_sta/charades_sta_test.txt", split="train")


def test_folder_expands_to_the_spec_files(samples):
    files = annotation_files(get_benchmark("video-mmmu"), samples / "videommmu")
    names = [storage.name(f) for f in files]  # paths as strings: a folder may be a URL prefix too
    assert names == ["perception_video.json", "comprehension_video.json", "adaptation_video.json"]
    ok, _ = read("charades-sta", samples / "charades_sta")
    assert len(ok) == 20 and ok[0].duration == 30.96  # Charades_v1_test.csv found beside the txt
    with pytest.raises(FileNotFoundError, match="none of mvbench.json"):
        read("mvbench", samples / "charades_sta")


def test_a_list_of_files_is_read_in_order(samples):
    ok, _ = read(
        "video-mmmu", [samples / "videommmu/adaptation_video.json", samples / "videommmu/perception_video.json"]
    )
    assert [meta(s)["category"] for s in ok] == ["Adaptation"] * 5 + ["Perception"] * 3


@pytest.mark.parametrize(
    ("bench", "source"), [(n, s.training_source) for n, s in BENCHMARKS.items() if s.metric != "accuracy"]
)
def test_grounding_benchmarks_keep_their_training_iou_scale(bench, source):
    assert iou_scale_for(bench) == iou_scale_for(source) != (0.0, 1.0)


def test_grounding_reward_on_a_benchmark_row_uses_the_charades_scale(samples):
    ok, _ = read("charades-sta", samples / "charades_sta/charades_sta_test.txt")
    sample = ok[0]  # 3MSZA [24.3, 30.4]
    exact = task_reward(sample, "<think>x</think><answer>24.3 - 30.4 seconds</answer>")
    assert exact.value == pytest.approx(1.0) and exact.iou == pytest.approx(1.0)
    # IoU 0.5 -> Scale(0.5; 0.2, 0.8) = 0.5; with no scale it would also be 0.5, so use IoU 0.35 -> 0.25
    half = task_reward(sample, "<think>x</think><answer>24.3 - 26.435 seconds</answer>")
    assert half.iou == pytest.approx(0.35, abs=1e-3) and half.value == pytest.approx(0.25, abs=1e-2)
