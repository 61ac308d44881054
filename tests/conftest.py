"""Session-wide fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo corpus, built once per test session (a few seconds on 2 cores); its root holds manifest.json."""
    from mtvr_data.demo_corpus import build_demo_corpus

    root = tmp_path_factory.mktemp("demo_corpus")
    build_demo_corpus(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`get(family)`: the tiny checkpoint of a model family (`model_type`), built on first use and then shared by
    every test of the session (a build costs seconds; the tests parametrised over the family all read the same one).
    Tests treat it as read-only."""
    from model.tiny_checkpoint import build_tiny_checkpoint

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_checkpoint(tmp_path_factory.mktemp(f"tiny_{family}") / "tiny", family=family)
        return built[family]

    return get


class S3Server:
    """A real S3-compatible server on loopback (moto's server mode) with one empty bucket per test session.

    `beam_args` are the Beam options that point `apache-beam[aws]`'s file system at it; they are also handed to
    this process's `FileSystems` (`mtvr_data.storage.configure`), and the AWS variables are set so that Beam's
    worker processes and boto3 find the same endpoint and keys.
    """

    def __init__(self, url: str, bucket: str) -> None:
        self.url, self.bucket = url, bucket
        self.beam_args = [
            f"--s3_endpoint_url={url}",
            "--s3_access_key_id=testing",
            "--s3_secret_access_key=testing",
            "--s3_region_name=us-east-1",
        ]

    def prefix(self, *parts: str) -> str:
        """`s3://<bucket>/<parts...>`."""
        return "/".join([f"s3://{self.bucket}", *parts])

    def client(self):  # noqa: ANN201 - a boto3 client
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )


#: The session's S3 server once started: every later test gets its options back (`_s3_options`), since any Beam
#: pipeline run in this process (`Pipeline(options)`) replaces the options `FileSystems` holds.
_S3: list[S3Server] = []


@pytest.fixture(autouse=True)
def _s3_options() -> None:
    if _S3:
        from mtvr_data import storage

        storage.configure(_S3[0].beam_args)


@pytest.fixture(scope="session")
def s3_server():  # noqa: ANN201 - yields an S3Server
    """A moto S3 server on 127.0.0.1 for the whole session (skipped where moto or boto3 is missing)."""
    import os

    pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    from mtvr_data import storage

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(f"http://{host}:{port}", "mtvr-test")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3.client().create_bucket(Bucket=s3.bucket)
    storage.configure(s3.beam_args)
    _S3.append(s3)
    yield s3
    _S3.clear()
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
