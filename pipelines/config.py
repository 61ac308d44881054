"""The build configuration: which sources to read, where to write, which benchmark lists to exclude.

One YAML file drives `mtvr build-rl` and `mtvr build-cot`:

    out: ../build/demo                    # output directory
    contamination: [lists/eval.jsonl]     # JSON lines {"video": ..., "question": ...}; see mtvr_data.dedup;
                                          # left out: DEFAULT_CONTAMINATION; `[]` turns the filter off
    sources:
      - source: charades_sta              # adapter name (`mtvr sources` lists them)
        annotations: annotations/charades_sta/charades_sta_train.txt
        videos: videos                    # root the annotation's video paths are relative to
        split: train                      # optional: overrides the split guessed from the file name
        cap: 1000                         # optional: keep the first `cap` samples in file order
        options: {video_ext: .mp4}        # optional: adapter keyword arguments
        tools: true                       # optional: grade (and build) this entry's rows with the clip tool;
                                          # default: the `grade:` block's `rollout.tools`
        allow_absolute_paths: false       # optional: read the annotations' absolute paths / URLs as written;
                                          # default false: paths outside `videos` are `path_outside_root`
    grade: {engine: ..., k: 8, sampling: ..., rollout: ..., frames: ..., keep: medium}   # pipelines.stage_settings
    teach: {engine: ..., ...}             # build-cot's teacher
    balance: {mix: vital, scale: 1.0, seed: 0}   # mix: vital | none | {text/<source>: count or fraction, ...}

Relative paths (annotations, videos, contamination lists, out, and the file-valued adapter options in
`PATH_OPTIONS`) resolve against the YAML file's folder, so a config means the same thing from any working
directory. Each of those paths may instead be a URL Beam's file systems know (`gs://`, `s3://`, `azfs://`,
`hdfs://`; `mtvr_data.storage`): a URL is kept as written, its scheme is checked when the file is read (an
unknown scheme, or one whose pip extra is missing, is a `ConfigError` naming the key and the extra), and listed
files must exist there too. The config file itself is a local YAML file.

Every block is typed: an unknown key at any level, a value of the wrong type or range, an unknown adapter option,
engine kind or engine setting, and a local model path that does not exist fail when the file is read, as one
`ConfigError` line naming the file and the key path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, StrictInt, ValidationError, field_validator

from model.config_error import ConfigError
from model.settings import Block, config_error, resolve_path

#: The benchmark list a build filters against when its config names none (`mtvr contamination` writes it;
#: docs/benchmarks.md). Left out of a config means "use this"; `contamination: []` means "no filter".
DEFAULT_CONTAMINATION = Path(__file__).resolve().parents[1] / "configs" / "contamination" / "benchmarks.jsonl"
#: Adapter options whose values are file paths (resolved against the YAML folder like the other paths).
PATH_OPTIONS = frozenset({"durations", "gsub", "vid_map"})
KNOWN_KEYS = frozenset({"sources", "out", "contamination", "grade", "teach", "balance"})
SOURCE_KEYS = frozenset(
    {"source", "annotations", "videos", "options", "split", "cap", "tools", "allow_absolute_paths"}
)


_resolve = resolve_path


class BalanceSettings(Block):
    """The `balance:` block: which mix (`vital`, `none` or a mapping of cells to counts or fractions;
    `mtvr_data.mixing.resolve_mix`), its scale (1.0 = the paper's row counts) and the seed of its draws.

    The cells of a mapping are checked here (names, amounts); whether every source has a cell in the mix depends on
    the build (`pipelines.mix_choice.build_targets`) and is checked before any model loads."""

    mix: str | dict[str, int | float] = "vital"
    scale: float = Field(1.0, gt=0.0)
    seed: StrictInt = 0

    @field_validator("mix", mode="before")
    @classmethod
    def _known_mix(cls, value: Any) -> Any:
        from mtvr_data.adapters import available_sources
        from mtvr_data.mixing import NO_MIX, VITAL, amount_problem, cell_problem

        if isinstance(value, str):
            if value not in (VITAL, NO_MIX):
                raise ValueError(f"unknown mix {value!r}; use {VITAL}, {NO_MIX} or a mapping of cells to counts")
            return value
        if not isinstance(value, dict) or not value:
            raise ValueError(f"must be {VITAL}, {NO_MIX} or a non-empty mapping of cells to counts or fractions")
        sources = available_sources()
        for key, amount in value.items():
            problem = cell_problem(key, sources) or amount_problem(key, amount)
            if problem:
                raise ValueError(problem)
        return value


@dataclass
class SourceConfig:
    """One annotation file to read: the adapter, its file, the media root and per-source settings."""

    source: str
    annotations: str
    videos: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    cap: int | None = None
    #: Whether this entry's rows are graded with the clip tool (RL rows with `tools=True`); None: the grade block's.
    tools: bool | None = None
    #: Whether an annotation's absolute paths (and URLs) may be read as written. Off: a path that leads outside
    #: `videos` (absolute, `..`, a symlink out of it) is the probe's `path_outside_root` dead letter.
    allow_absolute_paths: bool = False

    def __post_init__(self) -> None:
        from mtvr_data.adapters import available_sources

        where = f"source {self.source!r}"
        if not isinstance(self.source, str) or self.source not in available_sources():
            raise ConfigError(f"sources: unknown source {self.source!r}; known: {', '.join(available_sources())}")
        if not isinstance(self.annotations, str) or not self.annotations:
            raise ConfigError(f"{where}: 'annotations' must be the path of the native annotation file")
        if self.videos is not None and not isinstance(self.videos, str):
            raise ConfigError(f"{where}: 'videos' must be a folder path (the root of the video paths)")
        if not isinstance(self.options, dict):
            raise ConfigError(
                f"{where}: 'options' must be a mapping of adapter keyword arguments, e.g. {{video_ext: .mkv}}"
            )
        if self.split is not None and not isinstance(self.split, str):
            raise ConfigError(f"{where}: 'split' must be a string such as train or val")
        if self.cap is not None and (isinstance(self.cap, bool) or not isinstance(self.cap, int) or self.cap < 0):
            raise ConfigError(f"{where}: 'cap' must be a non-negative integer (or left out for no cap)")
        if self.tools is not None and not isinstance(self.tools, bool):
            raise ConfigError(f"{where}: 'tools' must be true or false (or left out for the grade block's setting)")
        if not isinstance(self.allow_absolute_paths, bool):
            raise ConfigError(f"{where}: 'allow_absolute_paths' must be true or false (default false)")
        from mtvr_data.adapters.registry import AdapterPluginError, get_adapter, option_names

        try:
            adapter = get_adapter(self.source)
        except AdapterPluginError as exc:  # a third-party adapter that cannot load: refused here, not on a worker
            raise ConfigError(f"sources: {exc}") from None
        allowed = option_names(adapter)
        unknown = sorted(set(self.options) - allowed)
        if unknown:
            raise ConfigError(f"{where}: options: unknown {unknown}; {self.source} accepts {sorted(allowed)}")

    @property
    def row_sources_differ(self) -> bool:
        """Whether this entry's samples may carry source names other than its own (its adapter overrides
        `row_sources`); only then is the annotation file opened to list them."""
        from mtvr_data.adapters.base import SourceAdapter
        from mtvr_data.adapters.registry import get_adapter

        return get_adapter(self.source).row_sources.__func__ is not SourceAdapter.row_sources.__func__

    def row_sources(self) -> list[str]:
        """The source names this entry's samples carry (its adapter's `row_sources`: `source`, except for an
        adapter such as `samples` that passes on other sources' samples), sorted."""
        from mtvr_data.adapters.registry import get_adapter

        return sorted(get_adapter(self.source).row_sources(self.annotations, **self.adapter_options()))

    def adapter_options(self) -> dict[str, Any]:
        """Keyword arguments for `make_adapter`: the options, plus `split` when the config sets it."""
        return {**self.options, **({"split": self.split} if self.split is not None else {})}


