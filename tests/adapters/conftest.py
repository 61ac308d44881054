"""Fixtures for adapter tests: the real published records vendored under tests/fixtures/samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtvr_data.schema import Sample, SampleError

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"


@pytest.fixture(scope="session")
def samples() -> Path:
    """Root of the real annotation records (a verbatim copy of shared/samples; see its FORMATS.md)."""
    assert SAMPLES.is_dir(), f"missing {SAMPLES}"
    return SAMPLES


def split_results(items) -> tuple[list[Sample], list[SampleError]]:
    """(samples, errors) of an adapter's `read()`."""
    items = list(items)
    return [i for i in items if isinstance(i, Sample)], [i for i in items if isinstance(i, SampleError)]
