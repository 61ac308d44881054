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

Only a finished build goes up: `validate_output` first calls `mtvr_data.build_manifest.verify_build`, so a folder
without `manifest.json` (a build that did not finish), with a shard the manifest does not list, or with a file that
differs from it is refused, and the message names the file.

The folder may be a URL (`s3://bucket/run`, `gs://...`; read through `mtvr_data.storage`). `HfApi` uploads local
folders only, so a real publish of a URL checks the manifest's files are there with their sizes, downloads the
files `UPLOAD_PATTERNS` select (and `manifest.json`) into a temporary local folder, and validates that copy in full
(hashes against the manifest, card, schemas) before uploading it: what goes up is exactly what was checked, and a
folder rebuilt during the download is refused. The temporary folder (under `TMPDIR`) needs room for the upload and
is removed afterwards, so `upload_large_folder` cannot resume a URL publish. A dry run of a URL validates the
remote files in place (reading them, to hash them) and lists the same files and sizes, downloading nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mtvr_data import build_manifest, storage
from mtvr_data.build_manifest import IncompleteBuild, verify_build
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
    folder: str
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
    """The files under `out_dir` (a local folder or a URL) that `UPLOAD_PATTERNS` select, sorted, with sizes."""
    from huggingface_hub.utils import filter_repo_objects

    root = os.fspath(out_dir)
    relative = sorted(storage.relative(p, root) for p in storage.list_files(root))
    chosen = filter_repo_objects(relative, allow_patterns=list(UPLOAD_PATTERNS))
    return [PlannedFile(rel, storage.size(storage.join(root, rel))) for rel in chosen]


def _absent(root: str) -> str | None:
    """Why `root` holds nothing to check (no local folder, no object under the URL), or None."""
    if storage.is_url(root):
        return None if storage.list_files(root) else f"{root}: no files there"
    return None if os.path.isdir(root) else f"{root} is not a directory"


def _unfinished(root: str, *, check_hashes: bool) -> list[str]:
    """`verify_build`'s complaint (naming the file) when `root` is not one finished build, else nothing."""
    try:
        verify_build(root, check_hashes=check_hashes)
    except IncompleteBuild as exc:
        return [str(exc)]
    return []


def validate_output(out_dir: str | os.PathLike[str]) -> list[str]:
    """Problems that make the folder (local or URL) unfit to publish (empty list = fit).

    The build must be finished (`verify_build`: the manifest is there and every file agrees with it, hashes
    included). The card must exist, parse, and list configs whose globs each match a shard; every shard must read
    back against its config's schema.
    """
    from huggingface_hub import DatasetCard

    root = os.fspath(out_dir)
    absent = _absent(root)
    if absent:
        return [absent]
    problems = _unfinished(root, check_hashes=True)
    card_path = storage.join(root, "README.md")
    if not storage.is_file(card_path):
        problems.append("README.md (the dataset card) is missing: run write_card first")
    else:
        try:
            # What DatasetCard.load does with a local file, for a URL too (a BOM is dropped, newlines kept).
            configs = DatasetCard(storage.read_text(card_path, encoding="utf-8-sig")).data.to_dict().get("configs")
            configs = configs or []
        except Exception as exc:  # the card parser raises several types; any of them means "unfit"
            problems.append(f"README.md does not parse as a dataset card: {type(exc).__name__}: {exc}")
            configs = None
        if configs == []:
            problems.append("README.md lists no `configs:`; load_dataset would not find the shards")
        for config in configs or []:
            for data_file in config.get("data_files", []):
                if not storage.glob(storage.join(root, data_file["path"])):
                    problems.append(f"card config {config['config_name']!r} names {data_file['path']}: no such file")
    for config in CONFIGS:
        for path in storage.glob(storage.join(root, config, "*.parquet")):
            try:
                read_table(path, config)
            except SchemaMismatch as exc:
                problems.append(str(exc))
    return problems


@contextlib.contextmanager
def local_copy(root: str, files: list[PlannedFile]) -> Iterator[str]:
    """`root` itself when it is local; for a URL, a temporary local folder holding `files` and `manifest.json`,
    validated in full (`validate_output`) against the manifest copied with them, removed when the block ends.

    The copy's manifest keeps only the entries of the copied files, so the check is the one a local folder gets,
    limited to what is uploaded. Problems name the remote files; `PublishError` when any is found.
    """
    if not storage.is_url(root):
        yield root
        return
    from huggingface_hub.utils import filter_repo_objects

    with tempfile.TemporaryDirectory(prefix="mtvr-publish-") as tmp:
        for rel in [build_manifest.MANIFEST, *(f.path for f in files)]:
            try:
                storage.copy_to_local(storage.join(root, rel), os.path.join(tmp, *rel.split("/")))
            except OSError as exc:
                raise PublishError(f"copying {storage.join(root, rel)} failed: {type(exc).__name__}: {exc}") from exc
        manifest = build_manifest.read_manifest(tmp)
        if manifest is None:
            raise PublishError(f"{storage.join(root, build_manifest.MANIFEST)} is unreadable")
        uploaded = set(filter_repo_objects(sorted(manifest["files"]), allow_patterns=list(UPLOAD_PATTERNS)))
        build_manifest.write_manifest(tmp, {rel: e for rel, e in manifest["files"].items() if rel in uploaded})
        problems = [p.replace(tmp, root.rstrip("/")) for p in validate_output(tmp)]
        if problems:
            raise PublishError(f"{root} is not ready to publish (checked after copying):\n  " + "\n  ".join(problems))
        log.info("copied %d files of %s to %s", len(files), root, tmp)
        yield tmp


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

    `out_dir` is a local folder or a URL; a URL's files are copied to a temporary local folder and validated there
    before the upload (see the module's docstring). `api` replaces `huggingface_hub.HfApi(token=...)` (tests
    inject a fake). Raises `PublishError` when the folder is unfit, no token is found, or the Hub call fails
    (message scrubbed of the token).
    """
    root = os.fspath(out_dir)
    if storage.is_url(root) and not dry_run:
        # Presence and sizes only: the copy is validated in full (`local_copy`), so each object is read once.
        absent = _absent(root)
        problems = [absent] if absent else _unfinished(root, check_hashes=False)
    else:
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
    with local_copy(root, files) as folder:
        _upload(api, plan, folder, use_large=use_large, message=message, secrets=secrets)
    log.info("%s", plan.render())
    return plan


def _upload(
    api: Any, plan: PublishPlan, folder: str, *, use_large: bool, message: str, secrets: list[str | None]
) -> None:
    """Create the repo if needed and upload the local `folder`; a Hub failure becomes a scrubbed `PublishError`."""
    repo_id, private, root = plan.repo_id, plan.private, plan.folder
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if use_large and hasattr(api, "upload_large_folder"):
            plan.method = "upload_large_folder"
            plan.notes.append("upload_large_folder commits in several steps and cannot delete stale remote shards")
            api.upload_large_folder(
                repo_id=repo_id,
                folder_path=folder,
                repo_type="dataset",
                private=private,
                allow_patterns=list(UPLOAD_PATTERNS),
            )
        else:
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
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
