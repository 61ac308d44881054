"""PyAV (in-process libav) as a `frame_decode.FrameSource`: the default decoder of `mtvr_data.frames`.

Why a third decoder: decord's reader thread reads packets ahead of its decoder in a busy loop until the next seek
(7 GB read from the page cache for 64 frames of a 350 MB file, 200-300 MB of compressed packets held, a second core
busy), and the ffmpeg CLI pays a process start and a seek per run of frames. PyAV drives the same libavformat /
libavcodec / libswscale from this process, one packet at a time, so what is held is the decoder's own reference
pictures plus the output frames. The figures (bench/frames.py) are in docs/model.md ("Frames").

- Frame times: one pass over the video stream's packets (`demux`, no decoding): the presentation time stamp and key
  flag of every packet, sorted into presentation order (a packet without pts takes its dts, AVI). Same source of
  truth as the ffmpeg backend's `-c copy` scan, without the process. For mp4/mov without reordered frames the
  demuxer's sample index (read with the header) gives the same stamps without reading the packets
  (`_index_from_container`, checked against the packets of the first and last group of pictures).
- `read(indices)`: the wanted frames in runs that share a group of pictures (no key frame between one wanted frame
  and the next); before each run, a seek to the key frame at or before its first frame, then decoding forward until
  the run's last frame is out. Only the wanted frames are scaled and converted (swscale bicubic, straight from the
  decoder's YUV to rgb24 at the output size), so no full-resolution RGB picture is ever built, and the decoder's
  pictures are dropped as soon as they are passed. A seek that lands after its target (a bad index) is retried
  from an earlier key frame, finally from the start; the loop ends at the end of the stream, so a truncated file
  gives fewer frames (`DecodeFailed`), never a hang. Opening and every read have libav's `timeout`.
- Rotation (a display matrix): not applied here. Such files raise `DecodeFailed` at opening, so `open_source` gives
  them to decord, which shows them upright like the ffmpeg CLI (see `read_facts`).
"""

from __future__ import annotations

import array
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtvr_data.frame_decode import TIME_DECIMALS, DecodeFailed, SourceFacts, _file_url, _one_line

#: libav's timeout on opening and on each read (seconds): a stalled read (network file system) ends with an error.
PYAV_TIMEOUT_S = 30.0
#: Decoder threads. One, like decord's `num_threads=1`: the sampler runs in several threads per Beam worker, and
#: one thread keeps the decoder's memory to its reference pictures. More than one turns on frame threading, which
#: holds a set of pictures per thread: measured on bench/frames.py's clip20s, 2 threads took 0.34 s instead of 0.46 s
#: on the shared 2-core machine and raised the peak from 2.2x to 2.9x the frames' bytes (docs/model.md, "Frames").
PYAV_THREADS = 1
#: swscale's kernel: bicubic, as decord's and the ffmpeg CLI's scale filters use by default.
PYAV_INTERPOLATION = "BICUBIC"
#: A seek that lands after its target is retried this many times from an earlier key frame, then from the start.
SEEK_RETRIES = 2


