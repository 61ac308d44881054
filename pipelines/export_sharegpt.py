"""`mtvr export --to sharegpt`: MTVR-CoT in the multimodal ShareGPT layout LLaMA-Factory and ms-swift read for
video SFT.

One record per chain: `messages` (`role` / `content`; the system turn first, the user turn with a `<video>` or
`<image>` placeholder before its words, then the teacher's assistant turns exactly as verified) and `videos` /
`images` (one path per placeholder). A `dataset_info.json` beside the files registers them with LLaMA-Factory
(`formatting: sharegpt` and the tag names of these messages); ms-swift reads the same `messages` / `videos` keys.

Tool chains are not exported: their tool turn is a clip of the video (a start and an end), and neither framework
can give a media entry a time window, so the clip could only be a separate cut file (or dropped, teaching the model
to reason about frames it never saw). They are counted as `tool_clip_not_expressible`; train them with
`mtvr train` or the verl export. Media paths stay relative as built (LLaMA-Factory joins them to `media_dir`) unless
`--video-root` makes them absolute.
"""

from __future__ import annotations

import json
from typing import Any

from mtvr_data import storage
from mtvr_data.schema import CotRow
from pipelines.export_rows import Skipped, Unexpressible, lineage_of, media_key, media_path, read_rows, write_json

#: LLaMA-Factory's dataset names by split (its `dataset:` argument), and their files.
DATASET_NAMES = {"train": "mtvr_cot", "validation": "mtvr_cot_validation"}


def sharegpt_record(row: CotRow, video_root: str | None) -> dict[str, Any]:
    """The ShareGPT record of a text chain (`Unexpressible` for a tool chain)."""
    sample = row.sample
    if any(m.role == "tool" for m in row.messages):
        raise Unexpressible("tool_clip_not_expressible", "a tool turn's clip is a time window of the video")
    key = media_key(sample)
    messages = []
    placed = False
    for message in row.messages:
        if message.role not in ("system", "user", "assistant"):
            raise Unexpressible("unknown_role", f"role {message.role!r}")
        content = message.content
        if message.role == "user" and not placed:
            content, placed = f"<{key}>{content}", True
        messages.append({"role": message.role, "content": content})
    if not placed:
        raise Unexpressible("no_user_turn", "the chain has no user turn to carry the media")
    path = media_path(sample, video_root)
    return {
        "id": sample.id,
        "messages": messages,
        "videos": [path] if key == "video" else [],
        "images": [path] if key == "image" else [],
        "lineage": lineage_of(row),
    }


def dataset_info(names: dict[str, str]) -> dict[str, Any]:
    """LLaMA-Factory's `dataset_info.json` entries: dataset name -> file, ShareGPT formatting, columns, tags."""
    return {
        dataset: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "videos": "videos", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
        for dataset, file_name in names.items()
    }


def export_sharegpt(
    folder: str, out: str, configs: list[str], video_root: str | None
) -> tuple[dict[str, int], list[Skipped], list[str]]:
    """Write MTVR-CoT's text chains per split and `dataset_info.json`; returns (rows per file, skipped, notes)."""
    splits: dict[str, list[dict[str, Any]]] = {}
    skipped: list[Skipped] = []
    for split, row in read_rows(folder, "cot"):
        assert isinstance(row, CotRow)
        try:
            splits.setdefault(split, []).append(sharegpt_record(row, video_root))
        except Unexpressible as exc:
            skipped.append(Skipped(row.sample.id, "cot", split, exc.reason, exc.detail))
    names: dict[str, str] = {}
    counts: dict[str, int] = {}
    for split, rows in splits.items():
        dataset = DATASET_NAMES.get(split, f"mtvr_cot_{split}")
        names[dataset] = f"{dataset}.json"
        write_json(storage.join(out, names[dataset]), rows)
        counts[names[dataset]] = len(rows)
    storage.write_text(storage.join(out, "dataset_info.json"), json.dumps(dataset_info(names), indent=2) + "\n")
    notes = [] if "rl" not in configs else ["the rl config is not exported to sharegpt (it has no chains; use verl)"]
    if video_root is None:
        notes.append("media paths are relative to each source's videos root: set LLaMA-Factory's media_dir to it")
    return dict(sorted(counts.items())), skipped, notes
