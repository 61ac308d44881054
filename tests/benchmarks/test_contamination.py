"""The contamination list: the shipped default is what the command makes of the committed samples, builds read
it when their config names none, and `contamination: []` turns it off."""

from __future__ import annotations

import json
import shutil

from mtvr_data.benchmarks.contamination import export_contamination
from mtvr_data.dedup import load_contamination
from pipelines.cli import main
from pipelines.config import DEFAULT_CONTAMINATION, BuildConfig
from tests.benchmarks.conftest import DERIVED

#: What configs/contamination/benchmarks.jsonl is made from (the command is in configs/contamination/README.md).
SHIPPED = [
    ("charades-sta", "charades_sta/charades_sta_test.txt"),
    ("activitynet-mr", "activitynet_captions/test.json"),
    ("nextgqa", "nextgqa/test.csv"),
    ("rextime", "rextime/rextime_val.jsonl"),
    ("longvideo-reason", "longvideo-reason/test.jsonl"),
    ("video-mme", f"video-mme/{DERIVED}/videomme.json"),
    ("video-mmmu", "videommmu"),
    ("mmvu", "mmvu/validation.json"),
    ("mvbench", f"mvbench/{DERIVED}/mvbench.json"),
    ("mlvu", f"mlvu/{DERIVED}/mlvu.json"),
    ("vsi-bench", f"vsi-bench/{DERIVED}/vsibench.json"),
    ("longvideobench", "longvideobench/lvb_val.json"),
]


def test_shipped_list_is_the_export_of_the_committed_samples(samples, tmp_path):
    args = ["contamination", "--out", str(tmp_path / "list.jsonl")]
    for name, path in SHIPPED:
        args += ["--benchmark", f"{name}={samples / path}"]
    assert main(args) == 0
    assert (tmp_path / "list.jsonl").read_bytes() == DEFAULT_CONTAMINATION.read_bytes()


def test_what_is_listed(samples, tmp_path):
    out = tmp_path / "list.jsonl"
    summary = export_contamination([(n, samples / p) for n, p in SHIPPED], out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by = {(d["benchmark"], "video" if "video" in d else "question") for d in lines}
    # grounding captions and template questions are not listed; their videos are
    assert ("charades-sta", "video") in by and ("charades-sta", "question") not in by
    assert ("mvbench", "question") not in by and ("vsi-bench", "question") not in by
    assert summary.questions["nextgqa"] == 37 and summary.videos["charades-sta"] == 8
    lists = load_contamination([out])
    # ReXTime's GT jsonl yields no samples (no option texts) but still lists its videos and questions
    assert lists.match("videos/2I9-kvemtSU_510.0_660.0.mp4", "x") is not None
    assert (
        lists.match(
            "x.mp4", "What does the woman do before smiling at the camera and being watched by the little girl"
        )
        is not None
    )
    assert summary.rejected["rextime"] == 15
    # MMVU is listed by YouTube id only: its "<subject>/0.mp4" stems are indices
    assert lists.match("6HuyUxJBY3E.mp4", "") is not None and lists.match("videos/Art/0.mp4", "") is None
    assert lists.match("3MSZA.mp4", "") is not None and lists.match("ABCDE.mp4", "person turn a light on.") is None


def test_a_name_given_twice_reads_both_files(samples, tmp_path):
    out = tmp_path / "list.jsonl"
    pairs = [("video-mmmu", samples / "videommmu/perception_video.json")]
    pairs.append(("video-mmmu", samples / "videommmu/adaptation_video.json"))
    summary = export_contamination(pairs, out)
    assert summary.questions["video-mmmu"] == 8 and summary.videos["video-mmmu"] == 10


def test_cli_rejects_unknown_benchmark(tmp_path, capsys):
    assert main(["contamination", "--benchmark", f"nope={tmp_path}", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_build_configs_default_to_the_shipped_list(tmp_path):
    base = {"out": "build", "sources": [{"source": "charades_sta", "annotations": "a.txt"}]}
    default = BuildConfig.from_dict(base, tmp_path)
    assert default.contamination == [str(DEFAULT_CONTAMINATION)] and default.contamination_default
    off = BuildConfig.from_dict({**base, "contamination": []}, tmp_path)
    assert off.contamination == [] and not off.contamination_default
    named = BuildConfig.from_dict({**base, "contamination": "mine.jsonl"}, tmp_path)
    assert named.contamination == [str(tmp_path / "mine.jsonl")] and not named.contamination_default


def test_default_list_does_not_filter_the_demo_corpus(samples, tmp_path):
    """The demo corpus's videos and questions are synthetic: none is in the shipped list."""
    from mtvr_data.adapters import make_adapter
    from mtvr_data.demo_annotations import write_all

    lists = load_contamination([DEFAULT_CONTAMINATION])
    shutil.rmtree(tmp_path, ignore_errors=True)
    tmp_path.mkdir()
    checked = 0
    for files in write_all(tmp_path):
        for item in make_adapter(files.source, tmp_path / files.annotations).read():
            if hasattr(item, "video"):
                assert lists.match(item.video, item.question) is None, item
                checked += 1
    assert checked >= 30  # every demo sample was looked at