class PyavSource:
    """A PyAV container at the output size, with its frame times. Not thread-safe: hold `lock` to read."""

    backend = "pyav"

    def __init__(self, path: Path, width: int, height: int, facts: SourceFacts) -> None:
        import av

        self.path, self.width, self.height = path, width, height
        self.lock = threading.Lock()
        try:
            # A `file:` URL, so that a name with ':' is never read as a protocol.
            self._container: Any = av.open(_file_url(path), mode="r", timeout=PYAV_TIMEOUT_S)
        except Exception as exc:  # av.FFmpegError and OSError subclasses for every kind of failure
            raise DecodeFailed(f"PyAV cannot open it: {_one_line(exc)}") from exc
        try:
            self._open(facts)
        except DecodeFailed:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise DecodeFailed(f"PyAV cannot read the packets: {_one_line(exc)}") from exc

    def _open(self, facts: SourceFacts) -> None:
        from av.video.reformatter import VideoReformatter

        # One reformatter for the source: it keeps its swscale context between frames (`VideoFrame.reformat` makes
        # a new one for every frame).
        self._reformatter = VideoReformatter()
        if not self._container.streams.video:
            raise DecodeFailed("PyAV finds no video stream")
        stream = self._stream = self._container.streams.video[0]
        if stream.time_base is None:
            raise DecodeFailed("the video stream has no time base")
        stream.codec_context.thread_count = PYAV_THREADS
        if PYAV_THREADS > 1:
            stream.thread_type = "AUTO"  # frame and slice threading
        index = self._index_from_container(stream) or self._scan_packets(stream)
        raw, last_duration, key_arr = index
        if raw.size > 1 and not np.all(np.diff(raw) > 0):
            raise DecodeFailed("two video packets share a time stamp")
        time_base = stream.time_base
        self._raw = raw
        seconds = (raw - raw[0]).astype(np.float64) * float(time_base)
        self.pts = np.round(seconds, TIME_DECIMALS)
        gaps = np.diff(seconds)
        last = float(last_duration * time_base) or (float(np.median(gaps)) if gaps.size else 0.0)
        self.duration = round(float(seconds[-1]) + last, TIME_DECIMALS)
        if self.duration <= float(self.pts[-1]):
            raise DecodeFailed("PyAV's packet index gives the last frame no duration")
        self.keyframes = np.flatnonzero(key_arr).astype(np.int64)
        if self.keyframes.size == 0 or self.keyframes[0] != 0:  # decoding can only start at a key frame
            self.keyframes = np.union1d(np.zeros(1, dtype=np.int64), self.keyframes)
        rotation = self._rotation()
        if rotation:
            raise DecodeFailed(f"rotated by {rotation} degrees (left to decord, which shows it upright)")
        # The decoder's reference pictures (at most 16 for h264) and the packet index.
        self.nbytes = 4 * facts.width * facts.height * 3 // 2 + raw.size * 64

    def _scan_packets(self, stream: Any) -> tuple[np.ndarray, int, np.ndarray]:
        """(pts sorted, the last frame's duration, key flags) from one pass over the stream's packets (no decoding)."""
        # Typed arrays, not lists of Python ints: 8 bytes a packet instead of ~40 (18,000 packets in 10 minutes).
        raw_list, durations, keys = array.array("q"), array.array("q"), array.array("b")
        for packet in self._container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                raise DecodeFailed("a video packet has no time stamp")
            raw_list.append(int(stamp))
            durations.append(max(0, int(packet.duration or 0)))
            keys.append(bool(packet.is_keyframe))
        if not raw_list:
            raise DecodeFailed("PyAV finds no video packets")
        raw = np.frombuffer(raw_list, dtype=np.int64)
        order = np.argsort(raw, kind="stable")
        last = int(durations[int(order[-1])])
        key_arr = np.frombuffer(keys, dtype=np.int8)[order].astype(bool)
        return raw[order], last, key_arr

    def _index_from_container(self, stream: Any) -> tuple[np.ndarray, int, np.ndarray] | None:
        """The same as `_scan_packets` from the mp4/mov demuxer's sample index (read with the header), without
        reading the file's packets: 0.01 s instead of 0.15-0.2 s for the 10-minute 720p bench file.

        The index holds decoding time stamps; they are the presentation time stamps only when frames are not
        reordered (no B-frames). Taken only when the decoder reports no reordering, the index is complete (as many
        entries as the header's frame count, none discarded by an edit list, strictly increasing) and the packets
        at the head and the tail of the stream (one group of pictures each, read here) carry exactly these stamps;
        else None, and the packets are scanned. The tail read also gives the last frame's duration.
        """
        if not {"mov", "mp4"} & set(self._container.format.name.split(",")):
            return None
        if stream.codec_context.has_b_frames:
            return None
        entries = stream.index_entries
        count = len(entries)
        if count < 2 or count != stream.frames:
            return None
        stamps = np.fromiter((entry.timestamp for entry in entries), dtype=np.int64, count=count)
        keys = np.fromiter((entry.is_keyframe for entry in entries), dtype=bool, count=count)
        if any(entry.is_discard for entry in entries) or not np.all(np.diff(stamps) > 0) or not keys[0]:
            return None
        key_positions = np.flatnonzero(keys)
        head_end = int(key_positions[1]) if key_positions.size > 1 else count
        tail_start = int(key_positions[-1])
        last_duration = 0
        for start, end in ((0, head_end), (tail_start, count)):
            self._container.seek(int(stamps[start]), stream=stream, backward=True, any_frame=False)
            position = start
            for packet in self._container.demux(stream):
                if packet.size == 0:
                    continue
                if position >= count or packet.pts != stamps[position] or packet.dts != stamps[position]:
                    break
                last_duration = int(packet.duration or 0)
                position += 1
                if position == end and end < count:
                    break
            if position != end:  # back to the first packet for `_scan_packets`
                self._container.seek(int(stamps[0]), stream=stream, backward=True, any_frame=True)
                return None
        return stamps, last_duration, keys

    def _rotation(self) -> int:
        """The display matrix's rotation in degrees (0 when none), from the first decoded frame's side data.

        Peeking decodes one frame; PyAV 18 exposes the display matrix on frames, not on streams.
        """
        self._container.seek(int(self._raw[0]), stream=self._stream, backward=True)
        for frame in self._container.decode(self._stream):
            return round(float(frame.rotation or 0)) % 360
        return 0

    def close(self) -> None:
        """Release the container (file handle, decoder); the source is unusable after."""
        container = getattr(self, "_container", None)
        if container is not None:
            self._container = None
            container.close()

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = [int(i) for i in indices]
        out = np.empty((len(wanted), self.height, self.width, 3), dtype=np.uint8)
        if self._container is None:
            raise DecodeFailed("the PyAV source was closed")
        done = 0
        try:
            for group in self._groups(wanted):
                self._decode_group(group, out[done : done + len(group)])
                done += len(group)
        except DecodeFailed:
            raise
        except Exception as exc:
            raise DecodeFailed(f"PyAV failed while decoding: {_one_line(exc)}") from exc
        return out

    def _key_before(self, index: int) -> int:
        position = int(np.searchsorted(self.keyframes, index, side="right")) - 1
        return int(self.keyframes[max(position, 0)])

    def _groups(self, wanted: list[int]) -> list[list[int]]:
        """Runs of wanted frames decoded after one seek: a new run wherever a key frame lies after the previous
        wanted frame and at or before the next, since a seek (cheap in-process) skips the frames between."""
        groups: list[list[int]] = []
        for index in wanted:
            if groups and self._key_before(index) <= groups[-1][-1]:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups

    def _decode_group(self, group: list[int], out: np.ndarray) -> None:
        """Seek to the key frame at or before the group's first frame and decode forward into `out`."""
        key = self._key_before(group[0])
        for attempt in range(SEEK_RETRIES + 2):
            if attempt > SEEK_RETRIES:
                key = 0
            if self._decode_from(key, group, out):
                return
            key = self._key_before(key - 1) if key > 0 else 0

    def _decode_from(self, key: int, group: list[int], out: np.ndarray) -> bool:
        """False if the seek landed after the group's first frame (then nothing is written); DecodeFailed if the
        stream ends before the group's last frame."""
        container, stream = self._container, self._stream
        slots = {int(self._raw[index]): slot for slot, index in enumerate(group)}
        first, last = int(self._raw[group[0]]), int(self._raw[group[-1]])
        container.seek(int(self._raw[key]), stream=stream, backward=True, any_frame=False)
        found = 0
        started = False
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except Exception:  # noqa: BLE001 - a damaged packet: skipped, as the ffmpeg CLI does
                continue
            for frame in frames:
                stamp = frame.pts if frame.pts is not None else frame.dts
                if stamp is None:
                    continue
                if not started:
                    started = True
                    if stamp > first and key > 0:
                        return False
                slot = slots.pop(int(stamp), None)
                if slot is None:
                    continue
                rgb = self._reformatter.reformat(
                    frame, width=self.width, height=self.height, format="rgb24", interpolation=PYAV_INTERPOLATION
                )
                out[slot] = rgb.to_ndarray()
                found += 1
                if not slots:
                    return True
            # Drop the decoder's pictures before the next packet is decoded: held here, each would keep one more
            # full-size buffer in the decoder's pool (1.4 MB at 720p).
            frames = frame = None
        if slots:
            missing = sorted(slots)[0]
            raise DecodeFailed(
                f"PyAV decoded {found} of {len(group)} frames: the stream ended before the frame at "
                f"{float((missing - self._raw[0]) * self._stream.time_base):.3f} s"
                + (f" (last wanted {float((last - self._raw[0]) * self._stream.time_base):.3f} s)" if found else "")
            )
        return True
