"""Scores one generated video on every enabled Med-VBench dimension (a model stage: actors).

Each row: video_id, model, prompt, video_uri. Frames are decoded once; every dimension adds
`score_<dimension>` (in per cent where the paper reports per cent: consistencies, smoothness,
imaging quality, aesthetic, text alignment, medical-frame share; dynamic degree 0/100 per
video; warping_auto is a mean squared error, lower is better) and `time_<dimension>` (seconds,
for the benchmark). VBench's six dimensions are computed as VBench 0.1.5 computes them
(`dimensions`); text alignment, the medical-frame share and warping_auto are ours and share the
curation's CLIP view of the frames. An unreadable video becomes the row's error.
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
from medgen_ray.evaluate import dimensions, metrics
from medgen_ray.evaluate.models import ClipImages


def read_frames(uri: str, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """The RGB frames of a video (all, or the first max_frames) and its average frame rate;
    raises DataError when fewer than 3 decode (motion smoothness needs two even frames)."""
    frames = []
    with open_video(uri) as c:
        stream = c.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        for frame in c.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames and len(frames) >= max_frames:
                break
    if len(frames) < 3:
        raise DataError(f"{len(frames)} frame(s): Med-VBench's dimensions need at least 3")
    if fps <= 0:
        raise DataError("no frame rate in the container: dynamic degree samples by it")
    return np.stack(frames), fps


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
        self._videoscore: dict[str, float] | None = None

    @property
    def adds(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("frames", *(f"{p}_{d}" for d in self.cfg.dimensions for p in ("score", "time")))

    def empty_values(self) -> Row:
        return {c: float("nan") for c in self.adds}

    def setup(self) -> None:
        from medgen_ray.core.cluster import pick_device
        from medgen_ray.evaluate.models import load_all

        if self.device is None:
            self.device = pick_device(self.cfg.pool.num_gpus)
        self.models = load_all(self.cfg, self.device)

    def process(self, row: Row) -> Row:
        frames, fps = read_frames(str(row["video_uri"]), self.cfg.max_frames)
        row["frames"] = float(len(frames))  # the frame weight of VBench's consistency totals
        self._clip_cache = None
        self._videoscore = None
        for dim in self.cfg.dimensions:
            t0 = time.perf_counter()
            row[f"score_{dim}"] = self.score(dim, frames, fps, row)
            row[f"time_{dim}"] = time.perf_counter() - t0
        return row

    def _clip_features(self, frames: np.ndarray) -> np.ndarray:
        """CLIP image features of every frame as the curation sees them (text alignment and the
        medical-frame share, both ours), once per video."""
        if self._clip_cache is None:
            self._clip_cache = self.models["clip"].encode_images(self._clip_frames(frames))
        return self._clip_cache

    def score(self, dim: str, frames: np.ndarray, fps: float, row: Row) -> float:
        """One dimension of one video; VBench's dimensions through `dimensions` (VBench's path)."""
        m, dev = self.models, self.device or "cpu"
        if dim == "subject_consistency":
            return dimensions.subject_consistency(m["dino"], frames, dev)
        if dim == "background_consistency":
            return dimensions.background_consistency(ClipImages(m["clip"]), frames, dev)
        if dim == "motion_smoothness":
            return dimensions.motion_smoothness(m["interpolator"], frames)
        if dim == "imaging_quality":
            return dimensions.imaging_quality(m["iqa"], frames, dev)
        if dim == "dynamic_degree":
            return dimensions.dynamic_degree(m["flow"].pairs, frames, fps)
        if dim == "aesthetic":
            return dimensions.aesthetic(m["aesthetic"].images, m["aesthetic"].head, frames, dev)
        if dim == "text_alignment":
            img = self._clip_features(frames)
            txt = m["clip"].encode_texts([str(row.get("prompt") or "")])[0]
            return 100.0 * float(np.clip(img @ txt, 0, None).mean())
        if dim == "medical_frames":  # mean P(medical) of the frames, by the curation's frame rule
            return 100.0 * float(np.mean(m["medical"](self._clip_features(frames))))
        if dim.startswith("videoscore_"):  # VideoScore v1.1: one call scores all five aspects
            if self._videoscore is None:
                self._videoscore = m["videoscore"].score(str(row["video_uri"]), str(row.get("prompt") or ""))
            return self._videoscore[dim.removeprefix("videoscore_")]
        if dim == "warping_auto":  # ours: forward-backward checked warping error at flow_side
            small = _resize_short(frames, self.cfg.flow_side)
            forward = m["flow"].pairs(small, unpad=True)
            backward = m["flow"].pairs(small[::-1], unpad=True)[::-1]  # t+1 -> t
            return 100.0 * metrics.warping_error_auto(small, list(zip(forward, backward)))
        raise KeyError(dim)

    def _clip_frames(self, frames: np.ndarray) -> np.ndarray:
        from medgen_ray.models.clip import square_crop

        size = self.models["clip"].image_size
        return np.stack([square_crop(f, size) for f in frames])
