"""Frame sampling stage: 1-fps frames at the frame classifier's input size. A source longer than
`sample.window_s` is not sampled here: the row goes on without frames, marked `windowed`, and
the classifier decodes it window by window, so no row ever carries more than a window of
frames. A source damaged in
the middle keeps what decodes: the stretches that do not are skipped and listed in
`damaged_spans` (segmentation never lets a clip cross one); only a source where nothing
decodes is an error."""

from __future__ import annotations

import json

import numpy as np

from medgen_ray.config import SampleConfig
from medgen_ray.core.decode import sample_frames
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import DAMAGED_SPANS, FRAME_TIMES, FRAMES, SOURCE_URI, WINDOWED


class SampleStage(RowStage):
    """1-fps frames of a source video, scaled to the frame classifier's input size."""

    name = "sample"
    reads = (SOURCE_URI,)
    adds = (FRAMES, FRAME_TIMES, DAMAGED_SPANS, WINDOWED)

    def __init__(self, cfg: SampleConfig, image_size: int):
        super().__init__(cfg)
        self.image_size = image_size

    def empty_values(self) -> Row:
        return {FRAMES: np.zeros((0, self.image_size, self.image_size, 3), np.uint8),
                FRAME_TIMES: np.zeros(0, np.float64), DAMAGED_SPANS: "", WINDOWED: False}

    def process(self, row: Row) -> Row:
        if float(row.get("duration") or 0.0) > self.cfg.window_s:  # the classifier decodes it window by window
            row.update(self.empty_values())
            row[WINDOWED] = True
            return row
        row[WINDOWED] = False
        damaged: list[list[float]] = []
        frames, times = sample_frames(
            row[SOURCE_URI], self.cfg.fps, self.image_size, self.cfg.decode_threads, damaged=damaged
        )
        if len(frames) == 0:
            raise DataError("no frame decoded" + (f" (damaged from {damaged[0][0]:g} s)" if damaged else ""))
        row[FRAMES], row[FRAME_TIMES] = frames, times
        row[DAMAGED_SPANS] = json.dumps(damaged) if damaged else ""
        return row
