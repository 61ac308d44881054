"""The evaluation's table and plot: `table.json`, `table.md` and `plot.svg`, from what `mtvr eval` left on disk.

Read, never passed in: `run.json` (model, engine, settings, benchmarks in order), the per-sample results files
(`results_<benchmark>_<setting>.jsonl`) and `dead_letters.jsonl`. So the table describes what was written, and it
can be redone on a finished folder (`write_report(out)`), e.g. after a metric fix rescored nothing but the files.

Layout (VITAL's, docs/papers.md "VITAL: results to compare against"): one column per benchmark with its primary
metric(s); rows "tool off", "tool on", then the paper's VITAL-7B numbers for the same benchmark and setting. The
paper does not report every metric in every setting: a missing number is "-", never a guess. The plot is
hand-written SVG (no plotting dependency): per benchmark and metric, a bar per setting and the paper's number as a
marker.

The names of the files an eval folder holds (`RUN_FILE`, `DEAD_LETTERS_FILE`, `results_name`) are defined here,
where they are read back; `pipelines.evaluate`, which writes them, imports them from this module.

The folder may be local or a URL (`out: s3://bucket/eval`): every file here is read and written through
`mtvr_data.storage` (the results files too: `mtvr_data.eval_metrics.write_results` / `read_results`), and a folder
is only ever handled as a string.
"""

from __future__ import annotations

import glob
import html
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from mtvr_data import storage
from mtvr_data.eval_metrics import read_results, summarize

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
DEAD_LETTERS_FILE = "dead_letters.jsonl"
TABLE_JSON = "table.json"
TABLE_MD = "table.md"
PLOT_SVG = "plot.svg"
SETTING_LABELS = {"tool_off": "tool off", "tool_on": "tool on"}
PAPER_LABEL = "VITAL-7B (paper)"

#: Display name and metric family of every benchmark VITAL reports (used when `mtvr_data.benchmarks` cannot say).
KNOWN_BENCHMARKS: dict[str, tuple[str, str]] = {
    "charades-sta": ("Charades-STA", "grounding"),
    "activitynet-mr": ("ActivityNet-MR", "grounding"),
    "vidchapters": ("VidChapters-7M", "grounding"),
    "nextgqa": ("NExT-GQA", "grounded_qa"),
    "rextime": ("ReXTime", "grounded_qa"),
    "longvideo-reason": ("LongVideo-Reason", "accuracy"),
    "video-mme": ("Video-MME", "accuracy"),
    "video-mmmu": ("Video-MMMU", "accuracy"),
    "mmvu": ("MMVU", "accuracy"),
    "mvbench": ("MVBench", "accuracy"),
    "mlvu": ("MLVU", "accuracy"),
    "vsi-bench": ("VSI-Bench", "accuracy"),
    "longvideobench": ("LongVideoBench", "accuracy"),
}

#: VITAL-7B's reported numbers (docs/papers.md, "VITAL: results to compare against"), by benchmark and setting,
#: under this project's metric names (the paper's "acc" is Acc@QA for NExT-GQA). Transcribed, checked by a test
#: against that table. Benchmarks the paper does not report have no entry.
PAPER_VITAL_7B: dict[str, dict[str, dict[str, float]]] = {
    "charades-sta": {"tool_on": {"R@0.5": 72.0, "R@0.7": 46.7, "mIoU": 59.9}, "tool_off": {"mIoU": 57.1}},
    "activitynet-mr": {"tool_on": {"R@0.3": 70.9, "R@0.5": 50.8, "R@0.7": 31.6, "mIoU": 49.8}},
    "vidchapters": {"tool_on": {"R@0.5": 34.7, "mIoU": 35.0}, "tool_off": {"R@0.5": 25.8, "mIoU": 28.8}},
    "nextgqa": {"tool_on": {"mIoU": 43.0, "Acc@QA": 78.7}},
    "rextime": {"tool_on": {"mIoU": 47.6, "Acc": 79.1}, "tool_off": {"mIoU": 40.9}},
    "longvideo-reason": {"tool_on": {"Acc": 79.3}, "tool_off": {"Acc": 73.2}},
    "video-mme": {"tool_on": {"Acc": 66.1}, "tool_off": {"Acc": 63.5}},
    "video-mmmu": {"tool_on": {"Acc": 54.2}},
}


