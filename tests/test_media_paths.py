"""Media paths stay under their source's video root: `..`, absolute paths, symlinks out and URL `..` are refused
(`path_outside_root`) by `resolve_media`, at the probe stage before any file is opened, and in the model stage;
a source's `allow_absolute_paths: true` lets absolute paths through."""

from __future__ import annotations

import os
import pickle
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from model.config_error import ConfigError
from model.settings import EngineConfig
from mtvr_data import normalize
from mtvr_data.frames import FrameBudget
from mtvr_data.normalize import PATH_OUTSIDE_ROOT, MediaPathError, MediaRoot, resolve_media
from mtvr_data.schema import Sample
from pipelines.config import BuildConfig
from pipelines.grading import GradeStage
from pipelines.model_stage import StageHandler
from pipelines.stage_settings import GradeSettings
from pipelines.transforms import ProbeAndValidate
from tests.test_rollout import ScriptedEngine, by_turn

# --- resolve_media ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    """root/ with a video, a subfolder, a symlink out of the root and one inside it; a secret file beside root/."""
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    (root / "a.mp4").write_bytes(b"x")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG")
    os.symlink(secret, root / "escape.mp4")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "a.mp4", root / "sub" / "inside.mp4")
    return {"root": root, "secret": secret}


def test_a_dotdot_path_is_outside_the_root(tree: dict[str, Path]) -> None:
    root = str(tree["root"])
    with pytest.raises(MediaPathError) as err:
        resolve_media(root, "../secret.png")
    assert err.value.reason == PATH_OUTSIDE_ROOT and "../secret.png" in str(err.value)
    with pytest.raises(MediaPathError):
        resolve_media(root, "sub/../../secret.png")
    assert resolve_media(root, "sub/../a.mp4") == str(tree["root"] / "sub/../a.mp4")  # stays inside: allowed


def test_an_absolute_path_is_refused_by_default_and_allowed_by_the_switch(tree: dict[str, Path]) -> None:
    secret, root = str(tree["secret"]), str(tree["root"])
    for video in (secret, "file://" + secret, "s3://other-bucket/b.mp4", str(tree["root"] / "a.mp4")):
        with pytest.raises(MediaPathError):
            resolve_media(root, video)
    assert resolve_media(root, secret, allow_absolute=True) == secret
    assert resolve_media(MediaRoot(root, allow_absolute=True), secret) == secret
    assert resolve_media(MediaRoot(root, allow_absolute=True), "s3://b/v.mp4") == "s3://b/v.mp4"
    with pytest.raises(MediaPathError):  # the switch is for absolute paths: `..` stays refused
        resolve_media(MediaRoot(root, allow_absolute=True), "../secret.png")


def test_a_symlink_out_of_the_root_is_refused_and_one_inside_it_is_not(tree: dict[str, Path]) -> None:
    root = str(tree["root"])
    for video in ("escape.mp4", "up/secret.png"):
        with pytest.raises(MediaPathError):
            resolve_media(root, video)
    assert resolve_media(root, "sub/inside.mp4") == str(tree["root"] / "sub" / "inside.mp4")
    linked_root = tree["root"].parent / "linked_videos"  # a root that is itself a symlink is resolved too
    os.symlink(tree["root"], linked_root)
    assert resolve_media(str(linked_root), "a.mp4") == str(linked_root / "a.mp4")


def test_a_url_root_normalises_dotdot_in_the_key() -> None:
    assert resolve_media("s3://bucket/videos", "a/./b/../c.mp4") == "s3://bucket/videos/a/c.mp4"
    for video in ("../other/x.mp4", "a/../../x.mp4", ".."):
        with pytest.raises(MediaPathError):
            resolve_media("s3://bucket/videos", video)
    with pytest.raises(MediaPathError):
        resolve_media("file:///data/videos", "../etc/passwd")


def test_no_root_means_nothing_to_contain_and_media_root_pickles_with_its_switch() -> None:
    assert resolve_media(None, "/abs/b.mp4") == "/abs/b.mp4"
    root = pickle.loads(pickle.dumps(MediaRoot("/data/videos", allow_absolute=True)))
    assert isinstance(root, MediaRoot) and root.allow_absolute and root == "/data/videos"


# --- the config switch -----------------------------------------------------------------------------------------------


def _config(**entry: Any) -> BuildConfig:
    source = {"source": "charades_sta", "annotations": "/a.txt", "videos": "/data/videos", **entry}
    return BuildConfig.from_dict({"sources": [source], "out": "/out", "contamination": []})


def test_the_switch_is_per_source_typed_and_travels_with_the_root() -> None:
    assert not isinstance(_config().video_roots["charades_sta"], MediaRoot)
    root = _config(allow_absolute_paths=True).video_roots["charades_sta"]
    assert isinstance(root, MediaRoot) and root.allow_absolute and root == "/data/videos"
    with pytest.raises(ConfigError, match="allow_absolute_paths"):
        _config(allow_absolute_paths="yes")
    entries = [
        {"source": "charades_sta", "annotations": "/a.txt", "videos": "/v", "allow_absolute_paths": True},
        {"source": "charades_sta", "annotations": "/b.txt", "videos": "/v"},
    ]
    with pytest.raises(ConfigError, match="allow_absolute_paths true and false"):
        BuildConfig.from_dict({"sources": entries, "out": "/out", "contamination": []})


