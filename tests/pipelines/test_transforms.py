"""The Beam transforms before model work (read -> probe -> dedup -> contamination) and the accounting, on the
demo corpus with the DirectRunner: planted faults reach the dead letters with their reason, sums hold,
metrics agree with the table, and a 2-process run keeps the same rows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from mtvr_data.adapters import make_adapter
from mtvr_data.dedup import load_contamination, normalise_question, video_key
from mtvr_data.normalize import normalize, resolve_media
from mtvr_data.schema import Sample
from pipelines.accounting import AccountingError, WriteRejected, check_accounting, read_accounting, render_accounting
from pipelines.config import BuildConfig, ConfigError, load_config
from pipelines.demo import _reported
from pipelines.transforms import PrepareSamples, ReadSources

CHAIN = ("read", "probe", "dedup", "contamination")
DUP_SOURCE = "longvideo_reason"


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.fixture(scope="module")
def setup(demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A YAML config over the demo sources, where one annotation file has a duplicated line (same id) and a
    near-duplicate (same video and question, another answer), and a contamination list naming one video and
    one question; plus the rows a plain-Python read of the corpus expects each of them to drop."""
    tmp = tmp_path_factory.mktemp("transforms")
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    sources = []
    for entry in manifest["sources"]:
        annotations = demo_corpus / entry["annotations"]
        if entry["source"] == DUP_SOURCE:
            lines = _lines(annotations)
            twin = json.loads(lines[1])  # problem_id 1 answers C; its copy answers A (another id, same question)
            assert twin["answer"] == "<answer>C</answer>"
            twin["answer"], twin["problem_id"] = "<answer>A</answer>", 101
            annotations = tmp / "longvideo_reason" / "train.jsonl"
            annotations.parent.mkdir()
            annotations.write_text("".join(lines) + lines[0] + json.dumps(twin) + "\n", encoding="utf-8")
        sources.append(
            {"source": entry["source"], "annotations": str(annotations), "videos": str(demo_corpus / "videos")}
        )

    reference: list[Sample] = []
    for s in sources:
        adapter = make_adapter(s["source"], s["annotations"])
        reference += [x for x in normalize(adapter, s["videos"]) if isinstance(x, Sample)]
    listed_video = next(s for s in reference if s.source == "nextgqa").video
    listed_question = next(s for s in reference if s.source == "charades_sta").question
    contamination = tmp / "eval_list.jsonl"
    contamination.write_text(
        json.dumps({"video": f"somewhere/{video_key(listed_video)}.webm", "benchmark": "demo"})
        + "\n\n"
        + json.dumps({"question": "  " + listed_question.upper() + " ?!"})
        + "\n",
        encoding="utf-8",
    )
    config_path = tmp / "build.yaml"
    config_path.write_text(
        json.dumps(
            {"out": "out", "contamination": ["eval_list.jsonl"], "sources": sources, "balance": {"scale": 0.5}}
        ),
        encoding="utf-8",
    )  # JSON is YAML
    return {
        "manifest": manifest,
        "config": load_config(config_path),
        "reference": reference,
        "listed_video": listed_video,
        "listed_question": listed_question,
    }


def _run(config: BuildConfig, out: Path, *args: str) -> tuple[Any, list[str]]:
    """Run PrepareSamples + WriteRejected into `out`; return the runner's result and the kept ids, sorted."""
    options = PipelineOptions(["--runner=DirectRunner", *args])
    p = beam.Pipeline(options=options)
    prepared = p | PrepareSamples(config)
    samples, dead = prepared
    _ = (dead, prepared.counts) | WriteRejected(str(out))
    _ = samples | beam.Map(lambda s: s.id) | beam.io.WriteToText(str(out / "kept_ids"), shard_name_template="")
    result = p.run()
    result.wait_until_finish()
    return result, sorted((out / "kept_ids").read_text().split())


