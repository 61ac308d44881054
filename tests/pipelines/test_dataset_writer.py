"""The dataset on disk: shards load with `datasets`, the card parses with huggingface_hub, reruns are identical."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mtvr_data.parquet_io import read_parquet
from mtvr_data.schema import Clip, CotRow, Message, RlRow, Sample, ToolCall, sample_id
from pipelines.dataset_writer import (
    CardFacts,
    dumps_stable,
    is_validation,
    shard_files,
    summarize_output,
    write_card,
    write_card_and_stats,
    write_dataset,
    write_stats,
)

SOURCES = [("charades_sta", "tg", "video"), ("video_r1", "mcq", "image"), ("nextgqa", "gqa", "video")]


def make_sample(i: int) -> Sample:
    source, task, modality = SOURCES[i % len(SOURCES)]
    video, question = f"videos/{source}/{i}.mp4", f"question {i}?"
    options = ["red", "blue"] if task in ("mcq", "gqa") else []
    answer = "A" if options else ""
    span = [1.0 + i % 5, 4.5 + i % 5] if task in ("tg", "gqa") else None
    return Sample(
        id=sample_id(source, video, question, options, answer, span),
        source=source,
        task=task,
        modality=modality,
        video=video,
        question=question,
        options=options,
        answer=answer,
        answer_type="span" if task == "tg" else "letter",
        span=span,
        windows=[span] if span else [],
        duration=30.0,
        fps=2.0,
        width=224,
        height=224,
    )


def make_rl(i: int) -> RlRow:
    pass_rate = (i % 7 + 1) / 8
    return RlRow(make_sample(i), 8, pass_rate, 0.5 + pass_rate, 1 - pass_rate, "medium", "tiny-grader", i % 4 == 0)


def make_cot(i: int) -> CotRow:
    tools = i % 3 == 0
    messages = [Message("user", f"question {i}?")]
    if tools:
        call = ToolCall("get_video_clip_frame", '{"start_time": 1.0, "end_time": 5.0}')
        messages += [
            Message("assistant", "<think>look</think>", tool_calls=[call]),
            Message("tool", "Video clip from 1.00 to 5.00 seconds.", clip=Clip(1.0, 5.0, [1.0, 1.5, 2.0])),
        ]
    messages.append(Message("assistant", "<think>so</think><answer>A</answer>"))
    return CotRow(make_sample(i), messages, "tiny-teacher", "cfg123", 2.0, 1 if tools else 0, True, tools)


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def build(out: Path, n: int = 60, **kw) -> None:
    write_dataset(out, "rl", [make_rl(i) for i in range(n)], validation_fraction=0.2, seed=0, **kw)
    write_dataset(out, "cot", [make_cot(i) for i in range(n)], validation_fraction=0.2, seed=0, **kw)
    facts = CardFacts(scale=0.001, seed=0, grader={"model": "tiny", "num_rollouts": 8}, thresholds={"tg": 0.5})
    write_card(out, facts)
    write_stats(out, {"summary": summarize_output(out), "scale": 0.001})


@pytest.fixture()
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def test_layout_and_load_dataset_round_trip(tmp_path: Path, hf_offline: None) -> None:
    import datasets

    out = tmp_path / "out"
    build(out, num_shards=2)
    assert [Path(p).name for p in shard_files(out, "rl", "train")] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    assert shard_files(out, "rl", "validation")
    assert (out / "manifest.json").is_file() and not (out / ".staging").exists()  # committed, nothing staged left
    for config, make in (("rl", make_rl), ("cot", make_cot)):
        expected = {r.sample.id: r for r in (make(i) for i in range(60))}
        loaded = {}
        for split in ("train", "validation"):
            ds = datasets.load_dataset(str(out), config, split=split)
            records = [r for p in shard_files(out, config, split) for r in read_parquet(p, config)]
            assert len(ds) == len(records)
            assert ds["id"] == [r.sample.id for r in records]
            loaded.update({r.sample.id: r for r in records})
        assert loaded == expected


def test_validation_split_is_stable_and_rerun_is_byte_identical(tmp_path: Path, hf_offline: None) -> None:
    build(tmp_path / "a")
    build(tmp_path / "b")
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a == b and "README.md" in a and "stats.json" in a
    # Row order in does not matter, and a sample's split does not depend on which other rows are present.
    shuffled = [make_rl(i) for i in reversed(range(60))]
    write_dataset(tmp_path / "c", "rl", shuffled, validation_fraction=0.2, seed=0)
    rl_files = {k: v for k, v in a.items() if k.startswith("rl/")}
    assert {k: v for k, v in digests(tmp_path / "c").items() if k.startswith("rl/")} == rl_files
    fewer = write_dataset(tmp_path / "d", "rl", shuffled[:30], validation_fraction=0.2, seed=0)
    val_ids = {r.sample.id for p in fewer.files["validation"] for r in read_parquet(p, "rl")}
    assert val_ids == {r.sample.id for r in shuffled[:30] if is_validation(r.sample.id, 0.2, 0)}


def test_card_yaml_parses_and_lists_both_configs(tmp_path: Path, hf_offline: None) -> None:
    from huggingface_hub import DatasetCard

    out = tmp_path / "out"
    build(out)
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    configs = {c["config_name"]: c for c in data["configs"]}
    assert set(configs) == {"cot", "rl"}
    assert {f["split"]: f["path"] for f in configs["rl"]["data_files"]} == {
        "train": "rl/train-*.parquet",
        "validation": "rl/validation-*.parquet",
    }
    assert data["license"] and "video-text-to-text" in data["task_categories"]
    assert "tiny" in card.text and "Deviations from the paper" in card.text and "charades_sta" in card.text
    assert all(f"`{code}` " in card.text for code in ("tg", "gqa", "mcq", "open"))  # task codes explained
    assert "thresholds under" not in card.text and "the pass rule under How it was built" in card.text


def test_empty_config_is_left_out_clearly(tmp_path: Path, hf_offline: None, caplog: pytest.LogCaptureFixture) -> None:
    import datasets
    from huggingface_hub import DatasetCard

    out = tmp_path / "out"
    written = write_dataset(out, "rl", [make_rl(i) for i in range(5)], validation_fraction=0.0)
    with caplog.at_level("WARNING"):
        empty = write_dataset(out, "cot", [], seed=0)
    assert empty.empty and not (out / "cot").exists() and "no rows" in caplog.text
    assert written.rows == {"train": 5, "validation": 0} and not shard_files(out, "rl", "validation")
    write_card(out, {"scale": 1.0, "unknown_fact": "kept"})
    card = DatasetCard.load(out / "README.md")
    configs = card.data.to_dict()["configs"]
    assert [c["config_name"] for c in configs] == ["rl"]
    assert [f["split"] for f in configs[0]["data_files"]] == ["train"]
    assert "`cot` config is empty" in card.text and "unknown_fact" in card.text
    assert len(datasets.load_dataset(str(out), "rl", split="train")) == 5


def test_rerun_with_fewer_shards_removes_stale_ones(tmp_path: Path) -> None:
    write_dataset(tmp_path, "rl", [make_rl(i) for i in range(10)], num_shards=3, validation_fraction=0.0)
    write_dataset(tmp_path, "rl", [make_rl(i) for i in range(10)], num_shards=1, validation_fraction=0.0)
    assert [Path(p).name for p in shard_files(tmp_path, "rl", "train")] == ["train-00000-of-00001.parquet"]


def test_wrong_row_type_and_bad_options_raise(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="RlRow"):
        write_dataset(tmp_path, "rl", [make_cot(0)])
    with pytest.raises(ValueError, match="config_name"):
        write_dataset(tmp_path, "sft", [])
    with pytest.raises(ValueError, match="validation_fraction"):
        write_dataset(tmp_path, "rl", [], validation_fraction=1.0)


def test_shards_are_capped_by_rows(tmp_path: Path) -> None:
    written = write_dataset(
        tmp_path, "rl", [make_rl(i) for i in range(7)], max_rows_per_shard=3, validation_fraction=0
    )
    # Rows go to shards by a hash of their id (shards are written in parallel), ~max_rows_per_shard each.
    shards = [[r.sample.id for r in read_parquet(p, "rl")] for p in written.files["train"]]
    assert len(shards) == 3 and sorted(i for s in shards for i in s) == sorted(make_rl(i).sample.id for i in range(7))
    assert all(s == sorted(s) for s in shards) and all(shards)


def test_stats_json_is_stable(tmp_path: Path) -> None:
    path = Path(write_stats(tmp_path, {"b": {2, 1}, "a": Path("x/y"), "c": CardFacts(seed=1)}))
    assert path.read_text() == dumps_stable({"a": "x/y", "b": [1, 2], "c": CardFacts(seed=1)})
    assert path.read_text().index('"a"') < path.read_text().index('"b"')


RL_FACTS = CardFacts(scale=0.001, seed=0, grader={"model": "rl-grader", "tools": "per source"}, deviations=["rl only"])
COT_FACTS = CardFacts(
    scale=0.002, seed=0, grader={"model": "cot-grader"}, teacher={"engine": "oracle"}, deviations=["cot only"]
)


def _write_build(out: Path, config: str) -> None:
    make, facts = (make_rl, RL_FACTS) if config == "rl" else (make_cot, COT_FACTS)
    write_dataset(out, config, [make(i) for i in range(30)], validation_fraction=0.2, seed=0)
    write_card_and_stats(out, config, facts, {"scale": facts.scale, "built": config})


@pytest.mark.parametrize("order", [("rl", "cot"), ("cot", "rl")])
def test_card_and_stats_describe_both_builds_in_either_order(tmp_path: Path, hf_offline: None, order) -> None:
    from huggingface_hub import DatasetCard

    out = tmp_path / "out"
    for config in order:
        _write_build(out, config)
    card = DatasetCard.load(out / "README.md")
    assert [c["config_name"] for c in card.data.to_dict()["configs"]] == ["cot", "rl"]
    text = (out / "README.md").read_text()
    assert "| setting | `cot` build | `rl` build |" in text
    assert "| grader model | cot-grader | rl-grader |" in text and "| teacher engine | oracle | - |" in text
    assert "| scale of the paper's mix | 0.002 | 0.001 |" in text
    assert "- rl only" in text and "- cot only" in text
    stats = json.loads((out / "stats.json").read_text())
    assert stats == {"cot": {"scale": 0.002, "built": "cot"}, "rl": {"scale": 0.001, "built": "rl"}}
    # The order the builds ran in does not show: same card and stats bytes as the other order.
    other = tmp_path / "other"
    for config in reversed(order):
        _write_build(other, config)
    assert (other / "README.md").read_bytes() == (out / "README.md").read_bytes()
    assert (other / "stats.json").read_bytes() == (out / "stats.json").read_bytes()


def test_one_build_alone_and_a_record_without_shards(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_build(out, "rl")
    text = (out / "README.md").read_text()
    assert "| grader model | rl-grader |" in text and "`rl` build" not in text and "teacher engine" not in text
    _write_build(out, "cot")
    for stale in shard_files(out, "cot", "train") + shard_files(out, "cot", "validation"):
        Path(stale).unlink()  # cot's shards gone: its record no longer describes the folder
    write_card_and_stats(out, "rl", RL_FACTS, {"scale": 0.001, "built": "rl"})
    assert json.loads((out / "stats.json").read_text()) == {"rl": {"scale": 0.001, "built": "rl"}}
    assert "cot-grader" not in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="config_name"):
        write_card_and_stats(out, "sft", RL_FACTS, {})


def test_load_built_reads_a_rebuilt_folder_of_the_same_name_afresh(tmp_path: Path, hf_offline: None) -> None:
    """`datasets` caches a local folder by name: two different builds named `build` must not share rows."""
    from mtvr_data.dataset_loading import load_built

    build(tmp_path / "a" / "build", n=12)
    build(tmp_path / "b" / "build", n=30)
    first = load_built(str(tmp_path / "a" / "build"), "rl")
    second = load_built(str(tmp_path / "b" / "build"), "rl")
    assert sum(len(s) for s in first.values()) == 12
    assert sum(len(s) for s in second.values()) == 30
    build(tmp_path / "a" / "build", n=20)  # rebuilt in place
    assert sum(len(s) for s in load_built(str(tmp_path / "a" / "build"), "rl").values()) == 20


def _load_rows(folder: str) -> int:
    from mtvr_data.dataset_loading import load_built

    return sum(len(s) for s in load_built(folder, "rl").values())


def test_load_built_reuses_one_cache_per_content_and_is_safe_from_several_processes(
    tmp_path: Path, hf_offline: None
) -> None:
    """Training processes load the same folder at once: they must share one prepared cache, never delete it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mtvr_data.dataset_loading import load_built

    folder = tmp_path / "build"
    build(folder, n=16)
    first, again = load_built(str(folder), "rl"), load_built(str(folder), "rl")
    split = next(iter(first))
    assert [f["filename"] for f in first[split].cache_files] == [f["filename"] for f in again[split].cache_files]
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert list(pool.map(_load_rows, [str(folder)] * 8)) == [16] * 8
