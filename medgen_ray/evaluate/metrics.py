"""Med-VBench metric formulas as pure functions (the paper's Table 2 and VBench's definitions).

Feature extractors (DINO, CLIP, MUSIQ, RAFT) and the batch job come with the evaluation
issue; these are the shared maths every caller uses.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

Interpolator = Callable[[np.ndarray, np.ndarray], np.ndarray]
DISTORTED = {"moderate", "severe"}


def consistency(features: np.ndarray) -> float:
    """VBench subject/background consistency of one video from per-frame features (T, D):
    mean over t >= 2 of 0.5 * [max(0, cos(f_{t-1}, f_t)) + max(0, cos(f_1, f_t))]."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"features must be (T, D) with T >= 1, got {f.shape}")
    if len(f) == 1:
        return 1.0
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    prev = np.maximum(0.0, np.sum(f[1:] * f[:-1], axis=1))
    first = np.maximum(0.0, f[1:] @ f[0])
    return float(np.mean(0.5 * (prev + first)))


def midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Linear frame interpolation; VBench uses AMT-S here, pass it as `interpolate`."""
    return (a.astype(np.float64) + b.astype(np.float64)) / 2.0


def motion_smoothness(frames: np.ndarray, interpolate: Interpolator = midpoint) -> float:
    """Keep the even frames, rebuild each odd frame from its two neighbours, and score
    (255 - mean |real - rebuilt|) / 255 on uint8 RGB."""
    x = np.asarray(frames)
    if x.ndim != 4 or x.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {x.dtype} {x.shape}")
    odd = range(1, len(x) - 1, 2)
    if not len(odd):
        return 1.0
    errs = [np.mean(np.abs(x[i].astype(np.float64) - np.clip(interpolate(x[i - 1], x[i + 1]), 0, 255)))
            for i in odd]
    return float((255.0 - np.mean(errs)) / 255.0)


def warping_error_from_ratings(ratings: Iterable[tuple[str, str]]) -> float:
    """Per cent of videos judged distorted: >= 2 raters said moderate or severe.
    `ratings` yields (video_id, rating) with rating in no / minor / moderate / severe."""
    votes: dict[str, int] = {}
    for vid, rating in ratings:
        r = rating.strip().lower()
        if r not in {"no", "minor", "moderate", "severe"}:
            raise ValueError(f"rating {rating!r} for {vid!r} is not one of no, minor, moderate, severe")
        votes[vid] = votes.get(vid, 0) + (r in DISTORTED)
    if not votes:
        raise ValueError("no ratings")
    return 100.0 * sum(v >= 2 for v in votes.values()) / len(votes)


def total_score(iq: float, sc: float, bc: float, ms: float, we: float) -> float:
    """The paper's Total = (IQ + SC + BC + MS + (100 - WE)) / 6, all in per cent."""
    return (iq + sc + bc + ms + (100.0 - we)) / 6.0
