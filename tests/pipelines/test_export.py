"""`mtvr export` end to end: a real demo build (tiny grader, oracle teacher) exported to VITAL's records, verl's
parquet and ShareGPT, every row checked against the documented layouts; the gold answers scored by VITAL's
documented reward rules (written here from docs/papers.md, not from VITAL's code) and by the project's reward;
bad input refused in one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.prompts import PromptConfig, build_messages, question_text
from mtvr_data.build_manifest import file_entry, read_manifest, write_manifest
from mtvr_data.parquet_io import read_parquet
from mtvr_data.parsing import extract_answer
from mtvr_data.rewards import task_reward
from mtvr_data.schema import CotRow, RlRow, Sample
from pipelines.cli import main
from pipelines.demo import demo_build_config

#: The routing keys issue 25 lists, by (task, source) for grounding and by answer type for questions.
ROUTES = {
    ("tg", "charades_sta"): "./data/charades_cutreward",
    ("tg", "activitynet_captions"): "./data/actnet_cutreward",
    ("tg", "vidchapters"): "./data/vidchapter_cutreward",
    ("gqa", "nextgqa"): "./data/nextgqa_cutreward",
    ("gqa", "rextime"): "./data/rextime_cutreward",
}
PROBLEM_TYPES = {
    "letter": "multiple_choice",
    "number": "numerical",
    "text": "free_form",
    "regression": "regression",
    "ocr": "OCR",
}
THINK_ANSWER = re.compile(r"<think>.+?</think>\s*<answer>.+?</answer>", re.DOTALL)
THINK_TOOL = re.compile(r"<think>.+?</think>\s*<tool_call>\s*(\{.*\})\s*</tool_call>", re.DOTALL)


def expected_route(sample: Sample) -> str:
    if sample.task in ("tg", "gqa"):
        return ROUTES[(sample.task, sample.source)]
    return f"video_r1/{PROBLEM_TYPES[sample.answer_type]}"


@pytest.fixture(scope="module")
def build(demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory, tiny_checkpoints) -> dict[str, Any]:
    """MTVR-RL and MTVR-CoT of the demo corpus in one folder, and its three exports."""
    work = tmp_path_factory.mktemp("export")
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    tiny = tiny_checkpoints("qwen2_5_vl")
    for kind in ("rl", "cot"):
        config = demo_build_config(work, manifest, tiny, corpus=demo_corpus, kind=kind)
        assert main([f"build-{kind}", str(config), "--", "--runner=DirectRunner"]) == 0
    out = work / "build"
    videos = demo_corpus / "videos"
    exports = {}
    for fmt in ("vital", "verl", "sharegpt"):
        target = work / f"export_{fmt}"
        argv = ["export", str(out), "--to", fmt, "--out", str(target)]
        assert main(argv + (["--video-root", str(videos)] if fmt == "verl" else [])) == 0
        exports[fmt] = target
    rows = {
        config: {
            r.sample.id: (p.name.split("-")[0], r)
            for p in sorted((out / config).glob("*.parquet"))
            for r in read_parquet(p, config)
        }
        for config in ("rl", "cot")
    }
    return {"out": out, "videos": videos, "exports": exports, "rows": rows, "work": work}


def _json(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))


def _summary(build: dict, fmt: str) -> dict[str, Any]:
    return json.loads((build["exports"][fmt] / "export.json").read_text())


def _sample(row: dict[str, Any]) -> Sample:
    """The built sample an exported row came from, rebuilt from its id and lineage."""
    return Sample.from_dict(row["lineage"] | {"id": row["id"]})


# --- vital -----------------------------------------------------------------------------------------------------------


def _vital_rows(build: dict) -> dict[str, list[dict[str, Any]]]:
    return {p.name: _json(p) for p in sorted(build["exports"]["vital"].glob("MTVR_*.json"))}


def test_vital_files_hold_every_row_once(build):
    files = _vital_rows(build)
    assert {"MTVR_CoT.json", "MTVR_Tool_CoT.json", "MTVR_RL.json", "MTVR_Tool_RL.json"} <= set(files)
    skipped = _summary(build, "vital")["skipped"]
    for config, part in (("cot", "_CoT"), ("rl", "_RL")):
        ids = [r["id"] for name, rows in files.items() if part in name for r in rows]
        ids += [s["id"] for s in skipped if s["config"] == config]
        assert sorted(ids) == sorted(build["rows"][config]), config  # every row once, written or reported
    for name, rows in files.items():
        split = "validation" if name.endswith("_validation.json") else "train"
        for row in rows:
            config = "cot" if "_CoT" in name else "rl"
            assert build["rows"][config][row["id"]][0] == split, (name, row["id"])


def test_vital_records_have_the_released_fields(build):
    seen = set()
    for name, rows in _vital_rows(build).items():
        cot, tool = "_CoT" in name, "_Tool_" in name
        for row in rows:
            split, built = build["rows"]["cot" if cot else "rl"][row["id"]]
            sample = built.sample
            media = "image" if sample.modality == "image" else "video"
            keys = {"id", "text", "solution", media, "data_source", "lineage"}
            keys |= {"duration"} if media == "video" else set()
            keys |= {"tool_params", "answer"} if cot and tool else set()
            assert set(row) == keys, (name, row["id"])
            assert row[media] == sample.video and not Path(row[media]).is_absolute()  # relative, as built
            if media == "video":
                assert isinstance(row["duration"], float) and row["duration"] == sample.duration
            assert row["text"] == question_text(sample)
            assert row["data_source"] == expected_route(sample)
            assert _sample(row) == sample  # the lineage keeps every built column
            assert built.tools == tool or (cot and built.num_tool_calls == 0)
            if cot:
                assert isinstance(built, CotRow)
                chains = [m.content for m in built.messages if m.role == "assistant"]
                if tool:
                    first, last = row["solution"]
                    assert [first, last] == chains
                    call = THINK_TOOL.fullmatch(first)
                    assert call is not None and THINK_ANSWER.fullmatch(last), row["id"]
                    args = json.loads(call.group(1))["arguments"]
                    clip = next(m.clip for m in built.messages if m.role == "tool")
                    assert row["tool_params"] == f"({clip.start:.2f}, {clip.end:.2f})"
                    assert re.fullmatch(r"\(\d+\.\d\d, \d+\.\d\d\)", row["tool_params"])
                    assert (float(args["start_time"]), float(args["end_time"])) == (clip.start, clip.end)
                    assert row["answer"] == extract_answer(last)
                else:
                    assert isinstance(row["solution"], str) and THINK_ANSWER.fullmatch(row["solution"])
                    assert [row["solution"]] == chains
            else:
                assert isinstance(built, RlRow)
                solution = row["solution"]
                if sample.task == "tg":
                    assert solution == list(sample.span)
                elif sample.task == "gqa":
                    assert solution == {"answer": sample.answer, "span": list(sample.span)}
                else:
                    assert solution == sample.answer and isinstance(solution, str)
            seen.add((sample.task, cot, tool))
    # every task family, text and tool rows, in both datasets
    assert {("tg", True, False), ("gqa", True, False), ("mcq", True, False), ("open", True, False)} <= seen
    assert {("tg", True, True), ("mcq", True, True), ("tg", False, True), ("mcq", False, True)} <= seen
    assert {("tg", False, False), ("gqa", False, False), ("mcq", False, False), ("open", False, False)} <= seen


# VITAL's documented accuracy rules (docs/papers.md "VITAL: rewards and DGRPO"), written here independently.


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _scale(iou: float, a: float, b: float) -> float:
    return min(1.0, max(0.0, (iou - a) / (b - a)))


def _last_pair(text: str) -> tuple[float, float] | None:
    """The last number pair with S <= E (VITAL's reading of a grounding answer)."""
    numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]
    pairs = [(s, e) for s, e in zip(numbers, numbers[1:], strict=False) if s <= e]
    return pairs[-1] if pairs else None


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def _f1(overlap: int, p: int, r: int) -> float:
    return 0.0 if not overlap else 2 * overlap / (p + r)


