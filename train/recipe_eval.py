"""The recipe's `eval:` block: `mtvr eval` on one question set before the first stage and after each, as one table.

    eval:
      config: eval_learn_demo.yaml   # an `mtvr eval` config (relative to the recipe file); its model is replaced
      tools: both                    # optional: off | on | both (default: the eval config's)
      cap: 4                         # optional: the first N questions of each benchmark (quick checks)

Why: a recipe is four stages of training, and whether each stage taught the model anything is only visible on
questions it was not trained on. So each checkpoint (the recipe's starting model, then every stage's output) is
evaluated by `pipelines.evaluate.evaluate` itself (same prompts, frames, parser and metrics as `mtvr eval`), into
`<output_dir>/eval/<checkpoint>`, and its answers are also scored with the training rewards
(`mtvr_data.rewards.format_reward` and `task_reward`, what DGRPO optimises), read back from the eval's own answer
cache. The rows go to `<output_dir>/learning.md` and `learning.json`; the DGRPO stages' reward against step (from
their trainer's log history) to `<output_dir>/dgrpo_reward.png`. An evaluation is cached by the model's content
hash, so a rerun of a finished recipe rebuilds the table without a model call.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model.settings import resolve_path
from train.config import TrainConfig, TrainConfigError

log = logging.getLogger(__name__)

EVAL_KEYS = frozenset({"config", "tools", "cap"})
TOOL_CHOICES = ("off", "on", "both")
LEARNING_MD = "learning.md"
LEARNING_JSON = "learning.json"
REWARD_PLOT = "dgrpo_reward.png"
START = "start"
#: The metric a benchmark's family is read by in the table (`pipelines.eval_report` families).
FAMILY_METRIC = {"grounding": "mIoU", "grounded_qa": "Acc@QA", "accuracy": "Acc"}


@dataclass(frozen=True, slots=True)
class RecipeEval:
    """The recipe's `eval:` block, checked when the recipe is read (a typo must not cost a training run)."""

    config: str
    tools: str | None = None
    cap: int | None = None

    @classmethod
    def from_dict(cls, raw: Any, base: Path) -> RecipeEval:
        if not isinstance(raw, dict):
            raise TrainConfigError(f"recipe: eval takes a mapping with keys {sorted(EVAL_KEYS)}, got {raw!r}")
        unknown = sorted(set(raw) - EVAL_KEYS)
        if unknown:
            raise TrainConfigError(f"recipe: eval: unknown keys {unknown}; known: {sorted(EVAL_KEYS)}")
        config = raw.get("config")
        if not isinstance(config, str) or not config:
            raise TrainConfigError("recipe: eval.config must name an `mtvr eval` config file")
        path = Path(resolve_path(base, config))
        if not path.is_file():
            raise TrainConfigError(f"recipe: eval.config: no such file {path}")
        tools, cap = raw.get("tools"), raw.get("cap")
        if isinstance(tools, bool):  # YAML 1.1 reads a bare `off` / `on` as a boolean
            tools = "on" if tools else "off"
        if tools is not None and tools not in TOOL_CHOICES:
            raise TrainConfigError(f"recipe: eval.tools must be one of {list(TOOL_CHOICES)}, got {tools!r}")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise TrainConfigError(f"recipe: eval.cap must be a positive integer, got {cap!r}")
        return cls(config=str(path), tools=tools, cap=cap)


def _eval_config(spec: RecipeEval, model: str, out: str) -> Any:
    """The eval config of `spec` with the checkpoint as the engine's model and `out` as its folder."""
    import yaml

    from pipelines.evaluate import load_eval_config

    raw = yaml.safe_load(Path(spec.config).read_text(encoding="utf-8"))
    overrides: dict[str, Any] = {"out": out, "engine": {"settings": {"model": model}}}
    if spec.tools is not None:
        overrides["tools"] = spec.tools
    if spec.cap is not None:
        overrides["benchmarks"] = [{**b, "cap": spec.cap} for b in raw["benchmarks"]]
    return load_eval_config(spec.config, overrides)


