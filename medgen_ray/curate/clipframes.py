"""Frames of a cut clip for the quality stages, in one decode pass of the clip file.

`qframes`: N uniformly spaced RGB frames, long side at most `max_side` (borders, OCR,
aesthetics). `mframes`: pairs of consecutive frames in grey at `motion_width` px wide
(optical flow). Both are dropped by the last stage that reads them.
"""

from __future__ import annotations

import numpy as np

from medgen_ray.config import ClipFramesConfig
from medgen_ray.core.decode import open_video
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import CLIP_URI, MFRAMES, QFRAMES


def _size(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(w, h))
    return max(2, round(w * s) // 2 * 2), max(2, round(h * s) // 2 * 2)


def clip_frames(uri: str, n_quality: int, max_side: int, n_pairs: int, motion_width: int,
                threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Returns (uint8 (N, H, W, 3), uint8 (P, 2, h, w)) from one pass over the clip."""
    with open_video(uri) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        total = stream.frames or 0
        frames = list(container.decode(stream)) if total == 0 else None
        if frames is not None:
            total = len(frames)
        if total < 2:
            raise DataError(f"clip has {total} frame(s)")
        q_idx = set(np.linspace(0, total - 1, n_quality).round().astype(int).tolist())
        starts = np.linspace(0, total - 2, n_pairs).round().astype(int)
        m_idx = set(starts.tolist()) | set((starts + 1).tolist())
        ctx = stream.codec_context
        qw, qh = _size(ctx.width, ctx.height, max_side)
        mw = motion_width
        mh = max(2, round(ctx.height * mw / ctx.width) // 2 * 2)
        q, m = {}, {}
        source = frames if frames is not None else container.decode(stream)
        for i, frame in enumerate(source):
            if i in q_idx:
                q[i] = frame.reformat(width=qw, height=qh, format="rgb24").to_ndarray()
            if i in m_idx:
                m[i] = frame.reformat(width=mw, height=mh, format="gray").to_ndarray()
            if i >= max(max(q_idx), max(m_idx)):
                break
    qf = np.stack([q[i] for i in sorted(q)])
    mf = np.stack([np.stack([m[s], m[s + 1]]) for s in starts if s in m and s + 1 in m])
    return qf, mf


class ClipFramesStage(RowStage):
    """Decodes a clip once: the quality stages' uniform frames and the motion stage's flow pairs."""

    name = "clipframes"
    reads = (CLIP_URI,)
    adds = (QFRAMES, MFRAMES)

    def __init__(self, cfg: ClipFramesConfig):
        super().__init__(cfg)

    def empty_values(self) -> Row:
        return {QFRAMES: np.zeros((0, 2, 2, 3), np.uint8), MFRAMES: np.zeros((0, 2, 2, 2), np.uint8)}

    def process(self, row: Row) -> Row:
        c = self.cfg
        row[QFRAMES], row[MFRAMES] = clip_frames(row[CLIP_URI], c.frames, c.max_side, c.motion_pairs, c.motion_width)
        return row