@dataclass
class BuildConfig:
    """A whole build: sources, output folder, contamination lists, and the later stages' settings (`extra`)."""

    sources: list[SourceConfig]
    out: str
    contamination: list[str] = field(default_factory=list)
    #: The typed `grade:` / `teach:` blocks (`pipelines.stage_settings`); None when the config has none.
    grade: Any = None
    teach: Any = None
    balance: BalanceSettings = field(default_factory=BalanceSettings)
    #: True when `contamination` is DEFAULT_CONTAMINATION because the config named no list (logged by the build).
    contamination_default: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.sources, list) or not self.sources:
            raise ConfigError("'sources' must be a non-empty list of {source, annotations, videos, ...} entries")
        if not all(isinstance(s, SourceConfig) for s in self.sources):
            raise ConfigError("'sources' entries must be SourceConfig (use BuildConfig.from_dict for mappings)")
        if not isinstance(self.out, str) or not self.out:
            raise ConfigError("'out' must be the output directory path")
        if not isinstance(self.contamination, list) or not all(isinstance(p, str) for p in self.contamination):
            raise ConfigError("'contamination' must be a list of paths of JSON-lines benchmark lists")
        roots: dict[str, str | None] = {}
        absolute: dict[str, bool] = {}
        for s in self.sources:
            if absolute.setdefault(s.source, s.allow_absolute_paths) != s.allow_absolute_paths:
                raise ConfigError(
                    f"source {s.source!r} is listed with allow_absolute_paths true and false; "
                    "samples carry only the source name, so one source needs one setting"
                )
            if roots.setdefault(s.source, s.videos) != s.videos:
                raise ConfigError(
                    f"source {s.source!r} is listed with two video roots ({roots[s.source]} and {s.videos}); "
                    "samples carry only the source name, so one source needs one 'videos' folder"
                )

    def tool_parts(self, default: bool) -> dict[bool, BuildConfig]:
        """This config split by whether its entries grade with tools (an entry's `tools`, else `default`).

        One `BuildConfig` per part present, text part (False) first; each keeps `out`, contamination and `extra`.
        """
        parts: dict[bool, list[SourceConfig]] = {}
        for s in self.sources:
            parts.setdefault(default if s.tools is None else s.tools, []).append(s)
        return {tools: dataclasses.replace(self, sources=parts[tools]) for tools in sorted(parts)}

    @property
    def video_roots(self) -> dict[str, str | None]:
        """Source name -> the folder its samples' video paths are relative to (what probe and frames need).

        A source with `allow_absolute_paths: true` gets a `MediaRoot` carrying the switch, which `resolve_media`
        reads wherever the root goes (probe, grading, teaching)."""
        from mtvr_data.normalize import MediaRoot

        roots: dict[str, Any] = {}
        for s in self.sources:
            root = MediaRoot(s.videos, allow_absolute=True) if s.allow_absolute_paths and s.videos else s.videos
            roots[s.source] = root
            for name in s.row_sources() if s.row_sources_differ else ():
                if roots.setdefault(name, root) != root:
                    raise ConfigError(
                        f"source {s.source!r} ({s.annotations}) holds {name!r} samples under the video root "
                        f"{s.videos}, but {name!r} already has {roots[name]}; one source needs one 'videos' folder"
                    )
        return roots

    @classmethod
    def from_dict(cls, data: Any, base_dir: str | Path | None = None) -> BuildConfig:
        """A config from parsed YAML; relative paths resolve against `base_dir` (the YAML's folder)."""
        base = Path(base_dir) if base_dir is not None else None
        if not isinstance(data, dict):
            raise ConfigError(f"a build config is a mapping with 'sources' and 'out', got {type(data).__name__}")
        for key in ("sources", "out"):
            if key not in data:
                raise ConfigError(f"missing top-level key {key!r}")
        raw_sources, out = data["sources"], data["out"]
        if not isinstance(raw_sources, list):
            raise ConfigError(f"'sources' must be a list, got {type(raw_sources).__name__}")
        if not isinstance(out, str):
            raise ConfigError(f"'out' must be a path string, got {type(out).__name__}")
        contamination = data.get("contamination")
        default = contamination is None  # left out (or null): the shipped benchmark list, if present
        if default:
            contamination = [str(DEFAULT_CONTAMINATION)] if DEFAULT_CONTAMINATION.exists() else []
        if isinstance(contamination, str):
            contamination = [contamination]
        if not isinstance(contamination, list) or not all(isinstance(p, str) for p in contamination):
            raise ConfigError("'contamination' must be a path or a list of paths of JSON-lines benchmark lists")
        unknown = sorted(set(data) - KNOWN_KEYS)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown top-level key; allowed: {', '.join(sorted(KNOWN_KEYS))}")
        sources = [cls._source(i, entry, base) for i, entry in enumerate(raw_sources)]
        from pipelines.stage_settings import GradeSettings, TeachSettings

        grade = GradeSettings.read(data["grade"], base=base) if data.get("grade") is not None else None
        teach = TeachSettings.read(data["teach"], base=base) if data.get("teach") is not None else None
        balance = data.get("balance") or {}
        if not isinstance(balance, dict):
            raise ConfigError(f"balance: must be a mapping {{mix, scale, seed}}, got {type(balance).__name__}")
        try:
            balance_settings = BalanceSettings.model_validate(balance)
        except ValidationError as exc:
            raise config_error(exc, where="balance", model=BalanceSettings) from None
        return cls(
            sources=sources,
            out=_resolve(base, out),
            contamination=[_resolve(base, p) for p in contamination],
            grade=grade,
            teach=teach,
            balance=balance_settings,
            contamination_default=default,
        )

    @staticmethod
    def _source(index: int, entry: Any, base: Path | None) -> SourceConfig:
        if not isinstance(entry, dict):
            raise ConfigError(f"sources[{index}] must be a mapping with 'source' and 'annotations'")
        unknown = set(entry) - SOURCE_KEYS
        if unknown:
            raise ConfigError(
                f"sources[{index}]: unknown keys {sorted(unknown)}; allowed: {sorted(SOURCE_KEYS)} "
                "(adapter settings go under 'options')"
            )
        for key in ("source", "annotations"):
            if not isinstance(entry.get(key), str):
                raise ConfigError(f"sources[{index}]: {key!r} is required and must be a string")
        options = dict(entry.get("options") or {}) if isinstance(entry.get("options"), dict | None) else None
        if options is None:
            raise ConfigError(f"sources[{index}]: 'options' must be a mapping of adapter keyword arguments")
        for key in PATH_OPTIONS & set(options):
            if isinstance(options[key], str):
                options[key] = _resolve(base, options[key])
        videos = entry.get("videos")
        return SourceConfig(
            source=entry["source"],
            annotations=_resolve(base, entry["annotations"]),
            videos=_resolve(base, videos) if isinstance(videos, str) else videos,
            options=options,
            split=entry.get("split"),
            cap=entry.get("cap"),
            tools=entry.get("tools"),
            allow_absolute_paths=entry.get("allow_absolute_paths", False),
        )


