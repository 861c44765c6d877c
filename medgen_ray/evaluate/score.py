"""Scores one generated video on every enabled Med-VBench dimension (a model stage: actors).

Each row: video_id, model, prompt, video_uri. Frames are decoded once; every dimension adds
`score_<dimension>` (in per cent where the paper reports per cent: consistencies, smoothness,
imaging quality, text alignment, medical-frame share; dynamic degree 0/100 per video; aesthetic
on LAION's 1-10; warping_auto is a mean squared error, lower is better) and `time_<dimension>`
(seconds, for the benchmark). CLIP image features are computed once per video and shared by
background consistency, text alignment and medical-frame share. An unreadable video becomes the
row's error.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from medgen_ray.config import EvaluateConfig
from medgen_ray.core.decode import open_video
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.evaluate import metrics


def read_frames(uri: str, max_frames: int) -> np.ndarray:
    """Up to max_frames RGB frames of a video; raises DataError when fewer than 2 decode."""
    frames = []
    with open_video(uri) as c:
        for frame in c.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= max_frames:
                break
    if len(frames) < 2:
        raise DataError(f"{len(frames)} frame(s): every dimension needs at least 2")
    return np.stack(frames)


def _resize_short(frames: np.ndarray, side: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    if min(h, w) <= side:
        return frames
    s = side / min(h, w)
    size = (max(8, round(w * s)), max(8, round(h * s)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


class VideoScoreStage(RowStage):
    """Every configured Med-VBench dimension of one generated video, with its time."""

    name = "score"
    reads = ("video_uri",)

    def __init__(self, cfg: EvaluateConfig, device: str | None = None):
        super().__init__(cfg)
        self.device = device
        self.models: dict[str, Any] = {}
        self._clip_cache: np.ndarray | None = None

    @property
    def adds(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"{p}_{d}" for d in self.cfg.dimensions for p in ("score", "time"))

    def empty_values(self) -> Row:
        return {c: float("nan") for c in self.adds}

    def setup(self) -> None:
        from medgen_ray.core.cluster import pick_device
        from medgen_ray.evaluate.models import load_all

        if self.device is None:
            self.device = pick_device(self.cfg.pool.num_gpus)
        self.models = load_all(self.cfg, self.device)

    def process(self, row: Row) -> Row:
        frames = read_frames(str(row["video_uri"]), self.cfg.max_frames)
        flows: list | None = None
        self._clip_cache = None
        for dim in self.cfg.dimensions:
            t0 = time.perf_counter()
            if dim in ("dynamic_degree", "warping_auto") and flows is None:
                flows = self._flows(frames, both=("warping_auto" in self.cfg.dimensions))
            row[f"score_{dim}"] = self.score(dim, frames, row, flows)
            row[f"time_{dim}"] = time.perf_counter() - t0
        return row

    def _clip_features(self, frames: np.ndarray) -> np.ndarray:
        """CLIP image features of every frame, once per video (frames are this row's)."""
        if self._clip_cache is None:
            self._clip_cache = self.models["clip"].encode_images(self._clip_frames(frames))
        return self._clip_cache

    def _flows(self, frames: np.ndarray, both: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:
        small = _resize_short(frames, self.cfg.flow_side)
        flow = self.models["flow"]
        return [(flow(a, b), flow(b, a) if both else None) for a, b in zip(small[:-1], small[1:])]

    def score(self, dim: str, frames: np.ndarray, row: Row, flows) -> float:
        m = self.models
        if dim == "subject_consistency":
            return 100.0 * metrics.consistency(m["dino"].encode(frames))
        if dim == "background_consistency":
            return 100.0 * metrics.consistency(self._clip_features(frames))
        if dim == "motion_smoothness":
            return 100.0 * metrics.motion_smoothness(frames)
        if dim == "imaging_quality":
            return m["iqa"].score(frames)
        if dim == "dynamic_degree":
            small_h, small_w = _resize_short(frames[:1], self.cfg.flow_side).shape[1:3]
            scores = [metrics.flow_peak_magnitude(f) for f, _ in flows]
            return 100.0 * metrics.is_dynamic(scores, small_h, small_w, len(frames))
        if dim == "text_alignment":
            img = self._clip_features(frames)
            txt = m["clip"].encode_texts([str(row.get("prompt") or "")])[0]
            return 100.0 * float(np.clip(img @ txt, 0, None).mean())
        if dim == "aesthetic":
            idx = np.linspace(0, len(frames) - 1, min(8, len(frames))).round().astype(int)
            return float(np.mean(m["aesthetic"].score(frames[idx])))
        if dim == "medical_frames":  # mean P(medical) of the frames, by the curation's frame rule
            return 100.0 * float(np.mean(m["medical"](self._clip_features(frames))))
        if dim == "warping_auto":
            small = _resize_short(frames, self.cfg.flow_side)
            return 100.0 * metrics.warping_error_auto(small, flows)
        raise KeyError(dim)

    def _clip_frames(self, frames: np.ndarray) -> np.ndarray:
        from medgen_ray.models.clip import square_crop

        size = self.models["clip"].image_size
        return np.stack([square_crop(f, size) for f in frames])
