"""`mtvr build-rl` at the paper's row count: wall time, rows/s and the peak memory of every process, at N and 10 N.

What is measured: the real build (`pipelines.build_rl.build_rl(config, beam_args)`: read, probe, dedup,
contamination against the default benchmark list, grade, balance, write the shards, card, rejected/ and accounting)
on N synthetic samples, on the multi-processing DirectRunner (`--direct_running_mode=multi_processing
--direct_num_workers=2`: the launcher runs the runner and holds the data between stages, two SDK worker processes
run the DoFns). Grading is instant: the `oracle` engine (model/engines/oracle_engine.py, a `make_engine` kind a
build config can name) writes its answer from a hint, and a grading prompt has none, so every rollout answers
`unknown` at once and fails; `keep: all` keeps every graded sample. No model runs, so what is timed is the
pipeline: the adapters, probing, Beam's shuffles, the rollout loop's prompt and frame handling (frames come from
each worker's `FrameCache`: a handful of videos), one result-cache file per sample, balancing and writing.

The samples: native annotation files of four sources written over the demo corpus videos
(`mtvr_data.demo_corpus`, built in a temp dir unless `--corpus` names one), every question unique so dedup keeps
it: Charades-STA lines (+ the corpus's Charades v1 CSV for durations), an ActivityNet Captions JSON, a Video-R1
JSON array (video and image rows) and a LongVideo-Reason JSONL graded with the clip tool (`tools: true`). That is
five cells of the RL mix (text/charades_sta, text/activitynet_captions, text/video_r1_video, text/video_r1_image,
tool/longvideo_reason), N split between them in the mix's proportions; `balance.scale` is set so that those cells'
targets add up to N / 1.05, so balance keeps about N rows and rejects ~5% per cell as `over_target` (the mix's
other cells are short, which balance logs).

How: each N runs in its own launcher process (`python bench/pipeline_scale.py --run-build CONFIG`, so a process's peak
is that run's alone); this process starts it and samples `/proc/<pid>/status` (VmHWM: the kernel's peak resident set;
VmRSS) of the launcher and all its descendants every 0.5 s, keeping each pid's maximum. Processes that are neither the
launcher nor an SDK worker's Python (`apache_beam.runners.worker.sdk_worker_main`), e.g. ffmpeg and the `/bin/sh -c`
Beam starts each worker through, are reported together. Wall time is the launcher's whole life (Python start and
imports included); rows/s is the samples read per second of the `build_rl` call itself. Printed per N, then the ratio
of the largest worker peak at the largest N over the smallest (the target for 110k over 11k: below 2x, i.e. a worker's
memory must not grow with the row count), and the same for the launcher. A worker's peak has a part that no N changes:
the imports (Beam's RunInference module imports torch, in apache_beam/ml/inference/model_manager.py) and the
frame cache; the `--quick` run shows about that part. Run from the repository root:
    .venv/bin/python bench/pipeline_scale.py --quick           # 2,000 samples, a try-out
    .venv/bin/python bench/pipeline_scale.py --samples 11000   # one size
    .venv/bin/python bench/pipeline_scale.py                   # 11,000 and 110,000

Measured (2-core CPU machine, 2026-12-06, load average 1.7-4; `.venv/bin/python bench/pipeline_scale.py`):
    build-rl N=11000: 41.3 s wall (build_rl 37.4 s), 294.4 rows/s; read 11000, graded 11000, written 10475, ...
      launcher pid 25263: peak RSS (VmHWM) 970.6 MiB, max VmRSS 970.6 MiB
      worker   pid 25289: peak RSS (VmHWM) 1195.0 MiB, max VmRSS 1195.0 MiB
      worker   pid 25291: peak RSS (VmHWM) 1211.6 MiB, max VmRSS 1181.4 MiB
    build-rl N=110000: 184.0 s wall (build_rl 179.6 s), 612.3 rows/s; read 110000, graded 110000, written 104761, ...
      launcher pid 29168: peak RSS (VmHWM) 2045.4 MiB, max VmRSS 1925.6 MiB
      worker   pid 29195: peak RSS (VmHWM) 1289.0 MiB, max VmRSS 1263.2 MiB
      worker   pid 29196: peak RSS (VmHWM) 1459.0 MiB, max VmRSS 1455.2 MiB
    max worker peak RSS at 110000 / at 11000: 1.20x (1459.0 MiB / 1211.6 MiB; target < 2x)
    max launcher peak RSS at 110000 / at 11000: 2.11x (2045.4 MiB / 970.6 MiB)
A worker's ~1 GiB floor is imports (torch via RunInference) and frame caches; above it a worker grew ~250 MiB for 10x
the rows: the largest mix cell (text/video_r1_video, ~38k rows at 110k) held by the worker that balances it. The
launcher's growth is the multi-processing DirectRunner itself, which keeps the data between stages (its shuffles) in
the launcher's memory; on Dataflow the shuffle service holds it. Throughput rises with N (fixed start-up cost).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtvr_data.mixing import RL_TARGETS, scale_targets  # noqa: E402

BEAM_ARGS = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
#: The mix cells the synthetic samples fill, and the source each comes from.
CELLS = {
    "text/charades_sta": "charades_sta",
    "text/activitynet_captions": "activitynet_captions",
    "text/video_r1_video": "video_r1",
    "text/video_r1_image": "video_r1",
    "tool/longvideo_reason": "longvideo_reason",
}
#: Samples per cell over its target: balance rejects this share as over_target.
OVER = 0.05
SAMPLE_SECONDS = 0.5
WORKER_MARK = "apache_beam.runners.worker.sdk_worker_main"
COLOURS = ("red", "blue", "green", "yellow", "cyan", "magenta", "white", "orange")
#: The corpus's long videos: LongVideo-Reason's (the tool cell); the Video-R1 rows use the short ones.
LONG_VIDEOS = ("longvila_videos/mtvrLong001.mp4", "longvila_videos/mtvrLong002.webm")
IMAGES = ("demo/squares_4.png", "demo/sign_ocr.png")


# --- synthetic annotations -------------------------------------------------------------------------------------------


def split_counts(n: int) -> tuple[dict[str, int], float]:
    """Samples per cell (N in the mix's proportions, largest remainder) and the balance scale (module docstring)."""
    total = sum(RL_TARGETS[c] for c in CELLS)
    exact = {c: n * RL_TARGETS[c] / total for c in CELLS}
    counts = {c: math.floor(v) for c, v in exact.items()}
    for c in sorted(CELLS, key=lambda c: counts[c] - exact[c])[: n - sum(counts.values())]:
        counts[c] += 1
    return counts, n / (total * (1 + OVER))


def _span(rng: random.Random, duration: float) -> tuple[float, float]:
    start = round(rng.uniform(0.0, duration - 4.0), 1)
    end = round(min(duration - 0.5, start + rng.uniform(1.5, 8.0)), 1)
    return start, end


def write_annotations(corpus: Path, out: Path, n: int, seed: int = 0) -> tuple[list[dict[str, Any]], float]:
    """Native annotation files of N unique samples under `out`; returns the config's source entries and scale."""
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    durations = {v["file"]: float(v["duration"]) for v in manifest["videos"]}
    counts, scale = split_counts(n)
    rng = random.Random(seed)
    videos = str(corpus / "videos")
    out.mkdir(parents=True, exist_ok=True)
    entries = []

    # Charades-STA: "<VID> <start> <end>##<sentence>" over the corpus's Charades videos; durations from its CSV.
    charades = out / "charades_sta"
    charades.mkdir(exist_ok=True)
    shutil.copy(corpus / "annotations" / "charades_sta" / "Charades_v1_train.csv", charades / "Charades_v1_train.csv")
    vids = [f.removesuffix(".mp4") for f in durations if f.startswith("DM0")]
    with open(charades / "charades_sta_train.txt", "w", encoding="utf-8") as fh:
        for i in range(counts["text/charades_sta"]):
            vid = vids[i % len(vids)]
            start, end = _span(rng, durations[f"{vid}.mp4"])
            fh.write(f"{vid} {start} {end}##a {rng.choice(COLOURS)} square appears, query {i}.\n")
    entries.append({"source": "charades_sta", "annotations": str(charades / "charades_sta_train.txt")})

    # ActivityNet Captions: {"v_<id>": {"duration", "timestamps", "sentences"}}, one sentence per sample.
    anet_videos = [f for f in durations if f.startswith("v_")]
    anet: dict[str, dict[str, Any]] = {
        f.removesuffix(".mp4"): {"duration": durations[f], "timestamps": [], "sentences": []} for f in anet_videos
    }
    for i in range(counts["text/activitynet_captions"]):
        f = anet_videos[i % len(anet_videos)]
        record = anet[f.removesuffix(".mp4")]
        record["timestamps"].append(list(_span(rng, durations[f])))
        record["sentences"].append(f" A {rng.choice(COLOURS)} square is shown, caption {i}.")
    (out / "activitynet").mkdir(exist_ok=True)
    (out / "activitynet" / "train.json").write_text(json.dumps(anet), encoding="utf-8")
    entries.append({"source": "activitynet_captions", "annotations": str(out / "activitynet" / "train.json")})

    # Video-R1: a JSON array of multiple-choice rows, video rows over the short corpus videos and image rows.
    short = [f for f in durations if f not in LONG_VIDEOS and durations[f] <= 60.0]
    records = []
    for cell, media in (("text/video_r1_video", short), ("text/video_r1_image", list(IMAGES))):
        data_type = cell.rsplit("_", 1)[1]
        for i in range(counts[cell]):
            records.append(
                {
                    "problem_id": len(records),
                    "problem": f"Which colour is square number {i} in this {data_type}?",
                    "data_type": data_type,
                    "problem_type": "multiple choice",
                    "options": [f"{letter}. {colour}" for letter, colour in zip("ABCD", COLOURS[:4], strict=True)],
                    "solution": f"<answer>{rng.choice('ABCD')}</answer>",
                    "path": f"./{media[i % len(media)]}",
                    "data_source": "MTVR-bench/synthetic",
                }
            )
    (out / "video_r1").mkdir(exist_ok=True)
    (out / "video_r1" / "Video-R1-bench.json").write_text(json.dumps(records), encoding="utf-8")
    entries.append({"source": "video_r1", "annotations": str(out / "video_r1" / "Video-R1-bench.json")})

    # LongVideo-Reason: JSONL, options inlined in the problem, graded with the clip tool.
    (out / "longvideo_reason").mkdir(exist_ok=True)
    with open(out / "longvideo_reason" / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(counts["tool/longvideo_reason"]):
            colours = COLOURS[i % 4 : i % 4 + 4]
            options = "".join(f"{letter}. {colour}  \n" for letter, colour in zip("ABCD", colours, strict=True))
            row = {
                "problem_id": i,
                "problem": f"Which square appears in scene {i} of the video?  \n{options}",
                "data_type": "video",
                "problem_type": "temporal",
                "reasoning": "The scene shows one square.",
                "videos": LONG_VIDEOS[i % len(LONG_VIDEOS)],
                "answer": f"<answer>{rng.choice('ABCD')}</answer>",
            }
            fh.write(json.dumps(row) + "\n")
    entries.append(
        {"source": "longvideo_reason", "annotations": str(out / "longvideo_reason" / "train.jsonl"), "tools": True}
    )
    for entry in entries:
        entry["videos"] = videos
    return entries, scale


def write_config(work: Path, corpus: Path, n: int, k: int) -> tuple[Path, float]:
    """The build config of N samples under `work` (annotations, out): its path and its balance scale."""
    sources, scale = write_annotations(corpus, work / "annotations", n)
    config = {
        "out": str(work / "build"),
        "sources": sources,
        "grade": {
            "engine": {"kind": "oracle", "settings": {"model": "bench-oracle"}},
            "k": k,
            "sampling": {"max_new_tokens": 64, "seed": 0},
            "rollout": {"tools": False},
            "keep": "all",
            "frames": {"max_frames": 8},
            "batching": {"max_batch_size": 64},
        },
        "balance": {"scale": scale, "seed": 0},
    }
    path = work / "build_rl.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path, scale


# --- memory sampling -------------------------------------------------------------------------------------------------


def _status_kib(pid: int) -> tuple[int, int] | None:
    """(VmHWM, VmRSS) of `pid` in KiB, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])
    except (KeyError, ValueError, IndexError):
        return None


def _ppid(pid: str) -> int | None:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return int(next(line for line in lines if line.startswith("PPid:")).split()[1])
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _descendants(root: int) -> list[int]:
    """`root` and every process below it (psutil when installed, else a scan of /proc's PPid fields)."""
    try:
        import psutil

        try:
            return [root] + [p.pid for p in psutil.Process(root).children(recursive=True)]
        except psutil.Error:
            return [root]
    except ImportError:
        pass
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        ppid = _ppid(entry.name) if entry.name.isdigit() else None
        if ppid is not None:
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _is_worker(cmd: str) -> bool:
    """An SDK worker's Python process (Beam starts it through `/bin/sh -c`: the shell is not one)."""
    return WORKER_MARK in cmd and not cmd.startswith(("/bin/sh ", "sh "))


class PeakSampler(threading.Thread):
    """Every `SAMPLE_SECONDS`, each process of the launcher's tree: its largest VmHWM and VmRSS so far (KiB)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peaks: dict[int, dict[str, Any]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        for pid in _descendants(self.root):
            status = _status_kib(pid)
            if status is None:
                continue
            seen = self.peaks.get(pid)
            if seen is None:
                cmd = _cmdline(pid)
                role = "launcher" if pid == self.root else "worker" if _is_worker(cmd) else "other"
                seen = self.peaks[pid] = {"role": role, "cmd": cmd, "hwm": 0, "rss": 0}
            seen["hwm"] = max(seen["hwm"], status[0])
            seen["rss"] = max(seen["rss"], status[1])

    def stop(self) -> None:
        self.done.set()
        self.join()


# --- one run ---------------------------------------------------------------------------------------------------------


def run_build(config: str) -> None:
    """The launcher (`--run-build`): build_rl on the config, then one JSON line of what it did."""
    from pipelines.build_rl import build_rl

    started = time.perf_counter()
    table = build_rl(config, BEAM_ARGS)
    seconds = time.perf_counter() - started
    stages = {s["stage"]: s for s in table["stages"]}
    print(
        "RESULT "
        + json.dumps(
            {
                "build_s": seconds,
                "read": stages["read"]["in"],
                "graded": stages["grade"]["in"],
                "written": stages["balance"]["kept"],
                "rejected": table["rejected"],
            }
        ),
        flush=True,
    )


def measure(work: Path, corpus: Path, n: int, k: int) -> dict[str, Any]:
    """Write N samples' annotations and config under `work`, run the launcher, sample its processes."""
    config, scale = write_config(work, corpus, n, k)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    log_path = work / "launcher.log"
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        command = [sys.executable, str(Path(__file__).resolve()), "--run-build", str(config)]
        launcher = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log)
        sampler = PeakSampler(launcher.pid)
        sampler.start()
        stdout, _ = launcher.communicate()
        sampler.stop()
    wall = time.perf_counter() - started
    lines = [line for line in stdout.decode().splitlines() if line.startswith("RESULT ")]
    if launcher.returncode != 0 or not lines:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"build-rl at N={n} failed (exit {launcher.returncode}); its log ends:\n{tail}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    return {"n": n, "k": k, "scale": scale, "wall_s": wall, **result, "peaks": sampler.peaks}


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def report(result: dict[str, Any]) -> None:
    n, peaks = result["n"], result["peaks"]
    print(
        f"build-rl N={n}: {result['wall_s']:.1f} s wall (build_rl {result['build_s']:.1f} s), "
        f"{result['read'] / result['build_s']:.1f} rows/s; read {result['read']}, graded {result['graded']}, "
        f"written {result['written']}, rejected {result['rejected']}"
    )
    targets = scale_targets(RL_TARGETS, result["scale"])
    cells = ", ".join(f"{cell} {targets[cell]}" for cell in CELLS)
    print(f"  K={result['k']}, balance scale {result['scale']:.5f}: targets {cells} (other cells short)")
    for role in ("launcher", "worker"):
        for pid, p in sorted((pid, p) for pid, p in peaks.items() if p["role"] == role):
            print(f"  {role:<8} pid {pid}: peak RSS (VmHWM) {mib(p['hwm'])}, max VmRSS {mib(p['rss'])}")
    others = [p for p in peaks.values() if p["role"] == "other"]
    if others:
        names = sorted({Path(p["cmd"].split(" ", 1)[0]).name or "?" for p in others})
        print(
            f"  other    {len(others)} processes ({', '.join(names)}): largest peak RSS "
            f"{mib(max(p['hwm'] for p in others))}"
        )


def peak(result: dict[str, Any], role: str) -> int:
    """The largest VmHWM (KiB) of the run's processes of `role`."""
    return max((p["hwm"] for p in result["peaks"].values() if p["role"] == role), default=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[11_000, 110_000], help="N, one run each")
    parser.add_argument("--quick", action="store_true", help="one run of 2,000 samples (overrides --samples)")
    parser.add_argument("--k", type=int, default=8, help="rollouts per sample (the paper's K = 8)")
    parser.add_argument("--corpus", type=Path, help="an existing demo corpus (built in a temp dir otherwise)")
    parser.add_argument("--work-dir", type=Path, help="where the runs write (a temp dir under it, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep each run's annotations, build and launcher log")
    parser.add_argument("--run-build", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_build:
        run_build(args.run_build)
        return
    sizes = [2_000] if args.quick else sorted(args.samples)
    tmp = Path(tempfile.mkdtemp(prefix="pipeline_scale.", dir=args.work_dir))
    try:
        corpus = args.corpus
        if corpus is None:
            from mtvr_data.demo_corpus import build_demo_corpus

            corpus = tmp / "corpus"
            build_demo_corpus(corpus)
        results = []
        for n in sizes:
            work = tmp / f"n{n}"
            results.append(measure(work, corpus.resolve(), n, args.k))
            report(results[-1])
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)  # 110k result-cache files: free the disk before the next size
    finally:
        if args.keep:
            print(f"kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(results) > 1:
        small, large = results[0], results[-1]
        for role, target in (("worker", "; target < 2x"), ("launcher", "")):
            big, little = peak(large, role), peak(small, role)
            print(
                f"max {role} peak RSS at {large['n']} / at {small['n']}: {big / max(1, little):.2f}x "
                f"({mib(big)} / {mib(little)}{target})"
            )


if __name__ == "__main__":
    main()