def _rouge_mean(pred: str, truth: str) -> float:
    a, b = pred.lower().split(), truth.lower().split()
    scores = []
    for n in (1, 2):
        pa_, pb = _ngrams(a, n), _ngrams(b, n)
        overlap = sum(min(pa_.count(g), pb.count(g)) for g in set(pa_))
        scores.append(_f1(overlap, len(pa_), len(pb)) if pa_ and pb else float(a == b))
    lcs = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            lcs[i + 1][j + 1] = lcs[i][j] + 1 if x == y else max(lcs[i][j + 1], lcs[i + 1][j])
    scores.append(_f1(lcs[-1][-1], len(a), len(b)))
    return sum(scores) / 3


def _wer(pred: str, truth: str) -> float:
    a, b = pred.split(), truth.split()
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1] / max(1, len(b))


def _answer_term(kind: str, pred: str, truth: str) -> float:
    if kind == "multiple_choice":
        return float(pred.strip().strip("().").upper() == truth.strip().upper())
    if kind == "numerical":
        return (
            1.0
            if round(float(pred), 1) == round(float(truth), 1)
            else 0.5 * (round(float(pred)) == round(float(truth)))
        )
    if kind == "regression":
        return min(1.0, max(0.0, 1 - abs(float(pred) - float(truth)) / abs(float(truth))))
    if kind == "OCR":
        return min(1.0, max(0.0, 1 - _wer(pred, truth)))
    assert kind == "free_form"
    return _rouge_mean(pred, truth)