@pytest.fixture(scope="module")
def run(setup: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("prepared")
    result, ids = _run(setup["config"], out)
    rejected = {
        p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in (out / "rejected").glob("*.jsonl")
    }
    return {"out": out, "result": result, "ids": ids, "table": read_accounting(out), "rejected": rejected}


def _stage(table: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(row for row in table["stages"] if row["stage"] == stage)


def test_every_planted_fault_is_a_rejection_with_its_reason(setup, run):
    errors = [e for rows in run["rejected"].values() for e in rows]
    planted = setup["manifest"]["malformed"] + setup["manifest"]["broken"]
    assert [p for p in planted if not _reported(errors, p)] == []
    assert all(e["stage"] == stage for stage, rows in run["rejected"].items() for e in rows)
    assert {e["reason"] for e in run["rejected"]["probe"]} == {"video_empty", "video_missing", "video_truncated"}


def test_accounting_sums_hold_and_chain(setup, run):
    table = run["table"]
    check_accounting(table, chain=CHAIN)
    assert [row["stage"] for row in table["stages"]] == list(CHAIN)
    assert _stage(table, "contamination")["kept"] == len(run["ids"])
    assert table["rejected"] == sum(len(rows) for rows in run["rejected"].values())
    expected = sum(s["expected_samples"] for s in setup["manifest"]["sources"]) + 2  # + the two planted copies
    assert _stage(table, "probe")["kept"] == expected
    text = render_accounting(table)
    assert "benchmark_contamination" in text and "duplicate_question" in text
    broken = json.loads(json.dumps(table))
    broken["stages"][2]["kept"] -= 1  # an element lost without a dead letter
    with pytest.raises(AccountingError, match="dedup"):
        check_accounting(broken)


def test_dedup_keeps_one_of_each_duplicate_with_the_smallest_id(setup, run):
    dedup = {e["reason"]: e for e in run["rejected"]["dedup"]}
    assert sorted(e["reason"] for e in run["rejected"]["dedup"]) == ["duplicate_id", "duplicate_question"]
    assert dedup["duplicate_id"]["location"] == "train.jsonl:8"  # the later copy loses: same id, larger origin
    twins = [
        s
        for s in setup["reference"]
        if s.source == DUP_SOURCE and s.meta_dict["origin"] in ("train.jsonl:2", "train.jsonl:9")
    ]
    assert len(twins) == 2 and twins[0].id != twins[1].id
    winner, loser = sorted(twins, key=lambda s: s.id)
    assert winner.id in run["ids"] and loser.id not in run["ids"]
    assert dedup["duplicate_question"]["raw"] == loser.id


def test_contamination_drops_the_listed_video_and_question(setup, run):
    dropped = {e["raw"]: e for e in run["rejected"]["contamination"]}
    assert {e["reason"] for e in dropped.values()} == {"benchmark_contamination"}
    by_video = {s.id for s in setup["reference"] if video_key(s.video) == video_key(setup["listed_video"])}
    by_question = {
        s.id
        for s in setup["reference"]
        if normalise_question(s.question) == normalise_question(setup["listed_question"])
    }
    assert by_video and by_question
    # The dedup losers are gone before this stage; every other matching row is dropped here and nowhere kept.
    dedup_losers = {e["raw"] for e in run["rejected"]["dedup"]}
    assert set(dropped) == (by_video | by_question) - dedup_losers
    assert not set(dropped) & set(run["ids"])
    assert any("eval_list.jsonl:1" in e["detail"] for e in dropped.values())
    assert any("eval_list.jsonl:3" in e["detail"] for e in dropped.values())


def test_metrics_counters_equal_the_table(setup, run):
    counters: dict[tuple[str, str], int] = {}
    for c in run["result"].metrics().query(MetricsFilter())["counters"]:
        key = (c.key.metric.namespace, c.key.metric.name)
        counters[key] = counters.get(key, 0) + c.committed
    for row in run["table"]["stages"]:
        ns = f"mtvr.{row['stage']}"
        assert counters.get((ns, "in"), 0) == row["in"], row["stage"]
        assert counters.get((ns, "kept"), 0) == row["kept"], row["stage"]
        got = {
            name[len("rejected_") :]: n
            for (space, name), n in counters.items()
            if space == ns and name.startswith("rejected_")
        }
        assert got == row["by_reason"], row["stage"]
    # Grouped by media, each file is probed once however many questions it has.
    media = {
        (str(resolve_media(s.videos, x.video)), x.modality)
        for s in setup["config"].sources
        for x in make_adapter(s.source, s.annotations).read()
        if isinstance(x, Sample)
    }
    assert counters[("mtvr.probe", "probes")] == len(media) < _stage(run["table"], "probe")["in"]


def test_multiprocess_runner_keeps_the_same_rows(setup, run, tmp_path):
    _, ids = _run(setup["config"], tmp_path, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert ids == run["ids"]
    assert read_accounting(tmp_path) == run["table"]


def test_cap_keeps_the_first_samples_in_file_order(setup, tmp_path):
    source = next(s for s in setup["config"].sources if s.source == "activitynet_captions")
    capped = BuildConfig(sources=[dataclasses.replace(source, cap=3)], out=str(tmp_path))
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        samples, _ = p | ReadSources(capped)
        _ = samples | beam.Map(lambda s: s.id) | beam.io.WriteToText(str(tmp_path / "ids"), shard_name_template="")
    adapter = make_adapter(source.source, source.annotations)
    first = [x.id for x in adapter.read() if isinstance(x, Sample)][:3]
    assert sorted((tmp_path / "ids").read_text().split()) == sorted(first)


# --- config and normalisation ---------------------------------------------------------------------------------------


def test_config_resolves_paths_and_types_its_blocks(setup):
    config = setup["config"]
    assert Path(config.out).is_absolute() and Path(config.out).name == "out"
    assert Path(config.contamination[0]).name == "eval_list.jsonl" and Path(config.contamination[0]).is_absolute()
    assert config.balance.scale == 0.5 and config.balance.seed == 0 and config.grade is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"out": "o", "sources": {"source": "nextqa"}}, "'sources' must be a list"),
        ({"out": 3, "sources": []}, "'out' must be a path"),
        ({"sources": []}, "missing top-level key 'out'"),
        ({"out": "o", "sources": [{"source": "nope", "annotations": "a"}]}, "unknown source 'nope'"),
        ({"out": "o", "sources": [{"source": "nextqa", "annotations": "a", "cap": -1}]}, "'cap' must be"),
        ({"out": "o", "sources": [{"source": "nextqa", "annotations": "a", "ext": 1}]}, "go under 'options'"),
        ({"out": "o", "sources": [{"source": "nextqa", "annotations": "a", "tools": "yes"}]}, "'tools' must be true"),
        ({"out": "o", "sources": [{"source": "nextqa", "annotations": "a"}], "contamination": 5}, "'contamination'"),
        ({"out": "o", "sources": [{"source": "nextqa", "annotations": "a"}], "grading": {}}, "grading: unknown top"),
        (
            {"out": "o", "sources": [{"source": "nextqa", "annotations": "a", "options": {"vid_mapp": "m"}}]},
            r"options: unknown \['vid_mapp'\]",
        ),
        (
            {"out": "o", "sources": [{"source": "nextqa", "annotations": a, "videos": a} for a in ("x", "y")]},
            "two video roots",
        ),
    ],
)
def test_config_errors_say_what_to_fix(data, message):
    with pytest.raises(ConfigError, match=message):
        BuildConfig.from_dict(data, base_dir="/tmp")