# --- the probe stage -------------------------------------------------------------------------------------------------


def sample(sample_id: str, video: str) -> Sample:
    return Sample(
        id=sample_id,
        source="charades_sta",
        task="tg",
        modality="video",
        video=video,
        question="a person opens a door",
        answer="",
        answer_type="span",
        span=[0.5, 1.5],
        windows=[[0.5, 1.5]],
        duration=3.0,
        meta='{"origin": "test:1"}',
    )


@pytest.fixture()
def outside(tmp_path: Path, demo_corpus: Path) -> dict[str, Any]:
    """A root with one real video, and a real video and a PNG outside it (reached by `..`, absolute, symlink)."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(demo_corpus / "videos" / "DM0A1.mp4", root / "inside.mp4")
    shutil.copy(demo_corpus / "videos" / "DM0B2.mp4", tmp_path / "outside.mp4")
    (tmp_path / "outside.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    os.symlink(tmp_path / "outside.mp4", root / "link.mp4")
    samples = [
        sample("ok", "inside.mp4"),
        sample("dotdot", "../outside.mp4"),
        sample("absolute", str(tmp_path / "outside.mp4")),
        sample("png", str(tmp_path / "outside.png")),
        sample("symlink", "link.mp4"),
    ]
    return {"root": root, "samples": samples}


def _probe(samples: list[Sample], roots: dict[str, Any], kept: list[str], dead: list[tuple[str, str, str]]) -> None:
    """Run ProbeAndValidate and check the kept ids and the dead letters' (id, reason, stage), sorted."""
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        out, letters = p | beam.Create(samples) | ProbeAndValidate(roots)
        assert_that(out | "Ids" >> beam.Map(lambda s: s.id), equal_to(kept), label="Kept")
        triples = letters | "Triples" >> beam.Map(lambda d: (d.raw, d.reason, d.stage))
        assert_that(triples, equal_to(dead), label="Dead")


def test_the_probe_stage_refuses_paths_outside_the_root_before_opening_them(outside, monkeypatch) -> None:
    opened: list[str] = []
    real = normalize.probe_media
    monkeypatch.setattr(normalize, "probe_media", lambda path, modality: opened.append(path) or real(path, modality))
    dead = [(name, PATH_OUTSIDE_ROOT, "probe") for name in ("absolute", "dotdot", "png", "symlink")]
    _probe(outside["samples"], {"charades_sta": str(outside["root"])}, ["ok"], dead)
    assert opened == [str(outside["root"] / "inside.mp4")]  # nothing outside the root was opened


def test_the_switch_lets_absolute_paths_through_the_probe(outside) -> None:
    root = MediaRoot(str(outside["root"]), allow_absolute=True)
    dead = [("dotdot", PATH_OUTSIDE_ROOT, "probe"), ("symlink", PATH_OUTSIDE_ROOT, "probe")]  # relative: still inside
    dead.append(("png", "video_unreadable", "probe"))  # let through, then refused by the probe as not a video
    _probe(outside["samples"], {"charades_sta": root}, ["absolute", "ok"], dead)


def test_normalize_counts_a_path_outside_the_root_as_a_probe_dead_letter(outside) -> None:
    class Adapter:
        name = "charades_sta"
        counts = Counter(records=2)  # other counts read as 0

        def read(self):
            yield from outside["samples"][:2]

    out = list(normalize.normalize(Adapter(), str(outside["root"])))
    assert [getattr(o, "reason", "kept") for o in out] == ["kept", PATH_OUTSIDE_ROOT]


# --- the model stage -------------------------------------------------------------------------------------------------


def test_the_model_stage_refuses_a_path_outside_the_root_without_an_engine_call(outside) -> None:
    engine = ScriptedEngine(by_turn("<think>t</think><answer>0.50 - 1.50 seconds</answer>"))
    call = GradeSettings(
        engine=EngineConfig.model_construct(kind="scripted", settings={}), k=2, frames=FrameBudget(max_frames=4)
    )
    stage = GradeStage(call=call, tools=False)
    handler = StageHandler(stage, {"charades_sta": str(outside["root"])}, engine_factory=lambda _: engine)
    ok, dotdot = outside["samples"][:2]
    results = list(handler.run_inference([ok, dotdot], handler.load_model()))
    assert [r.sample.id for r in results] == ["ok", "dotdot"]
    assert results[0].error is None and len(results[0].trajectories) == 2
    assert results[1].reason == PATH_OUTSIDE_ROOT and results[1].error.startswith(PATH_OUTSIDE_ROOT)
    assert results[1].sample.video == "../outside.mp4" and results[1].trajectories == []
    assert [r.key for r in engine.requests] == ["ok/t0"]
