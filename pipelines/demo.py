"""`mtvr demo`: the demo corpus end to end, so every run shows the data path and its error paths work.

It generates the corpus, normalises every demo source to samples and checks that every fault planted in
the corpus (broken videos, malformed lines) was reported with the expected reason: a demo that loses one
fails. Then it builds MTVR-RL (tiny checkpoint as grader) and MTVR-CoT (the same grading, the `oracle`
demo teacher) into ONE folder, `<out>/build`, and checks that both configs load with `datasets`.

By default (`warm_up`; `mtvr demo --no-warm-up` skips it) the grader is first trained: the random tiny checkpoint
fails every rollout, so it would grade every row "hard". The practice questions of the corpus get terse oracle chains
(build-cot, `configs/demo_warmup.yaml`) and the project's SFT trains on them (`configs/train_sft_warmup_demo.yaml`);
the trained model grades with the paper's `keep: medium` and K=8 (`WARM_UP_GRADE`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from model.tiny_checkpoint import TinyModelSpec
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


#: The practice CoT build (oracle grader and teacher) and the warm-up SFT that trains the demo's grader on it.
DEMO_PRACTICE_CONFIG = DEMO_CONFIG.with_name("demo_warmup.yaml")
DEMO_WARMUP_SFT = DEMO_CONFIG.with_name("train_sft_warmup_demo.yaml")
#: The warm-up's random start: twice the default tiny model's width (the default, 64, learns the format but not which
#: colour a question names), and the practice questions' words as whole tokens (`train_demo_grader`).
WARM_UP_SPEC = TinyModelSpec(hidden_size=128, intermediate_size=256, mrope_section=(4, 6, 6))


def demo_build_config(
    out: Path,
    manifest: dict[str, Any],
    tiny: Path,
    corpus: Path | None = None,
    *,
    kind: str = "rl",
    grade: dict[str, Any] | None = None,
) -> Path:
    """`out/build_<kind>.yaml`: the demo sources from the corpus manifest, settings from `configs/demo_<kind>.yaml`.

    Both kinds write to `out/build`, so the demo's two datasets share one folder (and one card). A template entry's
    other keys (`tools: true` on the RL mix's tool sources) are kept on the entry of the same source. `grade`
    overrides keys of the `grade:` block (the warmed-up grader's `keep: medium` and longer turns).
    """
    template = {"rl": DEMO_CONFIG, "cot": DEMO_COT_CONFIG, "practice": DEMO_PRACTICE_CONFIG}[kind]
    settings = yaml.safe_load(template.read_text(encoding="utf-8"))
    corpus = (corpus or out / "corpus").resolve()
    settings["out"] = str((out / ("practice" if kind == "practice" else "build")).resolve())
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
        for e in (manifest["practice"]["train"] if kind == "practice" else manifest["sources"])
    ]
    if kind != "practice":
        settings["grade"]["engine"]["settings"]["model"] = str(tiny.resolve())
    for key, value in (grade or {}).items():
        settings["grade"][key] = {**settings["grade"].get(key, {}), **value} if isinstance(value, dict) else value
    path = out / f"build_{kind}.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path


def build_practice_start(out: Path) -> Path:
    """`out/tiny-random`: the random start that the demo's warm-up and the learning demo (`pipelines.learn_demo`)
    both train from (`WARM_UP_SPEC`, the practice words as whole tokens). Deterministic: rebuilding it writes the
    same bytes, so either command may come first."""
    from model.tiny_checkpoint import build_tiny_checkpoint
    from mtvr_data.demo_annotations import PRACTICE_WORDS

    start = out / "tiny-random"
    build_tiny_checkpoint(start, spec=WARM_UP_SPEC, words=PRACTICE_WORDS)
    return start


def train_demo_grader(out: Path, manifest: dict[str, Any]) -> Path:
    """`out/tiny`: the random tiny checkpoint after a short SFT on the practice questions' oracle chains.

    Why: a random checkpoint fails every rollout, so every RL row would be "hard" and `keep: medium` would keep
    nothing. The warm-up teaches it the answer format and something of the answers, so that K rollouts at
    temperature 1 pass sometimes and fail sometimes (the README's demo section has the measured spread). The
    practice CoT is built by the project's own build-cot (`configs/demo_warmup.yaml`, terse oracle chains) and
    trained on by its own SFT (`configs/train_sft_warmup_demo.yaml`). A finished warm-up (its `mtvr_train.json`) is
    reused, so a second `mtvr demo --out` into the same folder skips it.
    """
    from pipelines.build_cot import build_cot
    from train.config import config_from_dict, read_yaml
    from train.runs import DONE_FILE, train_and_save

    tiny = out / "tiny"
    if (tiny / DONE_FILE).is_file():
        print(f"demo grader: {tiny} already trained (delete it to retrain)")
        return tiny
    t0 = time.monotonic()
    build_practice_start(out)
    build_cot(demo_build_config(out, manifest, tiny, kind="practice"), ["--runner=DirectRunner"])
    tree = read_yaml(DEMO_WARMUP_SFT)
    tree.update(
        model=str((out / "tiny-random").resolve()),
        data=str((out / "practice").resolve()),
        video_root=str((out / "corpus" / "videos").resolve()),
        output_dir=str(tiny.resolve()),
    )
    metrics = train_and_save(config_from_dict(tree, DEMO_WARMUP_SFT.parent), _memoized_sft_trainer)
    loss = metrics.get("train_loss")
    shown = "?" if loss is None else f"{loss:.3f}"
    print(
        f"\ndemo grader: the random tiny checkpoint after SFT on the practice chains in {out / 'practice'} "
        f"(train loss {shown}), {time.monotonic() - t0:.1f} s -> {tiny}"
    )
    return tiny


class _Memoized:
    """A map-style dataset that keeps each encoded row after its first read.

    Why: the warm-up makes several passes over a few hundred rows of 14 videos, and decoding and encoding a row
    costs more than the tiny model's step on it; kept in memory (a few MB), later passes cost the step only.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.rows: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if index not in self.rows:
            self.rows[index] = self.dataset[index]
        return self.rows[index]


def _memoized_sft_trainer(config: Any) -> Any:
    """The project's SFT trainer (`train.sft.build_sft_trainer`) over a `_Memoized` copy of its rows."""
    from train.sft import build_sft_trainer

    trainer = build_sft_trainer(config)
    trainer.train_dataset = _Memoized(trainer.train_dataset)
    return trainer


#: `grade:` keys the warmed-up grader changes in configs/demo_rl.yaml and demo_cot.yaml (the same for both, so
#: build-cot still reuses build-rl's grading): the paper's medium filter and K (configs/paper_rl.yaml: 8 rollouts;
#: pass rates in eighths spread wider than in quarters), and turns long enough for a whole terse chain.
WARM_UP_GRADE: dict[str, Any] = {
    "keep": "medium",
    "k": 8,
    "sampling": {"max_new_tokens": 48},  # a terse chain with its answer is ~20-30 tiny-BPE tokens
    "frames": {"max_frames": 4, "min_frames": 2, "max_pixels": 12544, "min_pixels": 3136},  # as it was trained
}


def demo_grader(out: Path, manifest: dict[str, Any], *, warm_up: bool) -> tuple[Path, dict[str, Any]]:
    """(grader checkpoint, `grade:` overrides): the warmed-up tiny model with `WARM_UP_GRADE` (the default demo),
    or the random one with the configs as they are (`keep: all`: it fails every rollout). The random one is what
    the training tests build on (`warm_up=False`): they need rows of every kind, and no SFT saves a minute or two."""
    from train.runs import DONE_FILE

    if warm_up or (out / "tiny" / DONE_FILE).is_file():  # an earlier --warm-up's model is never overwritten
        return train_demo_grader(out, manifest), WARM_UP_GRADE
    from model.tiny_checkpoint import build_tiny_checkpoint

    return build_tiny_checkpoint(out / "tiny"), {}


def run_build_rl(out: Path, manifest: dict[str, Any], *, warm_up: bool = False) -> None:
    """Build MTVR-RL from the demo corpus with the trained tiny checkpoint and print the accounting table."""
    from pipelines.accounting import render_accounting
    from pipelines.build_rl import build_rl

    t0 = time.monotonic()
    tiny, grade = demo_grader(out, manifest, warm_up=warm_up)
    config = demo_build_config(out, manifest, tiny, grade=grade)
    table = build_rl(config, ["--runner=DirectRunner"])
    print(f"\nbuild-rl ({config}): {time.monotonic() - t0:.1f} s; shards, card and rejected/ in {out / 'build'}")
    print(render_accounting(table))


def run_build_cot(out: Path, manifest: dict[str, Any], *, warm_up: bool = False) -> None:
    """Build MTVR-CoT into the same folder as build-rl (grading reused from its cache) and print the accounting."""
    from pipelines.accounting import render_accounting
    from pipelines.build_cot import ACCOUNTING_FILE, build_cot

    t0 = time.monotonic()
    tiny, grade = demo_grader(out, manifest, warm_up=warm_up)
    config = demo_build_config(out, manifest, tiny, kind="cot", grade=grade)
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


def _quiet_progress() -> None:
    """One progress display per stage: the libraries' own bars (loading a 57-tensor checkpoint, writing its shard,
    each `datasets` map) are off, the stages' bars (corpus, normalising, training) stay."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def run_demo(out: Path, *, warm_up: bool = True) -> int:
    """Build the corpus under `out/corpus`, normalise each source to `out/samples`, print the summary, build both
    datasets (graded by the warmed-up tiny model, medium rows; `warm_up=False`: by the random one, every row)."""
    from mtvr_data.demo_corpus import build_demo_corpus

    t0 = time.monotonic()
    _quiet_progress()
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
            errors.extend({**json.loads(line), "_file": str(fh.name)} for line in fh)

    print(f"{'source':<22}{'records':>9}{'built':>8}{'kept':>8}{'errors':>8}")
    for s in summaries:
        print(f"{s.source:<22}{s.records:>9}{s.built:>8}{s.kept:>8}{s.num_errors:>8}")
    total = [sum(getattr(s, k) for s in summaries) for k in ("records", "built", "kept")]
    print(f"{'total':<22}{total[0]:>9}{total[1]:>8}{total[2]:>8}{sum(s.num_errors for s in summaries):>8}")

    planted = manifest["malformed"] + manifest["broken"]
    missing = [p for p in planted if not _reported(errors, p)]
    print(f"\nplanted faults reported with the expected reason: {len(planted) - len(missing)}/{len(planted)}")
    # The decoders' own complaints about the broken files go to the debug log (mtvr_data.c_stderr): one line each.
    for broken in manifest["broken"]:
        name = Path(broken["file"]).name
        where = sorted({e["_file"] for e in errors if e["reason"] == broken["reason"] and name in e["detail"]})
        print(f"  broken file {name}: {broken['reason']}, dead letter in {', '.join(where) or '(none)'}")
    for p in missing:
        print(f"  NOT REPORTED: {p}")
    print(f"samples and errors in {out / 'samples'} ({time.monotonic() - t0:.1f} s)")
    if missing:
        return 1
    run_build_rl(out, manifest, warm_up=warm_up)
    run_build_cot(out, manifest, warm_up=warm_up)
    counts = check_loads(out / "build")
    print("\n" + ", ".join(f"load_dataset({str(out / 'build')!r}, {c!r}): {n} rows" for c, n in counts.items()))
    print(f"\ndemo finished in {time.monotonic() - t0:.1f} s")
    return 0
