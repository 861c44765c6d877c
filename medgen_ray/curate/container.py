"""Probe stage: container facts needed by every later stage and by the policy filters."""

from __future__ import annotations

from medgen_ray.config import CurateConfig
from medgen_ray.core.decode import probe_video
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import PROBE_COLUMNS, SOURCE_URI


class ProbeStage(RowStage):
    """Container facts of a source video (no decode); files that are not video become errors."""

    name = "probe"
    reads = (SOURCE_URI,)
    adds = PROBE_COLUMNS + ("interval_spread", "keyframes")

    def __init__(self, cfg: CurateConfig):
        super().__init__(cfg)

    def empty_values(self) -> Row:
        import numpy as np

        return {"keyframes": np.zeros(0, dtype=np.float64), "interval_spread": 0.0}

    def process(self, row: Row) -> Row:
        p = probe_video(row[SOURCE_URI])
        row.update(
            width=p.width, height=p.height, fps=p.fps, duration=p.duration, codec=p.codec,
            bitrate=p.bitrate, rotation=p.rotation, interval_spread=p.interval_spread, keyframes=p.keyframes,
        )
        return row
