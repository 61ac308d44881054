"""The `mtvr` command line. Each command is a thin wrapper over library functions; heavy imports are lazy
so `mtvr --help` stays fast."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """`--option key=value` pairs as adapter keyword arguments (JSON values where they parse)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option expects key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_sources(args: argparse.Namespace) -> int:
    """Every source adapter, built-in or from an installed package's `mtvr.adapters` entry point (marked with its
    distribution); an entry point that cannot load is a warning on stderr, and the others are still listed."""
    from mtvr_data.adapters import AdapterPluginError, adapter_origins, get_adapter

    for name, origin in adapter_origins().items():
        try:
            description = get_adapter(name).description
        except AdapterPluginError as exc:
            print(f"mtvr: warning: skipped {exc}", file=sys.stderr)
            continue
        print(f"{name:<22} {description}" + ("" if origin == "built-in" else f"  [entry point: {origin}]"))
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from mtvr_data.normalize import normalize_to_files

    summary = normalize_to_files(
        source=args.source,
        annotations=args.annotations,
        videos=args.videos,
        out=args.out,
        errors=args.errors,
        probe=not args.no_probe,
        options=_parse_options(args.option),
    )
    print(summary.render())
    return 0


def cmd_demo_corpus(args: argparse.Namespace) -> int:
    from mtvr_data.demo_corpus import build_demo_corpus

    manifest = build_demo_corpus(Path(args.out))
    print(
        f"demo corpus in {args.out}: {len(manifest['videos'])} videos, {len(manifest['broken'])} broken files, "
        f"{len(manifest['sources'])} annotation files, {len(manifest['malformed'])} planted malformed records"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(Path(args.out), warm_up=args.warm_up)


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from model.tiny_checkpoint import build_tiny_checkpoint

    out = build_tiny_checkpoint(Path(args.out), seed=args.seed, family=args.family)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"tiny {args.family} checkpoint in {out} ({size / 1e6:.1f} MB): load it with from_pretrained({str(out)!r})")
    return 0


def cmd_build_rl(args: argparse.Namespace) -> int:
    from pipelines.accounting import render_accounting
    from pipelines.build_rl import build_rl

    print(render_accounting(build_rl(args.config, args.beam_args)))
    return 0


