"""Aesthetic score per clip: the LAION predictor's mean over the clip's sampled frames."""

from __future__ import annotations

import numpy as np

from medgen_ray.config import AestheticConfig
from medgen_ray.core.cluster import pick_device
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.models.registry import load_model
from medgen_ray.schema import QFRAMES


class AestheticStage(RowStage):
    """Mean LAION aesthetic score over a clip's sampled frames."""

    name = "aesthetic"
    reads = (QFRAMES,)
    adds = ("score_aesthetic",)

    def __init__(self, cfg: AestheticConfig, num_gpus: float = 0.0, device: str | None = None):
        super().__init__(cfg)
        self.device = device or pick_device(num_gpus)

    def setup(self) -> None:
        self.scorer = load_model(self.cfg.model, self.cfg.weights, self.device, kind="aesthetic")

    def process(self, row: Row) -> Row:
        scores = self.scorer.score(np.asarray(row[QFRAMES]))
        row["score_aesthetic"] = float(scores.mean()) if len(scores) else float("nan")
        return row
