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


def upload_tree(s3_server, local: Path, *prefix: str) -> str:
    """Copy every file under the folder `local` to the same relative keys under `s3_server.prefix(*prefix)`; returns
    that URL. Uploads go through one boto3 client (fast); the code under test reads them through `storage`."""
    client = s3_server.client()
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = "/".join([*prefix, path.relative_to(local).as_posix()])
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=path.read_bytes())
    return s3_server.prefix(*prefix)


@pytest.fixture(scope="session")
def s3_samples(s3_server) -> str:
    """An `s3://` copy of tests/fixtures/samples on the session's moto server: the same files under the same names."""
    return upload_tree(s3_server, SAMPLES, "samples")
