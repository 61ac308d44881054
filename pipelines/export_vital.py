"""`mtvr export --to vital`: MTVR-CoT and MTVR-RL in VITAL's released record layout, routed to its reward functions.

VITAL releases its data as JSON files per subset (`MTVR_CoT`, `MTVR_Tool_CoT`, `MTVR_RL`, `MTVR_Tool_RL`), one flat
record per sample, and its reward entry point picks the reward by the record's `data_source`
(docs/papers.md, "VITAL's released record layout and reward routing"). Writing the same records lets VITAL's
released training scripts and reward functions take our rows with no change. The field choices VITAL's release does
not dictate, and where we differ, are in docs/export.md.

Media paths stay relative, as built: VITAL's loader joins them to a per-dataset video root of its own.
"""

from __future__ import annotations

import re
from typing import Any

from model.config_error import ConfigError
from model.prompts import question_text
from mtvr_data import storage
from mtvr_data.schema import CotRow, RlRow, Sample
from mtvr_data.tasks import FAMILIES, GroundTruth, family
from pipelines.export_rows import Skipped, Unexpressible, lineage_of, media_key, read_rows, write_json

#: VITAL's clamped-IoU reward keys for the grounded tasks, by (task, source). Its RL stage files use the
#: `_cutreward` sources; a grounded row of another source has no VITAL reward (`no_vital_route`).
GROUNDED_ROUTES: dict[tuple[str, str], str] = {
    ("tg", "charades_sta"): "./data/charades_cutreward",
    ("tg", "activitynet_captions"): "./data/actnet_cutreward",
    ("tg", "vidchapters"): "./data/vidchapter_cutreward",
    ("gqa", "nextgqa"): "./data/nextgqa_cutreward",
    ("gqa", "rextime"): "./data/rextime_cutreward",
}
#: Video-R1's problem types (VITAL routes `video_r1/<problem_type>`), by our answer type.
PROBLEM_TYPES: dict[str, str] = {
    "letter": "multiple_choice",
    "number": "numerical",
    "text": "free_form",
    "regression": "regression",
    "ocr": "OCR",
}
#: A text chain: one think block, then one answer block (white space between them only).
THINK_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
#: The first turn of a tool chain: think, then one tool call.
THINK_TOOL_CALL = re.compile(r"<think>.*?</think>\s*<tool_call>.*?</tool_call>", re.DOTALL)


def vital_data_source(sample: Sample) -> str:
    """VITAL's reward routing key for a row: `./data/<dataset>_cutreward` for grounding and grounded QA,
    `video_r1/<problem_type>` for questions (LongVideo-Reason's multiple choice too).

    An unknown task is a ConfigError (the build is not one this version wrote); a grounded row from a source
    VITAL has no reward for is `Unexpressible`.
    """
    if sample.task not in FAMILIES:
        raise ConfigError(
            f"row {sample.id}: unknown task {sample.task!r} has no VITAL routing key (known tasks: "
            f"{', '.join(FAMILIES)})"
        )
    if family(sample.task).grounded:
        route = GROUNDED_ROUTES.get((sample.task, sample.source))
        if route is None:
            raise Unexpressible("no_vital_route", f"VITAL has no {sample.task} reward for source {sample.source!r}")
        return route
    if sample.answer_type not in PROBLEM_TYPES:
        raise Unexpressible("no_vital_route", f"answer type {sample.answer_type!r} has no Video-R1 problem type")
    return f"video_r1/{PROBLEM_TYPES[sample.answer_type]}"


def _base(sample: Sample) -> dict[str, Any]:
    """The fields every record has: id, question text (VITAL's `{input_text}`), media, duration, routing key."""
    row: dict[str, Any] = {
        "id": sample.id,
        "text": question_text(sample),
        media_key(sample): sample.video,
        "data_source": vital_data_source(sample),
    }
    if sample.modality == "video":
        row["duration"] = sample.duration
    return row


