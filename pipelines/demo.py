"""`mtvr demo`: the demo corpus end to end, so every run shows the data path and its error paths work.

It generates the corpus, normalises every demo source to samples and checks that every fault planted in
the corpus (broken videos, malformed lines) was reported with the expected reason: a demo that loses one
fails. Then it builds MTVR-RL (tiny checkpoint as grader) and MTVR-CoT (the same grading, the `oracle`
demo teacher) into ONE folder, `<out>/build`, and checks that both configs load with `datasets`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from mtvr_data.normalize import NormalizeSummary, normalize_to_files


def _reported(errors: list[dict], planted: dict) -> bool:
    """Whether an error row accounts for one planted fault (same source, place and reason)."""
    for e in errors:
        if e["reason"] != planted["reason"]:
            continue
        same_place = "location" in planted and e["source"] == planted["source"]
        if same_place and (
            e["location"] == planted["location"] or e["location"].startswith(planted["location"] + "[")
        ):
            return True
        if "file" in planted and Path(planted["file"]).name in e["detail"]:
            return True
    return False


#: The demo's grading and balance settings (the example config beside the code, one source of truth).
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_rl.yaml"
#: The same for build-cot (grading, the oracle teacher, balance).
DEMO_COT_CONFIG = DEMO_CONFIG.with_name("demo_cot.yaml")


def demo_build_config(
    out: Path, manifest: dict[str, Any], tiny: Path, corpus: Path | None = None, *, kind: str = "rl"
) -> Path:
    """`out/build_<kind>.yaml`: the demo sources from the corpus manifest, settings from `configs/demo_<kind>.yaml`.

    Both kinds write to `out/build`, so the demo's two datasets share one folder (and one card). A template entry's
    other keys (`tools: true` on the RL mix's tool sources) are kept on the entry of the same source.
    """
    template = DEMO_CONFIG if kind == "rl" else DEMO_COT_CONFIG
    settings = yaml.safe_load(template.read_text(encoding="utf-8"))
    corpus = (corpus or out / "corpus").resolve()
    settings["out"] = str((out / "build").resolve())
    # Per-source keys of the template other than paths (e.g. `tools: true`) carry over to the manifest's entries.
    kept = {
        e["source"]: {k: v for k, v in e.items() if k not in ("source", "annotations", "videos")}
        for e in settings["sources"]
    }
    settings["sources"] = [
        {
            "source": e["source"],
            "annotations": str(corpus / e["annotations"]),
            "videos": str(corpus / e["videos"]),
            **kept.get(e["source"], {}),
        }
        for e in manifest["sources"]
    ]
    settings["grade"]["engine"]["settings"]["model"] = str(tiny.resolve())
    path = out / f"build_{kind}.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path


def run_build_rl(out: Path, manifest: dict[str, Any]) -> None:
    """Build MTVR-RL from the demo corpus with the tiny checkpoint and print the accounting table."""
    from model.tiny_checkpoint import build_tiny_checkpoint
    from pipelines.accounting import render_accounting
    from pipelines.build_rl import build_rl

    t0 = time.monotonic()
    tiny = build_tiny_checkpoint(out / "tiny")
    config = demo_build_config(out, manifest, tiny)
    table = build_rl(config, ["--runner=DirectRunner"])
    print(f"\nbuild-rl ({config}): {time.monotonic() - t0:.1f} s; shards, card and rejected/ in {out / 'build'}")
    print(render_accounting(table))


def run_build_cot(out: Path, manifest: dict[str, Any]) -> None:
    """Build MTVR-CoT into the same folder as build-rl (grading reused from its cache) and print the accounting."""
    from model.tiny_checkpoint import build_tiny_checkpoint
    from pipelines.accounting import render_accounting
    from pipelines.build_cot import ACCOUNTING_FILE, build_cot

    t0 = time.monotonic()
    tiny = build_tiny_checkpoint(out / "tiny")
    config = demo_build_config(out, manifest, tiny, kind="cot")
    table = build_cot(config, ["--runner=DirectRunner"])
    where = out / "build" / ACCOUNTING_FILE
    print(f"\nbuild-cot ({config}): {time.monotonic() - t0:.1f} s; shards in {out / 'build'}, accounting in {where}")
    print(render_accounting(table))


def check_loads(build: Path) -> dict[str, int]:
    """Rows per config as `datasets.load_dataset(build, config)` reads them, offline (all splits together).

    HF_HUB_OFFLINE=1 only while loading (the folder is local; the Hub must not be asked), then restored.
    """
    import os

    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from mtvr_data.dataset_loading import load_built

        counts = {}
        for config in ("cot", "rl"):
            loaded = load_built(str(build), config)
            counts[config] = sum(len(split) for split in loaded.values())
        return counts
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def run_demo(out: Path) -> int:
    """Build the corpus under `out/corpus`, normalise each source to `out/samples`, print the summary."""
    from mtvr_data.demo_corpus import build_demo_corpus

    t0 = time.monotonic()
    corpus = out / "corpus"
    manifest = build_demo_corpus(corpus)
    print(
        f"demo corpus: {len(manifest['videos'])} videos + {len(manifest['broken'])} broken files in {corpus} "
        f"({time.monotonic() - t0:.1f} s)\n"
    )
    summaries: list[NormalizeSummary] = []
    errors: list[dict] = []
    for entry in manifest["sources"]:
        annotations = corpus / entry["annotations"]
        target = out / "samples" / f"{entry['source']}.parquet"
        summary = normalize_to_files(
            source=entry["source"], annotations=annotations, videos=corpus / entry["videos"], out=target
        )
        summaries.append(summary)
        print(summary.render(), "\n")
        with open(target.with_suffix(".errors.jsonl"), encoding="utf-8") as fh:
            errors.extend(json.loads(line) for line in fh)

    print(f"{'source':<22}{'records':>9}{'built':>8}{'kept':>8}{'errors':>8}")
    for s in summaries:
        print(f"{s.source:<22}{s.records:>9}{s.built:>8}{s.kept:>8}{s.num_errors:>8}")
    total = [sum(getattr(s, k) for s in summaries) for k in ("records", "built", "kept")]
    print(f"{'total':<22}{total[0]:>9}{total[1]:>8}{total[2]:>8}{sum(s.num_errors for s in summaries):>8}")

    planted = manifest["malformed"] + manifest["broken"]
    missing = [p for p in planted if not _reported(errors, p)]
    print(f"\nplanted faults reported with the expected reason: {len(planted) - len(missing)}/{len(planted)}")
    for p in missing:
        print(f"  NOT REPORTED: {p}")
    print(f"samples and errors in {out / 'samples'} ({time.monotonic() - t0:.1f} s)")
    if missing:
        return 1
    run_build_rl(out, manifest)
    run_build_cot(out, manifest)
    counts = check_loads(out / "build")
    print("\n" + ", ".join(f"load_dataset({str(out / 'build')!r}, {c!r}): {n} rows" for c, n in counts.items()))
    print(f"\ndemo finished in {time.monotonic() - t0:.1f} s")
    return 0
