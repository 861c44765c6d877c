"""Video encoding: frames to H.264 mp4 bytes or files."""

from __future__ import annotations

import io
from fractions import Fraction

import fsspec
import numpy as np


def mp4_bytes(frames: np.ndarray, fps: int = 8) -> bytes:
    """uint8 (T, H, W, 3) -> H.264 mp4 bytes (odd sides cropped by one pixel: yuv420p)."""
    import av

    t, h, w, _ = frames.shape
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i, : h - h % 2, : w - w % 2]), "rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


def float_mp4_bytes(frames: np.ndarray, fps: int) -> bytes:
    """float frames (F, H, W, 3) in [0, 1] -> H.264 mp4 bytes."""
    return mp4_bytes((np.clip(frames, 0, 1) * 255).astype(np.uint8), fps)


def write_mp4(frames: np.ndarray, path: str, fps: int = 8) -> None:
    """uint8 (T, H, W, 3) -> H.264 mp4 at any fsspec path."""
    with fsspec.open(path, "wb") as fh:
        fh.write(mp4_bytes(frames, fps))
