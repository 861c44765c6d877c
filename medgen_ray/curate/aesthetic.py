"""Aesthetic score per clip: the LAION predictor's mean over the clip's sampled frames."""

from __future__ import annotations

import numpy as np

from medgen_ray.core.cluster import pick_device
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.curate.clipframes import QFRAMES
from medgen_ray.models.registry import load_model


class AestheticStage(RowStage):
    name = "aesthetic"
    adds = ("score_aesthetic",)

    def __init__(self, cfg, device: str | None = None):
        super().__init__(cfg)
        self.device = device or pick_device(cfg.quality.pool.num_gpus)

    def setup(self) -> None:
        q = self.cfg.quality
        self.scorer = load_model(q.aesthetic_model, q.aesthetic_weights, self.device, kind="aesthetic")

    def process(self, row: Row) -> Row:
        scores = self.scorer.score(np.asarray(row[QFRAMES]))
        row["score_aesthetic"] = float(scores.mean()) if len(scores) else float("nan")
        return row
