"""`mtvr demo`: the demo corpus end to end, so every run shows the data path and its error paths work.

For now it generates the corpus and normalises every demo source to samples; the dataset builders
join it as they land. It ends by checking that every fault planted in the corpus (broken videos,
malformed lines) was reported with the expected reason: a demo that loses one fails.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

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
    print(f"samples and errors in {out / 'samples'} ({time.monotonic() - t0:.1f} s in all)")
    return 1 if missing else 0
