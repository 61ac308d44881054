"""Config mistakes fail when the file is read, as one line naming the file, the key path and what is allowed, with
exit code 2 and no traceback (`mtvr -v` shows it). Each case is a mistake a user made; none may reach a worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from model.config_error import ConfigError
from pipelines.cli import main


@pytest.fixture()
def base(tmp_path: Path) -> dict[str, Any]:
    """A valid build config in `tmp_path`: one Charades-STA file, a local checkpoint folder, a teacher."""
    (tmp_path / "ann.txt").write_text("AAA 0.0 1.5##a person opens a door\n", encoding="utf-8")
    (tmp_path / "tiny").mkdir()
    return {
        "out": "build",
        "contamination": [],
        "sources": [{"source": "charades_sta", "annotations": "ann.txt", "videos": "videos"}],
        "grade": {"engine": {"kind": "transformers", "settings": {"model": "tiny", "device": "cpu"}}, "k": 4},
        "teach": {"engine": {"kind": "oracle", "settings": {"model": "oracle-demo"}}},
        "balance": {"scale": 0.01, "seed": 0},
    }


def run(tmp_path: Path, config: dict[str, Any] | str, capsys, command: str = "build-rl") -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config), encoding="utf-8")
    code = main([*command.split(), str(path)])
    err = capsys.readouterr().err
    return code, err


def edit(config: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """`config` with the key at `dotted` (a.b.0.c) set to `value`; `...=DELETE` removes it."""
    node: Any = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value == "DELETE":
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return config


BUILD_MISTAKES = [
    # (key to set, value, the key path the message names, words the message must hold)
    ("balanc", {"scale": 0.5}, "balanc", "unknown top-level key; allowed: balance, contamination"),
    ("grade.k", 4.5, "grade.k", "valid integer"),
    ("grade.k", True, "grade.k", "valid integer"),
    ("grade.k", 0, "grade.k", "greater than or equal to 1"),
    ("grade.sampling", {"temperature": "hot"}, "grade.sampling.temperature", "valid number"),
    ("grade.temperature", 0.7, "grade.temperature", "unknown key; allowed: batching, clip, engine"),
    ("grade.engine.kind", "vlm", "grade.engine.kind", "'transformers', 'openai', 'vllm' or 'oracle'"),
    ("grade.engine.settings.devic", "cpu", "grade.engine.settings.devic", "unknown key; allowed: attn_implementation"),
    ("grade.engine.settings.batch_size", "eight", "grade.engine.settings.batch_size", "valid integer"),
    ("grade.engine.settings.model", "../no/such/checkpoint", "grade.engine", "neither a checkpoint folder"),
    ("grade.frames", {"max_frame": 8}, "grade.frames.max_frame", "unknown key; allowed: factor, fps, keyframe_snap"),
    ("grade.frames", {"factor": 32}, "grade.frames", "factor is the model family's"),
    ("grade.frame_budget", {"max_frames": 8}, "grade.frame_budget", "unknown key"),
    ("grade.frames", {"max_frames": 0}, "grade.frames", "max_frames and min_frames must be >= 1"),
    ("grade.batching", {"min_batch_size": 9, "max_batch_size": 2}, "grade.batching", "min_batch_size (9)"),
    ("grade.keep", "hard", "grade.keep", "'medium' or 'all'"),
    ("grade.pass_rule", {"tg_min_iou": 2}, "grade.pass_rule", "must be in [0, 1]"),
    ("balance.scale", "x", "balance.scale", "valid number"),
    ("balance.sead", 1, "balance.sead", "unknown key; allowed: mix, scale, seed"),
    ("balance.mix", "paper", "balance.mix", "unknown mix 'paper'; use vital, none or a mapping"),
    ("balance.mix", {"text/charades": 10}, "balance.mix", "unknown cell 'text/charades'; cells are text/<source>"),
    ("balance.mix", {"text/video_r1": 10}, "balance.mix", "text/video_r1_video, text/video_r1_image"),
    ("balance.mix", {"text/charades_sta": -3}, "balance.mix", "'text/charades_sta': negative count -3"),
    ("balance.mix", {"text/charades_sta": 1.5}, "balance.mix", "fraction 1.5 is over 1"),
    ("balance.mix", {"text/charades_sta": "half"}, "balance.mix", "neither a row count (integer) nor a fraction"),
    ("balance.mix", {}, "balance.mix", "non-empty mapping of cells to counts or fractions"),
    ("sources.0.options", {"video_extension": ".mkv"}, "source 'charades_sta': options", "accepts ['durations'"),
    ("sources.0.source", "charades", "sources", "unknown source 'charades'"),
    ("sources.0.vidoes", "videos", "sources[0]", "unknown keys ['vidoes']"),
    ("out", "DELETE", "", "missing top-level key 'out'"),
]


@pytest.mark.parametrize(("key", "value", "path", "words"), BUILD_MISTAKES, ids=[m[0] for m in BUILD_MISTAKES])
def test_a_build_config_mistake_is_one_line_and_exit_2(tmp_path, base, capsys, key, value, path, words) -> None:
    code, err = run(tmp_path, edit(base, key, value), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"mtvr: error: {tmp_path / 'config.yaml'}: {path}"), lines[0]
    assert words in lines[0], lines[0]


def test_yaml_syntax_errors_and_missing_blocks_are_one_line_too(tmp_path, base, capsys) -> None:
    code, err = run(tmp_path, "out: build\nsources: [\n", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not valid YAML" in err
    code, err = run(tmp_path, edit(base, "teach", "DELETE"), capsys, command="build-cot")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "teach: missing" in err
    code, err = run(tmp_path, edit(base, "grade", "DELETE"), capsys)
    assert code == 2 and "grade: missing" in err


def test_verbose_shows_the_traceback(tmp_path, base) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(edit(base, "grade.k", 4.5)), encoding="utf-8")
    with pytest.raises(ConfigError, match="grade.k"):
        main(["-v", "build-rl", str(path)])


def eval_config(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "ann.txt").write_text("AAA 0.0 1.5##a person opens a door\n", encoding="utf-8")
    (tmp_path / "tiny").mkdir(exist_ok=True)
    return {
        "out": "eval",
        "benchmarks": [{"name": "charades-sta", "annotations": "ann.txt", "videos": "videos"}],
        "engine": {"kind": "transformers", "settings": {"model": "tiny"}},
    }


EVAL_MISTAKES = [
    ("tools", "sometimes", "tools", "'off', 'on' or 'both'"),
    ("benchmarks.0.name", "charades", "benchmarks.0.name", "unknown benchmark 'charades'"),
    ("benchmarks.0.options", {"durashuns": "d.csv"}, "benchmarks.0", "options: unknown ['durashuns']"),
    ("generation", {"max_new_tokens": 8}, "generation", "unknown key; allowed: batching, benchmarks"),
    ("k", 8, "k", "Input should be 1"),
    ("sampling", {"top_p": 0}, "sampling.top_p", "greater than 0"),
]


@pytest.mark.parametrize(("key", "value", "path", "words"), EVAL_MISTAKES, ids=[m[0] for m in EVAL_MISTAKES])
def test_an_eval_config_mistake_is_one_line_and_exit_2(tmp_path, capsys, key, value, path, words) -> None:
    code, err = run(tmp_path, edit(eval_config(tmp_path), key, value), capsys, command="eval")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"mtvr: error: {tmp_path / 'config.yaml'}: {path}"), lines[0]
    assert words in lines[0], lines[0]


def test_a_train_config_mistake_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    (tmp_path / "tiny").mkdir()
    config = {"kind": "dgrpo", "model": "tiny", "data": "build", "output_dir": "run", "rollout": {"max_tool_call": 1}}
    code, err = run(tmp_path, config, capsys, command="train dgrpo")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "rollout.max_tool_call" in err and "unknown key" in err


# --- paths that are URLs (mtvr_data.storage) -------------------------------------------------------------------------

SCHEME_MISTAKES = [
    # (key to set, a value on a scheme no file system knows, the key the message names)
    ("out", "foo://bucket/x", "out"),
    ("contamination", ["foo://bucket/list.jsonl"], "contamination[0]"),
    ("sources.0.annotations", "foo://bucket/ann.txt", "sources[0].annotations"),
    ("sources.0.videos", "foo://bucket/videos", "sources[0].videos"),
    ("sources.0.options", {"durations": "foo://bucket/lengths.csv"}, "sources[0].options.durations"),
]


@pytest.mark.parametrize(("key", "value", "path"), SCHEME_MISTAKES, ids=[m[0] for m in SCHEME_MISTAKES])
def test_a_path_no_file_system_knows_is_one_line_naming_the_key(tmp_path, base, capsys, key, value, path) -> None:
    code, err = run(tmp_path, edit(base, key, value), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    shown = value[0] if isinstance(value, list) else value["durations"] if isinstance(value, dict) else value
    assert err.startswith(f"mtvr: error: {tmp_path / 'config.yaml'}: {path}: {shown}: no file system for foo://"), err


def test_a_scheme_whose_extra_is_missing_names_the_extra(tmp_path, base) -> None:
    from pipelines.config import load_config

    try:
        import google.cloud.storage  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("apache-beam[gcp] is installed here: gs:// is available")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(edit(base, "out", "gs://bucket/build")), encoding="utf-8")
    extra = r"gs:// needs `pip install 'apache-beam\[gcp\]'`"
    with pytest.raises(ConfigError, match=rf"config.yaml: out: gs://bucket/build: {extra}"):
        load_config(path)


def test_annotations_and_lists_on_s3_are_checked_there(tmp_path, base, s3_server) -> None:
    """A URL file must exist like a local one (checked on the store the build will read), and one that does is read."""
    from mtvr_data import storage
    from pipelines.config import load_config

    annotations = storage.write_text(s3_server.prefix("config", "ann.txt"), "AAA 0.0 1.5##a person opens a door\n")
    listed = storage.write_text(s3_server.prefix("config", "eval.jsonl"), '{"video": "AAA.mp4"}\n')
    out = s3_server.prefix("config", "build")
    config = edit(edit(edit(base, "sources.0.annotations", annotations), "contamination", [listed]), "out", out)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_config(path, s3_server.beam_args)
    assert (loaded.out, loaded.contamination, loaded.sources[0].annotations) == (out, [listed], annotations)
    missing = s3_server.prefix("config", "nowhere.txt")
    path.write_text(yaml.safe_dump(edit(config, "sources.0.annotations", missing)), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"config.yaml: these files do not exist: {missing}$"):
        load_config(path, s3_server.beam_args)


def test_an_eval_out_no_file_system_knows_is_one_line(tmp_path, capsys) -> None:
    code, err = run(tmp_path, edit(eval_config(tmp_path), "out", "foo://bucket/eval"), capsys, command="eval")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("mtvr: error: out: foo://bucket/eval: no file system for foo://"), err
