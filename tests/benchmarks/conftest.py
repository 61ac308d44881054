"""Fixtures for benchmark-adapter tests: the real records under tests/fixtures/samples (see its FORMATS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtvr_data.benchmarks import read_benchmark
from mtvr_data.schema import Sample, SampleError
from tests.adapters.conftest import SAMPLES

DERIVED = "video-r1-eval-format_EasyVideoR1"


@pytest.fixture(scope="session")
def samples() -> Path:
    assert SAMPLES.is_dir(), f"missing {SAMPLES}"
    return SAMPLES


def read(name: str, annotations, **options) -> tuple[list[Sample], list[SampleError]]:
    """(samples, errors) of `read_benchmark`."""
    items = list(read_benchmark(name, annotations, **options))
    return [i for i in items if isinstance(i, Sample)], [i for i in items if isinstance(i, SampleError)]


def meta(sample: Sample) -> dict:
    return json.loads(sample.meta)


@pytest.fixture(scope="session")
def s3_samples(s3_server) -> str:
    """An `s3://` copy of tests/fixtures/samples (the same files under the same names)."""
    from tests.adapters.conftest import upload_tree

    return upload_tree(s3_server, SAMPLES, "benchmark-samples")