def vital_accuracy(data_source: str, prediction: str, truth: Any, answer_kind: str) -> float:
    """VITAL's documented task reward of an `<answer>` text: Scale(IoU) for grounding, span term plus answer term
    for grounded QA, the answer term by problem type for questions."""
    if data_source.startswith("video_r1/"):
        return _answer_term(data_source.split("/", 1)[1], prediction, truth)
    a, b = (0.0, 0.5) if data_source == "./data/vidchapter_cutreward" else (0.2, 0.8)
    if data_source in ("./data/nextgqa_cutreward", "./data/rextime_cutreward"):
        head, _, rest = prediction.partition(",")
        span = _last_pair(head)
        span_term = _scale(_iou(span, tuple(truth["span"])), a, b) if span else 0.0
        return span_term + _answer_term(answer_kind, rest.strip(), truth["answer"])
    span = _last_pair(prediction)
    return _scale(_iou(span, tuple(truth)), a, b) if span else 0.0


def _vital_gold(row: dict[str, Any]) -> str:
    """The gold answer of an RL record rendered in VITAL's answer format, from the record's own `solution`."""
    solution = row["solution"]
    if row["data_source"].endswith("_cutreward") and isinstance(solution, dict):
        (s, e), answer = solution["span"], solution["answer"]
        return f"From {s:.2f} to {e:.2f}, {answer}"
    if row["data_source"].endswith("_cutreward"):
        return f"{solution[0]:.2f} - {solution[1]:.2f} seconds"
    return solution


def test_vital_gold_gets_full_accuracy_by_vitals_documented_rules(build):
    checked = 0
    for name, rows in _vital_rows(build).items():
        for row in rows:
            sample = _sample(row)
            kind = PROBLEM_TYPES.get(sample.answer_type, "")
            full = 2.0 if sample.task == "gqa" else 1.0
            if "_CoT" in name:  # the chain's own answer against the row's truth
                last = row["solution"][-1] if isinstance(row["solution"], list) else row["solution"]
                prediction = extract_answer(last)
                truth: Any = list(sample.span) if sample.task == "tg" else sample.answer
                if sample.task == "gqa":
                    truth = {"answer": sample.answer, "span": list(sample.span)}
            else:
                prediction, truth = _vital_gold(row), row["solution"]
            assert vital_accuracy(row["data_source"], prediction, truth, kind) == pytest.approx(full), row["id"]
            # and the project's own reward agrees
            assert task_reward(sample, f"<answer>{prediction}</answer>").value == pytest.approx(full), row["id"]
            checked += 1
    assert checked == sum(len(v) for v in build["rows"].values()) - len(_summary(build, "vital")["skipped"])


# --- verl ------------------------------------------------------------------------------------------------------------


