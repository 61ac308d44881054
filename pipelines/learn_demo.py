"""The learning demo's inputs (`make learn-demo`): the random tiny checkpoint, the practice shards, the held-out set.

`mtvr train recipe configs/recipe_demo.yaml` then trains VITAL's four stages from the random checkpoint and evaluates
the held-out practice questions with `mtvr eval` before the first stage and after each (`train.recipe_eval`).

Why its own preparation and not `mtvr demo`: the demo's warm-up SFT trains `<out>/tiny` on the very chains the
learning demo's first stage learns from, so starting from it would hide the change the demo exists to show, and the
demo's builds are graded by that warmed-up model (minutes of CPU the recipe does not need). What is built here is
what the demo's warm-up builds first, by the same code (`pipelines.demo.demo_build_config`, build-cot, build-rl):

- `<out>/tiny-random`: the random tiny checkpoint the demo's warm-up starts from too (`pipelines.demo.
  build_practice_start`: width 128, the practice words as tokens), the recipe's starting model;
- `<out>/practice`: MTVR-CoT of the 459 training practice questions, terse oracle chains (`configs/demo_warmup.yaml`);
- `<out>/practice` too: MTVR-RL of the same questions (graded by the instant oracle, `keep: all`) for DGRPO, beside
  the CoT in one dataset folder (as `mtvr demo` builds `<out>/build`), so the recipe's one `data:` serves all stages;
- `<out>/corpus/annotations/practice/heldout`: the 102 held-out questions `configs/eval_learn_demo.yaml` reads.

Each build is skipped when it is there (the checkpoint is rebuilt: deterministic, seconds), so a second run costs
little.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

#: The folder the learning demo reads under the demo folder (the recipe's and the eval config's `practice`).
PRACTICE = "practice"


def _has_config(folder: Path, config: str) -> bool:
    return any((folder / config).glob("**/*.parquet"))


def practice_rl_config(out: Path, practice_cot_config: Path) -> Path:
    """`out/build_practice_rl.yaml`: the practice CoT build's sources and grading (oracle, K=1, keep all) as a
    build-rl config writing into the same folder: the questions DGRPO practises on are the SFT stages' questions."""
    settings = yaml.safe_load(practice_cot_config.read_text(encoding="utf-8"))
    settings.pop("teach", None)
    path = out / "build_practice_rl.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path


def prepare(out: Path) -> dict[str, str]:
    """Build what the learning demo needs under `out` (skipping what exists); returns what was built or kept."""
    from mtvr_data.demo_corpus import build_demo_corpus
    from pipelines.build_cot import build_cot
    from pipelines.build_rl import build_rl
    from pipelines.demo import build_practice_start, demo_build_config

    done: dict[str, str] = {}
    t0 = time.monotonic()
    manifest = build_demo_corpus(out / "corpus")  # seconds; writes the practice questions too
    done["corpus"] = str(out / "corpus")
    tiny = build_practice_start(out)  # the demo warm-up's start too, so `make demo` and this agree on it
    done["model"] = str(tiny)
    cot_config = demo_build_config(out, manifest, tiny, kind="practice")
    if not _has_config(out / PRACTICE, "cot"):
        build_cot(cot_config, ["--runner=DirectRunner"])
    done["sft_data"] = str(out / PRACTICE)
    if not _has_config(out / PRACTICE, "rl"):
        build_rl(practice_rl_config(out, cot_config), ["--runner=DirectRunner"])
    done["dgrpo_data"] = str(out / PRACTICE)
    print(f"learning demo inputs in {out} ({time.monotonic() - t0:.1f} s): {done}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo", type=Path, help="the demo folder (default: demo)")
    args = parser.parse_args(argv)
    from pipelines.console import configure_console

    configure_console()  # as `mtvr` does: Beam's import warnings dropped
    prepare(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
