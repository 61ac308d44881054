"""A rebuild into a finished folder, killed at every step of its commit: readers see the old build, the new build,
or a refusal naming a file; never a mix of the two."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from mtvr_data import storage
from mtvr_data.build_manifest import MANIFEST, IncompleteBuild, verify_build
from pipelines.dataset_writer import (
    CardFacts,
    commit_config,
    shard_of,
    staged_shard_path,
    staging_folder,
    write_card_and_stats,
    write_shard,
)
from pipelines.publish import PublishError, publish
from tests.pipelines.test_dataset_writer import make_cot, make_rl


class Killed(BaseException):
    """What a SIGKILL looks like to the code under test: it stops wherever it is, nothing runs after."""


def build(out: Path, config: str, ids: range) -> None:
    """What build-rl / build-cot do after their pipeline: staged shards, then the commit with card and stats."""
    make = make_rl if config == "rl" else make_cot
    staging = staging_folder(out, config)
    storage.delete_tree(staging)
    rows = [make(i) for i in ids]
    for index in range(2):
        write_shard(
            staged_shard_path(staging, "train", index), config, [r for r in rows if shard_of(r.sample.id, 2) == index]
        )
    facts = CardFacts(scale=0.001, seed=0, grader={"model": f"grader-{ids.start}"})
    commit_config(out, config, finish=lambda: write_card_and_stats(out, config, facts, {"ids": [ids.start, ids.stop]}))


def mutations(monkeypatch: pytest.MonkeyPatch, kill_at: int | None) -> list[str]:
    """Count every storage call that changes the folder; raise `Killed` at call number `kill_at`."""
    seen: list[str] = []
    for name in ("open_write", "move", "delete", "delete_tree"):
        real = getattr(storage, name)

        def wrapped(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            seen.append(_name)
            if kill_at is not None and len(seen) == kill_at:
                raise Killed(f"killed at {_name} #{kill_at}")
            return _real(*args, **kwargs)

        monkeypatch.setattr(storage, name, wrapped)
    return seen


def ids_read(out: Path, config: str, tmp_path: Path) -> list[str] | None:
    """The ids `load_built` reads, or None when it refuses the folder as unfinished."""
    from mtvr_data.dataset_loading import load_built

    try:
        return sorted(load_built(str(out), config, split="train")["id"])
    except IncompleteBuild:
        return None


def test_a_rebuild_killed_anywhere_in_its_commit_never_reads_as_a_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    finished = tmp_path / "finished"
    build(finished, "rl", range(0, 30))
    build(finished, "cot", range(0, 12))
    old_ids = sorted(make_rl(i).sample.id for i in range(0, 30))
    new_ids = sorted(make_rl(i).sample.id for i in range(20, 60))
    cot_ids = sorted(make_cot(i).sample.id for i in range(0, 12))
    assert ids_read(finished, "rl", tmp_path) == old_ids

    shutil.copytree(finished, tmp_path / "count")
    with monkeypatch.context() as m:
        seen = mutations(m, None)
        build(tmp_path / "count", "rl", range(20, 60))
    steps = len(seen)
    shutil.rmtree(tmp_path / "count")
    assert steps > 5
    outcomes = set()
    for kill_at in range(1, steps + 1):
        out = tmp_path / f"kill{kill_at}"
        shutil.copytree(finished, out)
        with monkeypatch.context() as m:
            mutations(m, kill_at)
            with pytest.raises(Killed):
                build(out, "rl", range(20, 60))
        read = ids_read(out, "rl", tmp_path)
        assert read in (None, old_ids, new_ids), f"killed at step {kill_at}: a mix of two builds was read"
        if read is None:
            outcomes.add("refused")
            with pytest.raises(IncompleteBuild, match=str(out)):
                verify_build(str(out))
            with pytest.raises(PublishError, match="not ready to publish"):
                publish(out, "user/mtvr", dry_run=True)
        else:
            outcomes.add("old" if read == old_ids else "new")
            verify_build(str(out))  # the card and stats belong to the same build as the shards
            card = (out / "README.md").read_text()
            assert f"grader-{0 if read == old_ids else 20}" in card
            assert publish(out, "user/mtvr", dry_run=True).files
            # build-cot's shards, not touched by an rl rebuild, read as they were whenever the folder reads at all
            assert ids_read(out, "cot", tmp_path) == cot_ids
        # A rerun of the killed build always ends with the new, complete build.
        build(out, "rl", range(20, 60))
        assert ids_read(out, "rl", tmp_path) == new_ids and ids_read(out, "cot", tmp_path) == cot_ids
        shutil.rmtree(out)
    assert outcomes >= {"old", "refused"}, outcomes


def test_readers_name_the_file_that_disagrees(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out, "rl", range(0, 30))
    verify_build(str(out))
    shard = sorted((out / "rl").glob("train-*.parquet"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IncompleteBuild, match=shard.name):
        verify_build(str(out))
    shard.write_bytes(data)
    stray = out / "rl" / "train-00009-of-00010.parquet"
    stray.write_bytes(data)
    with pytest.raises(IncompleteBuild, match=stray.name):
        verify_build(str(out), configs=["rl"])
    stray.unlink()
    (out / MANIFEST).unlink()
    with pytest.raises(IncompleteBuild, match="did not finish"):
        verify_build(str(out))