def _flatten(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The project's rendered messages with each media part as verl's placeholder."""
    out = []
    for m in messages:
        text = "".join(
            {"video": "<video>", "image": "<image>"}.get(p["type"], "") if p["type"] != "text" else p["text"]
            for p in m["content"]
        )
        out.append({"role": m["role"], "content": text})
    return out


def test_verl_parquet_loads_and_matches_the_vital_prompt(build, tmp_path):
    from datasets import load_dataset

    folder = build["exports"]["verl"]
    train = pq.read_table(folder / "train.parquet")
    assert train.column_names == [
        "data_source", "prompt", "videos", "images", "ability", "reward_model", "extra_info", "id", "lineage"
    ]  # fmt: skip
    loaded = load_dataset("parquet", data_files=str(folder / "*.parquet"), cache_dir=str(tmp_path))["train"]
    rows = pq.read_table(folder / "validation.parquet").to_pylist() + train.to_pylist()
    assert len(loaded) == len(rows) == len(build["rows"]["rl"])
    assert sorted(loaded["id"]) == sorted(build["rows"]["rl"])
    for row in rows:
        split, built = build["rows"]["rl"][row["id"]]
        sample = built.sample
        config = PromptConfig(tools=built.tools, preset="vital")
        messages, _ = build_messages(sample, object(), config)  # type: ignore[arg-type]
        assert row["prompt"] == _flatten(messages), row["id"]
        assert row["data_source"] == expected_route(sample)
        assert row["ability"] in ("temporal_grounding", "grounded_qa", "multiple_choice", "open_answer")
        assert row["reward_model"]["style"] == "rule"
        truth = row["reward_model"]["ground_truth"]
        assert task_reward(sample, f"<answer>{truth}</answer>").value == pytest.approx(
            2.0 if sample.task == "gqa" else 1.0
        )
        path = build["videos"] / sample.video
        info = row["extra_info"]
        assert Path(path).exists()
        if sample.modality == "video":
            assert row["images"] == [] and [v["video"] for v in row["videos"]] == [str(path.resolve())]
            assert row["videos"][0]["fps"] == 2.0 and row["videos"][0]["max_frames"] == 64
            kwargs = info["tools_kwargs"]["get_video_clip_frame"]["create_kwargs"]
            assert kwargs == {"video": str(path.resolve()), "duration": sample.duration}
            assert info["need_tools_kwargs"] == built.tools
        else:
            assert row["videos"] == [] and [i["image"] for i in row["images"]] == [str(path.resolve())]
            assert info["tools_kwargs"] is None and not info["need_tools_kwargs"]
        assert info["split"] == split and isinstance(info["index"], int)
        assert info["question"] == question_text(sample) and info["answer"] == sample.answer
        assert info["span"] == (list(sample.span) if sample.span else None)
        assert info["duration"] == sample.duration
        assert (info["difficulty"], info["pass_rate"]) == (built.difficulty, built.pass_rate)
        assert row["lineage"]["policy"] == built.policy and row["lineage"]["source"] == sample.source
    tool_rows = [r for r in rows if "<tools>" in r["prompt"][0]["content"]]
    assert tool_rows and all(build["rows"]["rl"][r["id"]][1].tools for r in tool_rows)
    assert len({(r["extra_info"]["split"], r["extra_info"]["index"]) for r in rows}) == len(rows)


# --- sharegpt --------------------------------------------------------------------------------------------------------


def test_sharegpt_assistant_turns_are_the_chains(build):
    folder = build["exports"]["sharegpt"]
    info = json.loads((folder / "dataset_info.json").read_text())
    assert set(info) == {"mtvr_cot", "mtvr_cot_validation"}
    for name, entry in info.items():
        assert entry["file_name"] == f"{name}.json" and entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "messages", "videos": "videos", "images": "images"}
        assert entry["tags"]["system_tag"] == "system" and entry["tags"]["assistant_tag"] == "assistant"
    rows = [r for name in info for r in _json(folder / f"{name}.json")]
    summary = _summary(build, "sharegpt")
    cot = build["rows"]["cot"]
    tool_ids = {i for i, (_, r) in cot.items() if any(m.role == "tool" for m in r.messages)}
    assert tool_ids and {s["id"] for s in summary["skipped"]} == tool_ids
    assert summary["skipped_by_reason"] == {"tool_clip_not_expressible": len(tool_ids)}
    assert sorted(r["id"] for r in rows) == sorted(set(cot) - tool_ids)
    for row in rows:
        built = cot[row["id"]][1]
        assert set(row) == {"id", "messages", "videos", "images", "lineage"}
        assert [m["role"] for m in row["messages"]] == [m.role for m in built.messages]
        assert [m["content"] for m in row["messages"] if m["role"] == "assistant"] == [
            m.content for m in built.messages if m.role == "assistant"
        ]
        user = next(m for m in built.messages if m.role == "user")
        media = "image" if built.sample.modality == "image" else "video"
        assert row["messages"][1]["content"] == f"<{media}>{user.content}"
        text = json.dumps(row["messages"])
        assert text.count(f"<{media}>") == 1 and text.count("<video>") + text.count("<image>") == 1
        assert row[f"{media}s"] == [built.sample.video] and row["images" if media == "video" else "videos"] == []
        assert (build["videos"] / row[f"{media}s"][0]).exists()  # relative to the videos root (media_dir)
        assert row["lineage"]["teacher"] == built.teacher


def test_card_lists_the_exports_and_their_commands(build):
    card = (build["out"] / "README.md").read_text()
    section = card.split("## Training with other trainers", 1)[1].split("\n## ", 1)[0]
    assert "**not run**" in section and "mtvr export" in section
    for fmt, command in (("vital", "MTVR_Tool_RL"), ("verl", "verl.trainer.main_ppo"), ("sharegpt", "llamafactory")):
        assert f"| `{fmt}` |" in section and command in section


def test_bucket_export_matches_the_local_one(build, s3_server):
    """FOLDER and DIR as bucket URLs (everything through `mtvr_data.storage`): the same files as the local export."""
    from mtvr_data import storage

    folder = s3_server.prefix("export_src")
    manifest = read_manifest(str(build["out"]))
    for rel in [*manifest["files"], "manifest.json"]:
        storage.write_bytes(storage.join(folder, rel), (build["out"] / rel).read_bytes())
    for fmt, local in build["exports"].items():
        out = s3_server.prefix("export_out", fmt)
        argv = ["export", folder, "--to", fmt, "--out", out]
        argv += ["--video-root", str(build["videos"])] if fmt == "verl" else []
        assert main([*argv, "--", *s3_server.beam_args]) == 0
        written = {storage.relative(p, out): storage.read_bytes(p) for p in storage.list_files(out)}
        expected = {p.name: p.read_bytes() for p in local.iterdir() if p.name != "export.json"}
        assert {k: v for k, v in written.items() if k != "export.json"} == expected, fmt
        summary = json.loads(written["export.json"])
        assert summary["folder"] == folder and summary["files"] == _summary(build, fmt)["files"]


# --- bad input -------------------------------------------------------------------------------------------------------


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtvr: error: ") and "\n" not in err, err
    return err


def test_bad_input_is_one_line(build, tmp_path, capsys):
    out = str(tmp_path / "x")
    assert "not a built dataset" in _one_line_error(["export", str(tmp_path), "--to", "vital", "--out", out], capsys)
    missing = str(tmp_path / "nope")
    assert "not a built dataset" in _one_line_error(["export", missing, "--to", "verl", "--out", out], capsys)
    err = _one_line_error(["export", str(build["out"]), "--to", "axolotl", "--out", out], capsys)
    assert "unknown export format" in err and "vital, verl, sharegpt" in err
    assert not (tmp_path / "x").exists()


def test_unknown_task_and_unfinished_build_are_refused(build, tmp_path, capsys):
    folder = tmp_path / "build"
    shutil.copytree(build["out"], folder, ignore=shutil.ignore_patterns("cache", "report*"))
    shard = next((folder / "rl").glob("train-*.parquet"))
    table = pq.read_table(shard)
    tasks = table.column("task").to_pylist()
    tasks[0] = "counting"
    pq.write_table(table.set_column(table.schema.get_field_index("task"), "task", pa.array(tasks)), shard)
    err = _one_line_error(["export", str(folder), "--to", "verl", "--out", str(tmp_path / "o")], capsys)
    assert str(shard) in err and "manifest" in err  # the changed shard no longer matches the manifest
    files = read_manifest(str(folder))["files"]
    files[f"rl/{shard.name}"] = file_entry(str(shard))
    write_manifest(str(folder), files)
    err = _one_line_error(["export", str(folder), "--to", "verl", "--out", str(tmp_path / "o")], capsys)
    assert "unknown task 'counting'" in err and "routing key" in err


# --- read back by verl (`make interop`) --------------------------------------------------------------------------


def test_verl_rlhf_dataset_reads_the_export(build, tmp_path, tiny_checkpoints):
    """verl's own `RLHFDataset` (0.9, installed beside the project by `make interop`) reads the export with the tiny
    checkpoint's processor: each row's prompt, its media (decoded by verl's qwen-vl-utils path and encoded by the
    processor) and its ground truth."""
    rl_dataset = pytest.importorskip(
        "verl.utils.dataset.rl_dataset", reason="verl is not installed here: `make interop` runs this test"
    )
    import asyncio

    from omegaconf import OmegaConf
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_checkpoints("qwen2_5_vl"))
    config = OmegaConf.create(
        {"cache_dir": str(tmp_path / "verl"), "max_prompt_length": 1 << 16, "filter_overlong_prompts": False}
    )
    folder = build["exports"]["verl"]
    files = [str(folder / "train.parquet"), str(folder / "validation.parquet")]
    dataset = rl_dataset.RLHFDataset(files, processor.tokenizer, config, processor=processor)
    assert len(dataset) == len(build["rows"]["rl"])
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    encoded: set[tuple[str, bool]] = set()
    undecodable: set[str] = set()
    for i in range(len(dataset)):
        item = dataset[i]
        built = build["rows"]["rl"][item["id"]][1]
        sample = built.sample
        system, user = item["raw_prompt"]
        media, words = user["content"]
        path = str((build["videos"] / sample.video).resolve())
        config_vital = PromptConfig(tools=built.tools, preset="vital")
        expected, _ = build_messages(sample, object(), config_vital)  # type: ignore[arg-type]
        assert system["content"] == [{"type": "text", "text": expected[0]["content"][0]["text"]}]
        assert words == {"type": "text", "text": expected[1]["content"][1]["text"]}
        assert media["type"] == sample.modality and media[sample.modality] == path
        assert item["reward_model"]["ground_truth"] == task_ground_truth(sample)
        assert item["data_source"] == expected_route(sample)
        if sample.modality == "video":
            assert item["tools_kwargs"]["get_video_clip_frame"]["create_kwargs"]["video"] == path
        if sample.modality == "video" and not _decord_opens(path):
            undecodable.add(sample.video)  # a codec qwen-vl-utils' reader cannot decode here (AV1), not the export
            continue
        images, videos = asyncio.run(
            rl_dataset.RLHFDataset.process_vision_info(item["raw_prompt"], dataset.image_patch_size, config)
        )
        text = processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
        if videos:
            frames, metadata = zip(*videos, strict=True)
            inputs = processor(text=[text], videos=list(frames), video_metadata=list(metadata), do_sample_frames=False)
        else:
            inputs = processor(text=[text], images=images)
        ids = inputs["input_ids"][0]
        token = video_token if sample.modality == "video" else image_token
        assert (ids == token).sum() > 0 if hasattr(ids, "sum") else token in ids, item["id"]
        encoded.add((sample.modality, built.tools))
    assert encoded == {("video", False), ("video", True), ("image", False)}
    assert undecodable <= {"demo/r1_av1.mp4"}


def _decord_opens(path: str) -> bool:
    import decord

    try:
        decord.VideoReader(path)
    except Exception:  # noqa: BLE001 - decord raises its own error types
        return False
    return True


def task_ground_truth(sample: Sample) -> str:
    from mtvr_data.tasks import GroundTruth, family

    return family(sample.task).expected_answer(GroundTruth.of(sample))