def tool_params(start: float, end: float) -> str:
    """VITAL's `tool_params` string, "(st, ed)", in seconds with two decimals (the tool's own precision)."""
    return f"({start:.2f}, {end:.2f})"


def cot_record(row: CotRow) -> tuple[str, dict[str, Any]]:
    """(subset, record) of a CoT row: `MTVR_CoT` with the whole `<think>...</think><answer>...</answer>` string as
    `solution`, or `MTVR_Tool_CoT` with the two turns, `tool_params` and `answer`."""
    sample = row.sample
    record = _base(sample)
    turns = [m.content for m in row.messages if m.role == "assistant"]
    tools = [m for m in row.messages if m.role == "tool"]
    if not tools:
        if len(turns) != 1 or not THINK_ANSWER.fullmatch(turns[0].strip()):
            raise Unexpressible("not_think_answer", "a text row must be one <think>...</think><answer>...</answer>")
        record["solution"] = turns[0].strip()
        return "MTVR_CoT", record | {"lineage": lineage_of(row)}
    if len(tools) != 1 or len(turns) != 2:
        raise Unexpressible("not_two_turns", f"{len(tools)} tool turns and {len(turns)} assistant turns")
    clip = tools[0].clip
    if clip is None:
        raise Unexpressible("tool_call_failed", "the tool turn holds an error text, not a clip")
    first, last = turns[0].strip(), turns[1].strip()
    if not THINK_TOOL_CALL.fullmatch(first) or not THINK_ANSWER.fullmatch(last):
        raise Unexpressible("not_two_turns", "turns are not think+tool_call, then think+answer")
    record["solution"] = [first, last]
    record["tool_params"] = tool_params(clip.start, clip.end)
    record["answer"] = family(sample.task).expected_answer(GroundTruth.of(sample))
    return "MTVR_Tool_CoT", record | {"lineage": lineage_of(row)}


def rl_solution(sample: Sample) -> Any:
    """The RL ground truth as VITAL's RL files hold it: `[start, end]` seconds for grounding, the answer string
    for questions, and for grounded QA both, as `{"answer": ..., "span": [start, end]}`."""
    truth, task = GroundTruth.of(sample), family(sample.task)
    span = list(truth.windows[0]) if truth.windows else None
    if task.grounded:
        return {"answer": sample.answer, "span": span} if task.answered else span
    return sample.answer


def rl_record(row: RlRow) -> tuple[str, dict[str, Any]]:
    """(subset, record) of an RL row: `MTVR_Tool_RL` for rows graded with the tool, else `MTVR_RL`."""
    record = _base(row.sample) | {"solution": rl_solution(row.sample), "lineage": lineage_of(row)}
    return ("MTVR_Tool_RL" if row.tools else "MTVR_RL"), record


def subset_file(subset: str, split: str) -> str:
    """`MTVR_RL.json` for the train split (VITAL's file), `MTVR_RL_validation.json` for the held-out split."""
    return f"{subset}.json" if split == "train" else f"{subset}_{split}.json"


def export_vital(
    folder: str, out: str, configs: list[str], video_root: str | None
) -> tuple[dict[str, int], list[Skipped], list[str]]:
    """Write every config of the build in VITAL's layout; returns (rows per file, skipped rows, notes)."""
    files: dict[str, list[dict[str, Any]]] = {}
    skipped: list[Skipped] = []
    for config in configs:
        for split, row in read_rows(folder, config):
            try:
                subset, record = cot_record(row) if isinstance(row, CotRow) else rl_record(row)
            except Unexpressible as exc:
                skipped.append(Skipped(row.sample.id, config, split, exc.reason, exc.detail))
                continue
            files.setdefault(subset_file(subset, split), []).append(record)
    for name, rows in files.items():
        write_json(storage.join(out, name), rows)
    notes = ["media paths are relative to each source's videos root, as built (VITAL's loader joins its own root)"]
    if video_root is not None:
        notes.append("--video-root is not used by the vital export: VITAL's records hold relative paths")
    return {name: len(rows) for name, rows in sorted(files.items())}, skipped, notes
