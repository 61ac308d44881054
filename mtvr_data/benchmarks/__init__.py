"""Benchmark test sets as `Sample`s, for evaluation and for the training builds' contamination list.

`read_benchmark("charades-sta", path)` yields the test samples of one benchmark (source = the benchmark
name, split "test", `meta["benchmark"]` and `meta["category"]`); `BENCHMARKS` says how each is scored and
what its category is. See docs/benchmarks.md.
"""

from mtvr_data.benchmarks.registry import (
    BENCHMARKS,
    BenchmarkSpec,
    UnknownBenchmarkError,
    available_benchmarks,
    get_benchmark,
    make_benchmark_adapter,
    read_benchmark,
)

__all__ = [
    "BENCHMARKS",
    "BenchmarkSpec",
    "UnknownBenchmarkError",
    "available_benchmarks",
    "get_benchmark",
    "make_benchmark_adapter",
    "read_benchmark",
]
