"""Normalisation (adapter -> probe -> span check) and the demo, on the generated corpus."""

from __future__ import annotations

import json
from pathlib import Path

from mtvr_data import normalize as normalize_mod
from mtvr_data.adapters import make_adapter
from mtvr_data.normalize import NormalizeSummary, ProbeCache, apply_probe, normalize
from mtvr_data.parquet_io import read_parquet
from mtvr_data.schema import Sample, SampleError
from mtvr_data.video_probe import MediaInfo, ProbeResult
from pipelines.demo import _reported, run_demo


def sample(**kw) -> Sample:
    base = dict(
        id="s-1",
        source="charades_sta",
        task="tg",
        modality="video",
        video="v.mp4",
        question="q",
        answer_type="span",
        span=[2.0, 9.0],
        windows=[[2.0, 9.0]],
        duration=10.0,
        meta='{"origin": "a.txt:3"}',
    )
    base.update(kw)
    return Sample(**base)


def probed(duration: float) -> ProbeResult:
    return ProbeResult("v.mp4", MediaInfo(duration, 25.0, int(duration * 25), 320, 240, "h264", "decord"), None)


def test_probe_fills_media_facts():
    out = apply_probe(sample(), probed(10.04))
    assert isinstance(out, Sample)
    assert (out.duration, out.fps, out.width, out.height) == (10.04, 25.0, 320, 240)
    assert "annotated_duration" not in out.meta_dict


def test_span_past_the_real_end_is_refused_at_probe():
    out = apply_probe(sample(duration=30.0, span=[20.0, 28.0], windows=[[20.0, 28.0]]), probed(12.0))
    assert isinstance(out, SampleError)
    assert (out.stage, out.reason, out.location) == ("probe", "span_outside_video", "a.txt:3")


def test_small_overshoot_is_clamped_and_duration_mismatch_recorded():
    out = apply_probe(sample(duration=12.0, span=[2.0, 9.5], windows=[[2.0, 9.5]]), probed(9.0))
    assert isinstance(out, Sample) and out.span == [2.0, 9.0] and out.windows == [[2.0, 9.0]]
    assert out.meta_dict["annotated_duration"] == 12.0


def test_broken_media_becomes_a_probe_error():
    out = apply_probe(sample(), ProbeResult("v.mp4", None, "video_empty", "the file is empty (0 bytes)"))
    assert isinstance(out, SampleError) and (out.stage, out.reason) == ("probe", "video_empty")
    assert "v.mp4" in out.detail


def test_image_keeps_no_duration():
    img = sample(modality="image", task="open", answer="3", answer_type="number", span=None, windows=[], duration=None)
    out = apply_probe(img, ProbeResult("i.png", MediaInfo(0.0, 0.0, 1, 64, 48, "png", "pil"), None))
    assert isinstance(out, Sample) and out.duration is None and (out.width, out.height) == (64, 48)


def test_each_video_is_probed_once(demo_corpus: Path, monkeypatch):
    calls: list[str] = []
    real = normalize_mod.probe_media

    def counting(path, modality):
        calls.append(str(path))
        return real(path, modality)

    monkeypatch.setattr(normalize_mod, "probe_media", counting)
    adapter = make_adapter("charades_sta", demo_corpus / "annotations/charades_sta/charades_sta_train.txt")
    summary = NormalizeSummary("charades_sta")
    items = list(normalize(adapter, demo_corpus / "videos", summary=summary, cache=ProbeCache()))
    assert len(calls) == len(set(calls)) < summary.built
    assert summary.built + sum(n for (stage, _), n in summary.errors.items() if stage == "read") == summary.records
    assert summary.kept + summary.num_errors == len(items)


def test_demo_end_to_end(tmp_path: Path, monkeypatch, capfd):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    assert run_demo(tmp_path / "demo", warm_up=False) == 0  # the data path only: no warm-up SFT of the grader
    out, err = capfd.readouterr()  # fd level: the decoders' C code writes to fd 2 directly
    # the broken files' decoder noise is logged at DEBUG (mtvr_data.c_stderr), one line each names the dead letter
    assert not [line for line in err.splitlines() if "moov atom not found" in line or "ERROR opening" in line]
    assert out.count("dead letter in ") == len(
        json.loads((tmp_path / "demo/corpus/manifest.json").read_text())["broken"]
    )
    manifest = json.loads((tmp_path / "demo/corpus/manifest.json").read_text())
    planted = len(manifest["malformed"]) + len(manifest["broken"])
    assert f"planted faults reported with the expected reason: {planted}/{planted}" in out

    from datasets import load_dataset

    for entry in manifest["sources"]:
        path = tmp_path / "demo/samples" / f"{entry['source']}.parquet"
        rows = read_parquet(path, "sample")
        assert rows, entry["source"]
        ds = load_dataset("parquet", data_files=str(path), split="train")
        assert [Sample.from_dict(r) for r in ds] == rows
        assert all(r.duration and r.width for r in rows if r.modality == "video")
        summary = json.loads(path.with_suffix(".summary.json").read_text())
        errors = path.with_suffix(".errors.jsonl").read_text().splitlines()
        assert summary["kept"] == len(rows) and sum(e["count"] for e in summary["errors"]) == len(errors)


def test_demo_fails_when_a_planted_fault_is_not_reported(tmp_path: Path, monkeypatch, capsys):
    from mtvr_data import demo_corpus

    real = demo_corpus.build_demo_corpus

    def with_extra_fault(out):
        manifest = real(out)
        manifest["malformed"] = manifest["malformed"] + [
            {"source": "nextgqa", "location": "train.csv:99", "reason": "bad_line"}
        ]
        return manifest

    monkeypatch.setattr(demo_corpus, "build_demo_corpus", with_extra_fault)
    assert run_demo(tmp_path / "demo", warm_up=False) == 1
    assert "NOT REPORTED: {'source': 'nextgqa', 'location': 'train.csv:99'" in capsys.readouterr().out


def test_planted_fault_matching():
    errors = [
        {"source": "video_r1", "location": "a.json#3", "reason": "unknown_option", "detail": ""},
        {"source": "activitynet_captions", "location": "t.json#v_x[4]", "reason": "span_outside_video", "detail": ""},
        {"source": "charades_sta", "location": "c.txt:9", "reason": "video_empty", "detail": "broken_empty.mp4: 0 b"},
    ]
    assert _reported(errors, {"source": "video_r1", "location": "a.json#3", "reason": "unknown_option"})
    assert _reported(
        errors, {"source": "activitynet_captions", "location": "t.json#v_x", "reason": "span_outside_video"}
    )
    assert _reported(errors, {"file": "videos/broken_empty.mp4", "reason": "video_empty"})
    assert not _reported(errors, {"source": "video_r1", "location": "a.json#3", "reason": "bad_json"})
    assert not _reported(errors, {"source": "video_r1", "location": "a.json#31", "reason": "unknown_option"})
    assert not _reported(errors, {"file": "videos/broken_truncated.mp4", "reason": "video_empty"})