def cmd_build_cot(args: argparse.Namespace) -> int:
    from pipelines.accounting import render_accounting
    from pipelines.build_cot import build_cot

    print(render_accounting(build_cot(args.config, args.beam_args)))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """`mtvr publish OUT --repo-id R [-- OPTIONS]`: OUT may be a URL (Beam's options after `--` reach its storage)."""
    from pipelines.publish import PublishError, publish

    try:
        plan = publish(args.out, args.repo_id, private=args.private, dry_run=args.dry_run, large=args.large)
    except PublishError as exc:  # an unfit folder or a refused upload: the message names the file or says why
        if args.verbose:
            raise
        print(f"mtvr: error: {exc}", file=sys.stderr)
        return 2
    print(plan.render())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """`mtvr eval [CONFIG] [flags] [-- BEAM OPTIONS]` runs an evaluation; flags override the config's values."""
    from pipelines.evaluate import config_from_args, evaluate, load_eval_config

    if not args.verbose:  # -v already shows it (DEBUG)
        logging.getLogger("pipelines.evaluate").setLevel(logging.INFO)  # progress of a long run
    if args.config is not None:
        overrides: dict[str, Any] = {}
        if args.tools is not None:
            overrides["tools"] = args.tools
        if args.max_frames is not None:
            overrides["frames"] = {"max_frames": args.max_frames}
        if args.max_new_tokens is not None:
            overrides["sampling"] = {"max_new_tokens": args.max_new_tokens}
        if args.out is not None:
            overrides["out"] = args.out if "://" in args.out else str(Path(args.out).resolve())  # a URL as given
        engine: dict[str, Any] = {}
        if args.engine is not None:
            engine["kind"] = args.engine
        settings = {**({"model": args.model} if args.model else {}), **_parse_options(args.engine_option)}
        if settings:
            engine["settings"] = settings
        if engine:
            overrides["engine"] = engine
        config = load_eval_config(args.config, overrides)
        if args.reading is not None:
            benchmarks = [b.model_copy(update={"reading": args.reading}) for b in config.benchmarks]
            config = config.model_copy(update={"benchmarks": benchmarks})
    else:
        if not (args.model and args.benchmark and args.out):
            raise SystemExit("mtvr eval: give a CONFIG, or --model, --benchmark/--annotations and --out")
        if len(args.annotations) != len(args.benchmark):
            raise SystemExit("mtvr eval: give one --annotations per --benchmark, in the same order")
        videos = args.videos or [None]
        if len(videos) not in (1, len(args.benchmark)):
            raise SystemExit("mtvr eval: give one --videos for all benchmarks, or one per --benchmark")
        videos = videos * len(args.benchmark) if len(videos) == 1 else videos
        config = config_from_args(
            model=args.model,
            engine=args.engine or "transformers",
            benchmarks=list(zip(args.benchmark, args.annotations, videos, strict=True)),
            out=args.out,
            tools=args.tools or "both",
            max_frames=args.max_frames or 64,
            engine_settings=_parse_options(args.engine_option),
            sampling={"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {},
            cap=args.cap,
            reading=args.reading or "reference",
        )
    evaluate(config, args.beam_args)
    from mtvr_data import storage
    from pipelines.eval_report import TABLE_MD

    print(storage.read_text(storage.join(config.out, TABLE_MD)))
    print(f"results, dead letters, table.json and plot.svg in {config.out}")
    return 0


def _is_folder(path: str) -> bool:
    """A local directory, or a URL with no object at it (an eval output prefix)."""
    from mtvr_data import storage

    return not storage.is_file(path) if storage.is_url(path) else Path(path).is_dir()


def cmd_eval_diff(args: argparse.Namespace) -> int:
    """Rows whose correctness or IoU changed between two results files (or same-named files of two folders); each
    may be a local path or a URL."""
    from mtvr_data import storage
    from mtvr_data.eval_metrics import diff_results, read_results, render_diff
    from pipelines.eval_report import folder_files

    a, b = (p if "://" in p else str(Path(p)) for p in (args.a, args.b))
    if _is_folder(a) and _is_folder(b):
        named = [(f, storage.join(b, storage.name(f))) for f in folder_files(a, "results_*.jsonl")]
        pairs = [(fa, fb) for fa, fb in named if storage.exists(fb)]
    else:
        pairs = [(a, b)]
    changed = 0
    for fa, fb in pairs:
        diffs = diff_results(read_results(fa), read_results(fb))
        changed += len(diffs)
        print(f"== {fa} -> {fb}\n{render_diff(diffs)}")
    return 1 if changed else 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    """The benchmark names `mtvr eval` accepts, with their metric and what they hold."""
    from mtvr_data.benchmarks.registry import available_benchmarks, get_benchmark

    for name in available_benchmarks():
        spec = get_benchmark(name)
        print(f"{name:<18} {spec.metric:<10} {spec.description}")
    return 0


def cmd_contamination(args: argparse.Namespace) -> int:
    """`mtvr contamination --benchmark NAME=PATH ... --out FILE`: the benchmarks' contamination list."""
    from mtvr_data.benchmarks import UnknownBenchmarkError
    from mtvr_data.benchmarks.contamination import export_contamination

    pairs = []
    for item in args.benchmark:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--benchmark expects NAME=PATH, got {item!r}")
        pairs.append((name, path))
    try:
        summary = export_contamination(pairs, args.out, **_parse_options(args.option))
    except (UnknownBenchmarkError, ValueError) as exc:
        print(f"mtvr: error: {exc}", file=sys.stderr)
        return 2
    print(summary.render())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`mtvr export FOLDER --to FORMAT --out DIR`: a built dataset in VITAL's, verl's or the ShareGPT layout."""
    from pipelines.export import export_build

    print(export_build(args.folder, args.to, args.out, video_root=args.video_root).render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtvr", description="Build and curate multi-task video-reasoning data.", epilog=BEAM_HELP
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level; errors with tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sources", help="list the source adapters")
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser("samples", help="normalise one source's native annotations to a Parquet file of samples")
    p.add_argument("--source", required=True, help="adapter name (see `mtvr sources`)")
    p.add_argument("--annotations", required=True, help="the native annotation file")
    p.add_argument("--videos", default=None, help="root the annotation's video paths are relative to")
    p.add_argument("--out", required=True, help="output FILE.parquet of samples")
    p.add_argument("--errors", default=None, help="errors file (default: OUT with .errors.jsonl)")
    p.add_argument("--no-probe", action="store_true", help="do not open the videos (annotation checks only)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="adapter option, e.g. --option video_ext=.mkv (repeatable)",
    )
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("demo-corpus", help="generate the demo videos and native annotation files")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=cmd_demo_corpus)

    p = sub.add_parser("tiny-model", help="build the tiny random Qwen2.5-VL checkpoint used by tests and the demo")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: 0)")
    p.add_argument(
        "--family",
        choices=("qwen2_5_vl", "qwen3_vl", "qwen3_5"),
        default="qwen2_5_vl",
        help="model family (config.json model_type) of the checkpoint (default: qwen2_5_vl, VITAL's)",
    )
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser(
        "build-rl", help="build MTVR-RL from a config: read, probe, dedup, contamination, grade, balance, write"
    )
    p.add_argument("config", help="the build's YAML config (see configs/)")
    p.set_defaults(beam_args=[])
    p.set_defaults(func=cmd_build_rl)

    p = sub.add_parser(
        "build-cot",
        help="build MTVR-CoT from a config: read, probe, dedup, contamination, grade, teacher, verify, balance, write",
    )
    p.add_argument("config", help="the build's YAML config (see configs/)")
    p.set_defaults(beam_args=[])
    p.set_defaults(func=cmd_build_cot)

    p = sub.add_parser("publish", help="upload a built dataset folder (shards, card, stats, report) to the Hub")
    p.add_argument("out", help="the build's output directory, local or a URL (s3://, gs://, ...)")
    p.add_argument("--repo-id", required=True, help="dataset repository, e.g. user/mtvr")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; no network call")
    p.add_argument("--large", action="store_true", help="use the library's large-folder upload")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser(
        "eval",
        help="evaluate a model on benchmarks (`mtvr benchmarks` lists them), tool on/off, beside VITAL-7B's numbers",
    )
    p.add_argument("config", nargs="?", help="an eval config YAML (see configs/eval_demo.yaml)")
    p.add_argument("--model", help="checkpoint path or Hub id")
    p.add_argument("--engine", choices=["transformers", "openai", "vllm", "oracle"], help="default: transformers")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE", help="engine setting")
    p.add_argument("--benchmark", action="append", default=[], help="benchmark name (repeatable; `mtvr benchmarks`)")
    p.add_argument("--annotations", action="append", default=[], help="its annotation file (one per --benchmark)")
    p.add_argument("--videos", action="append", default=[], help="video root (one for all, or one per benchmark)")
    p.add_argument("--tools", choices=["on", "off", "both"], help="settings to run (default: both)")
    p.add_argument("--max-frames", type=int, help="frame budget of the whole video (default: 64)")
    p.add_argument("--max-new-tokens", type=int, help="per-turn generation budget (default: 1024)")
    p.add_argument("--cap", type=int, help="evaluate only the first N samples of each benchmark")
    p.add_argument(
        "--reading",
        choices=["reference", "lenient"],
        help="how answers are read: as each benchmark's reference does (default) or leniently for all",
    )
    p.add_argument("--out", help="output folder")
    p.set_defaults(func=cmd_eval, beam_args=[])

    p = sub.add_parser("eval-diff", help="rows whose correctness or IoU changed between two eval runs")
    p.add_argument("a", help="a results file, or an eval output folder")
    p.add_argument("b", help="the results file (or folder) to compare it with")
    p.set_defaults(func=cmd_eval_diff)

    p = sub.add_parser("benchmarks", help="list the benchmarks `mtvr eval` accepts")
    p.set_defaults(func=cmd_benchmarks)

    p = sub.add_parser("contamination", help="write the benchmarks' videos and questions as a contamination list")
    p.add_argument(
        "--benchmark",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="benchmark name and its annotation file or folder (repeatable; see docs/benchmarks.md)",
    )
    p.add_argument("--out", required=True, help="output JSON-lines file (e.g. configs/contamination/benchmarks.jsonl)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option (repeatable)")
    p.set_defaults(func=cmd_contamination)

    p = sub.add_parser(
        "export", help="write a built dataset for another trainer: VITAL's records, verl's parquet, ShareGPT"
    )
    p.add_argument("folder", help="the build's output directory, local or a URL")
    p.add_argument("--to", required=True, metavar="FORMAT", help="vital, verl or sharegpt (see docs/export.md)")
    p.add_argument("--out", required=True, help="output directory, local or a URL")
    p.add_argument(
        "--video-root", default=None, help="make verl / sharegpt media paths absolute under this folder (or URL)"
    )
    p.set_defaults(func=cmd_export)

    from train.cli import add_train_parser

    add_train_parser(sub)

    p = sub.add_parser(
        "demo", help="demo corpus -> samples -> MTVR-RL and MTVR-CoT with the tiny checkpoint (`make demo`)"
    )
    p.add_argument("--out", default="demo", help="output directory (default: demo)")
    p.add_argument(
        "--warm-up",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first train the tiny grader on generated practice questions (the default; minutes on 2 cores), then "
        "grade with keep: medium; --no-warm-up grades with the random checkpoint and keeps every row (keep: all)",
    )
    p.set_defaults(func=cmd_demo)
    return parser


BEAM_HELP = (
    "Beam pipeline options go after `--`, the same for build-rl, build-cot and eval: e.g. "
    "`mtvr build-rl CONFIG -- --runner=DataflowRunner --project=P`. eval-diff, contamination, publish and export "
    "take the same options for their object-store paths only (e.g. `-- --s3_endpoint_url=URL`)."
)
#: Commands that run a Beam pipeline, and commands that only read or write object-store URLs with Beam's options.
BEAM_COMMANDS = ("build-rl", "build-cot", "eval")
STORAGE_COMMANDS = ("eval-diff", "contamination", "publish", "export")


def split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """`argv` split at the first `--`: mtvr's own arguments, and the Beam pipeline options after it."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    own, beam_args = split_beam_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    if beam_args:
        if args.command not in BEAM_COMMANDS + STORAGE_COMMANDS:
            print(f"mtvr {args.command}: takes no Beam options (after `--`): {' '.join(beam_args)}", file=sys.stderr)
            return 2
        args.beam_args = beam_args
    from pipelines.console import configure_console

    configure_console(args.verbose)  # -v: the project's DEBUG lines, not Beam's; Beam's import noise dropped
    from model.config_error import ConfigError
    from mtvr_data.adapters.registry import AdapterPluginError, UnknownSourceError
    from mtvr_data.storage import StorageUnavailable
    from pipelines.failure_budget import StageFailedError

    try:
        if beam_args:  # this process reads and writes URLs (config checks, eval files) with the pipeline's options
            from mtvr_data import storage

            storage.configure(beam_args)
        return args.func(args)
    except (ConfigError, FileNotFoundError, UnknownSourceError, AdapterPluginError, StorageUnavailable) as exc:
        if args.verbose:
            raise
        print(f"mtvr: error: {exc}", file=sys.stderr)
        return 2
    except StageFailedError as exc:  # the input was fine; the machinery (a server) lost too much of it
        if args.verbose:
            raise
        print(f"mtvr: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