def _reward_rows(config: Any, out: str) -> dict[str, dict[str, Any]]:
    """Per setting: the training rewards of the eval's answers (read from its answer cache), per benchmark too.

    The answers are the trajectories `mtvr eval` cached (`pipelines.result_cache`, keyed by the setting's stage), the
    truths the benchmarks' own samples; a question without a cached answer (a machinery failure) scores 0.
    """
    from mtvr_data.rewards import format_reward, task_reward
    from mtvr_data.schema import Sample
    from pipelines.evaluate import STAGE, read_benchmark_items
    from pipelines.model_stage import trajectory_from_dict
    from pipelines.result_cache import ResultCache

    cache = ResultCache(out, STAGE)
    samples = {  # read once: every setting scores the same questions
        bench.name: [s for s in read_benchmark_items(bench) if isinstance(s, Sample)] for bench in config.benchmarks
    }
    rows: dict[str, dict[str, Any]] = {}
    for setting, tools in config.settings:
        stage = config.stage(tools)
        fmt: list[float] = []
        task: dict[str, list[float]] = {}
        calls: list[float] = []
        for name, bench_samples in samples.items():
            for sample in bench_samples:
                value = cache.get(stage.key(sample))
                trajs = (value or {}).get("trajectories") or []
                traj = trajectory_from_dict(trajs[0]) if trajs else None
                text = traj.assistant_text if traj is not None else ""
                fmt.append(format_reward(text))
                task.setdefault(name, []).append(task_reward(sample, text).value if text else 0.0)
                calls.append(1.0 if traj is not None and traj.num_tool_calls else 0.0)
        every = [v for values in task.values() for v in values]
        rows[setting] = {
            "format_reward": _mean(fmt),
            "task_reward": _mean(every),
            "task_reward_by_benchmark": {name: _mean(values) for name, values in task.items()},
            "tool_call_rate": _mean(calls) if tools else None,
            "n": len(fmt),
        }
    return rows


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def evaluate_checkpoint(spec: RecipeEval, name: str, model: str, output_dir: str) -> list[dict[str, Any]]:
    """`mtvr eval` of `model` into `<output_dir>/eval/<name>`; one table row per tool setting."""
    from pipelines.evaluate import evaluate

    out = str(Path(output_dir) / "eval" / name)
    config = _eval_config(spec, model, out)
    table = evaluate(config, ["--runner=DirectRunner"])
    rewards = _reward_rows(config, out)
    rows = []
    for setting, _ in config.settings:
        metrics = {}
        for bench in table["benchmarks"]:
            key = FAMILY_METRIC.get(bench["metric"], bench["primary"][0])
            metrics[f"{bench['name']} {key}"] = bench["settings"][setting]["metrics"].get(key)
        rows.append({"checkpoint": name, "model": model, "setting": setting, **rewards[setting], "metrics": metrics})
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(rows: list[dict[str, Any]]) -> str:
    """The learning table in Markdown: one row per checkpoint and tool setting."""
    metric_names = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    head = ["checkpoint", "setting", "format reward", "task reward", *metric_names, "tool-call rate"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["checkpoint"], r["setting"], _fmt(r["format_reward"]), _fmt(r["task_reward"])]
        cells += [_fmt(r["metrics"].get(m), 1) for m in metric_names]
        cells.append(_fmt(r["tool_call_rate"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reward_history(stages: list[TrainConfig]) -> list[dict[str, Any]]:
    """(stage, step, reward, ...) of every DGRPO stage, read from the trainer state of its newest checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    points = []
    for config in stages:
        if config.kind != "dgrpo" or not Path(config.output_dir).is_dir():
            continue
        last = get_last_checkpoint(config.output_dir)
        state = Path(last, "trainer_state.json") if last else None
        if state is None or not state.is_file():
            log.warning("recipe eval: %s has no trainer_state.json; set save_steps to plot it", config.output_dir)
            continue
        for entry in json.loads(state.read_text(encoding="utf-8")).get("log_history", []):
            if "reward" in entry:
                keep = {k: v for k, v in entry.items() if k == "reward" or k.startswith("rewards/")}
                points.append({"stage": Path(config.output_dir).name, "step": entry["step"], **keep})
    return points


def plot_rewards(points: list[dict[str, Any]], path: Path) -> Path | None:
    """Reward against step, one line per DGRPO stage (each stage's own steps), as a PNG; None if no points."""
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for stage in dict.fromkeys(p["stage"] for p in points):
        mine = [p for p in points if p["stage"] == stage]
        ax.plot([p["step"] for p in mine], [p["reward"] for p in mine], marker="o", label=stage)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward of the step's rollouts")
    ax.set_title("DGRPO stages: reward against step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_learning(output_dir: str, rows: list[dict[str, Any]], stages: list[TrainConfig], spec: RecipeEval) -> str:
    """`learning.md`, `learning.json` and `dgrpo_reward.png` in `output_dir`; returns the Markdown table."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = reward_history(stages)
    table = render_table(rows)
    title = f"# Learning table: held-out questions of {Path(spec.config).name} before and after each stage\n\n"
    (out / LEARNING_MD).write_text(title + table, encoding="utf-8")
    record = {"eval": asdict(spec), "rows": rows, "dgrpo_rewards": points}
    (out / LEARNING_JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    plot_rewards(points, out / REWARD_PLOT)
    return table


def _reward(row: dict[str, Any], benchmark: str | None) -> float | None:
    if benchmark is None:
        return row["task_reward"]
    return (row.get("task_reward_by_benchmark") or {}).get(benchmark)


def stage_gains(
    rows: list[dict[str, Any]], setting: str = "tool_off", benchmark: str | None = None
) -> dict[str, float]:
    """The change of the held-out task reward each stage made (its row minus the row before it, same setting),
    keyed by the stage's name: over all questions, or over one benchmark's (`benchmark`), since the tasks' changes
    can cancel in the mean."""
    mine = [r for r in rows if r["setting"] == setting]
    gains = {}
    for before, after in zip(mine, mine[1:], strict=False):
        old, new = _reward(before, benchmark), _reward(after, benchmark)
        if old is not None and new is not None:
            gains[after["checkpoint"]] = new - old
    return gains


def seed_summary(runs: list[Path], setting: str = "tool_off") -> str:
    """Each seed's task-reward gain per stage, then per stage the mean and the spread (max - min) over the seeds:
    a DGRPO stage has taught something when its mean gain is larger than the spread between seeds. Then the same
    per benchmark."""
    tables = {Path(run).name: json.loads(Path(run, LEARNING_JSON).read_text(encoding="utf-8"))["rows"] for run in runs}
    benchmarks = list(
        dict.fromkeys(b for rows in tables.values() for r in rows for b in r.get("task_reward_by_benchmark") or {})
    )
    lines = [f"task-reward gain of each stage on the held-out questions ({setting}), per seed run", ""]
    lines.append("| stage | questions | " + " | ".join(tables) + " | mean | spread |")
    lines.append("|" + "---|" * (len(tables) + 4))
    for benchmark in [None, *benchmarks]:
        gains = {name: stage_gains(rows, setting, benchmark) for name, rows in tables.items()}
        for stage in dict.fromkeys(s for g in gains.values() for s in g):
            values = [g[stage] for g in gains.values() if stage in g]
            cells = [_fmt(g.get(stage)) for g in gains.values()]
            mean, spread = sum(values) / len(values), max(values) - min(values)
            lines.append(
                f"| {stage} | {benchmark or 'all'} | " + " | ".join(cells) + f" | {mean:+.3f} | {spread:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m train.recipe_eval RUN_DIR...`: the seed summary of several runs of one recipe (`make learn-demo`)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="output_dir of each seed's recipe run")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(f"{run}:\n{Path(run, LEARNING_MD).read_text(encoding='utf-8')}")
    print(seed_summary(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
