"""Frame sampling stage: 1-fps frames at the frame classifier's input size."""

from __future__ import annotations

import numpy as np

from medgen_ray.config import SampleConfig
from medgen_ray.core.decode import sample_frames
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import FRAME_TIMES, FRAMES, SOURCE_URI


class SampleStage(RowStage):
    """1-fps frames of a source video, scaled to the frame classifier's input size."""

    name = "sample"
    reads = (SOURCE_URI,)
    adds = (FRAMES, FRAME_TIMES)

    def __init__(self, cfg: SampleConfig, image_size: int):
        super().__init__(cfg)
        self.image_size = image_size

    def empty_values(self) -> Row:
        return {FRAMES: np.zeros((0, self.image_size, self.image_size, 3), np.uint8),
                FRAME_TIMES: np.zeros(0, np.float64)}

    def process(self, row: Row) -> Row:
        frames, times = sample_frames(
            row[SOURCE_URI], self.cfg.fps, self.image_size, self.cfg.decode_threads
        )
        if len(frames) == 0:
            raise DataError("no frame decoded")
        row[FRAMES], row[FRAME_TIMES] = frames, times
        return row
