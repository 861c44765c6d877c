"""Broken and out-of-policy inputs, generated on demand (nothing binary is committed)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from medgen_ray.samples.generator import Segment, VideoSpec, render_video

BAD_KINDS = ("zero_byte", "truncated", "non_video", "audio_only", "unsupported_codec", "one_pixel", "rotated")
# Inputs real users have that are not broken: variable frame rate (phone and screen recordings).
UNUSUAL_KINDS = ("vfr",)
# Files damaged in the middle (bytes overwritten inside the packets from 8 s): most of the first
# keeps decoding; in the second every packet is hit, so nothing decodes.
DAMAGED_KINDS = ("damaged_middle", "damaged_everywhere")


def _overwrite_packets(src: Path, dst: Path, from_s: float, to_s: float | None) -> None:
    """Copy src to dst with the payload of every video packet in [from_s, to_s) replaced by noise
    (containers and headers intact, as a bad disk sector or a broken download leaves them)."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(5)
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        for pkt in c.demux(s):
            if pkt.pts is None or pkt.pos is None or pkt.size < 64:
                continue
            t = float(pkt.pts * s.time_base)
            if t >= from_s and (to_s is None or t < to_s):
                a, b = pkt.pos + 16, pkt.pos + pkt.size
                data[a:b] = rng.integers(0, 255, b - a, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))


def _encode(path: Path, codec: str, size: tuple[int, int], pix_fmt: str, n: int, rate: int = 24,
            pts: list[int] | None = None, rotation: float | None = None, time_base: Fraction | None = None) -> None:
    w, h = size
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            img = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_bad_input(kind: str, folder: str | Path) -> Path:
    """Write one bad input of `kind` into folder; returns its path."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    if kind == "zero_byte":
        p = d / "zero_byte.mp4"
        p.write_bytes(b"")
    elif kind == "truncated":
        p = d / "truncated.mp4"
        full = d / "_full_for_truncation.mp4"
        render_video(VideoSpec("t", [Segment("endoscopy", 8)], 640, 480, 24), full)
        data = full.read_bytes()
        p.write_bytes(data[: len(data) // 2])  # mp4 index (moov) is at the end: now missing
        full.unlink()
    elif kind == "non_video":
        p = d / "non_video.mp4"
        p.write_text("this is a text file with a video extension\n" * 50)
    elif kind == "audio_only":
        p = d / "audio_only.mp4"
        with av.open(str(p), "w") as out:
            stream = out.add_stream("aac", rate=16000)
            samples = (np.sin(np.arange(16000 * 2) / 10) * 3000).astype(np.int16)
            for i in range(0, len(samples), 1024):
                chunk = samples[i : i + 1024]
                if len(chunk) < 1024:
                    break
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
                frame.sample_rate = 16000
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    elif kind == "unsupported_codec":
        p = d / "unsupported_codec.avi"
        _encode(p, "mjpeg", (640, 480), "yuvj420p", 48)
    elif kind == "one_pixel":
        p = d / "one_pixel.mkv"
        _encode(p, "ffv1", (1, 1), "yuv444p", 48)
    elif kind == "rotated":
        p = d / "rotated.mp4"
        _encode(p, "libx264", (640, 480), "yuv420p", 48, rotation=90.0)
    elif kind in DAMAGED_KINDS:
        p = d / f"{kind}.mp4"
        full = d / f"_full_for_{kind}.mp4"
        render_video(VideoSpec(kind, [Segment("endoscopy", 16)], 640, 480, 24), full)
        if kind == "damaged_middle":
            _overwrite_packets(full, p, 8.0, 8.5)
        else:
            _overwrite_packets(full, p, 0.0, None)
        full.unlink()
    elif kind == "vfr":
        p = d / "vfr.mp4"
        rng = np.random.default_rng(3)
        steps = rng.choice([20, 40, 80, 120], size=120)  # ms between frames
        pts = np.concatenate([[0], np.cumsum(steps)[:-1]]).tolist()
        _encode(p, "libx264", (640, 480), "yuv420p", 120, rate=25, pts=pts, time_base=Fraction(1, 1000))
    else:
        raise KeyError(f"unknown bad input kind {kind!r}; choices: {', '.join(BAD_KINDS + UNUSUAL_KINDS + DAMAGED_KINDS)}")
    return p


def make_bad_inputs(folder: str | Path) -> dict[str, Path]:
    """One file of every broken and unusual kind in a folder, by kind."""
    return {kind: make_bad_input(kind, folder) for kind in BAD_KINDS + UNUSUAL_KINDS}
