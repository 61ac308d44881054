"""`mtvr_data.storage`, the one I/O layer: one behaviour for a local folder and an S3 bucket (moto on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtvr_data import storage


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "root")
    s3 = request.getfixturevalue("s3_server")
    return s3.prefix("storage-test", request.node.name.replace("[", "-").rstrip("]"))


def test_round_trip_listing_moving_and_deleting(root: str) -> None:
    a, b, empty = storage.join(root, "a", "x.json.gz"), storage.join(root, "b", "c", "y.bin"), storage.join(root, "e")
    storage.write_bytes(a, b"\x1f\x8b not really gzip")  # bytes in are bytes out: no compression guessed from a name
    storage.write_text(b, "hello")
    storage.write_bytes(empty, b"")
    assert storage.read_bytes(a) == b"\x1f\x8b not really gzip" and storage.read_text(b) == "hello"
    assert storage.read_bytes(empty) == b"" and storage.size(empty) == 0 and storage.size(b) == 5
    assert storage.exists(a) and storage.is_file(b) and not storage.exists(storage.join(root, "nope"))
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "nope"))
    assert storage.glob(storage.join(root, "*", "*.gz")) == [a]
    assert storage.list_files(root) == sorted([a, b, empty])
    assert [storage.relative(p, root) for p in storage.list_files(root)] == ["a/x.json.gz", "b/c/y.bin", "e"]
    storage.move(b, storage.join(root, "moved", "y.bin"))
    assert not storage.exists(b) and storage.read_text(storage.join(root, "moved", "y.bin")) == "hello"
    storage.delete([a, storage.join(root, "already-gone")])
    assert not storage.exists(a)
    storage.delete_tree(root)
    assert storage.list_files(root) == []


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(root: str) -> None:
    path = storage.join(root, "f.txt")
    storage.write_text(path, "old")
    with pytest.raises(RuntimeError), storage.open_write(path) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("writer died")
    assert storage.read_text(path) == "old"
    assert storage.list_files(root) == [path]  # no temporary file or half object left behind
    fresh = storage.join(root, "g.txt")
    with pytest.raises(RuntimeError), storage.open_write(fresh) as fh:
        fh.write(b"x")
        raise RuntimeError("writer died")
    assert not storage.exists(fresh)


def test_urls_never_become_local_paths() -> None:
    assert storage.join("gs://bucket/run1", "rl", "train.parquet") == "gs://bucket/run1/rl/train.parquet"
    assert storage.join("s3://bucket/run1/", "/cache/") == "s3://bucket/run1/cache"
    assert (
        storage.parent("s3://bucket/a/b.json") == "s3://bucket/a" and storage.name("s3://bucket/a/b.json") == "b.json"
    )
    assert storage.is_url("s3://b/x") and not storage.is_url("/tmp/x") and not storage.is_url("file:///tmp/x")
    assert storage.scheme_of("GS://b/x") == "gs" and storage.scheme_of("C:/x") == ""


def test_an_unknown_scheme_or_a_missing_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(storage.StorageUnavailable, match="no file system for foo://"):
        storage.exists("foo://bucket/x")
    monkeypatch.setitem(storage.SCHEMES, "s3", ("mtvr_no_such_module", "apache-beam[aws]"))
    with pytest.raises(storage.StorageUnavailable, match=r"pip install 'apache-beam\[aws\]'"):
        storage.write_text("s3://bucket/x", "x")