def results_name(benchmark: str, setting: str) -> str:
    """The per-sample results file of one benchmark in one setting, e.g. `results_nextgqa_tool_on.jsonl`."""
    return f"results_{benchmark}_{setting}.jsonl"


# --- files of an eval folder (local or URL) --------------------------------------------------------------------------


def folder_files(out: str | os.PathLike[str], pattern: str) -> list[str]:
    """The files of folder `out` (a path or a URL) whose names match the glob `pattern`, sorted."""
    out = os.fspath(out)
    root = out if storage.is_url(out) else glob.escape(out)  # a local folder's own name is not a pattern
    return storage.glob(storage.join(root, pattern))


def benchmark_info(name: str) -> tuple[str, str]:
    """(display name, metric family) of a benchmark: its `BenchmarkSpec` when registered, else `KNOWN_BENCHMARKS`."""
    try:
        from mtvr_data.benchmarks import get_benchmark

        spec = get_benchmark(name)
        return spec.display, spec.metric
    except Exception:  # the registry is missing or does not know the name: fall back to the paper's names
        return KNOWN_BENCHMARKS.get(name, (name, "accuracy"))


def primary_metrics(name: str, metric: str) -> list[str]:
    """The metric(s) a table cell shows: mIoU for grounding, mIoU and accuracy for grounded QA, else accuracy."""
    if metric == "grounding":
        return ["mIoU"]
    if metric == "grounded_qa":
        return ["mIoU", "Acc" if name == "rextime" else "Acc@QA"]
    return ["Acc"]


# --- building the table ----------------------------------------------------------------------------------------------


def _read_text(path: str) -> str | None:
    """The text of a file of the folder, None when there is none (one request to an object store, not two)."""
    try:
        return storage.read_text(path)
    except FileNotFoundError:
        return None


def _run_facts(out: str) -> dict[str, Any]:
    text = _read_text(storage.join(out, RUN_FILE))
    if text is not None:
        return json.loads(text)
    files = [storage.name(p) for p in folder_files(out, "results_*_tool_*.jsonl")]
    names = sorted({f[len("results_") :].rsplit("_tool_", 1)[0] for f in files})
    settings = sorted({"tool_" + f.removesuffix(".jsonl").rsplit("_tool_", 1)[1] for f in files})
    return {"benchmarks": names, "settings": settings}


