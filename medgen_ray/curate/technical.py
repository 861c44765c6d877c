"""Technical quality: a no-reference score per clip, mean over its sampled frames.

`sharpness` (default, no weights; higher is better): variance of the Laplacian of the grey frame, mapped to
[0, 1) as v / (v + k); blur, heavy compression and low light all lower it. `pyiqa:<metric>`
runs any pyiqa no-reference metric (for example `pyiqa:musiq`, `pyiqa:dbcnn`, `pyiqa:clipiqa`;
weights come from pyiqa's own cache, so pre-stage them for offline clusters; `pyiqa:piqe`
needs none). Set `quality.technical.lower_better` to the metric's direction (checked).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from medgen_ray.config import TechnicalConfig
from medgen_ray.core.cluster import pick_device
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import QFRAMES

SHARPNESS_K = 0.002


def sharpness(rgb: np.ndarray) -> float:
    """Laplacian-variance sharpness of an RGB frame, squashed to [0, 1)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    v = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    return v / (v + SHARPNESS_K)


class PyiqaMetric:
    """A pyiqa no-reference metric over uint8 frames, with its direction."""

    def __init__(self, name: str, device: str):
        import pyiqa

        self.metric = pyiqa.create_metric(name, device=device, as_loss=False)
        self.device = device
        self.lower_better = bool(self.metric.lower_better)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255).to(self.device)
        return self.metric(x).flatten().float().cpu().numpy()


def is_model_metric(metric: str) -> bool:
    """True for pyiqa metrics (they run in an actor pool)."""
    return metric.startswith("pyiqa:")


class TechnicalStage(RowStage):
    """Mean no-reference technical quality (sharpness or a pyiqa metric) over a clip's frames."""

    name = "technical"
    reads = (QFRAMES,)
    adds = ("score_technical",)

    def __init__(self, cfg: TechnicalConfig, num_gpus: float = 0.0, device: str | None = None):
        super().__init__(cfg)
        self.num_gpus = num_gpus
        self.device = device

    def setup(self) -> None:
        metric = self.cfg.metric
        if is_model_metric(metric):
            # chosen where the stage runs (an actor), never on the driver
            self.fn = PyiqaMetric(metric.split(":", 1)[1], self.device or pick_device(self.num_gpus))
            if self.fn.lower_better != self.cfg.lower_better:
                raise ValueError(
                    f"curate.quality.technical.lower_better must be {self.fn.lower_better} for {metric} "
                    f"(pyiqa says lower is {'better' if self.fn.lower_better else 'worse'})")
        elif metric == "sharpness":
            self.fn = lambda frames: np.array([sharpness(f) for f in frames])
        else:
            raise KeyError(f"unknown technical metric {metric!r}; choices: sharpness, pyiqa:<metric name>")

    def process(self, row: Row) -> Row:
        frames = np.asarray(row[QFRAMES])
        row["score_technical"] = float(np.mean(self.fn(frames))) if len(frames) else float("nan")
        return row
