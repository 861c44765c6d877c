"""Burned-in text and subtitles: OCR words over the clip's sampled frames (rapidocr by default).

rapidocr ships its ONNX models in the wheel, so it runs offline. EasyOCR is an optional
backend (`quality.ocr.backend=easyocr`, needs the easyocr package and its model files).
"""

from __future__ import annotations

import cv2
import numpy as np

from medgen_ray.config import OcrConfig
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import QFRAMES


class RapidOcrBackend:
    """rapidocr (ONNX models shipped in the wheel): boxes and texts of one frame."""

    def __init__(self, det_side: int = 480, threads: int = 1):
        from rapidocr import RapidOCR

        # Burned-in subtitles are upright: the angle classifier only costs time. Detection at a
        # 480 px side finds them as well as the default 736 (checked on generated subtitles)
        # and takes ~40% less time.
        params = {"Global.log_level": "error", "Global.use_cls": False, "Det.limit_side_len": det_side,
                  "EngineConfig.onnxruntime.intra_op_num_threads": threads or -1,
                  "EngineConfig.onnxruntime.inter_op_num_threads": threads or -1}
        self.engine = RapidOCR(params=params)
        self.detector = RapidOCR(params=params)  # rapidocr remembers use_rec=False per engine: one for boxes only

    def __call__(self, rgb: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
        r = self.engine(rgb, use_det=True, use_cls=False, use_rec=True)
        if r.txts is None:
            return []
        return [(t, float(s), np.asarray(b)) for t, s, b in zip(r.txts, r.scores, r.boxes)]

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Text boxes (4 corners) of one frame, no recognition."""
        r = self.detector(rgb, use_det=True, use_cls=False, use_rec=False)
        return [] if r.boxes is None else [np.asarray(b) for b in r.boxes]


class EasyOcrBackend:
    """EasyOCR (optional dependency): boxes and texts of one frame."""

    def __init__(self, det_side: int = 480, threads: int = 1):
        import easyocr  # optional dependency

        self.reader = easyocr.Reader(["en"], gpu=False)

    def __call__(self, rgb: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
        return [(t, float(s), np.asarray(b, dtype=float)) for b, t, s in self.reader.readtext(rgb)]


BACKENDS = {"rapidocr": RapidOcrBackend, "easyocr": EasyOcrBackend}


# Words per text-line box: box width / (WORD_WIDTH_IN_HEIGHTS x box height). Ours, fitted on the
# generated subtitles (recognised words / estimate = 1.0-1.3); real fonts differ, which is why
# recognition still runs whenever the estimate is within a factor 2 of the threshold.
WORD_WIDTH_IN_HEIGHTS = 2.3


def text_lines(boxes: list[np.ndarray], frame_height: int) -> list[tuple[np.ndarray, float, float]]:
    """(box, width, height) of the boxes shaped like a line of text: at least twice as wide as
    high and under a quarter of the frame's height (the detector also outlines whole textured
    scenes: on the generated clips, boxes the size of the frame)."""
    out = []
    for b in boxes:
        b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
        w, h = float(np.linalg.norm(b[1] - b[0])), float(np.linalg.norm(b[3] - b[0]))
        if w >= 2 * h and h <= 0.25 * frame_height:
            out.append((b, w, h))
    return out


def estimate_words(lines: list[tuple[np.ndarray, float, float]]) -> float:
    """Words text-line boxes hold, from their shape alone."""
    return sum(w / (WORD_WIDTH_IN_HEIGHTS * max(h, 1.0)) for _, w, h in lines)


def box_area(boxes: list[np.ndarray], shape: tuple[int, int]) -> float:
    """Fraction of the frame the boxes cover."""
    mask = np.zeros(shape, np.uint8)
    for b in boxes:
        cv2.fillPoly(mask, [np.asarray(b, dtype=np.int32).reshape(-1, 2)], 1)
    return float(mask.mean())


def text_stats(detections: list[tuple[str, float, np.ndarray]], shape: tuple[int, int],
               min_score: float) -> tuple[int, float]:
    """(words, fraction of the frame covered by text boxes)."""
    read = [(text, box) for text, score, box in detections if score >= min_score]
    return sum(len(text.split()) for text, _ in read), box_area([box for _, box in read], shape)


class OcrStage(RowStage):
    """Words and text-area share of burned-in text over a clip's sampled frames."""

    name = "ocr"
    reads = (QFRAMES,)
    adds = ("score_ocr_words", "score_text_area")
    drops = (QFRAMES,)  # the last reader of the sampled frames

    def __init__(self, cfg: OcrConfig):
        super().__init__(cfg)

    def setup(self) -> None:
        backend = self.cfg.backend
        if backend not in BACKENDS:
            raise KeyError(f"unknown OCR backend {backend!r}; choices: {', '.join(BACKENDS)}")
        self.ocr = BACKENDS[backend](self.cfg.det_side, self.cfg.threads)

    def process(self, row: Row) -> Row:
        frames = np.asarray(row[QFRAMES])
        if self.cfg.recognize == "near_threshold" and hasattr(self.ocr, "detect"):
            return self._detect_first(row, frames)
        return self._read(row, frames)

    def _detect_first(self, row: Row, frames: np.ndarray) -> Row:
        """Boxes on every frame; the words are read only when the estimate from the boxes is
        within [max_words / 2, 2 max_words] (outside, the stored score is the estimate, over all
        frames, so a dataset view can still re-threshold it)."""
        limit = self.cfg.max_words
        estimate, areas = 0.0, []
        for f in frames:
            lines = text_lines(self.ocr.detect(f), f.shape[0])
            estimate += estimate_words(lines)
            areas.append(box_area([b for b, _, _ in lines], f.shape[:2]))
        if limit / 2 <= estimate <= 2 * limit:
            return self._read(row, frames)
        row["score_ocr_words"] = float(round(estimate))
        row["score_text_area"] = float(np.mean(areas)) if areas else 0.0
        return row

    def _read(self, row: Row, frames: np.ndarray) -> Row:
        words, areas = 0, []
        for f in frames:
            n, area = text_stats(self.ocr(f), f.shape[:2], self.cfg.min_score)
            words += n
            areas.append(area)
        row["score_ocr_words"] = float(words)
        row["score_text_area"] = float(np.mean(areas)) if areas else 0.0
        return row