def _dead_letters(out: str) -> list[dict[str, Any]]:
    text = _read_text(storage.join(out, DEAD_LETTERS_FILE)) or ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def build_table(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The table of an eval output folder, a local path or a URL (format in `docs/evaluation.md`)."""
    out = os.fspath(out)
    facts = _run_facts(out)
    dead = _dead_letters(out)
    benchmarks = []
    for name in facts["benchmarks"]:
        display, metric = benchmark_info(name)
        settings: dict[str, Any] = {}
        for setting in facts["settings"]:
            try:
                results = read_results(storage.join(out, results_name(name, setting)))
            except FileNotFoundError:
                results = []
            settings[setting] = summarize(name, setting, metric, results).to_dict()
        first = next(iter(settings.values()), {})
        read_errors = Counter(d["reason"] for d in dead if d.get("source") == name and d.get("stage") == "read")
        benchmarks.append(
            {
                "name": name,
                "display": display,
                "metric": metric,
                "primary": primary_metrics(name, metric),
                "headline": first.get("headline", ""),
                "reading": first.get("reading", ""),
                "reference": first.get("reference", ""),
                "settings": settings,
                "paper": PAPER_VITAL_7B.get(name, {}),
                "read_errors": dict(sorted(read_errors.items())),
            }
        )
    return {"run": facts, "benchmarks": benchmarks, "dead_letters": len(dead)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cell(values: Mapping[str, float | None], keys: Sequence[str]) -> str:
    return " / ".join(_fmt(values.get(k)) for k in keys)


def table_rows(table: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(row label, one cell per benchmark) in the paper's layout: our settings, then the paper's."""
    rows = []
    settings = table["run"]["settings"]
    for setting in settings:
        cells = [_cell(b["settings"][setting]["metrics"], b["primary"]) for b in table["benchmarks"]]
        rows.append((SETTING_LABELS.get(setting, setting), cells))
    for setting in settings:
        cells = [_cell(b["paper"].get(setting, {}), b["primary"]) for b in table["benchmarks"]]
        rows.append((f"{PAPER_LABEL}, {SETTING_LABELS.get(setting, setting)}", cells))
    return rows


def render_markdown(table: Mapping[str, Any]) -> str:
    """table.md: the comparison table, then per benchmark every metric, the counts and per-category accuracy."""
    run = table["run"]
    lines = [
        f"# Evaluation of `{run.get('model', '?')}` ({run.get('engine', '?')})",
        "",
        f"Frames: at most {run.get('max_frames', '?')}; temperature {run.get('temperature', '?')}; "
        f"{run.get('max_new_tokens', '?')} new tokens per turn. Failed samples count as wrong (see counts below).",
        "",
    ]
    header = ["setting"] + [f"{b['display']} ({' / '.join(b['primary'])})" for b in table["benchmarks"]]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * len(table["benchmarks"])) + "|")
    for label, cells in table_rows(table):
        lines.append("| " + " | ".join([label, *cells]) + " |")
    lines += ["", "| benchmark | headline | reading mode |", "|---|---|---|"]
    for b in table["benchmarks"]:
        lines.append(f"| {b['display']} | {b.get('headline') or '-'} | {b.get('reading') or '-'} |")
    for b in table["benchmarks"]:
        lines += ["", f"## {b['display']} (`{b['name']}`, {b['metric']})", ""]
        if b.get("headline"):
            lines += [
                f"Headline: {b['headline']}; reading mode: {b.get('reading') or '-'}; "
                f"reference: {b.get('reference') or '-'}.",
                "",
            ]
        keys = list(next(iter(b["settings"].values()))["metrics"]) if b["settings"] else []
        lines.append("| setting | n | ok | no answer | failed | " + " | ".join(keys) + " |")
        lines.append("|---|---:|---:|---:|---:|" + "---:|" * len(keys))
        for setting, s in b["settings"].items():
            counts = [str(s[k]) for k in ("n", "n_ok", "n_no_answer", "n_failed")]
            values = [_fmt(s["metrics"][k]) for k in keys]
            lines.append("| " + " | ".join([SETTING_LABELS.get(setting, setting), *counts, *values]) + " |")
        failed = {setting: s["failed_reasons"] for setting, s in b["settings"].items() if s["failed_reasons"]}
        if failed:
            lines.append("")
            lines.append(
                "Failed, by reason: " + "; ".join(f"{SETTING_LABELS.get(k, k)}: {v}" for k, v in failed.items())
            )
        if b["read_errors"]:
            lines.append("")
            lines.append(f"Records rejected when read (not in n): {b['read_errors']}")
        categories = sorted({c for s in b["settings"].values() for c in s["by_category"]})
        if categories:
            lines += ["", "| category | " + " | ".join(SETTING_LABELS.get(k, k) for k in b["settings"]) + " |"]
            lines.append("|---|" + "---:|" * len(b["settings"]))
            for c in categories:
                cells = []
                for s in b["settings"].values():
                    entry = s["by_category"].get(c)
                    cells.append("-" if entry is None else f"{_fmt(entry['accuracy'])} (n={entry['n']})")
                lines.append("| " + " | ".join([c, *cells]) + " |")
    lines += ["", f"Dead letters: {table['dead_letters']} (`{DEAD_LETTERS_FILE}`).", ""]
    return "\n".join(lines)


