"""Med-VBench metric formulas as pure functions (the paper's Table 2 and VBench's definitions).

Feature extractors (DINO, CLIP, MUSIQ, RAFT) and the batch job come with the evaluation
issue; these are the shared maths every caller uses.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

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


def flow_peak_magnitude(flow: np.ndarray) -> float:
    """VBench's motion score of one frame pair: mean of the largest 5% flow magnitudes."""
    rad = np.sqrt(np.sum(np.asarray(flow, dtype=np.float64) ** 2, axis=-1)).ravel()
    k = max(1, int(rad.size * 0.05))
    return float(np.mean(np.sort(rad)[-k:]))


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `image` at x + flow(x) (bilinear, border clamp): image (H, W[, C]), flow (H, W, 2)
    as (dx, dy)."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(np.asarray(image, dtype=np.float32), gx + flow[..., 0].astype(np.float32),
                     gy + flow[..., 1].astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(forward: np.ndarray, backward: np.ndarray, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """True where the forward-backward check passes (Sundaram et al.): the backward flow at the
    forward target must undo the forward flow, |F + B(x+F)|^2 < alpha (|F|^2 + |B(x+F)|^2) + beta.
    Pixels whose target leaves the frame are occluded too."""
    b_at = warp(backward, forward)
    lhs = np.sum((forward + b_at) ** 2, axis=-1)
    rhs = alpha * (np.sum(forward ** 2, axis=-1) + np.sum(b_at ** 2, axis=-1)) + beta
    h, w = forward.shape[:2]
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    tx, ty = gx + forward[..., 0], gy + forward[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (lhs < rhs) & inside


def warping_error_auto(frames: np.ndarray, flows: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Automatic warping proxy: for each pair (t, t+1), warp frame t+1 back onto t with the
    forward flow and take the mean squared error (pixels in [0, 1]) over non-occluded pixels;
    mean over pairs. `flows[t]` = (forward t->t+1, backward t+1->t). NaN (no score, counted
    by the aggregate) when every pixel of every pair fails the occlusion check: an error of 0
    there would read as a perfect video."""
    x = np.asarray(frames, dtype=np.float32) / 255.0
    if len(flows) != len(x) - 1:
        raise ValueError(f"{len(x)} frames need {len(x) - 1} flow pairs, got {len(flows)}")
    errs = []
    for t, (fwd, bwd) in enumerate(flows):
        mask = occlusion_mask(fwd, bwd)
        if not mask.any():
            continue
        diff = (warp(x[t + 1], fwd) - x[t]) ** 2
        errs.append(float(diff.mean(axis=-1)[mask].mean()))
    return float(np.mean(errs)) if errs else float("nan")
