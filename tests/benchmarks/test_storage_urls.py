"""Benchmark files and contamination lists on an object store (a moto S3 server on loopback, `s3_server`): a URL
file or folder reads the same test items as the local copy, and the contamination list is written to and read from
a URL with the same bytes and entries."""

from __future__ import annotations

import pytest

from mtvr_data import storage
from mtvr_data.benchmarks.contamination import export_contamination
from mtvr_data.dedup import load_contamination
from pipelines.cli import main
from pipelines.config import DEFAULT_CONTAMINATION
from tests.benchmarks.conftest import DERIVED, read
from tests.benchmarks.test_contamination import SHIPPED

#: (benchmark, file or folder under tests/fixtures/samples, options): folders expanded to the spec's files (and
#: ActivityNet's part picked inside one), a side file beside the test file, a derived copy told apart by sniffing.
CASES = [
    ("charades-sta", "charades_sta", {}),
    ("video-mmmu", "videommmu", {}),
    ("activitynet-mr", "activitynet_captions", {"split": "val_1"}),
    ("nextgqa", "nextgqa/test.csv", {}),
    ("video-mme", f"video-mme/{DERIVED}/videomme.json", {}),
]


@pytest.mark.parametrize(("name", "rel", "options"), CASES, ids=[c[0] for c in CASES])
def test_a_url_file_or_folder_reads_like_the_local_one(samples, s3_samples: str, name: str, rel: str, options) -> None:
    local = read(name, samples / rel, **options)
    remote = read(name, storage.join(s3_samples, rel), **options)
    assert local[0] and remote == local


def test_a_missing_url_is_file_not_found_before_anything_is_read(s3_server) -> None:
    missing = s3_server.prefix("nowhere", "charades_sta_test.txt")
    with pytest.raises(FileNotFoundError, match=rf"annotation file {missing} does not exist"):
        read("charades-sta", missing)
    with pytest.raises(FileNotFoundError):  # a folder URL holding none of the spec's files
        read("mvbench", s3_server.prefix("nowhere"))


def test_the_contamination_list_round_trips_through_s3(samples, s3_samples: str, s3_server, tmp_path) -> None:
    pairs = [("charades-sta", "charades_sta/charades_sta_test.txt"), ("nextgqa", "nextgqa/test.csv")]
    local_out, url_out = tmp_path / "eval.jsonl", s3_server.prefix("lists", "eval.jsonl")
    local = export_contamination([(n, samples / p) for n, p in pairs], local_out)
    remote = export_contamination([(n, storage.join(s3_samples, p)) for n, p in pairs], url_out)
    assert remote.out == url_out and remote.render() == local.render().replace(str(local_out), url_out)
    assert storage.read_bytes(url_out) == local_out.read_bytes()
    listed = load_contamination([url_out])
    assert listed == load_contamination([local_out]) and len(listed) > 0
    assert all(where.startswith("eval.jsonl:") for where in [*listed.videos.values(), *listed.questions.values()])


def test_the_contamination_command_writes_to_a_url(samples, s3_server, capsys) -> None:
    url = s3_server.prefix("lists", "benchmarks.jsonl")
    args = ["contamination", "--out", url]
    for name, path in SHIPPED:
        args += ["--benchmark", f"{name}={samples / path}"]
    assert main(args) == 0
    assert storage.read_bytes(url) == DEFAULT_CONTAMINATION.read_bytes()
    capsys.readouterr()
    assert main(["contamination", "--out", "foo://bucket/list.jsonl", "--benchmark", f"mmvu={samples / 'mmvu'}"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("mtvr: error: foo://bucket/list.jsonl: no file system for foo://")
