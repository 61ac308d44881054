"""`balance.mix` as configuration and sources of your own, end to end through `mtvr build-rl` on the DirectRunner.

The grader is the `oracle` test engine (no checkpoint, a few seconds a build); the DirectRunner runs in this
process, so patching `OracleEngine.generate` and `model_stage.make_engine` counts every engine call and load.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtvr_data.adapters import registry
from mtvr_data.demo_annotations import write_extra
from pipelines.accounting import check_accounting, read_accounting
from pipelines.build_rl import CHAIN
from pipelines.cli import main


def build_config(out: Path, sources: list[dict[str, Any]], mix: Any, **balance: Any) -> dict[str, Any]:
    return {
        "out": str(out),
        "contamination": [],
        "sources": sources,
        "grade": {
            "engine": {"kind": "oracle", "settings": {"model": "oracle-demo"}},
            "k": 2,
            "keep": "all",  # the oracle answers `unknown` without a hint: 0 of K, kept
            "frames": {"max_frames": 4},
            "sampling": {"max_new_tokens": 16, "seed": 0},
            "rollout": {"tools": False},
        },
        "balance": {"mix": mix, "seed": 0, **balance},
    }


def write(tmp_path: Path, data: dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture()
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Every oracle `generate` call and every engine built in this process."""
    import pipelines.model_stage
    from model.engines.oracle_engine import OracleEngine

    seen: dict[str, list[Any]] = {"generate": [], "loads": []}
    generate, make_engine = OracleEngine.generate, pipelines.model_stage.make_engine

    async def counting(self, requests):  # noqa: ANN001, ANN202 - the engine protocol
        seen["generate"].append(len(requests))
        return await generate(self, requests)

    def counting_loads(kind, **settings):  # noqa: ANN001, ANN202
        seen["loads"].append(kind)
        return make_engine(kind, **settings)

    monkeypatch.setattr(OracleEngine, "generate", counting)
    monkeypatch.setattr(pipelines.model_stage, "make_engine", counting_loads)
    return seen


