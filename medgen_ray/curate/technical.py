"""Technical quality: a no-reference score per clip, mean over its sampled frames.

`sharpness` (default, no weights; higher is better): variance of the Laplacian of the grey frame, mapped to
[0, 1) as v / (v + k); blur, heavy compression and low light all lower it. `pyiqa:<metric>`
runs any pyiqa no-reference metric (for example `pyiqa:musiq`, `pyiqa:dbcnn`, `pyiqa:clipiqa`;
weights come from pyiqa's own cache, so pre-stage them for offline clusters; `pyiqa:piqe`
needs none). Set `quality.technical_lower_better` to the metric's direction (checked).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from medgen_ray.core.stage import Row, RowStage
from medgen_ray.curate.clipframes import QFRAMES

SHARPNESS_K = 0.002


def sharpness(rgb: np.ndarray) -> float:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    v = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    return v / (v + SHARPNESS_K)


class PyiqaMetric:
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
    return metric.startswith("pyiqa:")


class TechnicalStage(RowStage):
    name = "technical"
    adds = ("score_technical",)

    def __init__(self, cfg, device: str = "cpu"):
        super().__init__(cfg)
        self.device = device

    def setup(self) -> None:
        metric = self.cfg.quality.technical_metric
        if is_model_metric(metric):
            self.fn = PyiqaMetric(metric.split(":", 1)[1], self.device)
            if self.fn.lower_better != self.cfg.quality.technical_lower_better:
                raise ValueError(
                    f"curate.quality.technical_lower_better must be {self.fn.lower_better} for {metric} "
                    f"(pyiqa says lower is {'better' if self.fn.lower_better else 'worse'})")
        elif metric == "sharpness":
            self.fn = lambda frames: np.array([sharpness(f) for f in frames])
        else:
            raise KeyError(f"unknown technical metric {metric!r}; choices: sharpness, pyiqa:<metric name>")

    def process(self, row: Row) -> Row:
        frames = np.asarray(row[QFRAMES])
        row["score_technical"] = float(np.mean(self.fn(frames))) if len(frames) else float("nan")
        return row