def test_source_entries_choose_their_tool_part():
    entries = [
        {"source": "nextqa", "annotations": "a"},
        {"source": "vidchapters", "annotations": "b", "tools": True},
        {"source": "charades_sta", "annotations": "c", "tools": False},
    ]
    grade = {"engine": {"kind": "oracle"}, "rollout": {"tools": False}}
    config = BuildConfig.from_dict({"out": "o", "sources": entries, "grade": grade}, base_dir="/tmp")
    assert [s.tools for s in config.sources] == [None, True, False]
    parts = config.tool_parts(default=False)
    assert list(parts) == [False, True]
    assert [s.source for s in parts[False].sources] == ["nextqa", "charades_sta"]
    assert [s.source for s in parts[True].sources] == ["vidchapters"]
    assert parts[True].out == config.out and parts[True].grade == config.grade
    # An entry without `tools` follows the default (the grade block's `tools`).
    assert [s.source for s in config.tool_parts(default=True)[True].sources] == ["nextqa", "vidchapters"]
    assert list(BuildConfig.from_dict({"out": "o", "sources": entries[:1]}).tool_parts(True)) == [True]


def test_normalisation_and_contamination_list_format(tmp_path):
    assert normalise_question("What does the MAN do -- after he sits down?") == normalise_question(
        "what does the man do after he sits down"
    )
    assert video_key("a/b/v_x1.mp4") == video_key("v_x1.webm") == video_key("v_x1") == "v_x1"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4"}\n{"benchmark": "only"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_contamination([bad])


def test_load_config_names_missing_files(tmp_path):
    path = tmp_path / "build.yaml"
    path.write_text("out: o\nsources:\n  - {source: nextqa, annotations: nowhere.csv}\n")
    with pytest.raises(ConfigError, match=r"build.yaml: these files do not exist: .*nowhere.csv"):
        load_config(path)
