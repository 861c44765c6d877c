"""Black borders: letterbox / pillarbox bars that persist across a clip's frames.

A side has a bar when (a) a band along it is dark (row/column mean intensity) and (b) Canny
finds a long straight edge where the band ends. Requiring the straight edge keeps round dark
vignettes (endoscopes, ultrasound fans) from counting as bars.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from medgen_ray.config import BorderConfig, CutConfig
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import CLIP_URI, QFRAMES

SIDES = ("top", "bottom", "left", "right")


def dark_band(profile: np.ndarray, dark: float, max_frac: float) -> int:
    """Length of the dark run at the start of a 1-D intensity profile (capped)."""
    limit = int(len(profile) * max_frac)
    n = 0
    while n < limit and profile[n] < dark:
        n += 1
    return n


def _has_edge(edges: np.ndarray, side: str, pos: int, min_len_frac: float) -> bool:
    """Is there a straight Canny edge along the band's inner end? This is the Hough vote for
    the one line that matters, taken over a 5 px strip because H.264 smears the edge over two
    rows; a curved vignette meets that line over a short arc only."""
    if side in ("top", "bottom"):
        strip = edges[max(0, pos - 2) : pos + 3, :]
        covered = strip.any(axis=0)
    else:
        strip = edges[:, max(0, pos - 2) : pos + 3]
        covered = strip.any(axis=1)
    return bool(covered.mean() >= min_len_frac)


def frame_bars(rgb: np.ndarray, dark: float = 24.0, min_frac: float = 0.04, max_frac: float = 0.35,
               min_len_frac: float = 0.2) -> dict[str, int]:
    """Bar size in px per side for one frame (0: none).

    A bar row/column is black all along (98th percentile below `dark`), unlike a vignette's.
    The straight edge where the bar ends must cover `min_len_frac` of the side: content may be
    dark near the bar too (an endoscope's circle inside a letterbox), so not all of it.
    """
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    rows, cols = np.percentile(grey, 98, axis=1), np.percentile(grey, 98, axis=0)
    bands = {"top": dark_band(rows, dark, max_frac), "bottom": dark_band(rows[::-1], dark, max_frac),
             "left": dark_band(cols, dark, max_frac), "right": dark_band(cols[::-1], dark, max_frac)}
    edges = cv2.Canny(grey, 30, 90)
    out = {}
    for side, n in bands.items():
        size = h if side in ("top", "bottom") else w
        if n < max(2, min_frac * size):
            out[side] = 0
            continue
        pos = {"top": n, "bottom": h - 1 - n, "left": n, "right": w - 1 - n}[side]
        out[side] = n if _has_edge(edges, side, pos, min_len_frac) else 0
    return out


def border_scores(frames: np.ndarray) -> dict[str, float]:
    """Per side: fraction of frames with a bar, and the median bar size as a fraction of the side."""
    per = [frame_bars(f) for f in frames]
    h, w = frames.shape[1:3]
    out: dict[str, float] = {}
    for side in SIDES:
        sizes = np.array([p[side] for p in per], dtype=float)
        out[f"score_border_{side}"] = float((sizes > 0).mean()) if len(sizes) else 0.0
        denom = h if side in ("top", "bottom") else w
        out[f"border_{side}_frac"] = float(np.median(sizes) / denom) if len(sizes) else 0.0
    return out


def content_box(scores: dict[str, float], width: int, height: int, persistence: float) -> tuple[int, int, int, int]:
    """(x, y, w, h) inside the persistent bars, even-sized for H.264."""
    def px(side: str, size: int) -> int:
        return int(np.ceil(scores[f"border_{side}_frac"] * size)) if scores[f"score_border_{side}"] >= persistence else 0

    top, bottom, left, right = px("top", height), px("bottom", height), px("left", width), px("right", width)
    w = (width - left - right) // 2 * 2
    h = (height - top - bottom) // 2 * 2
    return left, top, w, h


class BorderStage(RowStage):
    """Scores bars; with `quality.borders.action=crop` it also re-encodes the clip without them."""

    name = "borders"
    reads = (QFRAMES, CLIP_URI, "width", "height")
    adds = tuple(f"score_border_{s}" for s in SIDES) + tuple(f"border_{s}_frac" for s in SIDES) + ("crop_box",)

    def __init__(self, cfg: BorderConfig, cut: CutConfig):
        super().__init__(cfg)
        self.cut = cut

    def empty_values(self) -> Row:
        return {"crop_box": ""}

    def process(self, row: Row) -> Row:
        from medgen_ray.curate.cut import reencode_clip, write_atomically

        frames = np.asarray(row[QFRAMES])
        scores = border_scores(frames)
        row.update(scores)
        row["crop_box"] = ""
        b = self.cfg
        if b.action == "crop" and any(scores[f"score_border_{s}"] >= b.persistence for s in SIDES):
            from medgen_ray.core.decode import probe_video

            info = probe_video(row["clip_uri"])
            box = content_box(scores, info.width, info.height, b.persistence)
            c = self.cut
            write_atomically(row["clip_uri"], lambda tmp: reencode_clip(row["clip_uri"], tmp, 0.0, math.inf, c.crf,
                                                                        c.preset, box))
            row["crop_box"] = ",".join(str(v) for v in box)
            row["width"], row["height"] = box[2], box[3]
        return row
