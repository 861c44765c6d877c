"""Temporal segmentation over 1-fps frames, as the MedGen paper defines a clip.

A clip [i, j] needs t_j - t_i >= min_seconds, every frame i..j classified medical, and every
adjacent pair's CLIP cosine similarity > tau (a drop means a scene cut). Maximal runs longer
than max_seconds are split into the fewest equal pieces that each fit, so a 13 s run yields
two clips (6 s + 7 s) rather than one 10 s clip and a wasted 3 s tail.
"""

from __future__ import annotations

import json
import math

import numpy as np

from medgen_ray.config import CurateConfig
from medgen_ray.core.batch import mark_reject
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import (
    CLIP_EMBEDDING,
    CLIP_ID,
    DAMAGED_SPANS,
    FRAME_FEATS,
    FRAME_HASHES,
    FRAME_SCORES,
    FRAME_SIMS,
    FRAME_TIMES,
    N_CANDIDATES,
    T_END,
    T_START,
    VIDEO_ID,
)


def medical_runs(medical: np.ndarray, sims: np.ndarray, tau: float) -> list[tuple[int, int]]:
    """Maximal [i, j] (frame indices, inclusive) with all frames medical and all adjacent sims > tau."""
    runs, start = [], None
    n = len(medical)
    for k in range(n):
        if not medical[k]:
            if start is not None:
                runs.append((start, k - 1))
            start = None
            continue
        if start is None:
            start = k
        elif sims[k - 1] <= tau:
            runs.append((start, k - 1))
            start = k
    if start is not None:
        runs.append((start, n - 1))
    return runs


def split_run(times: np.ndarray, i: int, j: int, min_s: float, max_s: float) -> list[tuple[int, int]]:
    """Split a qualifying run into the fewest equal pieces no longer than max_s (index pairs)."""
    eps = 1e-9
    span = times[j] - times[i]
    if span < min_s - eps:
        return []
    if span <= max_s + eps:
        return [(i, j)]
    k = math.ceil(span / max_s - eps)
    if span / k >= min_s - eps:  # k equal pieces fit: snap the cut points to frames
        cuts = [i] + [int(np.argmin(np.abs(times - (times[i] + span * m / k)))) for m in range(1, k)] + [j]
        pieces = list(zip(cuts[:-1], cuts[1:]))
        if all(min_s - eps <= times[b] - times[a] <= max_s + eps for a, b in pieces):
            return pieces
    pieces, a = [], i  # greedy: max-length pieces from the start, short tail dropped
    while times[j] - times[a] >= min_s - eps:
        b = min(j, int(np.searchsorted(times, times[a] + max_s + eps, side="right") - 1))
        pieces.append((a, b))
        a = b
    return pieces


def find_segments(
    times: np.ndarray, scores: np.ndarray, sims: np.ndarray, threshold: float, tau: float,
    min_s: float, max_s: float,
) -> list[tuple[int, int]]:
    """The paper's clip rule over 1-fps scores and similarities: (start, end) index pairs of candidate clips."""
    medical = np.asarray(scores) >= threshold
    out: list[tuple[int, int]] = []
    for i, j in medical_runs(medical, np.asarray(sims), tau):
        out.extend(split_run(np.asarray(times), i, j, min_s, max_s))
    return out


def snap_to_keyframes(t0: float, t1: float, keyframes: np.ndarray, duration: float, max_snap: float,
                      min_s: float, tol: float = 0.05) -> tuple[float, float]:
    """Move [t0, t1] inward onto keyframes (at most max_snap each side) so the clip can be
    stream-copied; the end of the video counts as a keyframe. Unchanged if it would get too short."""
    if max_snap <= 0 or len(keyframes) == 0:
        return t0, t1
    k = np.asarray(keyframes, dtype=np.float64)
    starts = k[(k >= t0 - tol) & (k <= t0 + max_snap)]
    s = float(starts.min()) if len(starts) else t0
    if t1 >= duration - tol:
        e = t1
    else:
        ends = k[(k <= t1 + tol) & (k >= t1 - max_snap)]
        e = float(ends.max()) if len(ends) else t1
    if e - s < min_s - 1e-9:
        return t0, t1
    return s, e


