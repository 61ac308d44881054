"""The build report: `<out>/report.html` with PNG plots in `<out>/report/`, from what a build left on disk.

Read, never passed in: the shards of whichever configs exist (`<out>/<config>/<split>-*.parquet`, validated
against their schema), every accounting table (`<out>/accounting*.json`: build-rl writes `accounting.json`,
build-cot writes `accounting_cot.json` beside it) and the dead letters (`<out>/rejected/**/*.jsonl`; build-cot's
are in `rejected/cot/`). So the report describes what was written, and it can be redone on any finished output
folder (`write_report(out)`), e.g. after both builds have run into one folder.

The folder is a local path or a URL (`s3://bucket/run`, `gs://...`): every read and write goes through
`mtvr_data.storage`, and each PNG is rendered in memory and written as one file (one object on a bucket), so the
same bytes land in either place.

Plots (matplotlib, Agg canvas, no pyplot state): rows by source and by task per config, the duration histogram,
the RL pass-rate histogram and difficulty buckets, and rejections by stage and reason. Every plot is a fixed size
and dpi, uses matplotlib's default style (a user's matplotlibrc changes nothing) and is saved without the
`Software` PNG tag; Agg PNGs carry no date, so a rerun on the same output writes the same bytes (tested for the
HTML and the PNGs with matplotlib 3.11). The HTML has no dates or absolute paths and links the PNGs relatively,
the layout `pipelines.publish.UPLOAD_PATTERNS` uploads (`report.html`, `report/*`).
"""

from __future__ import annotations

import html
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtvr_data import storage
from mtvr_data.parquet_io import read_table
from pipelines.accounting import REJECTED_DIR
from pipelines.dataset_writer import CONFIGS, SPLITS, shard_files

log = logging.getLogger(__name__)

REPORT_HTML = "report.html"
REPORT_DIR = "report"
FIGSIZE = (7.0, 4.2)
DPI = 100
#: PNG metadata: drop matplotlib's default `Software` tag (its version), so the bytes depend on the data only.
PNG_METADATA: dict[str, Any] = {"Software": None}
BUCKETS = ("hard", "medium", "easy")
SPLIT_COLORS = {"train": "#4C72B0", "validation": "#DD8452"}
COLUMNS = {"cot": ["source", "task", "duration"], "rl": ["source", "task", "duration", "pass_rate", "bucket"]}


@dataclass(slots=True)
class Plot:
    """One PNG of the report: its file name under `report/`, its title and a line saying what it shows."""

    name: str
    title: str
    caption: str


# --- reading the output folder -------------------------------------------------------------------------------------


