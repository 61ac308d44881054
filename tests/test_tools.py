"""The clip tool: strict validation, error texts instead of exceptions, frames only of the bound video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtvr_data.frames import FrameCache
from mtvr_data.tools import MediaContext, Tool, ToolRegistry, VideoClipTool, clip_caption, default_tools


@pytest.fixture(scope="module")
def long_video(demo_corpus: Path) -> tuple[str, float]:
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    entry = max((v for v in manifest["videos"] if v["file"].endswith(".mp4")), key=lambda v: v["duration"])
    return str(demo_corpus / "videos" / entry["file"]), float(entry["duration"])


@pytest.fixture()
def tools(long_video):
    path, duration = long_video
    return default_tools().bind(MediaContext(path=path, duration=duration, cache=FrameCache()))


def test_schema_for_the_system_prompt():
    (schema,) = default_tools().schemas()
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "get_video_clip_frame"
    assert fn["parameters"]["required"] == ["start_time", "end_time"]
    assert set(fn["parameters"]["properties"]) == {"start_time", "end_time"}
    json.dumps(schema)  # serialisable as is


def test_valid_call_returns_2fps_time_stamped_frames(tools):
    result = tools.execute("get_video_clip_frame", {"start_time": 10, "end_time": 20.5})
    assert result.ok and result.error is None and result.returned_frames
    assert result.text == "Video clip from 10.00 to 20.50 seconds." == clip_caption(10, 20.5)
    frames = result.frames
    # 10.5 s at 2 fps is 21 frames, rounded down to an even count (Qwen2.5-VL's temporal patch is 2 frames)
    assert len(frames.times) == 20
    assert all(10.0 - 0.05 <= t <= 20.5 + 0.05 for t in frames.times)
    assert np.all((np.diff(frames.times) > 0.45) & (np.diff(frames.times) < 0.6))
    h, w = frames.frames.shape[1:3]
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 64 * 28 * 28


def test_long_clip_is_capped_at_64_frames(tools, long_video):
    _, duration = long_video
    result = tools.execute("get_video_clip_frame", {"start_time": 0.0, "end_time": duration})
    assert result.ok and len(result.frames.times) == 64


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"start_time": float("nan"), "end_time": 5}, "not_finite"),
        ({"start_time": 1, "end_time": float("inf")}, "not_finite"),
        ({"start_time": -3, "end_time": 5}, "negative_time"),
        ({"start_time": 9, "end_time": 5}, "reversed_window"),
        ({"start_time": 5, "end_time": 5}, "reversed_window"),
        ({"start_time": 5, "end_time": 1e12}, "past_end"),
        ({"start_time": 5, "end_time": 6}, "window_too_short"),
        ({"start_time": 5, "end_time": 5.5}, "window_too_short"),
        ({"start_time": "5", "end_time": 9}, "not_a_number"),
        ({"start_time": True, "end_time": 9}, "not_a_number"),
        ({"start_time": "/etc/passwd", "end_time": 9}, "not_a_number"),
        ({"start_time": None, "end_time": 9}, "not_a_number"),
        ({"start_time": 1}, "missing_argument"),
        ({"start_time": 1, "end_time": 9, "path": "/etc/passwd"}, "unexpected_argument"),
        ({"start_time": 1, "end_time": 9, "video": "../other.mp4"}, "unexpected_argument"),
    ],
)
def test_invalid_calls_get_an_error_text(tools, arguments, code):
    result = tools.execute("get_video_clip_frame", arguments)
    assert not result.ok and result.error == code and result.frames is None
    assert result.text.startswith("Error:") and len(result.text) < 120
    assert "/" not in result.text.replace("/etc/passwd", "")  # never echoes a file path of ours


@pytest.mark.parametrize(
    ("name", "arguments", "code"),
    [
        ("get_video_caption", {"start_time": 1, "end_time": 9}, "unknown_tool"),
        (None, {"start_time": 1, "end_time": 9}, "unknown_tool"),
        (["get_video_clip_frame"], {}, "unknown_tool"),
        ("get_video_clip_frame", "start_time=1, end_time=9", "bad_arguments"),
        ("get_video_clip_frame", [1, 9], "bad_arguments"),
    ],
)
def test_bad_names_and_argument_shapes(tools, name, arguments, code):
    result = tools.execute(name, arguments)
    assert not result.ok and result.error == code and not result.returned_frames


def test_the_bound_video_is_the_only_one_read(long_video, monkeypatch):
    path, duration = long_video
    seen: list[str] = []
    from mtvr_data import tools as tools_mod

    real = tools_mod.sample_frames

    def spy(p, **kw):
        seen.append(str(p))
        return real(p, **kw)

    monkeypatch.setattr(tools_mod, "sample_frames", spy)
    bound = default_tools().bind(MediaContext(path=path, duration=duration))
    bound.execute("get_video_clip_frame", {"start_time": 1, "end_time": 4})
    bound.execute("get_video_clip_frame", {"start_time": 1, "end_time": 4, "path": "/etc/hosts"})
    assert seen == [path]


def test_broken_video_and_crashing_tool_do_not_raise(demo_corpus: Path):
    broken = default_tools().bind(MediaContext(path=str(demo_corpus / "videos/broken_truncated.mp4"), duration=10.0))
    result = broken.execute("get_video_clip_frame", {"start_time": 1, "end_time": 4})
    assert not result.ok and result.error == "video_truncated"
    assert "broken_truncated" not in result.text  # the model never sees paths

    class Exploding(Tool):
        name, description, parameters = "explode", "raises", {"type": "object", "properties": {}}

        def run(self, ctx, arguments):
            raise MemoryError("boom")

    bound = ToolRegistry.of([VideoClipTool(), Exploding()]).bind(MediaContext(path="x.mp4", duration=5.0))
    result = bound.execute("explode", {})
    assert not result.ok and result.error == "tool_failed" and "MemoryError" in result.text


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        ToolRegistry.of([VideoClipTool(), VideoClipTool()])
