"""`mtvr build-cot` end to end on the demo corpus (tiny grader, oracle teacher), after build-rl into the same folder:
accounting, verified chains, shards that load, a card with both configs, resume; and the oracle engine itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from model.engine_api import GenerationRequest, SamplingSettings
from model.engines import make_engine
from model.engines.oracle_engine import OracleEngine, oracle_text
from model.prompts import PromptConfig, user_text
from model.rollout import RolloutConfig, RolloutRunner
from model.teacher import HINT_HEAD, TeacherConfig, hint_for, noisy_interval, teacher_rollouts, verify
from mtvr_data.frames import FrameBudget
from mtvr_data.parquet_io import read_parquet
from mtvr_data.parsing import check_format, parse_blocks, parse_tool_call
from mtvr_data.rewards import task_reward
from mtvr_data.schema import CotRow, Sample
from pipelines.accounting import check_accounting, read_accounting
from pipelines.build_cot import CHAIN, read_cot_accounting, rejected_dir
from pipelines.build_rl import CHAIN as RL_CHAIN
from pipelines.cli import main
from pipelines.demo import demo_build_config

TOOL_SOURCES = {"vidchapters", "longvideo_reason"}
HINT_PREFIX = HINT_HEAD.split("{answer}")[0]


def _shard_bytes(out: Path, config: str) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / config).glob("*.parquet"))}


def _rows(out: Path) -> list[CotRow]:
    return [r for p in sorted((out / "cot").glob("*.parquet")) for r in read_parquet(p, "cot")]  # type: ignore[misc]


#: The grader's model family (as in test_build_rl.py): VITAL's Qwen2.5-VL for every test, and Qwen3-VL for the one
#: end-to-end test of what a teacher build writes (`default_family_only` keeps the others to the default family, to
#: keep the suite's time down).
FAMILIES = ["qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module", params=FAMILIES)
def built(
    demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, tiny_checkpoints
) -> dict:
    family = request.param
    work = tmp_path_factory.mktemp(f"build_cot_{family}")
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    tiny = tiny_checkpoints(family)
    rl_config = demo_build_config(work, manifest, tiny, corpus=demo_corpus)
    cot_config = demo_build_config(work, manifest, tiny, corpus=demo_corpus, kind="cot")
    out = work / "build"
    assert main(["build-rl", str(rl_config), "--", "--runner=DirectRunner"]) == 0
    rl_accounting = (out / "accounting.json").read_bytes()
    rl_rejected = {p.name: p.read_bytes() for p in (out / "rejected").glob("*.jsonl")}
    assert main(["build-cot", str(cot_config), "--", "--runner=DirectRunner"]) == 0
    return {
        "config": cot_config,
        "out": out,
        "videos": demo_corpus / "videos",
        "rl_accounting": rl_accounting,
        "rl_rejected": rl_rejected,
        "rl_shards": _shard_bytes(out, "rl"),
        "shards": _shard_bytes(out, "cot"),
        "family": family,
    }


def default_family_only(built: dict) -> None:
    """Tests other than the one end-to-end test of the rows run on the default family only (suite time)."""
    if built["family"] != FAMILIES[0]:
        pytest.skip("run on the default family only")


def test_accounting_chain_sums_and_builds_keep_their_own_records(built):
    default_family_only(built)
    out = built["out"]
    table = read_cot_accounting(out)
    check_accounting(table, chain=CHAIN)
    stages = {s["stage"]: s for s in table["stages"]}
    assert [s["stage"] for s in table["stages"]] == list(CHAIN)
    assert stages["read"]["in"] == 55 and stages["probe"]["kept"] == 35
    assert stages["verify"]["kept"] == stages["teacher"]["in"] > 0  # the oracle's chains all verify
    assert stages["balance"]["kept"] < stages["balance"]["in"]  # the demo has more rows than some tiny cells
    # grading reuses build-rl's results (same grade block, same cache keys); the teacher computes its chains
    # (a count of 0 is left out of a row, as `render_accounting` reads it)
    assert stages["grade"]["cached"] == stages["grade"]["in"] > 0 and stages["grade"].get("computed", 0) == 0
    assert stages["teacher"]["computed"] == stages["teacher"]["in"] and stages["teacher"].get("cached", 0) == 0
    assert not any(k in stages["verify"] for k in ("cached", "computed"))
    reasons = {json.loads(line)["reason"] for f in Path(rejected_dir(out)).glob("*.jsonl") for line in f.open()}
    assert {"video_missing", "over_target"} <= reasons
    # build-rl's records in the same folder are untouched, and still add up on their own.
    assert (out / "accounting.json").read_bytes() == built["rl_accounting"]
    assert {p.name: p.read_bytes() for p in (out / "rejected").glob("*.jsonl")} == built["rl_rejected"]
    check_accounting(read_accounting(out), chain=RL_CHAIN)
    assert _shard_bytes(out, "rl") == built["rl_shards"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["cot"]["accounting"] == table and stats["rl"]["accounting"] == read_accounting(out)  # both kept


def test_rows_are_verified_chains_and_load(built, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    from datasets import load_dataset

    out = built["out"]
    loaded = load_dataset(str(out), "cot", cache_dir=str(tmp_path / "cache"))  # not an earlier family's build
    rows = _rows(out)
    kept = {s["stage"]: s for s in read_cot_accounting(out)["stages"]}["balance"]["kept"]
    assert sum(len(split) for split in loaded.values()) == len(rows) == kept
    assert len({r.sample.id for r in rows}) == len(rows)  # one chain per sample
    for row in rows:
        assistant = "\n".join(m.content for m in row.messages if m.role == "assistant")
        assert check_format(assistant, final=True) is None, row.sample.id
        assert task_reward(row.sample, assistant).passed, row.sample.id
        assert row.answer_conditioned and row.teacher == "oracle:oracle-demo"  # EngineConfig.name: kind:identity
        assert not any(HINT_PREFIX in m.content for m in row.messages)  # the student's prompt has no hint
        tool_turns = [m for m in row.messages if m.role == "tool"]
        if row.sample.source in TOOL_SOURCES:
            assert row.tools and row.num_tool_calls == 1 and len(tool_turns) == 1, row.sample.id
            clip = tool_turns[0].clip
            assert clip is not None and 0.0 <= clip.start < clip.end <= row.sample.duration
            assert clip.end - clip.start > 1.0 and clip.frame_times
        else:
            assert not row.tools and not tool_turns and row.num_tool_calls == 0, row.sample.id
    assert {r.sample.source for r in rows if r.tools} == TOOL_SOURCES


def test_card_lists_both_configs(built):
    default_family_only(built)
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(built["out"] / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["cot", "rl"]
    text = (built["out"] / "README.md").read_text()
    assert "Balance of `cot`" in text and "Balance of `rl`" in text
    assert "| setting | `cot` build | `rl` build |" in text
    assert "| teacher engine | oracle | - |" in text  # build-rl has no teacher
    tool_sources = "['longvideo_reason', 'vidchapters']"
    assert f"| grader tool_sources | {tool_sources} | {tool_sources} |" in text
    assert any(line.startswith("- text/nextgqa: ") for line in text.splitlines())  # build-rl's deviations stay


def test_rerun_makes_no_teacher_calls_and_writes_the_same_shards(built, monkeypatch):
    default_family_only(built)
    import pipelines.model_stage

    cache = built["out"] / "cache" / "teach"
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")}
    assert before, "teacher results were cached"
    calls: list[int] = []
    original = OracleEngine.generate

    async def counting(self, requests):
        calls.append(len(requests))
        return await original(self, requests)

    loads: list[str] = []
    make_engine = pipelines.model_stage.make_engine

    def counting_loads(kind, **settings):
        loads.append(kind)
        return make_engine(kind, **settings)

    monkeypatch.setattr(OracleEngine, "generate", counting)  # the DirectRunner runs in this process
    monkeypatch.setattr(pipelines.model_stage, "make_engine", counting_loads)
    assert main(["build-cot", str(built["config"]), "--", "--runner=DirectRunner"]) == 0
    assert calls == []
    assert loads == []  # grading and teaching all cached: neither the grader nor the teacher is built
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")} == before
    assert _shard_bytes(built["out"], "cot") == built["shards"]
    stages = {s["stage"]: s for s in read_cot_accounting(built["out"])["stages"]}
    for stage in ("grade", "teacher"):
        assert stages[stage]["cached"] == stages[stage]["in"] > 0 and stages[stage].get("computed", 0) == 0


# --- the oracle engine -----------------------------------------------------------------------------------------------


def _samples(built) -> list[Sample]:
    """One sample per (source, task) of the build: every answer format of the demo."""
    by_kind: dict[tuple[str, str], Sample] = {}
    for row in _rows(built["out"]):
        by_kind.setdefault((row.sample.source, row.sample.task), row.sample)
    assert {s.task for s in by_kind.values()} == {"mcq", "open", "tg", "gqa"}
    return list(by_kind.values())


def _prompt(sample: Sample, tools: bool, hint: str | None) -> list[dict]:
    words = user_text(sample, tools=tools) + (f"\n{hint}" if hint else "")
    return [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": [{"type": "text", "text": words}]},
    ]


def test_oracle_answers_every_format_from_the_hint(built):
    default_family_only(built)
    config = TeacherConfig()
    for sample in _samples(built):
        text = oracle_text(_prompt(sample, False, hint_for(sample, False, config)), tools_offered=False)
        assert check_format(text, final=True) is None and task_reward(sample, text).passed, (sample.task, text)
        if sample.modality != "video":
            continue
        messages = _prompt(sample, True, hint_for(sample, True, config))
        call = oracle_text(messages, tools_offered=True)
        assert check_format(call, final=False) is None
        (block,) = [b for b in parse_blocks(call) if b.kind == "tool_call"]
        args = parse_tool_call(block.content).arguments
        start, end = args["start_time"], args["end_time"]
        if sample.task in ("tg", "gqa"):
            assert (start, end) == noisy_interval(sample)
        assert start >= 0.0 and end <= sample.duration and end - start > 1.0
        messages += [
            {"role": "assistant", "content": [{"type": "text", "text": call}]},
            {"role": "tool", "content": [{"type": "text", "text": "Video clip."}]},
        ]
        answer = oracle_text(messages, tools_offered=True)
        assert check_format(call + "\n" + answer, final=True) is None
        assert task_reward(sample, call + "\n" + answer).passed


def test_oracle_without_the_hint_fails_verification(built):
    """Through the real rollout loop: with the hint every chain verifies, without it none does."""
    default_family_only(built)
    samples = _samples(built)
    small = RolloutConfig(prompt=PromptConfig(budget=FrameBudget(max_frames=8)))  # a fast test: few frames
    config = TeacherConfig(rollout=small)
    engine = make_engine("oracle")
    runs = asyncio.run(teacher_rollouts(samples, engine, config=config, video_root=built["videos"]))
    assert all(verify(r.trajectories[0], r.sample, require_tools=r.tools)[0] for r in runs)
    for run in runs:
        rollout = config.tool_rollout() if run.tools else config.text_rollout()
        runner = RolloutRunner(engine, rollout, video_root=built["videos"])
        (group,) = asyncio.run(runner.run([run.sample], k=1))  # the same prompt, no hint
        ok, reason = verify(group[0], run.sample, require_tools=run.tools)
        assert not ok and reason == "wrong_answer", (run.sample.id, reason)
        assert "unknown" in group[0].turns[-1].text


def test_oracle_engine_protocol():
    sample_prompt = [{"role": "user", "content": [{"type": "text", "text": "This is an image.\nWhat is it?"}]}]
    engine = OracleEngine()
    (full,) = asyncio.run(engine.generate([GenerationRequest(sample_prompt, SamplingSettings(n=3))]))
    assert len(full) == 3 and all(c.finish_reason == "stop" and c.stop_string == "</answer>" for c in full)
    assert full[0].text.endswith("</answer>") and full[0].completion_tokens == len(full[0].text.split())
    assert full[0].prompt_tokens == 7  # words of the prompt
    (short,) = asyncio.run(engine.generate([GenerationRequest(sample_prompt, SamplingSettings(max_new_tokens=3))]))
    assert short[0].finish_reason == "length" and len(short[0].text.split()) == 3
    assert engine.calls == 2


def test_build_rl_after_build_cot_keeps_the_cot_facts(built):
    """The other order: build-rl rerun into the folder build-cot wrote last (its grading all cached)."""
    default_family_only(built)
    from huggingface_hub import DatasetCard

    out = built["out"]
    rl_config = built["config"].with_name("build_rl.yaml")
    assert main(["build-rl", str(rl_config), "--", "--runner=DirectRunner"]) == 0
    card = DatasetCard.load(out / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["cot", "rl"]
    text = (out / "README.md").read_text()
    assert "| teacher engine | oracle | - |" in text and "teacher model | oracle-demo" in text
    assert "Balance of `cot`" in text and "Balance of `rl`" in text and "DEMO BUILD" in text
    stats = json.loads((out / "stats.json").read_text())
    assert stats["cot"]["accounting"] == read_cot_accounting(out) and stats["cot"]["teacher"]["engine"] == "oracle"
    assert stats["rl"]["accounting"] == read_accounting(out)
    assert _shard_bytes(out, "cot") == built["shards"] and _shard_bytes(out, "rl") == built["rl_shards"]


def test_build_cot_refuses_one_file_in_both_tool_parts(built):
    default_family_only(built)
    import yaml

    from model.config_error import ConfigError
    from pipelines.build_cot import cot_settings
    from pipelines.config import BuildConfig
    from pipelines.stage_settings import GradeSettings, TeachSettings

    settings = yaml.safe_load(built["config"].read_text())
    (entry,) = [e for e in settings["sources"] if e["source"] == "vidchapters"]
    settings["sources"].append({**entry, "tools": False})
    with pytest.raises(ConfigError, match="vidchapters"):
        cot_settings(BuildConfig.from_dict(settings))
    settings["sources"].pop()
    grading, teaching = cot_settings(BuildConfig.from_dict(settings))  # one entry per file: fine
    assert isinstance(grading, GradeSettings) and isinstance(teaching, TeachSettings)
    # the teacher's block over its defaults: the config's k and frames, the teacher's temperature
    assert teaching.k == 1 and teaching.frames.max_frames == 8 and teaching.sampling.temperature == 0.7
    assert grading.k == 4 and grading.keep == "all" and not grading.rollout.tools
