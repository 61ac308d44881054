"""`mtvr train recipe`: VITAL's four stages in order, each from the previous stage's checkpoint, each resumable.

    model: Qwen/Qwen2.5-VL-7B-Instruct
    data: your-org/mtvr
    video_root: /data/videos
    output_dir: runs/vital
    common: {args: {save_steps: 100}}      # merged into every stage (a stage's own keys win)
    by_kind: {dgrpo: {args: {use_vllm: true}}}   # merged into the stages of that kind, over `common`
    eval: {config: eval_learn_demo.yaml}   # optional: `mtvr eval` before the first stage and after each (recipe_eval)
    stages:                                # default: VITAL's four (docs/papers.md)
      - {name: sft-text,   kind: sft,   tools: false}
      - {name: dgrpo-text, kind: dgrpo, tools: false}
      - {name: sft-tool,   kind: sft,   tools: true}
      - {name: dgrpo-tool, kind: dgrpo, tools: true}

A stage writes `<output_dir>/<name>`; it is skipped when its `mtvr_train.json` (written when it finished) is
there, and resumed from its last `checkpoint-N` when it was interrupted. The next stage starts from the previous
stage's saved model, so a killed recipe rerun continues where it stopped. With `eval:`, the starting model and every
stage's output are evaluated (`train.recipe_eval`) and `<output_dir>/learning.md` shows what each stage changed.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.config import (
    TrainConfig,
    TrainConfigError,
    _resolve_paths,
    apply_overrides,
    config_from_dict,
    read_yaml,
)
from train.recipe_eval import RecipeEval
from train.runs import DONE_FILE

log = logging.getLogger(__name__)

#: VITAL's recipe (docs/papers.md): SFT on text CoT, DGRPO without tools, SFT on tool CoT, DGRPO with tools.
VITAL_STAGES: list[dict[str, Any]] = [
    {"name": "sft-text", "kind": "sft", "tools": False},
    {"name": "dgrpo-text", "kind": "dgrpo", "tools": False},
    {"name": "sft-tool", "kind": "sft", "tools": True},
    {"name": "dgrpo-tool", "kind": "dgrpo", "tools": True},
]
RECIPE_KEYS = frozenset({"model", "data", "video_root", "output_dir", "common", "by_kind", "stages", "eval"})
#: `by_kind` exists for settings only one kind of stage takes (e.g. vLLM rollouts for the DGRPO stages, which an
#: SFT stage's `args` would refuse), so that one `--set by_kind.dgrpo.args.use_vllm=true` reaches them all.
STAGE_KINDS = ("sft", "dgrpo")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class Recipe:
    model: str
    output_dir: str
    stages: list[TrainConfig] = field(default_factory=list)
    eval: RecipeEval | None = None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    tree = apply_overrides(read_yaml(path), overrides or [])
    unknown = set(tree) - RECIPE_KEYS
    if unknown:
        raise TrainConfigError(f"recipe: unknown keys {sorted(unknown)}; known: {sorted(RECIPE_KEYS)}")
    missing = [k for k in ("model", "data", "output_dir") if not tree.get(k)]
    if missing:
        raise TrainConfigError(f"recipe: missing keys {missing}")
    base = Path(path).resolve().parent
    tree = _resolve_paths(tree, base)
    try:
        recipe = recipe_from_dict(tree)
        if tree.get("eval") is not None:
            recipe.eval = RecipeEval.from_dict(tree["eval"], base)
        return recipe
    except TrainConfigError as exc:  # a stage's mistake (e.g. an unknown `args` key): name the file too
        raise TrainConfigError(f"{path}: {exc}") from None


def recipe_from_dict(tree: dict[str, Any]) -> Recipe:
    """Stage configs chained: stage i's model is stage i-1's output folder."""
    stages: list[TrainConfig] = []
    model = tree["model"]
    names: set[str] = set()
    by_kind = tree.get("by_kind") or {}
    if not isinstance(by_kind, dict) or set(by_kind) - set(STAGE_KINDS):
        raise TrainConfigError(f"recipe: by_kind takes a mapping with keys from {list(STAGE_KINDS)}, got {by_kind!r}")
    for raw in tree.get("stages") or VITAL_STAGES:
        kind_keys = by_kind.get(raw.get("kind")) or {}
        stage = _merge(_merge(tree.get("common") or {}, kind_keys), raw)
        name = stage.pop("name", None)
        if not name or name in names:
            raise TrainConfigError(f"recipe: every stage needs a unique name, got {name!r}")
        names.add(name)
        stage.setdefault("data", tree["data"])
        stage.setdefault("video_root", tree.get("video_root"))
        stage["model"] = model
        stage["output_dir"] = str(Path(tree["output_dir"]) / name)
        try:
            config = config_from_dict(stage)
        except TrainConfigError as exc:
            raise TrainConfigError(f"stage {name}: {exc}") from None
        stages.append(config)
        model = config.output_dir
    return Recipe(model=tree["model"], output_dir=tree["output_dir"], stages=stages)


def stage_done(config: TrainConfig) -> bool:
    return Path(config.output_dir, DONE_FILE).is_file()


def run_recipe(recipe: Recipe) -> dict[str, Any]:
    """Run the stages that are not done yet, in order; returns each stage's final metrics (or 'skipped').

    With `recipe.eval`: the starting model and each stage's output are evaluated too, and the learning table is
    written to `<output_dir>/learning.md` (and printed); its JSON file's path is returned under "learning"."""
    from train.dgrpo import run_dgrpo
    from train.sft import run_sft

    spec = recipe.eval
    rows: list[dict[str, Any]] = []
    if spec is not None:
        from train.recipe_eval import START, evaluate_checkpoint

        rows += evaluate_checkpoint(spec, START, recipe.model, recipe.output_dir)
    results: dict[str, Any] = {}
    for config in recipe.stages:
        name = Path(config.output_dir).name
        if stage_done(config):
            log.info("recipe: %s already done (%s), skipped", name, config.output_dir)
            results[name] = "skipped"
        else:
            log.info("recipe: %s (%s) from %s", name, config.kind, config.model)
            results[name] = run_sft(config) if config.kind == "sft" else run_dgrpo(config)
        if spec is not None:
            rows += evaluate_checkpoint(spec, name, config.output_dir, recipe.output_dir)
    if spec is not None:
        from train.recipe_eval import write_learning

        table = write_learning(recipe.output_dir, rows, recipe.stages, spec)
        print(f"\nlearning table ({Path(recipe.output_dir) / 'learning.md'}):\n{table}")
        results["learning"] = str(Path(recipe.output_dir) / "learning.json")
    return results
