"""publish: validation first, one commit to a dataset repo, a dry run that touches nothing, no token leaks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from pipelines.dataset_writer import CardFacts, write_card, write_dataset, write_stats
from pipelines.publish import DELETE_PATTERNS, UPLOAD_PATTERNS, PublishError, planned_files, publish
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
