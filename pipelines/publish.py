"""Publish a built dataset folder to the Hugging Face Hub: validate, then create the repo and upload in one commit.

What goes up is chosen by `UPLOAD_PATTERNS` (shards, card, stats, report) with huggingface_hub's own pattern
matcher, so the dry-run list and the upload agree; dead letters, caches and temp files stay local. Remote
shards the new upload does not replace are deleted in the same commit (`delete_patterns`), because a stale
`train-00002-of-00003.parquet` left on the Hub would still match the card's globs.

The token comes from huggingface_hub's usual places (`token=`, then `get_token()`: `HF_TOKEN`, the saved
login). It is passed only to `HfApi` and never printed or logged; error messages are scrubbed of it. A dry
run validates and lists files and sizes and makes no network call (no token lookup either).

Large folders: huggingface_hub up to 1.x has `upload_large_folder` (resumable, several commits, no
`delete_patterns`); it is used when `large=True` or the folder exceeds `LARGE_FOLDER_BYTES`. Newer releases
dropped it and `upload_folder` itself splits big uploads into resumable batches when `hf_xet` is installed,
so there `upload_folder` is used in every case. Either way a large upload may land as several commits.
(`upload_large_folder` keeps its resume state in a cache folder inside `<out>`, which the patterns never upload.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtvr_data.parquet_io import SchemaMismatch, read_table
from pipelines.dataset_writer import CONFIGS

log = logging.getLogger(__name__)

#: What a dataset folder uploads (huggingface_hub / fnmatch patterns, relative to the folder).
UPLOAD_PATTERNS: tuple[str, ...] = (
    "README.md",
    "stats.json",
    "cot/*.parquet",
    "rl/*.parquet",
    "report.html",
    "report/*",
)
#: Remote files replaced wholesale by each publish (old shards must not survive next to new ones).
DELETE_PATTERNS: tuple[str, ...] = ("cot/*.parquet", "rl/*.parquet", "report/*")
#: Above this many bytes the large-folder path is taken even without `large=True`.
LARGE_FOLDER_BYTES = 5 * 2**30


class PublishError(RuntimeError):
    """The folder is not fit to publish, no token was found, or the Hub refused; the message says which."""


@dataclass(frozen=True, slots=True)
class PlannedFile:
    path: str
    size: int


@dataclass(slots=True)
class PublishPlan:
    """What `publish` uploads (or, on a dry run, would upload) and how."""

    repo_id: str
    folder: Path
    files: list[PlannedFile]
    large: bool
    private: bool
    dry_run: bool
    commit: str | None = None
    method: str = "upload_folder"
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def render(self) -> str:
        """A listing for people: one line per file with its size, then the total."""
        verb = "would upload" if self.dry_run else "uploaded"
        head = f"{verb} {len(self.files)} files ({_human(self.total_bytes)}) to datasets/{self.repo_id}"
        head += f" via {self.method}" + (" [private]" if self.private else "")
        lines = [head] + [f"  {f.path:<60} {_human(f.size):>10}" for f in self.files]
        lines += [f"  note: {n}" for n in self.notes]
        if self.commit:
            lines.append(f"  commit: {self.commit}")
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def planned_files(out_dir: str | os.PathLike[str]) -> list[PlannedFile]:
    """The files under `out_dir` that `UPLOAD_PATTERNS` select, sorted, with their sizes."""
    from huggingface_hub.utils import filter_repo_objects

    root = Path(out_dir)
    relative = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    chosen = filter_repo_objects(relative, allow_patterns=list(UPLOAD_PATTERNS))
    return [PlannedFile(rel, (root / rel).stat().st_size) for rel in chosen]


def validate_output(out_dir: str | os.PathLike[str]) -> list[str]:
    """Problems that make the folder unfit to publish (empty list = fit).

    The card must exist, parse, and list configs whose globs each match a shard; every shard must read back
    against its config's schema.
    """
    from huggingface_hub import DatasetCard

    root = Path(out_dir)
    problems: list[str] = []
    if not root.is_dir():
        return [f"{root} is not a directory"]
    card_path = root / "README.md"
    if not card_path.is_file():
        problems.append("README.md (the dataset card) is missing: run write_card first")
    else:
        try:
            configs = DatasetCard.load(card_path).data.to_dict().get("configs") or []
        except Exception as exc:  # the card parser raises several types; any of them means "unfit"
            problems.append(f"README.md does not parse as a dataset card: {type(exc).__name__}: {exc}")
            configs = None
        if configs == []:
            problems.append("README.md lists no `configs:`; load_dataset would not find the shards")
        for config in configs or []:
            for data_file in config.get("data_files", []):
                if not list(root.glob(data_file["path"])):
                    problems.append(f"card config {config['config_name']!r} names {data_file['path']}: no such file")
    for config in CONFIGS:
        for path in sorted((root / config).glob("*.parquet")):
            try:
                read_table(path, config)
            except SchemaMismatch as exc:
                problems.append(str(exc))
    return problems


def _redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def publish(
    out_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
    large: bool = False,
    api: Any = None,
    commit_message: str | None = None,
) -> PublishPlan:
    """Validate `out_dir`, then create the dataset repo `repo_id` if needed and upload it in one commit.

    `api` replaces `huggingface_hub.HfApi(token=...)` (tests inject a fake). Raises `PublishError` when the
    folder is unfit, no token is found, or the Hub call fails (message scrubbed of the token).
    """
    root = Path(out_dir)
    problems = validate_output(root)
    if problems:
        raise PublishError(f"{root} is not ready to publish:\n  " + "\n  ".join(problems))
    files = planned_files(root)
    plan = PublishPlan(repo_id, root, files, large, private, dry_run)
    use_large = large or plan.total_bytes > LARGE_FOLDER_BYTES
    if dry_run:
        if use_large:
            plan.notes.append("large folder: the upload may be split into several commits")
        log.info("%s", plan.render())
        return plan

    secrets: list[str | None] = [token]
    if api is None:
        from huggingface_hub import HfApi, get_token

        resolved = token or get_token()
        if not resolved:
            raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
        secrets.append(resolved)
        api = HfApi(token=resolved)
    else:
        secrets.append(os.environ.get("HF_TOKEN"))
    message = commit_message or f"Upload MTVR dataset ({len(files)} files)"
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if use_large and hasattr(api, "upload_large_folder"):
            plan.method = "upload_large_folder"
            plan.notes.append("upload_large_folder commits in several steps and cannot delete stale remote shards")
            api.upload_large_folder(
                repo_id=repo_id,
                folder_path=str(root),
                repo_type="dataset",
                private=private,
                allow_patterns=list(UPLOAD_PATTERNS),
            )
        else:
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(root),
                repo_type="dataset",
                allow_patterns=list(UPLOAD_PATTERNS),
                delete_patterns=list(DELETE_PATTERNS),
                commit_message=message,
            )
            plan.commit = str(getattr(info, "commit_url", None) or info) if info is not None else None
    except Exception as exc:  # any Hub or network failure becomes one scrubbed, typed error
        detail = _redact(f"{type(exc).__name__}: {exc}", secrets)
        leaked = any(s and s in f"{exc!r}{exc}" for s in secrets)
        error = PublishError(f"publishing {root} to datasets/{repo_id} failed: {detail}")
        if leaked:
            raise error from None
        raise error from exc
    log.info("%s", plan.render())
    return plan