def storage_paths(config: BuildConfig) -> list[tuple[str, str]]:
    """(key, path) of every path the build reads or writes: out, contamination lists, annotations, video roots and
    the file-valued adapter options."""
    paths = [("out", config.out)]
    paths += [(f"contamination[{i}]", p) for i, p in enumerate(config.contamination)]
    for i, s in enumerate(config.sources):
        paths.append((f"sources[{i}].annotations", s.annotations))
        if s.videos is not None:
            paths.append((f"sources[{i}].videos", s.videos))
        paths += [(f"sources[{i}].options.{k}", v) for k, v in sorted(s.options.items()) if k in PATH_OPTIONS]
    return [(key, p) for key, p in paths if isinstance(p, str)]


def check_storage(config: BuildConfig) -> None:
    """Every path's file system is available here (`storage.check`), else one `ConfigError` naming the key, e.g.
    `out: foo://x: no file system for foo:// (...)` or `sources[0].annotations: s3://b/a.txt: s3:// needs ...`."""
    from mtvr_data import storage

    for key, value in storage_paths(config):
        try:
            storage.check(value)
        except storage.StorageUnavailable as exc:
            raise ConfigError(f"{key}: {exc}") from None


def load_config(path: str | Path, pipeline_args: list[str] | None = None) -> BuildConfig:
    """Read a YAML build config (a local file); errors are one `ConfigError` line naming the file and the key to fix.

    The paths in it may be URLs: `pipeline_args` (the build's Beam options: S3 endpoint and keys, GCP project) are
    handed to `mtvr_data.storage.configure` first, so the check that the listed files exist reaches the same
    object store the pipeline will.
    """
    import yaml

    from mtvr_data import storage

    storage.configure(pipeline_args)
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML: {first}") from None
    try:
        config = BuildConfig.from_dict(data, base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        check_storage(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    listed = [s.annotations for s in config.sources] + list(config.contamination)
    missing = [p for p in listed if not storage.exists(p)]
    if missing:
        raise ConfigError(f"{path}: these files do not exist: {', '.join(missing)}")
    return config
