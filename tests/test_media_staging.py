"""Media in an object store, staged on the worker's scratch disk: the cache itself (one download, atomic, bounded,
LRU, in-use files kept), and the probe, the frame sampler, a rollout and SFT reading a sample under an s3:// root."""

from __future__ import annotations

import asyncio
import fcntl
import io
import multiprocessing
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtvr_data import demo_media, media_staging, storage
from mtvr_data.frames import FrameError, load_image, sample_frames
from mtvr_data.media_staging import LeaseGroup, MediaStager, MediaUnavailable, parse_bytes
from mtvr_data.normalize import ProbeCache, apply_probe, resolve_media
from mtvr_data.schema import SampleError
from mtvr_data.video_probe import probe_media

VIDEO = "DM0A1.mp4"


# --- helpers ---------------------------------------------------------------------------------------------------------


def upload(s3: Any, data: bytes, *parts: str) -> str:
    """Put `data` at s3://<bucket>/<parts> and return that URL."""
    s3.client().put_object(Bucket=s3.bucket, Key="/".join(parts), Body=data)
    return s3.prefix(*parts)


@pytest.fixture
def prefix() -> str:
    """A folder of the session's bucket of this test's own."""
    return f"staging-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def stager(tmp_path: Path) -> MediaStager:
    return MediaStager(tmp_path / "cache", max_bytes=1 << 30)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MediaStager:
    """The process's default cache pointed at this test's folder (what probe, frames and rollouts use)."""
    monkeypatch.setenv(media_staging.CACHE_DIR_ENV, str(tmp_path / "scratch"))
    monkeypatch.setenv(media_staging.CACHE_BYTES_ENV, "1G")
    return media_staging.default_stager()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_staging, "RETRY_BACKOFF_S", 0.0)


def files_in(folder: str) -> list[str]:
    return sorted(os.listdir(folder))


