"""`mtvr build-rl` end to end on the demo corpus with the tiny checkpoint: accounting, shards, card, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtvr_data.parquet_io import read_parquet
from pipelines.accounting import check_accounting, read_accounting
from pipelines.build_rl import CHAIN
from pipelines.cli import main
from pipelines.config import load_config
from pipelines.demo import demo_build_config

TOOL_SOURCES = {"vidchapters", "longvideo_reason"}


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "rl").glob("*.parquet"))}


#: The grader's model family: VITAL's Qwen2.5-VL, Qwen3-VL (its frames, time text and template) and Qwen3.5 (Qwen3-VL's
#: frames and time text, its own template, hybrid linear/full attention) on the tests that say what a build is
#: (`default_family_only` keeps the resume and runner tests to the default family).
FAMILIES = ["qwen2_5_vl", "qwen3_vl", "qwen3_5"]


@pytest.fixture(scope="module", params=FAMILIES)
def built(
    demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, tiny_checkpoints
) -> dict:
    family = request.param
    work = tmp_path_factory.mktemp(f"build_rl_{family}")
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    tiny = tiny_checkpoints(family)
    config = demo_build_config(work, manifest, tiny, corpus=demo_corpus)
    assert main(["build-rl", str(config), "--", "--runner=DirectRunner"]) == 0
    out = work / "build"
    return {"config": config, "out": out, "manifest": manifest, "shards": _shard_bytes(out), "family": family}


def default_family_only(built: dict) -> None:
    """Resume and runner behaviour does not depend on the model family: run those on the default one only."""
    if built["family"] != FAMILIES[0]:
        pytest.skip("family-independent; run on the default family")


def test_accounting_chain_and_planted_faults(built):
    table = read_accounting(built["out"])
    check_accounting(table, chain=CHAIN)
    stages = {s["stage"]: s for s in table["stages"]}
    assert stages["read"]["in"] == 55 and stages["probe"]["kept"] == 35
    assert stages["grade"]["in"] == stages["contamination"]["kept"]
    assert stages["balance"]["in"] == stages["grade"]["kept"]
    # a model stage's row says where its results came from: a first build computes every one (a count of 0 is
    # left out of the row, as `render_accounting` reads it)
    assert stages["grade"].get("cached", 0) == 0 and stages["grade"]["computed"] == stages["grade"]["in"]
    assert "cached" not in stages["probe"]
    rejected = [json.loads(line) for f in (built["out"] / "rejected").glob("*.jsonl") for line in f.open()]
    reasons = {(e["stage"], e["reason"]) for e in rejected}
    for fault in built["manifest"]["broken"]:
        assert ("probe", fault["reason"]) in reasons
    assert ("balance", "not_in_mix") not in reasons  # LongVideo-Reason is graded with tools: its tool/ cell


def test_tool_entries_give_tool_rows_in_the_same_build(built):
    """configs/demo_rl.yaml marks LongVideo-Reason and VidChapters `tools: true`: one build writes both parts."""
    from mtvr_data.mixing import mix_key

    rows = [r for p in sorted((built["out"] / "rl").glob("*.parquet")) for r in read_parquet(p, "rl")]
    by_part = {(r.sample.source, r.tools) for r in rows}
    assert {s for s, tools in by_part if tools} == TOOL_SOURCES
    assert {s for s, tools in by_part if not tools} == {"charades_sta", "nextgqa", "video_r1", "activitynet_captions"}
    assert {mix_key(r) for r in rows if r.tools} == {"tool/vidchapters", "tool/longvideo_reason"}
    # Graded with tools means a different result-cache key: one entry per graded sample, two config hashes.
    entries = [json.loads(p.read_text())["key"] for p in (built["out"] / "cache" / "grade").rglob("*.json")]
    hashes = {e["config_hash"] for e in entries}
    assert len(hashes) == 2 and len(entries) == len({e["sample_id"] for e in entries})
    grading = json.loads((built["out"] / "stats.json").read_text())["rl"]["grading"]
    assert grading["tools"] == "per source" and grading["tool_sources"] == sorted(TOOL_SOURCES)
    assert "grader tool_sources | ['longvideo_reason', 'vidchapters']" in (built["out"] / "README.md").read_text()


def test_a_sample_in_both_parts_is_graded_both_ways_under_separate_cache_keys(built, tmp_path):
    default_family_only(built)
    """VidChapters listed with and without tools (as configs/paper_rl.yaml does): two rows per sample, no collision."""
    import yaml

    settings = yaml.safe_load(built["config"].read_text())
    (entry,) = [e for e in settings["sources"] if e["source"] == "vidchapters"]
    settings["sources"] = [{**entry, "tools": False}, {**entry, "tools": True}]
    settings["out"] = str(tmp_path / "both")
    config = tmp_path / "both.yaml"
    config.write_text(yaml.safe_dump(settings))
    assert main(["build-rl", str(config), "--", "--runner=DirectRunner"]) == 0
    out = tmp_path / "both"
    check_accounting(read_accounting(out), chain=CHAIN)
    rows = [r for p in sorted((out / "rl").glob("*.parquet")) for r in read_parquet(p, "rl")]
    text = {r.sample.id for r in rows if not r.tools}
    tool = {r.sample.id for r in rows if r.tools}
    assert text and text == tool and len(rows) == 2 * len(text)
    entries = [json.loads(p.read_text())["key"] for p in (out / "cache" / "grade").rglob("*.json")]
    assert len(entries) == 2 * len(text)
    per_sample: dict[str, set[str]] = {}
    for e in entries:
        per_sample.setdefault(e["sample_id"], set()).add(e["config_hash"])
    assert set(per_sample) == text and all(len(h) == 2 for h in per_sample.values())


def test_shards_and_card_load(built, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    # cache_dir: the variable above is read when `datasets` is first imported; builds of the other families in this
    # session write shards of the same names, which must not be served from an earlier test's cache
    ds = load_dataset(str(built["out"]), "rl", split="train", cache_dir=str(tmp_path / "cache"))
    stages = {s["stage"]: s for s in read_accounting(built["out"])["stages"]}
    n_val = sum(1 for _ in (built["out"] / "rl").glob("validation-*.parquet"))
    assert len(ds) <= stages["balance"]["kept"] and (len(ds) == stages["balance"]["kept"] or n_val)
    row = ds[0]
    assert row["num_rollouts"] == 4 and 0.0 <= row["pass_rate"] <= 1.0
    assert row["difficulty"] == pytest.approx(1.0 - row["pass_rate"])
    # the policy is named portably: engine kind and the checkpoint's content hash, never its path
    engine = load_config(built["config"]).grade.engine
    assert engine.identity.startswith("sha256:") and set(ds["policy"]) == {engine.name}
    assert engine.name == f"transformers:{engine.identity}"
    entries = [json.loads(p.read_text())["key"] for p in (built["out"] / "cache" / "grade").rglob("*.json")]
    assert {(e["engine"], e["model"]) for e in entries} == {("transformers", engine.identity)}
    card = DatasetCard.load(built["out"] / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["rl"]
    # the card, as a person reads it: the grader by its portable name (no path of this machine), the pass rule's
    # real thresholds (not `{}`)
    model_row = next(line for line in card.text.splitlines() if line.startswith("| grader model |"))
    assert engine.identity in model_row and str(built["out"].parent) not in card.text and "/tmp/" not in model_row
    rule_row = next(line for line in card.text.splitlines() if line.startswith("| pass rule |"))
    assert "{}" not in rule_row and '"tg_min_iou": 0.5' in rule_row and '"min_reward": 0.5' in rule_row


def test_rerun_reuses_model_work_and_writes_the_same_shards(built, monkeypatch):
    default_family_only(built)
    import pipelines.model_stage

    cache = built["out"] / "cache"
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")}
    assert before, "grading results were cached"
    loads: list[str] = []
    make_engine = pipelines.model_stage.make_engine

    def counting(kind, **settings):
        loads.append(kind)
        return make_engine(kind, **settings)

    monkeypatch.setattr(pipelines.model_stage, "make_engine", counting)  # the DirectRunner runs in this process
    assert main(["build-rl", str(built["config"]), "--", "--runner=DirectRunner"]) == 0
    assert loads == []  # every result cached: the engine is never built
    after = {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")}
    assert after == before  # no result recomputed or rewritten
    assert _shard_bytes(built["out"]) == built["shards"]
    grade = {s["stage"]: s for s in read_accounting(built["out"])["stages"]}["grade"]
    assert grade["cached"] == grade["in"] > 0 and grade.get("computed", 0) == 0


def test_multi_processing_runner_gives_the_same_accounting(built, tmp_path):
    default_family_only(built)
    """The whole build with 2 worker processes: whatever does not pickle fails here; the counts must match."""
    import yaml

    settings = yaml.safe_load(built["config"].read_text())
    settings["out"] = str(tmp_path / "mp")
    config = tmp_path / "mp.yaml"
    config.write_text(yaml.safe_dump(settings))
    args = [
        "build-rl",
        str(config),
        "--",
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ]
    assert main(args) == 0
    ours, theirs = read_accounting(tmp_path / "mp"), read_accounting(built["out"])
    assert [(s["stage"], s["in"], s["kept"]) for s in ours["stages"]] == [
        (s["stage"], s["in"], s["kept"]) for s in theirs["stages"]
    ]
