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
    elif kind == "vfr":
        p = d / "vfr.mp4"
        rng = np.random.default_rng(3)
        steps = rng.choice([20, 40, 80, 120], size=120)  # ms between frames
        pts = np.concatenate([[0], np.cumsum(steps)[:-1]]).tolist()
        _encode(p, "libx264", (640, 480), "yuv420p", 120, rate=25, pts=pts, time_base=Fraction(1, 1000))
    else:
        raise KeyError(f"unknown bad input kind {kind!r}; choices: {', '.join(BAD_KINDS + UNUSUAL_KINDS)}")
    return p


def make_bad_inputs(folder: str | Path) -> dict[str, Path]:
    """One file of every broken and unusual kind in a folder, by kind."""
    return {kind: make_bad_input(kind, folder) for kind in BAD_KINDS + UNUSUAL_KINDS}