def count_open_reads(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> list[str]:
    """Patch `storage.open_read` to record each URL it opens (after `delay`, to widen any race)."""
    opened: list[str] = []
    real = storage.open_read

    def counting(path: str) -> Any:
        opened.append(path)
        time.sleep(delay)
        return real(path)

    monkeypatch.setattr(storage, "open_read", counting)
    return opened


# --- paths -----------------------------------------------------------------------------------------------------------


def test_resolve_media_joins_a_url_root_as_text_and_leaves_allowed_absolute_paths_and_urls_alone() -> None:
    assert resolve_media("s3://bucket/videos", "a/b.mp4") == "s3://bucket/videos/a/b.mp4"
    assert resolve_media("s3://bucket/videos/", "b.mp4") == "s3://bucket/videos/b.mp4"
    # absolute paths and URLs under a root are read as written only where the source allows them
    # (tests/test_media_paths.py covers the refusals)
    assert resolve_media("gs://bucket", "/abs/b.mp4", allow_absolute=True) == "/abs/b.mp4"
    assert resolve_media("/data/videos", "s3://other/b.mp4", allow_absolute=True) == "s3://other/b.mp4"
    assert resolve_media(None, "s3://other/b.mp4") == "s3://other/b.mp4"
    assert resolve_media("/data/videos", "a/b.mp4") == "/data/videos/a/b.mp4"
    assert resolve_media(Path("/data/videos"), "b.mp4") == "/data/videos/b.mp4"
    assert resolve_media(None, "a/b.mp4") == "a/b.mp4"
    assert resolve_media("file:///data/videos", "b.mp4") == "file:///data/videos/b.mp4"


def test_a_local_path_is_returned_unchanged_without_a_copy(stager: MediaStager, tmp_path: Path) -> None:
    local = tmp_path / "v.mp4"
    local.write_bytes(b"x")
    assert stager.stage(str(local)) == str(local)
    assert stager.stage(f"file://{local}") == str(local)
    assert media_staging.stage_media(str(local)) == str(local)
    assert stager.downloads == 0 and files_in(stager.directory) == []


def test_parse_bytes() -> None:
    assert parse_bytes("1024") == 1024 and parse_bytes("8G") == 8 << 30 and parse_bytes("1.5KiB") == 1536
    with pytest.raises(ValueError, match=media_staging.CACHE_BYTES_ENV):
        parse_bytes("lots")


# --- the cache -------------------------------------------------------------------------------------------------------


def test_an_s3_video_is_staged_once_as_a_local_file_with_the_same_bytes(
    s3_server: Any, demo_corpus: Path, stager: MediaStager, prefix: str
) -> None:
    data = (demo_corpus / "videos" / VIDEO).read_bytes()
    url = upload(s3_server, data, prefix, "videos", VIDEO)
    local = stager.stage(url)
    assert os.path.dirname(local) == stager.directory
    assert os.path.basename(local) == MediaStager.key(url) + ".mp4"  # hash of the URL, original extension
    assert Path(local).read_bytes() == data and stager.downloads == 1
    assert stager.stage(url) == local and stager.downloads == 1  # a hit: no second download
    assert files_in(stager.directory) == sorted([os.path.basename(local), MediaStager.key(url) + ".lock"])


def test_eight_threads_staging_one_url_download_it_once(
    s3_server: Any, stager: MediaStager, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = upload(s3_server, os.urandom(300_000), prefix, "v.mp4")
    opened = count_open_reads(monkeypatch, delay=0.3)
    start = threading.Barrier(8)
    paths: list[str] = []

    def stage() -> None:
        start.wait()
        paths.append(stager.stage(url))

    threads = [threading.Thread(target=stage) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(paths) == 8 and len(set(paths)) == 1
    assert opened == [url] and stager.downloads == 1


def test_processes_sharing_the_scratch_folder_download_once(
    s3_server: Any, tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three forked workers on one scratch folder: the file lock lets one download and the others wait for it."""
    data = os.urandom(200_000)
    url = s3_server.prefix(prefix, "shared.mp4")  # never uploaded: the children read it through the fake below
    log = tmp_path / "downloads.log"

    def fake_open_read(path: str) -> Any:
        with open(log, "a") as fh:  # O_APPEND: one line per download, whichever process made it
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return io.BytesIO(data)

    real_lock = media_staging._lock

    def slow_exclusive(path: str, mode: int) -> int:  # all three see "not there yet" before one takes the lock
        if mode == fcntl.LOCK_EX:
            time.sleep(0.3)
        return real_lock(path, mode)

    monkeypatch.setattr(storage, "open_read", fake_open_read)
    monkeypatch.setattr(storage, "size", lambda path: len(data))
    monkeypatch.setattr(media_staging, "_lock", slow_exclusive)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start = ctx.Barrier(3)
    directory = str(tmp_path / "cache")

    def run() -> None:  # in a forked child: its own stager (as a worker process has), the shared folder
        storage.check(url)  # Beam's S3 file system set up first (seconds), so the three reach the lock together
        start.wait()
        results.put(MediaStager(directory, 1 << 30).stage(url))

    workers = [ctx.Process(target=run) for _ in range(3)]
    for w in workers:
        w.start()
    paths = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert all(w.exitcode == 0 for w in workers)
    assert len(set(paths)) == 1 and Path(paths[0]).read_bytes() == data
    assert len(log.read_text().splitlines()) == 1, log.read_text()  # one download, by one of them


def test_lru_eviction_keeps_the_cache_under_its_bound(
    s3_server: Any, tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 10_000
    urls = {name: upload(s3_server, os.urandom(size), prefix, f"{name}.mp4") for name in "abcd"}
    stager = MediaStager(tmp_path / "cache", max_bytes=int(2.5 * size))
    name = {url: MediaStager.key(url) + ".mp4" for url in urls.values()}
    stager.stage(urls["a"])
    stager.stage(urls["b"])
    stager.stage(urls["a"])  # a is used again: b is now the least recently used
    stager.stage(urls["c"])
    assert sorted(stager.cached_files()) == sorted([name[urls["a"]], name[urls["c"]]])
    assert stager.cached_files() == [name[urls["a"]], name[urls["c"]]]  # oldest first
    assert stager.cached_bytes() <= stager.max_bytes and stager.downloads == 3
    stager.stage(urls["d"])  # a is the oldest now
    assert stager.cached_files() == [name[urls["c"]], name[urls["d"]]]
    assert stager.cached_bytes() <= stager.max_bytes
    opened = count_open_reads(monkeypatch)
    stager.stage(urls["b"])  # evicted earlier: downloaded again
    assert opened == [urls["b"]]


def test_a_file_in_use_is_evicted_only_after_its_user_is_done(s3_server: Any, tmp_path: Path, prefix: str) -> None:
    size = 10_000
    a, b, c = (upload(s3_server, os.urandom(size), prefix, f"{n}.mp4") for n in "abc")
    stager = MediaStager(tmp_path / "cache", max_bytes=int(1.5 * size))
    with stager.acquire(a) as held:
        stager.stage(b)  # over the bound: a is least recently used, but in use
        assert Path(held.path).is_file() and len(Path(held.path).read_bytes()) == size
        assert stager.cached_bytes() == 2 * size  # the bound gives way rather than break a user
        assert held.held
    assert not held.held
    stager.stage(c)
    assert stager.cached_files() == [MediaStager.key(c) + ".mp4"] and stager.cached_bytes() <= stager.max_bytes
    assert not Path(held.path).exists()


def test_a_lease_group_released_first_lets_go_of_late_leases(stager: MediaStager, tmp_path: Path) -> None:
    group = LeaseGroup()
    group.release()
    lease = media_staging.MediaLease("s3://b/x.mp4", str(tmp_path / "x.mp4"), os.open(tmp_path, os.O_RDONLY))
    assert not group.add(lease) and not lease.held


def test_a_size_mismatch_raises_and_leaves_no_cached_file(
    s3_server: Any, stager: MediaStager, prefix: str, monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    data = os.urandom(50_000)
    url = upload(s3_server, data, prefix, "cut.mp4")
    monkeypatch.setattr(storage, "size", lambda path: len(data) + 1)  # the object says one byte more than comes
    opened = count_open_reads(monkeypatch)
    with pytest.raises(MediaUnavailable) as caught:
        stager.stage(url)
    assert caught.value.reason == "media_unavailable" and caught.value.url == url
    assert url in caught.value.detail and f"downloaded {len(data)} bytes" in caught.value.detail
    assert len(opened) == media_staging.DOWNLOAD_ATTEMPTS  # retried, then given up
    assert files_in(stager.directory) == [] and stager.downloads == 0  # no copy, no part file, no lock file


def test_a_missing_object_is_video_missing_and_not_retried(
    s3_server: Any, stager: MediaStager, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_server.prefix(prefix, "nothing.mp4")
    opened = count_open_reads(monkeypatch)
    with pytest.raises(MediaUnavailable) as caught:
        stager.stage(url)
    assert caught.value.reason == "video_missing" and url in caught.value.detail
    assert opened == [] and files_in(stager.directory) == []


def test_a_part_file_left_by_a_dead_download_is_swept(s3_server: Any, stager: MediaStager, prefix: str) -> None:
    url = upload(s3_server, b"0123456789", prefix, "p.mp4")
    stale = Path(stager.directory) / f"{MediaStager.key('s3://x/y.mp4')}.deadbeef.part"
    stale.write_bytes(b"partial")
    mine = Path(stager.directory) / f"{MediaStager.key(url)}.cafecafe.part"
    mine.write_bytes(b"partial")
    stager.stage(url)
    assert not mine.exists() and not stale.exists()  # nobody holds their keys: leftovers of dead downloads
    assert stager.cached_files() == [MediaStager.key(url) + ".mp4"]
    stager.max_bytes = 0
    stager.evict()
    assert files_in(stager.directory) == []


def test_an_unusable_scratch_folder_is_media_unavailable_not_a_crash(stager: MediaStager, s3_server: Any) -> None:
    os.rmdir(stager.directory)
    Path(stager.directory).write_bytes(b"not a folder")
    with pytest.raises(MediaUnavailable) as caught:
        stager.stage(s3_server.prefix("any", "v.mp4"))
    assert caught.value.reason == "media_unavailable" and stager.directory in caught.value.detail


# --- the stages that read media --------------------------------------------------------------------------------------


@pytest.fixture
def s3_videos(s3_server: Any, demo_corpus: Path, prefix: str) -> str:
    """An s3:// video root holding the demo's DM0A1.mp4, its empty file and its OCR image."""
    videos = demo_corpus / "videos"
    for name in (VIDEO, "broken_empty.mp4", demo_media.OCR_IMAGE):
        upload(s3_server, (videos / name).read_bytes(), prefix, "videos", *name.split("/"))
    return s3_server.prefix(prefix, "videos")


def test_probing_a_url_stages_it_and_names_the_url(s3_videos: str, demo_corpus: Path, scratch: MediaStager) -> None:
    url = resolve_media(s3_videos, VIDEO)
    probe = probe_media(url, "video")
    local = probe_media(demo_corpus / "videos" / VIDEO, "video")
    assert probe.ok and probe.path == url and probe.info == local.info
    assert scratch.downloads == 1 and scratch.cached_files() == [MediaStager.key(url) + ".mp4"]
    image = probe_media(resolve_media(s3_videos, demo_media.OCR_IMAGE), "image")
    assert image.ok and image.info.backend == "pil"
    empty = probe_media(resolve_media(s3_videos, "broken_empty.mp4"), "video")
    assert empty.reason == "video_empty"  # the same code a local empty file gets


def test_a_missing_or_cut_object_is_a_probe_dead_letter(
    s3_videos: str, scratch: MediaStager, monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    from tests.test_rollout import mcq

    cache = ProbeCache()
    sample = mcq("s-gone", "gone.mp4")
    url = resolve_media(s3_videos, sample.video)
    error = apply_probe(sample, cache.get(url, "video"))
    assert isinstance(error, SampleError) and error.stage == "probe" and error.reason == "video_missing"
    assert url in error.detail and error.detail.startswith("gone.mp4: ")

    real_size = storage.size
    monkeypatch.setattr(storage, "size", lambda path: real_size(path) + 7)
    cut = mcq("s-cut", VIDEO)
    error = apply_probe(cut, ProbeCache().get(resolve_media(s3_videos, VIDEO), "video"))
    assert isinstance(error, SampleError) and error.reason == "media_unavailable" and "bytes" in error.detail
    assert scratch.cached_files() == []


def test_the_beam_probe_step_turns_a_missing_object_into_its_dead_letter(s3_videos: str, scratch: MediaStager) -> None:
    import apache_beam as beam

    from pipelines.transforms import DEAD, _ProbeFn
    from tests.test_rollout import mcq

    fn = _ProbeFn()
    fn.setup()
    gone = resolve_media(s3_videos, "gone.mp4")
    (out,) = fn.process(((gone, "video"), [mcq("s-gone", "gone.mp4")]))
    assert isinstance(out, beam.pvalue.TaggedOutput) and out.tag == DEAD
    assert out.value.reason == "video_missing" and gone in out.value.detail
    (kept,) = fn.process(((resolve_media(s3_videos, VIDEO), "video"), [mcq()]))
    assert kept.video == VIDEO and kept.duration is not None  # the row keeps its root-relative path


def test_the_frame_sampler_reads_a_url_through_the_scratch_copy(
    s3_videos: str, demo_corpus: Path, scratch: MediaStager
) -> None:
    url = resolve_media(s3_videos, VIDEO)
    remote = sample_frames(url, start=2.0, end=6.0)
    local = sample_frames(demo_corpus / "videos" / VIDEO, start=2.0, end=6.0)
    assert np.array_equal(remote.frames, local.frames) and remote.times == local.times
    assert remote.path == os.path.join(scratch.directory, MediaStager.key(url) + ".mp4")
    image = load_image(resolve_media(s3_videos, demo_media.OCR_IMAGE))
    assert image.frames.shape[0] == 1
    with pytest.raises(FrameError) as caught:
        sample_frames(resolve_media(s3_videos, "gone.mp4"))
    assert caught.value.reason == "video_missing" and caught.value.path.startswith("s3://")


def test_a_rollout_under_an_s3_root_stages_the_video_and_binds_the_clip_tool_to_the_copy(
    s3_videos: str, demo_corpus: Path, scratch: MediaStager, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model.rollout import rollout
    from model.trajectory import ANSWER, MEDIA_ERROR
    from mtvr_data.frames import FrameCache
    from mtvr_data.tools import BoundTools
    from tests.test_rollout import CONFIG, ScriptedEngine, by_turn, call, mcq, think_answer

    tool_paths: list[str] = []
    original = BoundTools.execute

    def execute(self: BoundTools, name: Any, arguments: Any) -> Any:
        tool_paths.append(self.ctx.path)
        return original(self, name, arguments)

    monkeypatch.setattr(BoundTools, "execute", execute)

    def run(root: str | Path, samples: list) -> tuple[ScriptedEngine, list]:
        engine = ScriptedEngine(by_turn(call(5, 12), think_answer()))
        groups = asyncio.run(rollout(samples, engine, k=2, config=CONFIG, video_root=root, cache=FrameCache()))
        return engine, groups

    samples = [mcq(), mcq("s-gone", "gone.mp4")]
    engine, (group, gone) = run(s3_videos, samples)
    staged = os.path.join(scratch.directory, MediaStager.key(resolve_media(s3_videos, VIDEO)) + ".mp4")
    assert [t.finish_reason for t in group] == [ANSWER, ANSWER] and all(t.turns[0].tool.ok for t in group)
    assert tool_paths == [staged, staged]  # the clip tool read the sample's own staged copy, nothing else
    assert scratch.downloads == 1  # two rollouts and a prompt: one download
    assert [t.finish_reason for t in gone] == [MEDIA_ERROR, MEDIA_ERROR]
    assert gone[0].error.startswith("video_missing") and "s3://" in gone[0].error
    assert [s.video for s in samples] == [VIDEO, "gone.mp4"]  # the samples keep their root-relative paths

    local_engine, (local_group,) = run(demo_corpus / "videos", [mcq()])
    prompt = engine.request("s-mcq/t0").messages[1]["content"][0]["video"]
    local_prompt = local_engine.request("s-mcq/t0").messages[1]["content"][0]["video"]
    assert np.array_equal(prompt.frames, local_prompt.frames) and prompt.times == local_prompt.times
    assert [t.turns[0].tool.frame_times for t in group] == [t.turns[0].tool.frame_times for t in local_group]

    assert scratch.evict(reserve=1 << 40) == [os.path.basename(staged)]  # the rollout let go of its copy


def test_sft_messages_under_an_s3_root_match_the_local_ones(
    s3_videos: str, demo_corpus: Path, scratch: MediaStager
) -> None:
    pytest.importorskip("torch")
    from mtvr_data.schema import Clip, CotRow, Message
    from tests.test_rollout import call, mcq, think_answer
    from train.data import sft_messages

    recorded = [
        Message("assistant", call(5, 12)),
        Message("tool", "", clip=Clip(5.0, 12.0)),
        Message("assistant", think_answer()),
    ]
    row = CotRow(mcq(), recorded, "teacher", "h", 3.0, 1, False, True)
    remote = sft_messages(row, s3_videos)
    local = sft_messages(row, demo_corpus / "videos")
    videos = [(m["role"], p["video"]) for m in remote for p in m["content"] if p["type"] == "video"]
    local_videos = [p["video"] for m in local for p in m["content"] if p["type"] == "video"]
    assert [r for r, _ in videos] == ["user", "tool"]
    for (_, frames), expected in zip(videos, local_videos, strict=True):
        assert np.array_equal(frames.frames, expected.frames) and frames.times == expected.times
    assert row.sample.video == VIDEO and scratch.downloads == 1
