"""`mtvr export --to verl`: MTVR-RL as verl's RL parquet (`RLHFDataset`), as LongVT and VITAL's verl fork build it.

verl reads one row per prompt: `data_source` (the reward routing key: VITAL's, so its reward functions score the
rows unchanged), `prompt` (chat messages whose text holds `<video>` / `<image>` placeholders, which
`RLHFDataset._build_messages` turns into media parts), `videos` / `images` (dicts handed to qwen-vl-utils through
`verl.utils.dataset.vision_utils`), `ability`, `reward_model = {style, ground_truth}` and `extra_info` (passed
through to the reward and, with `tools_kwargs`, to the multi-turn tool's `create`).

The prompt is the project's own `vital` preset (`model.prompts.system_text` / `user_text`), so a verl run sees the
words the grader and our trainers use. Media paths are absolute with `--video-root` (qwen-vl-utils opens them as
given, relative to the trainer's working folder otherwise).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from model.prompts import PromptConfig, question_text, system_text, user_text
from mtvr_data import storage
from mtvr_data.frames import FrameBudget
from mtvr_data.schema import RL_SCHEMA, RlRow, Sample
from mtvr_data.tasks import GroundTruth, family
from mtvr_data.tools import default_tools
from pipelines.export_rows import Skipped, Unexpressible, lineage_of, media_path, read_rows
from pipelines.export_vital import vital_data_source

#: The tool's name in verl's tool config and in `tools_kwargs`.
TOOL_NAME = "get_video_clip_frame"
#: The frame budget written on each video entry: VITAL's RL budget (2 fps, at most 64 frames, ~224x224).
RL_BUDGET = FrameBudget()
#: verl's `ability` column by task.
ABILITIES = {
    "tg": "temporal_grounding",
    "gqa": "grounded_qa",
    "mcq": "multiple_choice",
    "open": "open_answer",
}

_MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
_VIDEO = pa.struct(
    [
        pa.field("video", pa.string()),
        pa.field("fps", pa.float64()),
        pa.field("max_frames", pa.int64()),
        pa.field("min_frames", pa.int64()),
        pa.field("max_pixels", pa.int64()),
        pa.field("min_pixels", pa.int64()),
    ]
)
_IMAGE = pa.struct(
    [pa.field("image", pa.string()), pa.field("max_pixels", pa.int64()), pa.field("min_pixels", pa.int64())]
)
_TOOLS_KWARGS = pa.struct(
    [
        pa.field(
            TOOL_NAME,
            pa.struct(
                [
                    pa.field(
                        "create_kwargs",
                        pa.struct([pa.field("video", pa.string()), pa.field("duration", pa.float64())]),
                    )
                ]
            ),
        )
    ]
)
_EXTRA_INFO = pa.struct(
    [
        pa.field("index", pa.int64()),
        pa.field("split", pa.string()),
        pa.field("question", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("span", pa.list_(pa.float64())),
        pa.field("duration", pa.float64()),
        pa.field("difficulty", pa.float64()),
        pa.field("pass_rate", pa.float64()),
        pa.field("need_tools_kwargs", pa.bool_()),
        pa.field("tools_kwargs", _TOOLS_KWARGS),
    ]
)
#: The exported table's schema (explicit, so an all-image or all-video file has the same column types).
VERL_SCHEMA = pa.schema(
    [
        pa.field("data_source", pa.string()),
        pa.field("prompt", pa.list_(_MESSAGE)),
        pa.field("videos", pa.list_(_VIDEO)),
        pa.field("images", pa.list_(_IMAGE)),
        pa.field("ability", pa.string()),
        pa.field("reward_model", pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())])),
        pa.field("extra_info", _EXTRA_INFO),
        pa.field("id", pa.string()),
        pa.field("lineage", pa.struct([f for f in RL_SCHEMA if f.name != "id"])),
    ]
)


def verl_prompt(sample: Sample, *, tools: bool) -> list[dict[str, str]]:
    """System and user messages of the `vital` preset, the media as a `<video>` / `<image>` placeholder before the
    words (where `model.prompts.build_messages` puts the media part). Tools only on video rows."""
    tools = tools and sample.modality == "video"
    schemas = default_tools().schemas() if tools else None
    placeholder = "<video>" if sample.modality == "video" else "<image>"
    return [
        {"role": "system", "content": system_text(PromptConfig(preset="vital"), schemas)},
        {"role": "user", "content": placeholder + user_text(sample, tools=tools, preset="vital")},
    ]


def verl_row(row: RlRow, split: str, index: int, video_root: str | None) -> dict[str, Any]:
    """One verl row of an RL row (`Unexpressible` when VITAL has no reward route for it)."""
    sample = row.sample
    truth = GroundTruth.of(sample)
    path = media_path(sample, video_root)
    budget = {"max_pixels": RL_BUDGET.max_pixels, "min_pixels": RL_BUDGET.min_pixels}
    video = sample.modality == "video"
    videos = (
        [{"video": path, "fps": RL_BUDGET.fps, "max_frames": RL_BUDGET.max_frames, "min_frames": RL_BUDGET.min_frames}]
        if video
        else []
    )
    return {
        "data_source": vital_data_source(sample),
        "prompt": verl_prompt(sample, tools=row.tools),
        "videos": [v | budget for v in videos],
        "images": [] if video else [{"image": path} | budget],
        "ability": ABILITIES[sample.task],
        "reward_model": {"style": "rule", "ground_truth": family(sample.task).expected_answer(truth)},
        "extra_info": {
            "index": index,
            "split": split,
            "question": question_text(sample),
            "answer": sample.answer,
            "span": list(truth.windows[0]) if truth.windows else None,
            "duration": sample.duration,
            "difficulty": row.difficulty,
            "pass_rate": row.pass_rate,
            "need_tools_kwargs": bool(row.tools and video),
            "tools_kwargs": {TOOL_NAME: {"create_kwargs": {"video": path, "duration": sample.duration}}}
            if video
            else None,
        },
        "id": sample.id,
        "lineage": lineage_of(row),
    }


def export_verl(
    folder: str, out: str, configs: list[str], video_root: str | None
) -> tuple[dict[str, int], list[Skipped], list[str]]:
    """Write `train.parquet` / `validation.parquet` of MTVR-RL; returns (rows per file, skipped rows, notes)."""
    splits: dict[str, list[dict[str, Any]]] = {}
    skipped: list[Skipped] = []
    for split, row in read_rows(folder, "rl"):
        assert isinstance(row, RlRow)
        rows = splits.setdefault(split, [])
        try:
            rows.append(verl_row(row, split, len(rows), video_root))
        except Unexpressible as exc:
            skipped.append(Skipped(row.sample.id, "rl", split, exc.reason, exc.detail))
    counts = {}
    for split, rows in splits.items():
        name = f"{split}.parquet"
        with storage.open_write(storage.join(out, name)) as fh:
            pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), fh)
        counts[name] = len(rows)
    notes = [] if "cot" not in configs else ["the cot config is not exported to verl (it is SFT data; use sharegpt)"]
    if video_root is None:
        notes.append("media paths are relative to each source's videos root: pass --video-root for absolute paths")
    return dict(sorted(counts.items())), skipped, notes
