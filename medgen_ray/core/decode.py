"""Probe and 1-fps frame sampling with PyAV.

Probing demuxes the video stream's packets (no decoding) to read codec, size, rotation, frame
timing (for the variable-frame-rate check) and keyframe times (for stream-copy cuts). Sampling
decodes with FFmpeg threads and converts only the sampled frames, scaled straight to the frame
classifier's input size by swscale.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import av
import fsspec
import numpy as np

from medgen_ray.core.errors import DataError


class ProbeError(DataError):
    """The file cannot be read as a video: a data error, recorded on the row."""


@dataclass
class ProbeResult:
    """What a container says about its video stream, without decoding it."""

    width: int
    height: int
    fps: float
    duration: float
    codec: str
    bitrate: int
    rotation: int
    n_frames: int
    interval_spread: float  # (p95 - p5) / median of frame intervals; 0 for constant frame rate
    keyframes: np.ndarray  # presentation times (s) of keyframes


@contextlib.contextmanager
def open_video(uri: str) -> Iterator[av.container.InputContainer]:
    """Open a local path or any fsspec URI with PyAV; unreadable input raises ProbeError."""
    with contextlib.ExitStack() as stack:
        fh = None
        if "://" in uri and not uri.startswith("file://"):
            fh = stack.enter_context(fsspec.open(uri, "rb"))
            fs, path = fsspec.core.url_to_fs(uri)
            size = fs.size(path)
            target = fh
        else:
            path = uri.removeprefix("file://")
            try:
                fs = fsspec.filesystem("file")
                size = fs.size(path)
            except FileNotFoundError as exc:
                raise ProbeError(f"file not found: {path}") from exc
            target = path
        if size == 0:
            raise ProbeError("empty file (0 bytes)")
        try:
            container = stack.enter_context(av.open(target, "r"))
        except av.FFmpegError as exc:
            if _looks_like_mp4(fs, path, fh):
                raise ProbeError("truncated MP4: index (moov atom) not found") from exc
            raise ProbeError(f"not a readable video container ({_ffmpeg_message(exc)})") from exc
        yield container


def _looks_like_mp4(fs, path: str | None, fh) -> bool:
    if fh is not None:
        fh.seek(0)
        head = fh.read(12)
    else:
        with fs.open(path, "rb") as f:
            head = f.read(12)
    return head[4:8] == b"ftyp"


def _ffmpeg_message(exc: Exception) -> str:
    msg = str(exc)
    # PyAV appends the file name; keep the FFmpeg reason, which names the actual problem.
    return msg.split(": '", 1)[0].removeprefix("[Errno 1094995529] ")


def probe_video(uri: str) -> ProbeResult:
    """Demux a video's packets (no decode) into a ProbeResult; raises ProbeError for files that are not video."""
    with open_video(uri) as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            what = "audio-only file" if "audio" in kinds else f"streams: {', '.join(kinds) or 'none'}"
            raise ProbeError(f"no video stream ({what})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        tb = float(stream.time_base)
        pts, keys = [], []
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.FFmpegError as exc:
            raise ProbeError(f"truncated or corrupt stream after {len(pts)} packets ({_ffmpeg_message(exc)})") from exc
        if not pts:
            raise ProbeError("video stream has no timestamped packets: it cannot be timed (truncated file?)")
        start = min(pts)
        times = (np.sort(np.asarray(pts, dtype=np.float64)) - start) * tb
        intervals = np.diff(times)
        median = float(np.median(intervals)) if len(intervals) else 0.0
        spread = 0.0
        if len(intervals) > 4 and median > 0:
            spread = float((np.percentile(intervals, 95) - np.percentile(intervals, 5)) / median)
        duration = float(times[-1] + (median if median > 0 else 0.0))
        declared = (stream.duration * tb) if stream.duration else None
        if declared and duration < 0.9 * declared - 1.0:
            raise ProbeError(f"truncated: packets cover {duration:.1f} s of the declared {declared:.1f} s")
        rotation = _rotation(container, stream)
        fps = float(stream.average_rate) if stream.average_rate else (1.0 / median if median else 0.0)
        return ProbeResult(
            width=int(ctx.width), height=int(ctx.height), fps=fps, duration=duration,
            codec=str(ctx.name), bitrate=int(container.bit_rate or 0), rotation=rotation,
            n_frames=len(pts), interval_spread=spread,
            keyframes=(np.asarray(sorted(keys), dtype=np.float64) - start) * tb,
        )


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    container.seek(0)
    try:
        frame = next(container.decode(stream), None)
    except av.FFmpegError as exc:
        raise ProbeError(f"first frame does not decode ({_ffmpeg_message(exc)})") from exc
    if frame is None:
        raise ProbeError("no decodable frame")
    return int(round(getattr(frame, "rotation", 0) or 0)) % 360


def sample_frames(uri: str, fps: float, size: int, threads: int = 2,
                  damaged: list[list[float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames at `fps` (first frame at or after each k/fps), resized (short side) and centre-cropped
    to size x size RGB. Returns (uint8 (T, size, size, 3), times (T,) in seconds)."""
    return sample_window(uri, fps, size, size, threads=threads, damaged=damaged)


RECENT_PACKETS = 8  # packets before a decode error that count as damaged too (threads report late)


def decoded_frames(container, stream, damaged: list[list[float]] | None = None) -> Iterator:
    """The stream's frames, decoded packet by packet. Strict (damaged None): a packet the decoder
    rejects raises. Tolerant (a list): it opens a damaged span at the earliest of the last
    RECENT packets' times (a threaded decoder reports an error a few packets late, and a
    damaged packet can decode into garbage before the error shows); frames from there until
    the next decoded keyframe are skipped (they may reference the damage) and the span
    [start, keyframe time) is appended to `damaged`; a span still open at the end closes at the
    last packet's end."""
    from collections import deque

    tb = float(stream.time_base)
    start = stream.start_time or 0
    open_at: float | None = None
    end = 0.0
    recent: deque[float] = deque(maxlen=RECENT_PACKETS)
    for packet in container.demux(stream):
        if packet.pts is not None:
            end = max(end, (packet.pts - start + (packet.duration or 0)) * tb)
            recent.append((packet.pts - start) * tb)
        try:
            frames = packet.decode()
        except av.FFmpegError:
            if damaged is None:
                raise
            t_bad = min(recent) if recent else end
            open_at = t_bad if open_at is None else min(open_at, t_bad)
            continue
        for frame in frames:
            t = (frame.pts - start) * tb if frame.pts is not None else None
            if open_at is not None and t is not None and t >= open_at:
                if not frame.key_frame:
                    continue
                damaged.append([round(open_at, 3), round(t, 3)])
                open_at = None
            yield frame
    if open_at is not None and damaged is not None:
        damaged.append([round(open_at, 3), round(end, 3)])


def sample_window(uri: str, fps: float | None, width: int, height: int, limit: int | None = None,
                  threads: int = 2, damaged: list[list[float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` frames at `fps` (None: every frame) from the start, resized to cover
    width x height and centre-cropped. Returns (uint8 (T, height, width, 3), times (T,)).
    With a `damaged` list, undecodable stretches are skipped and recorded there
    (`decoded_frames`); without, the first one raises ProbeError."""
    chunks = list(sample_chunks(uri, fps, width, height, None, limit, threads, damaged))
    if not chunks:
        return np.zeros((0, height, width, 3), np.uint8), np.zeros(0)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def sample_chunks(uri: str, fps: float | None, width: int, height: int, chunk: int | None = None,
                  limit: int | None = None, threads: int = 2,
                  damaged: list[list[float]] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`sample_window`'s frames in one decode pass, handed out `chunk` frames at a time (all at
    once when None): memory holds one chunk, whatever the video's length."""
    frames, times = [], []
    with open_video(uri) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        tb = float(stream.time_base)
        start = stream.start_time or 0
        w, h = stream.codec_context.width, stream.codec_context.height
        scale = max(width / w, height / h)
        sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
        x0, y0 = (sw - width) // 2, (sh - height) // 2
        next_t = 0.0
        step = 1.0 / fps if fps else 0.0
        taken = 0
        try:
            for frame in decoded_frames(container, stream, damaged):
                if frame.pts is None:
                    continue
                t = (frame.pts - start) * tb
                if t + 1e-6 < next_t:
                    continue
                rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()
                frames.append(rgb[y0 : y0 + height, x0 : x0 + width])
                times.append(next_t if step and t - next_t < step else t)  # after a gap: its own time
                taken += 1
                if chunk is not None and len(frames) >= chunk:
                    yield np.stack(frames), np.asarray(times, dtype=np.float64)
                    frames, times = [], []
                if limit is not None and taken >= limit:
                    break
                next_t += step
                while step and next_t <= t:  # a gap longer than a step: no frame shown there
                    next_t += step
        except av.FFmpegError as exc:
            raise ProbeError(f"decode failed at {next_t:.1f} s ({_ffmpeg_message(exc)})") from exc
    if frames:
        yield np.stack(frames), np.asarray(times, dtype=np.float64)


def decode_all(uri: str, threads: int = 2) -> tuple[int, float]:
    """Decode every frame and convert nothing: the raw-throughput baseline. Returns (frames, seconds of video)."""
    n, last = 0, 0.0
    with open_video(uri) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        tb = float(stream.time_base)
        for frame in container.decode(stream):
            n += 1
            if frame.pts is not None:
                last = max(last, (frame.pts - (stream.start_time or 0)) * tb)
        rate = float(stream.average_rate or 0)
    return n, last + (1.0 / rate if rate else 0.0)