# --- the plot --------------------------------------------------------------------------------------------------------

COLORS = {"tool_off": "#8da0cb", "tool_on": "#fc8d62"}
PAPER_MARK = "#222222"


def render_svg(table: Mapping[str, Any]) -> str:
    """plot.svg: per (benchmark, primary metric), one bar per setting (0-100) and the paper's value as a diamond."""
    settings = list(table["run"]["settings"])
    groups = [(b, key) for b in table["benchmarks"] for key in b["primary"]]
    bar, gap, left, top, height = 22, 26, 48, 40, 220
    width = left + max(1, len(groups)) * (len(settings) * bar + gap) + 20
    total_h = top + height + 70
    y = lambda v: top + height - height * max(0.0, min(100.0, v)) / 100.0  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
        f'viewBox="0 0 {width} {total_h}" font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{total_h}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">{html.escape(str(table["run"].get("model", "")))}'
        " vs VITAL-7B (paper)</text>",
    ]
    for tick in range(0, 101, 20):
        ty = y(tick)
        parts.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{width - 10}" y2="{ty:.1f}" stroke="#dddddd"/>')
        parts.append(f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick}</text>')
    x = left + gap / 2
    for b, key in groups:
        for i, setting in enumerate(settings):
            value = b["settings"][setting]["metrics"].get(key)
            bx = x + i * bar
            if value is not None:
                by = y(value)
                parts.append(
                    f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bar - 4}" height="{top + height - by:.1f}" '
                    f'fill="{COLORS.get(setting, "#999999")}"><title>{html.escape(b["display"])} {key} '
                    f"{SETTING_LABELS.get(setting, setting)}: {value:.1f}</title></rect>"
                )
            paper = b["paper"].get(setting, {}).get(key)
            if paper is not None:
                cx, cy = bx + (bar - 4) / 2, y(paper)
                parts.append(
                    f'<path d="M{cx:.1f} {cy - 5:.1f} L{cx + 5:.1f} {cy:.1f} L{cx:.1f} {cy + 5:.1f} '
                    f'L{cx - 5:.1f} {cy:.1f} Z" fill="{PAPER_MARK}"><title>VITAL-7B (paper) {key} '
                    f"{SETTING_LABELS.get(setting, setting)}: {paper:.1f}</title></path>"
                )
        label_x = x + len(settings) * bar / 2
        parts.append(
            f'<text x="{label_x:.1f}" y="{top + height + 16}" text-anchor="middle">{html.escape(b["display"])}</text>'
        )
        parts.append(f'<text x="{label_x:.1f}" y="{top + height + 30}" text-anchor="middle">{html.escape(key)}</text>')
        x += len(settings) * bar + gap
    legend_y = top + height + 50
    lx = left
    for setting in settings:
        parts.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{COLORS.get(setting, "#999")}"/>'
        )
        parts.append(f'<text x="{lx + 14}" y="{legend_y}">{SETTING_LABELS.get(setting, setting)}</text>')
        lx += 80
    parts.append(
        f'<path d="M{lx + 5} {legend_y - 9} L{lx + 10} {legend_y - 4} L{lx + 5} {legend_y + 1} '
        f'L{lx} {legend_y - 4} Z" fill="{PAPER_MARK}"/>'
    )
    parts.append(f'<text x="{lx + 14}" y="{legend_y}">{PAPER_LABEL}, same setting</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_report(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write table.json, table.md and plot.svg into `out` (a path or a URL) from its results; returns the table."""
    out = os.fspath(out)
    table = build_table(out)
    storage.write_text(storage.join(out, TABLE_JSON), json.dumps(table, indent=2, sort_keys=True) + "\n")
    storage.write_text(storage.join(out, TABLE_MD), render_markdown(table))
    storage.write_text(storage.join(out, PLOT_SVG), render_svg(table))
    log.info("eval table in %s", storage.join(out, TABLE_MD))
    return table
