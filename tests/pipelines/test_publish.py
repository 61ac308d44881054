"""publish: validation first (a finished build only), one commit to a dataset repo, a dry run that touches nothing,
no token leaks; a bucket folder is published from a validated local copy."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from mtvr_data import storage
from pipelines.cli import main
from pipelines.dataset_writer import CardFacts, write_card, write_dataset, write_stats
from pipelines.publish import (
    DELETE_PATTERNS,
    UPLOAD_PATTERNS,
    PublishError,
    planned_files,
    publish,
    validate_output,
)
from tests.pipelines.test_dataset_writer import make_cot, make_rl

SENTINEL = "hf_SENTINEL_do_not_print_0123456789"


class FakeHfApi:
    """Records every call; `fail` makes the upload raise an error that echoes the token (as a careless library
    might), so the test can check it is scrubbed."""

    def __init__(self, fail: bool = False, token: str = "") -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail
        self.token = token

    def create_repo(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append(("create_repo", args, kwargs))
        return f"https://huggingface.co/datasets/{args[0]}"

    def upload_folder(self, **kwargs: Any) -> str:
        self.calls.append(("upload_folder", (), kwargs))
        if self.fail:
            raise RuntimeError(f"401 Unauthorized (Authorization: Bearer {self.token})")
        return "https://huggingface.co/datasets/me/mtvr/commit/abc123"


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    write_dataset(out, "rl", [make_rl(i) for i in range(20)], validation_fraction=0.2)
    write_dataset(out, "cot", [make_cot(i) for i in range(20)], validation_fraction=0.2)
    write_card(out, CardFacts(scale=0.001))
    write_stats(out, {"rows": 40})
    (out / "rejected").mkdir()
    (out / "rejected" / "errors.parquet").write_bytes(b"dead letters stay local")
    (out / "cache").mkdir()
    (out / "cache" / "x.json").write_text("{}")
    return out


def test_one_commit_to_a_dataset_repo(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    api = FakeHfApi()
    plan = publish(out_dir, "me/mtvr", api=api, private=True)
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    _, args, create = api.calls[0]
    assert args == ("me/mtvr",) and create == {"repo_type": "dataset", "private": True, "exist_ok": True}
    upload = api.calls[1][2]
    assert upload["repo_type"] == "dataset" and upload["repo_id"] == "me/mtvr"
    assert upload["folder_path"] == str(out_dir)
    assert upload["allow_patterns"] == list(UPLOAD_PATTERNS)
    assert upload["delete_patterns"] == list(DELETE_PATTERNS)
    assert plan.commit and "abc123" in plan.commit
    assert not any(f.path.startswith(("rejected/", "cache/")) for f in plan.files)


def test_dry_run_lists_files_and_calls_nothing(
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("dry run must not look up the token or build an HfApi")

    monkeypatch.setattr("huggingface_hub.HfApi", no_network)
    monkeypatch.setattr("huggingface_hub.get_token", no_network)
    api = FakeHfApi()
    with caplog.at_level(logging.DEBUG):
        plan = publish(out_dir, "me/mtvr", dry_run=True, api=api)
        print(plan.render())
    assert api.calls == []
    paths = [f.path for f in plan.files]
    assert paths == [f.path for f in planned_files(out_dir)]
    assert {"README.md", "stats.json"} <= set(paths)
    assert any(p.startswith("rl/train-") for p in paths) and any(p.startswith("cot/train-") for p in paths)
    assert all(f.size == (out_dir / f.path).stat().st_size for f in plan.files)
    text = capsys.readouterr().out
    assert "would upload" in text and "README.md" in text
    assert SENTINEL not in text and SENTINEL not in caplog.text


def test_token_never_appears_when_the_upload_fails(
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    with caplog.at_level(logging.DEBUG), pytest.raises(PublishError) as info:
        publish(out_dir, "me/mtvr", api=FakeHfApi(fail=True, token=SENTINEL))
    message = str(info.value)
    assert "401" in message and "***" in message
    assert SENTINEL not in message and info.value.__cause__ is None
    captured = capsys.readouterr()
    assert SENTINEL not in captured.out + captured.err + caplog.text


def test_explicit_token_is_scrubbed_too(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishError) as info:
        publish(out_dir, "me/mtvr", token=SENTINEL, api=FakeHfApi(fail=True, token=SENTINEL))
    assert SENTINEL not in str(info.value)


def test_no_token_is_a_clear_error(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish(out_dir, "me/mtvr")


def test_large_uses_upload_large_folder_when_the_library_has_it(out_dir: Path) -> None:
    class LargeApi(FakeHfApi):
        def upload_large_folder(self, **kwargs: Any) -> None:
            self.calls.append(("upload_large_folder", (), kwargs))

    api = LargeApi()
    plan = publish(out_dir, "me/mtvr", api=api, large=True)
    assert [c[0] for c in api.calls] == ["create_repo", "upload_large_folder"]
    assert api.calls[1][2]["repo_type"] == "dataset" and api.calls[1][2]["allow_patterns"] == list(UPLOAD_PATTERNS)
    assert plan.method == "upload_large_folder"
    # A library without it (huggingface_hub >= 2 folds large uploads into upload_folder) gets upload_folder.
    plain = FakeHfApi()
    publish(out_dir, "me/mtvr", api=plain, large=True)
    assert [c[0] for c in plain.calls] == ["create_repo", "upload_folder"]


def test_validation_blocks_upload(out_dir: Path) -> None:
    api = FakeHfApi()
    (out_dir / "README.md").unlink()
    with pytest.raises(PublishError, match="README.md"):
        publish(out_dir, "me/mtvr", api=api, dry_run=True)
    write_card(out_dir, CardFacts())
    shard = next((out_dir / "rl").glob("train-*.parquet"))
    shard.write_bytes(b"not parquet")
    with pytest.raises(PublishError, match="train-"):
        publish(out_dir, "me/mtvr", api=api)
    assert api.calls == []


def test_card_naming_a_missing_split_blocks_upload(out_dir: Path) -> None:
    for shard in (out_dir / "cot").glob("validation-*.parquet"):
        shard.unlink()
    with pytest.raises(PublishError, match="cot/validation"):
        publish(out_dir, "me/mtvr", dry_run=True)


# --- unfinished builds, and a folder in a bucket ---------------------------------------------------------------------


def _upload(local: Path, url: str) -> str:
    """Copy every file of a local folder under `url` through storage; returns `url`."""
    for path in storage.list_files(str(local)):
        storage.write_bytes(storage.join(url, storage.relative(path, str(local))), storage.read_bytes(path))
    return url


def _no_manifest(folder: str) -> str:
    path = storage.join(folder, "manifest.json")
    storage.delete([path])
    return path


def _extra_shard(folder: str) -> str:
    """A shard the manifest does not list (as a killed rebuild with more shards would leave)."""
    path = storage.join(folder, "rl", "train-00009-of-00010.parquet")
    storage.write_bytes(path, storage.read_bytes(storage.glob(storage.join(folder, "rl", "train-*.parquet"))[0]))
    return path


def _other_shard(folder: str) -> str:
    """A listed shard replaced by another valid shard (right schema, other rows): only the manifest can tell."""
    path = storage.glob(storage.join(folder, "rl", "train-*.parquet"))[0]
    other = storage.glob(storage.join(folder, "rl", "validation-*.parquet"))[0]
    storage.write_bytes(path, storage.read_bytes(other))
    return path


def _same_size_other_bytes(folder: str) -> str:
    """A listed shard with one byte changed: its size still agrees with the manifest, its hash does not."""
    path = storage.glob(storage.join(folder, "cot", "train-*.parquet"))[0]
    data = bytearray(storage.read_bytes(path))
    data[len(data) // 2] ^= 0xFF
    storage.write_bytes(path, bytes(data))
    return path


def _refused(folder: str, named: str) -> None:
    """A dry run and a real publish both refuse `folder`, naming `named`; nothing reaches the Hub."""
    with pytest.raises(PublishError) as dry:
        publish(folder, "me/mtvr", dry_run=True)
    assert named in str(dry.value)
    api = FakeHfApi()
    with pytest.raises(PublishError) as real:
        publish(folder, "me/mtvr", api=api)
    assert named in str(real.value) and api.calls == []


@pytest.mark.parametrize("damage", [_no_manifest, _extra_shard, _other_shard, _same_size_other_bytes])
def test_unfinished_or_mixed_build_is_refused_naming_the_file(out_dir: Path, damage: Any) -> None:
    folder = str(out_dir)
    assert validate_output(folder) == []
    named = damage(folder)
    problems = validate_output(folder)
    assert problems and named in problems[0] and "manifest.json" in problems[0]
    _refused(folder, named)


# Each object-store call builds a new S3 client in Beam (slow), so the bucket tests cover the paths a bucket adds: a
# dry run validating in place, and a real publish that checks sizes, then hashes its downloaded copy.
@pytest.mark.parametrize("damage", [_extra_shard, _same_size_other_bytes])
def test_unfinished_or_mixed_bucket_build_is_refused_naming_the_object(
    out_dir: Path, s3_server: Any, damage: Any
) -> None:
    url = _upload(out_dir, s3_server.prefix("publish", uuid.uuid4().hex))
    named = damage(url)
    assert named.startswith(f"{url}/")
    _refused(url, named)


def test_dry_run_of_a_bucket_lists_what_the_folder_lists(
    out_dir: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _upload(out_dir, s3_server.prefix("publish", uuid.uuid4().hex))
    local = publish(out_dir, "me/mtvr", dry_run=True)

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a dry run must not download")

    monkeypatch.setattr(storage, "copy_to_local", no_download)
    remote = publish(url, "me/mtvr", dry_run=True)
    assert [(f.path, f.size) for f in remote.files] == [(f.path, f.size) for f in local.files]
    assert len(remote.files) >= 6 and remote.render() == local.render() and remote.folder == url
    # `mtvr publish URL -- BEAM OPTIONS` hands the options to storage and says which file is wrong.
    _no_manifest(url)
    assert main(["publish", url, "--repo-id", "me/mtvr", "--dry-run", "--", *s3_server.beam_args]) == 2
    assert f"{url}/manifest.json is missing" in capsys.readouterr().err


def test_publish_of_a_bucket_uploads_a_validated_local_copy(out_dir: Path, s3_server: Any) -> None:
    url = _upload(out_dir, s3_server.prefix("publish", uuid.uuid4().hex))

    class CopyingApi(FakeHfApi):
        """Records what the folder it is given holds when it is given it."""

        def upload_folder(self, **kwargs: Any) -> str:
            root = kwargs["folder_path"]
            self.seen = {storage.relative(p, root): storage.read_bytes(p) for p in storage.list_files(root)}
            return super().upload_folder(**kwargs)

    api = CopyingApi()
    plan = publish(url, "me/mtvr", api=api)
    upload = api.calls[1][2]
    folder_path = upload["folder_path"]
    assert not storage.is_url(folder_path) and folder_path != str(out_dir)
    assert not os.path.exists(folder_path)  # the temporary copy is gone
    assert upload["allow_patterns"] == list(UPLOAD_PATTERNS) and plan.folder == url
    uploaded = {f.path for f in planned_files(out_dir)}
    assert set(api.seen) == uploaded | {"manifest.json"}
    assert all(api.seen[rel] == (out_dir / rel).read_bytes() for rel in uploaded)