def read_rows(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """config -> split -> the rows' plotted columns, for the configs and splits that have shards."""
    out_dir = os.fspath(out_dir)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for config in CONFIGS:
        splits = {}
        for split in SPLITS:
            files = shard_files(out_dir, config, split)
            if files:
                splits[split] = [r for f in files for r in read_table(f, config).select(COLUMNS[config]).to_pylist()]
        if splits:
            out[config] = splits
    return out


def read_accounting_files(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """file name -> accounting table, for every `accounting*.json` in the output folder (sorted by name)."""
    paths = storage.glob(storage.join(os.fspath(out_dir), "accounting*.json"))
    return {storage.name(p): json.loads(storage.read_text(p)) for p in sorted(paths, key=storage.name)}


def read_rejections(out_dir: str | os.PathLike[str]) -> Counter[tuple[str, str]]:
    """(stage, reason) -> dead letters on disk, from every `rejected/**/*.jsonl` (the stage is each line's own).

    build-cot keeps its dead letters in `rejected/cot/`: a subfolder's stages are named `cot/<stage>`, so the
    two builds' `read` or `probe` rejections stay apart.
    """
    root = storage.join(os.fspath(out_dir), REJECTED_DIR)
    counts: Counter[tuple[str, str]] = Counter()
    # Every file under the folder, filtered here: a bucket's `**/` needs at least one subfolder, a local one none.
    for path in storage.list_files(root):
        if not path.endswith(".jsonl"):
            continue
        prefix, _, file_name = storage.relative(path, root).rpartition("/")
        for line in storage.read_text(path).splitlines():
            if line.strip():
                error = json.loads(line)
                stage = str(error.get("stage") or file_name.removesuffix(".jsonl"))
                counts[(f"{prefix}/{stage}" if prefix else stage, str(error.get("reason", "")))] += 1
    return counts


# --- plots -----------------------------------------------------------------------------------------------------------


def _figure(rows: int = 1, cols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig: Figure, path: str) -> None:
    """Render the PNG in memory and write it as one file (or object) through storage."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    storage.write_bytes(path, buffer.getvalue())


def _barh_by_split(ax: Any, splits: dict[str, list[dict[str, Any]]], key: str, title: str) -> None:
    """Horizontal bars of row counts by `key`, stacked by split, labels sorted (first at the top)."""
    labels = sorted({str(r[key]) for rows in splits.values() for r in rows})
    left = [0] * len(labels)
    for split, rows in splits.items():
        counts = Counter(str(r[key]) for r in rows)
        values = [counts.get(label, 0) for label in labels]
        ax.barh(labels, values, left=left, label=split, color=SPLIT_COLORS.get(split))
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, total in enumerate(left):
        ax.annotate(str(total), (total, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.15)  # room for the totals
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("rows")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=8, loc="best")


def plot_rows(config: str, splits: dict[str, list[dict[str, Any]]], path: str) -> None:
    fig, axes = _figure(1, 2)
    _barh_by_split(axes[0][0], splits, "source", f"{config}: rows by source")
    _barh_by_split(axes[0][1], splits, "task", f"{config}: rows by task")
    _save(fig, path)


def plot_durations(data: dict[str, dict[str, list[dict[str, Any]]]], path: str) -> dict[str, tuple[int, int]]:
    """Histograms of video duration (s), the configs' bars side by side (so equal builds do not hide each other);
    returns per config (rows drawn, rows without a duration), which the legend shows too: every row is counted."""
    fig, axes = _figure()
    ax = axes[0][0]
    series: dict[str, list[float]] = {}
    counts: dict[str, tuple[int, int]] = {}
    for config, splits in data.items():
        rows = [r for rows in splits.values() for r in rows]
        values = [float(r["duration"]) for r in rows if r["duration"] is not None]
        counts[config] = (len(values), len(rows) - len(values))
        if values:
            series[config] = values
    top = max((max(v) for v in series.values()), default=1.0)
    bins = [top * i / 20 for i in range(21)]
    if series:
        labels = []
        for config in series:
            drawn, without = counts[config]
            extra = f" (+{without} without a duration, not drawn)" if without else ""
            labels.append(f"{config}: {drawn} rows{extra}")
        ax.hist(list(series.values()), bins=bins, histtype="bar", label=labels, edgecolor="white", linewidth=0.5)
        ax.legend(fontsize=8)
    ax.set_title("video duration", fontsize=10)
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("rows")
    _save(fig, path)
    return counts


def plot_pass_rate(rows: list[dict[str, Any]], path: str) -> None:
    fig, axes = _figure(1, 2)
    ax = axes[0][0]
    ax.hist([float(r["pass_rate"]) for r in rows], bins=[i / 10 for i in range(11)], edgecolor="white")
    ax.set_xlim(0.0, 1.0)
    ax.set_title("rl: pass rate of the grader's rollouts", fontsize=10)
    ax.set_xlabel("pass rate")
    ax.set_ylabel("rows")
    ax = axes[0][1]
    counts = Counter(str(r["bucket"]) for r in rows)
    labels = [b for b in BUCKETS if b in counts] + sorted(set(counts) - set(BUCKETS))
    bars = ax.bar(labels, [counts[b] for b in labels], color="#55A868")
    ax.bar_label(bars, fontsize=8)
    ax.set_title("rl: difficulty buckets", fontsize=10)
    ax.set_ylabel("rows")
    _save(fig, path)


def rejections_by_build(counts: Counter[tuple[str, str]]) -> dict[tuple[str, str], dict[str, int]]:
    """(stage, reason) -> {build: dead letters}: build-cot's `cot/<stage>` joins build-rl's `<stage>`, so a stage
    both builds ran (they read and probe the same sources) is one entry with a count per build."""
    table: dict[tuple[str, str], dict[str, int]] = {}
    for (stage, reason), n in counts.items():
        build, _, name = stage.rpartition("/")
        table.setdefault((name, reason), {})[build or "rl"] = n
    return dict(sorted(table.items()))


def plot_rejections(counts: Counter[tuple[str, str]], path: str) -> dict[tuple[str, str], dict[str, int]]:
    """One row per stage and reason, one bar per build beside it; returns what was drawn."""
    table = rejections_by_build(counts)
    builds = sorted({b for per in table.values() for b in per}, key=lambda b: (b != "rl", b))
    fig, axes = _figure()
    ax = axes[0][0]
    height = 0.8 / len(builds)
    colors = {"rl": "#C44E52", "cot": "#4C72B0"}
    for j, build in enumerate(builds):
        ys = [i + (j - (len(builds) - 1) / 2) * height for i in range(len(table))]
        values = [per.get(build, 0) for per in table.values()]
        bars = ax.barh(ys, values, height=height, color=colors.get(build, "#8172B3"), label=f"build-{build}")
        ax.bar_label(bars, labels=[str(v) if v else "" for v in values], fontsize=7, padding=2)
    ax.set_yticks(range(len(table)), [f"{stage}: {reason}" for stage, reason in table])
    ax.invert_yaxis()
    ax.set_title("rejections by stage and reason (rejected/)", fontsize=10)
    ax.set_xlabel("rows")
    ax.tick_params(axis="y", labelsize=8)
    if len(builds) > 1:
        ax.legend(fontsize=8)
    _save(fig, path)
    return table


def make_plots(
    out_dir: str | os.PathLike[str], data: dict[str, Any], rejections: Counter[tuple[str, str]]
) -> list[Plot]:
    """Write every plot that has data into `<out>/report/` (old PNGs there removed first); returns them in order."""
    folder = storage.join(os.fspath(out_dir), REPORT_DIR)
    storage.makedirs(folder)
    storage.delete(storage.glob(storage.join(folder, "*.png")))
    plots: list[Plot] = []
    with matplotlib.style.context("default"):
        for config, splits in data.items():
            name = f"rows_{config}.png"
            plot_rows(config, splits, storage.join(folder, name))
            total = sum(len(rows) for rows in splits.values())
            plots.append(Plot(name, f"Rows of {config} by source and task", f"{total} rows, stacked by split."))
        if data:
            counts = plot_durations(data, storage.join(folder, "duration.png"))
            missing = sum(without for _, without in counts.values())
            note = f" {missing} rows have no duration (image rows have none) and are not drawn." if missing else ""
            plots.append(Plot("duration.png", "Video duration", f"All splits of each config.{note}"))
        rl_rows = [r for rows in data.get("rl", {}).values() for r in rows]
        if rl_rows:
            plot_pass_rate(rl_rows, storage.join(folder, "pass_rate.png"))
            caption = "Pass rate over the graded rollouts, and difficulty buckets by pass-rate thirds."
            plots.append(Plot("pass_rate.png", "RL pass rate and difficulty buckets", caption))
        if rejections:
            plot_rejections(rejections, storage.join(folder, "rejections.png"))
            caption = f"{sum(rejections.values())} dead letters on disk; each stage once, a bar per build."
            plots.append(Plot("rejections.png", "Rejections by stage and reason", caption))
    return plots


# --- HTML ------------------------------------------------------------------------------------------------------------

STYLE = (
    "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#222}"
    "table{border-collapse:collapse;margin:0.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:2px 8px}"
    "td.n{text-align:right}td.reason{padding-left:1.5rem;color:#555}img{max-width:100%}"
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> list[str]:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = [
            f'<td class="n">{html.escape(str(c))}</td>' if i >= numeric_from else f"<td>{html.escape(str(c))}</td>"
            for i, c in enumerate(row)
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</table>"]


def _accounting_html(name: str, table: dict[str, Any]) -> list[str]:
    out = [
        f"<h3>{html.escape(name)}</h3>",
        "<table>",
        "<tr><th>stage</th><th>in</th><th>kept</th><th>rejected</th></tr>",
    ]
    for row in table.get("stages", []):
        cells = "".join(f'<td class="n">{int(row[k])}</td>' for k in ("in", "kept", "rejected"))
        out.append(f"<tr><td>{html.escape(str(row['stage']))}</td>{cells}</tr>")
        for reason, n in row.get("by_reason", {}).items():
            out.append(
                f'<tr><td class="reason">{html.escape(str(reason))}</td><td></td><td></td><td class="n">{n}</td></tr>'
            )
    out.append(
        f'<tr><th>rejected in all</th><td></td><td></td><td class="n">{int(table.get("rejected", 0))}</td></tr>'
    )
    return out + ["</table>"]


#: What the task codes of the `task` column (and of the plots' labels) mean.
TASK_CODES = (
    "Task codes: tg = temporal grounding (the answer is a moment's start and end), gqa = grounded QA (an answer "
    "and the moment that shows its evidence), mcq = multiple choice (an option letter), open = an open answer (a "
    "number or free text)."
)


def render_html(
    data: dict[str, Any],
    accounting: dict[str, dict[str, Any]],
    rejections: Counter[tuple[str, str]],
    plots: list[Plot],
) -> str:
    """The report page: row counts, the accounting table(s), dead letters on disk, then the plots."""
    body = ["<h1>Build report</h1>", f"<p>{TASK_CODES}</p>", "<h2>Rows written</h2>"]
    if data:
        rows = [(c, s, len(r)) for c, splits in data.items() for s, r in splits.items()]
        body += _table(("config", "split", "rows"), rows, numeric_from=2)
    else:
        body.append("<p>No shards in this output folder.</p>")
    body.append("<h2>Accounting (in = kept + rejected per stage)</h2>")
    for name, table in accounting.items():
        body += _accounting_html(name, table)
    if not accounting:
        body.append("<p>No accounting file (accounting*.json) in this output folder.</p>")
    body.append(f"<h2>Dead letters on disk ({REJECTED_DIR}/)</h2>")
    if rejections:
        body += _table(("stage", "reason", "rows"), [(s, r, n) for (s, r), n in sorted(rejections.items())], 2)
    else:
        body.append("<p>None.</p>")
    body.append("<h2>Plots</h2>")
    for plot in plots:
        src = html.escape(f"{REPORT_DIR}/{plot.name}")
        body += [
            f"<h3>{html.escape(plot.title)}</h3>",
            f"<p>{html.escape(plot.caption)}</p>",
            f'<img src="{src}" alt="{html.escape(plot.title)}" width="{int(FIGSIZE[0] * DPI)}">',
        ]
    head = f'<meta charset="utf-8"><title>MTVR build report</title><style>{STYLE}</style>'
    return f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n" + "\n".join(body) + "\n</body></html>\n"


def write_report(out_dir: str | os.PathLike[str]) -> str:
    """Write `<out>/report.html` and `<out>/report/*.png` from the build output in `out_dir` (a local folder or a
    URL); returns the HTML's path."""
    out = os.fspath(out_dir)
    data = read_rows(out)
    accounting = read_accounting_files(out)
    rejections = read_rejections(out)
    plots = make_plots(out, data, rejections)
    path = storage.join(out, REPORT_HTML)
    storage.write_text(path, render_html(data, accounting, rejections, plots))
    log.info("report: %s (%d plots)", path, len(plots))
    return path
