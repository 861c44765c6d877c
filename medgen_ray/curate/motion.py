"""Motion: Farneback optical flow on downscaled frame pairs -> motion score and camera label.

The mean flow of each pair is fitted as translation + isotropic scale about the centre:
a dominant horizontal translation is a pan, vertical a tilt, scale a zoom; incoherent flow
is `mixed`; almost none is `static`.
"""

from __future__ import annotations

import cv2
import numpy as np

from medgen_ray.config import MotionConfig
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import MFRAMES

LABELS = ("static", "pan", "tilt", "zoom", "mixed")


def pair_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Farneback optical flow (H, W, 2) between two grey frames."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def camera_motion(pairs: np.ndarray, static_px: float = 0.05, coherence: float = 0.5) -> tuple[float, str]:
    """(mean flow magnitude in px per frame at the pairs' width, camera label)."""
    if len(pairs) == 0:
        return 0.0, "static"
    h, w = pairs.shape[2:4]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rx, ry = xx - w / 2, yy - h / 2
    mags, tx, ty, sc = [], [], [], []
    for a, b in pairs:
        f = pair_flow(a, b)
        mags.append(float(np.hypot(f[..., 0], f[..., 1]).mean()))
        tx.append(float(f[..., 0].mean()))
        ty.append(float(f[..., 1].mean()))
        r2 = float((rx * rx + ry * ry).mean())
        sc.append(float(((f[..., 0] - tx[-1]) * rx + (f[..., 1] - ty[-1]) * ry).mean() / r2))
    mag = float(np.mean(mags))
    if mag < static_px:
        return mag, "static"
    t = np.hypot(np.mean(tx), np.mean(ty))
    zoom = abs(np.mean(sc)) * np.sqrt((rx * rx + ry * ry).mean())
    if zoom > coherence * mag and zoom > t:
        return mag, "zoom"
    if t < coherence * mag:
        return mag, "mixed"
    if abs(np.mean(tx)) >= 2 * abs(np.mean(ty)):
        return mag, "pan"
    if abs(np.mean(ty)) >= 2 * abs(np.mean(tx)):
        return mag, "tilt"
    return mag, "mixed"


class MotionStage(RowStage):
    """Mean optical-flow magnitude and the camera-motion label of a clip."""

    name = "motion"
    reads = (MFRAMES,)
    adds = ("score_motion", "label_camera_motion")
    drops = (MFRAMES,)

    def __init__(self, cfg: MotionConfig):
        super().__init__(cfg)

    def empty_values(self) -> Row:
        return {"label_camera_motion": ""}

    def process(self, row: Row) -> Row:
        mag, label = camera_motion(np.asarray(row.pop(MFRAMES)), self.cfg.static_px, self.cfg.coherence)
        row["score_motion"], row["label_camera_motion"] = mag, label
        return row
