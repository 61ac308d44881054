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
    from mtvr_data.adapters import available_sources, get_adapter

    for name in available_sources():
        print(f"{name:<22} {get_adapter(name).description}")
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

    return run_demo(Path(args.out))


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from model.tiny_checkpoint import build_tiny_checkpoint

    out = build_tiny_checkpoint(Path(args.out), seed=args.seed)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"tiny Qwen2.5-VL checkpoint in {out} ({size / 1e6:.1f} MB): load it with from_pretrained({str(out)!r})")
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
    from pipelines.publish import publish

    plan = publish(args.out, args.repo_id, private=args.private, dry_run=args.dry_run, large=args.large)
    print(plan.render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtvr", description="Build and curate multi-task video-reasoning data.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
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
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser(
        "build-rl", help="build MTVR-RL from a config: read, probe, dedup, contamination, grade, balance, write"
    )
    p.add_argument("config", help="the build's YAML config (see configs/)")
    p.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam pipeline options, e.g. --runner=DirectRunner")
    p.set_defaults(func=cmd_build_rl)

    p = sub.add_parser(
        "build-cot",
        help="build MTVR-CoT from a config: read, probe, dedup, contamination, grade, teacher, verify, balance, write",
    )
    p.add_argument("config", help="the build's YAML config (see configs/)")
    p.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam pipeline options, e.g. --runner=DirectRunner")
    p.set_defaults(func=cmd_build_cot)

    p = sub.add_parser("publish", help="upload a built dataset folder (shards, card, stats, report) to the Hub")
    p.add_argument("out", help="the build's output directory")
    p.add_argument("--repo-id", required=True, help="dataset repository, e.g. user/mtvr")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; no network call")
    p.add_argument("--large", action="store_true", help="use the library's large-folder upload")
    p.set_defaults(func=cmd_publish)

    from train.cli import add_train_parser

    add_train_parser(sub)

    p = sub.add_parser(
        "demo", help="demo corpus -> samples -> MTVR-RL and MTVR-CoT with the tiny checkpoint (`make demo`)"
    )
    p.add_argument("--out", default="demo", help="output directory (default: demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from mtvr_data.adapters.registry import UnknownSourceError

    try:
        return args.func(args)
    except (FileNotFoundError, UnknownSourceError) as exc:
        print(f"mtvr: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