def clip_embedding(feats: np.ndarray | None, a: int, b: int) -> np.ndarray:
    """The unit mean of frames a..b's CLIP features (near-duplicate removal compares these);
    empty when the classifier kept no features."""
    if feats is None or len(feats) <= b:
        return np.zeros(0, np.float32)
    mean = np.asarray(feats[a : b + 1], dtype=np.float32).mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def break_at_damage(times: np.ndarray, sims: np.ndarray, damaged: list[list[float]]) -> np.ndarray:
    """Adjacent-frame similarities with every pair that straddles a damaged span set to -inf,
    so no run of the clip rule (and no clip) crosses the damage."""
    out = np.array(sims, dtype=np.float64, copy=True)
    for a, b in damaged:
        out[(times[:-1] < b) & (times[1:] > a)] = -np.inf
    return out


def make_clip_id(video_id: str, t_start: float, t_end: float) -> str:
    """Deterministic: the same source and span always give the same id."""
    return f"{video_id}_{round(t_start * 1000):08d}_{round(t_end * 1000):08d}"


class SegmentStage(RowStage):
    """Fans a source row out into one row per candidate clip."""

    name = "segment"
    reads = (VIDEO_ID, FRAME_SCORES, FRAME_SIMS, FRAME_TIMES, FRAME_FEATS, FRAME_HASHES, DAMAGED_SPANS, "duration",
             "keyframes")
    adds = (CLIP_ID, T_START, T_END, N_CANDIDATES, "score_frame_medical", "score_min_similarity", CLIP_EMBEDDING)
    drops = (FRAME_SCORES, FRAME_SIMS, FRAME_TIMES, FRAME_FEATS)

    def __init__(self, cfg: CurateConfig):
        super().__init__(cfg)

    def process(self, row: Row) -> list[Row]:
        times = np.asarray(row.pop(FRAME_TIMES), dtype=np.float64)
        scores = np.asarray(row.pop(FRAME_SCORES), dtype=np.float64)
        sims = np.asarray(row.pop(FRAME_SIMS), dtype=np.float64)
        feats = row.pop(FRAME_FEATS, None)
        hashes = np.asarray(row.pop(FRAME_HASHES, np.zeros(0, np.uint64)), dtype=np.uint64)
        if len(times) != len(scores) or len(sims) != max(0, len(times) - 1):
            raise DataError(f"frame arrays disagree: {len(times)} times, {len(scores)} scores, {len(sims)} sims")
        seg, clf = self.cfg.segment, self.cfg.classify
        damaged = json.loads(row.get(DAMAGED_SPANS) or "[]")
        sims = break_at_damage(times, sims, damaged)
        spans = find_segments(times, scores, sims, clf.threshold, seg.similarity_threshold,
                              seg.min_seconds, seg.max_seconds)
        if not spans:
            n_med = int((scores >= clf.threshold).sum())
            runs = medical_runs(scores >= clf.threshold, sims, seg.similarity_threshold)
            longest = max((times[j] - times[i] for i, j in runs), default=0.0)
            mark_reject(row, self.name, f"no clip of >= {seg.min_seconds:g} s (medical frames "
                        f"{n_med}/{len(scores)}, longest steady medical run {longest:g} s)")
            return [row]
        clips = []
        keyframes = np.asarray(row.get("keyframes", np.zeros(0)), dtype=np.float64)
        for i, j in spans:
            t0, t1 = snap_to_keyframes(float(times[i]), float(times[j]), keyframes, float(row.get("duration", 0.0)),
                                       self.cfg.cut.snap_to_keyframes_s, seg.min_seconds,
                                       self.cfg.cut.keyframe_tolerance_s)
            inside = np.flatnonzero((times >= t0 - 1e-6) & (times <= t1 + 1e-6))
            a, b = int(inside[0]), int(inside[-1])
            clip = dict(row)
            clip[T_START], clip[T_END] = t0, t1
            clip[CLIP_ID] = make_clip_id(row[VIDEO_ID], t0, t1)
            clip[N_CANDIDATES] = len(spans)
            clip["score_frame_medical"] = float(scores[a : b + 1].mean())
            clip["score_min_similarity"] = float(sims[a:b].min()) if b > a else 1.0
            clip[CLIP_EMBEDDING] = clip_embedding(feats, a, b)
            clip[FRAME_HASHES] = hashes[a : b + 1] if len(hashes) > b else np.zeros(0, np.uint64)
            clips.append(clip)
        return clips