def shard_rows(out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The `rl` rows as `datasets.load_dataset` reads them (all splits)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from datasets import load_dataset

    loaded = load_dataset(str(out), "rl", cache_dir=str(tmp_path / "hf_cache"))  # one cache per build read
    return [row for split in loaded.values() for row in split]


# --- a source with no cell in the mix -------------------------------------------------------------------------------


def test_a_tools_setting_with_no_cell_in_the_mix_fails_before_any_engine_call(
    tmp_path, demo_corpus, engine_calls, capsys
) -> None:
    """Charades-STA graded with tools: the vital RL mix has no `tool/charades_sta`. Before: every sample graded,
    every row `not_in_mix`, exit 0 and an empty dataset. Now: one config error line, exit 2, no model work."""
    charades = {
        "source": "charades_sta",
        "annotations": str(demo_corpus / "annotations" / "charades_sta" / "charades_sta_train.txt"),
        "videos": str(demo_corpus / "videos"),
        "tools": True,
    }
    config = write(tmp_path, build_config(tmp_path / "build", [charades], "vital"))
    assert main(["build-rl", str(config), "--", "--runner=DirectRunner"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(
        "mtvr: error: balance.mix: source 'charades_sta' (tools: true)"
    )
    assert "could use tool/charades_sta" in err and "text/charades_sta" in err  # the cell it needs, the mix's cells
    assert engine_calls == {"generate": [], "loads": []}
    assert not (tmp_path / "build").exists()  # refused before anything was written


def test_a_mapping_that_misses_a_source_names_the_cells_it_could_use(tmp_path, demo_corpus, engine_calls, capsys):
    video_r1 = {
        "source": "video_r1",
        "annotations": str(demo_corpus / "annotations" / "video_r1" / "Video-R1-demo.json"),
        "videos": str(demo_corpus / "videos"),
    }
    config = write(tmp_path, build_config(tmp_path / "build", [video_r1], {"text/charades_sta": 5}))
    assert main(["build-rl", str(config)]) == 2
    err = capsys.readouterr().err
    assert "could use text/video_r1_video, text/video_r1_image" in err and engine_calls["loads"] == []


# --- mix: none and a mapping, from QVHighlights and NExT-QA ----------------------------------------------------------


@pytest.fixture()
def extra_sources(tmp_path: Path, demo_corpus: Path) -> list[dict[str, Any]]:
    """QVHighlights and NExT-QA demo annotations (3 rows each) about the demo corpus's videos."""
    files = write_extra(tmp_path / "corpus")
    return [
        {
            "source": f.source,
            "annotations": str(tmp_path / "corpus" / f.annotations),
            "videos": str(demo_corpus / "videos"),
        }
        for f in files
    ]


def test_mix_none_writes_the_rows_of_sources_outside_the_paper_mix(
    tmp_path, extra_sources, engine_calls, capsys, monkeypatch
) -> None:
    out = tmp_path / "build"
    config = write(tmp_path, build_config(out, extra_sources, "none"))
    assert main(["build-rl", str(config), "--", "--runner=DirectRunner"]) == 0
    check_accounting(read_accounting(out), chain=CHAIN)
    rows = shard_rows(out, tmp_path, monkeypatch)
    by_source: dict[str, int] = {}
    for row in rows:
        by_source[row["source"]] = by_source.get(row["source"], 0) + 1
    assert by_source == {"qvhighlights": 3, "nextqa": 3}
    assert engine_calls["generate"]  # graded for real
    card = (out / "README.md").read_text()
    assert "| mix | none |" in card and "Balance of `rl` to no mix (`balance.mix: none`" in card
    assert "count is our choice" not in card  # the vital table's notes belong to the vital mix only
    stats = json.loads((out / "stats.json").read_text())["rl"]
    assert stats["mix"] == "none" and stats["targets"] == {}
    balance = json.loads((out / "balance.json").read_text())
    assert balance["text/qvhighlights"] == {"target": 3, "available": 3, "kept": 3, "rejected": 0, "shortfall": 0}

    # The same sources balanced to a mapping: a fraction of what a cell has (half of 3, rounded half up: 2), a count
    # scaled by balance.scale (2 x 0.5 = 1). Grading is all cached: no model work the second time.
    before = len(engine_calls["generate"])
    mapping = {"text/qvhighlights": 0.5, "text/nextqa": 2}
    config = write(tmp_path, build_config(out, extra_sources, mapping, scale=0.5), "mapping.yaml")
    assert main(["build-rl", str(config), "--", "--runner=DirectRunner"]) == 0
    assert len(engine_calls["generate"]) == before
    check_accounting(read_accounting(out), chain=CHAIN)
    balance = json.loads((out / "balance.json").read_text())
    assert (balance["text/qvhighlights"]["kept"], balance["text/nextqa"]["kept"]) == (2, 1)
    rejected = [json.loads(line) for line in (out / "rejected" / "balance.jsonl").open()]
    assert {r["reason"] for r in rejected} == {"over_target"} and len(rejected) == 3
    card = (out / "README.md").read_text()
    assert '`balance.mix: {"text/nextqa": 1, "text/qvhighlights": 0.5}`' in card


# --- a source of samples, and an adapter from another package -------------------------------------------------------

PLUGIN = '''
"""A third-party adapter: one JSON line per clip question, {"clip", "question", "start", "end"}."""

from mtvr_data.adapters.base import SourceAdapter, fit_span, iter_jsonl, require, to_float


class DemoClips(SourceAdapter):
    name = "demo_clips"
    description = "demo clips (JSON lines of clip, question, start, end)"

    def records(self):
        return iter_jsonl(self.annotations)

    def to_samples(self, record):
        line = record.value
        span = fit_span(to_float(require(line, "start"), "start"), to_float(require(line, "end"), "end"), None)
        return [self.make_sample(task="tg", answer_type="span", video=require(line, "clip"),
                                 question=require(line, "question"), span=span)]
'''


def install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, *, broken: bool = False) -> None:
    """A package with an `mtvr.adapters` entry point, importable from `root` (a folder on `sys.path`)."""
    (root / "mtvr_plugin_demo.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    dist = root / "mtvr_plugin_demo-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mtvr-plugin-demo\nVersion: 0.1\n", encoding="utf-8")
    points = "[mtvr.adapters]\ndemo_clips = mtvr_plugin_demo:DemoClips\n"
    if broken:
        points += "half_done = mtvr_plugin_missing:Adapter\n"
    (dist / "entry_points.txt").write_text(points, encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))
    registry.clear_entry_point_cache()


@pytest.fixture()
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - yields a folder
    root = tmp_path / "site"
    root.mkdir()
    yield root
    monkeypatch.undo()  # sys.path back first, so the cache is not refilled from the plugin's folder
    registry.clear_entry_point_cache()


def test_an_entry_point_adapter_is_listed_and_its_rows_flow_through_build_rl(
    tmp_path, plugin_root, demo_corpus, engine_calls, capsys, monkeypatch
) -> None:
    install_plugin(plugin_root, monkeypatch, broken=True)
    assert main(["sources"]) == 0  # a broken entry point warns; the rest is listed
    listed = capsys.readouterr()
    (line,) = [x for x in listed.out.splitlines() if x.startswith("demo_clips")]
    assert "[entry point: mtvr-plugin-demo 0.1 (mtvr_plugin_demo:DemoClips)]" in line
    assert "charades_sta" in listed.out and "half_done" not in listed.out
    assert "warning: skipped source 'half_done'" in listed.err and "mtvr-plugin-demo 0.1" in listed.err

    clips = tmp_path / "clips.jsonl"
    clips.write_text(
        json.dumps({"clip": "DM0A1.mp4", "question": "When does the red square show?", "start": 5.0, "end": 12.0})
        + "\n"
        + json.dumps({"clip": "DM0B2.mp4", "question": "When is the green square shown?", "start": 2.0, "end": 9.5})
        + "\n",
        encoding="utf-8",
    )
    entry = {"source": "demo_clips", "annotations": str(clips), "videos": str(demo_corpus / "videos")}
    out = tmp_path / "build"
    config = write(tmp_path, build_config(out, [entry], {"text/demo_clips": 1.0}))
    assert main(["build-rl", str(config), "--", "--runner=DirectRunner"]) == 0
    check_accounting(read_accounting(out), chain=CHAIN)
    rows = shard_rows(out, tmp_path, monkeypatch)
    assert sorted(r["video"] for r in rows) == ["DM0A1.mp4", "DM0B2.mp4"] and {r["source"] for r in rows} == {
        "demo_clips"
    }

    # A config naming the broken entry point is refused when read, naming the distribution and the entry point.
    broken = {"source": "half_done", "annotations": str(clips), "videos": str(demo_corpus / "videos")}
    config = write(tmp_path, build_config(out, [broken], "none"), "broken.yaml")
    calls = len(engine_calls["generate"])
    capsys.readouterr()  # what loading the shards printed
    assert main(["build-rl", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "entry point 'half_done = mtvr_plugin_missing:Adapter'" in err
    assert "mtvr-plugin-demo 0.1 failed to load: ModuleNotFoundError" in err
    assert len(engine_calls["generate"]) == calls


def test_mtvr_samples_output_is_a_source_of_its_own(tmp_path, demo_corpus, engine_calls, monkeypatch) -> None:
    """`mtvr samples` writes Charades-STA samples; a `samples` entry builds them under their own mix cell."""
    parquet = tmp_path / "charades.parquet"
    assert main(["samples", "--source", "charades_sta", "--annotations",
                 str(demo_corpus / "annotations" / "charades_sta" / "charades_sta_train.txt"),
                 "--videos", str(demo_corpus / "videos"), "--out", str(parquet)]) == 0  # fmt: skip
    entry = {"source": "samples", "annotations": str(parquet), "videos": str(demo_corpus / "videos")}
    out = tmp_path / "build"
    config = write(tmp_path, build_config(out, [entry], {"text/charades_sta": 1.0}))
    assert main(["build-rl", str(config), "--", "--runner=DirectRunner"]) == 0
    check_accounting(read_accounting(out), chain=CHAIN)
    from mtvr_data.parquet_io import read_parquet

    written = {s.id for s in read_parquet(parquet, "sample")}
    rows = shard_rows(out, tmp_path, monkeypatch)
    assert {r["id"] for r in rows} == written and {r["source"] for r in rows} == {"charades_sta"}
