"""Medical frame classifier on CLIP image embeddings.

Zero-shot out of the box (prompt ensembles: mean text embedding per class, softmax over the
two cosines at CLIP's logit scale), or a linear probe trained on labelled frames
(`medgen classifier train-frames`), which is what the paper did. Also emits the adjacent-frame
cosine similarities that temporal segmentation uses to find scene cuts.
"""

from __future__ import annotations

import json

import numpy as np

from medgen_ray.config import CurateConfig
from medgen_ray.core.batch import Batch, ensure_status, is_active
from medgen_ray.core.cluster import pick_device
from medgen_ray.core.decode import sample_chunks
from medgen_ray.core.errors import DATA_ERRORS
from medgen_ray.curate.dedup import frame_hashes
from medgen_ray.models.linear_probe import load_probe, prototypes, softmax
from medgen_ray.models.registry import load_model
from medgen_ray.schema import (
    DAMAGED_SPANS,
    ERROR,
    FRAME_FEATS,
    FRAME_HASHES,
    FRAME_SCORES,
    FRAME_SIMS,
    FRAME_TIMES,
    FRAMES,
    REJECT_STAGE,
    SOURCE_URI,
    WINDOWED,
)

LOGIT_SCALE = 100.0


class MedicalFrameScorer:
    """P(medical) of CLIP image embeddings: the linear probe when one is given, else zero-shot
    over the two prompt ensembles. Curation's frame classifier and Med-VBench's
    medical_frames share it, so both judge frames by the same rule."""

    def __init__(self, encoder, clip_model: str, probe_path: str | None, medical_prompts: list[str],
                 other_prompts: list[str]):
        self.probe = load_probe(probe_path, expect_embedder=clip_model) if probe_path else None
        if self.probe is None:
            self.class_text = prototypes(encoder.encode_texts, [medical_prompts, other_prompts])

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        if self.probe is not None:
            return self.probe.predict_proba(feats.astype(np.float64)).astype(np.float32)
        return softmax(LOGIT_SCALE * feats @ self.class_text.T)[:, 0].astype(np.float32)


def row_signals(feats: np.ndarray, frames: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What segmentation and dedup keep of a source's frames: adjacent-frame similarities of the
    unit CLIP features, the features as float16, and (given the frames) their DCT hashes."""
    sims = np.sum(feats[1:] * feats[:-1], axis=1).astype(np.float32)
    return sims, feats.astype(np.float16), None if frames is None else frame_hashes(frames)


class FrameClassifierStage:
    """P(medical) of every sampled frame and adjacent-frame CLIP similarities, batched over rows."""

    name = "classify"
    reads = (FRAMES, FRAME_TIMES, WINDOWED, SOURCE_URI)
    adds = (FRAME_SCORES, FRAME_SIMS, FRAME_FEATS, FRAME_HASHES, DAMAGED_SPANS)
    drops = (FRAMES,)

    def __init__(self, cfg: CurateConfig, device: str | None = None):
        self.cfg = cfg
        self.device = device or pick_device(cfg.classify.pool.num_gpus)
        self.encoder = None

    def setup(self) -> None:
        c = self.cfg.classify
        self.encoder = load_model(c.clip_model, c.weights, self.device, kind="clip")
        self.score = MedicalFrameScorer(self.encoder, c.clip_model, c.probe_path, c.medical_prompts, c.other_prompts)

    def __call__(self, batch: Batch) -> Batch:
        if self.encoder is None:
            self.setup()
        batch = ensure_status(batch)
        n = len(batch[FRAMES])
        active = is_active(batch)
        lengths = [len(batch[FRAMES][i]) if active[i] else 0 for i in range(n)]
        scores = np.empty(n, dtype=object)
        sims = np.empty(n, dtype=object)
        feats_out = np.empty(n, dtype=object)
        hashes = np.empty(n, dtype=object)
        if sum(lengths):
            stacked = np.concatenate([batch[FRAMES][i] for i in range(n) if lengths[i]])
            feats = self._encode(stacked)
            probs = self.score(feats)
        offset = 0
        for i in range(n):
            k = lengths[i]
            if k == 0:
                scores[i], sims[i] = np.zeros(0, np.float32), np.zeros(0, np.float32)
                feats_out[i] = np.zeros((0, 0), np.float16)
                hashes[i] = np.zeros(0, np.uint64)
                continue
            sims[i], feats_out[i], hashes[i] = row_signals(feats[offset : offset + k], batch[FRAMES][i])
            scores[i] = probs[offset : offset + k]
            offset += k
        out = {k: v for k, v in batch.items() if k != FRAMES}
        out[FRAME_SCORES], out[FRAME_SIMS], out[FRAME_FEATS], out[FRAME_HASHES] = scores, sims, feats_out, hashes
        windowed = [bool(active[i]) and bool(w) for i, w in enumerate(batch.get(WINDOWED, np.zeros(n, bool)))]
        if any(windowed):
            # Ray hands equal-shaped cells as one tensor (all times empty: (n, 0)) and text as fixed-
            # width strings: per-row objects, so a window's arrays and an error message fit
            for col in (FRAME_TIMES, DAMAGED_SPANS, ERROR, REJECT_STAGE):
                cells = np.empty(n, dtype=object)
                cells[:] = [out[col][i] if col in out else "" for i in range(n)]
                out[col] = cells
            for i in range(n):
                if windowed[i]:
                    self._windowed(out, i)
        return out

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        return self.encoder.encode_images(frames, batch_size=max(1, self.cfg.classify.pool.batch_size * 32))

    def _windowed(self, out: Batch, i: int) -> None:
        """Row i, a long source: decode it here, one window of frames at a time, and keep only
        what segmentation needs (times, scores, similarities, features, hashes)."""
        s = self.cfg.sample
        damaged: list[list[float]] = []
        times, feats, probs, hashes = [], [], [], []
        try:
            for frames, t in sample_chunks(str(out[SOURCE_URI][i]), s.fps, self.encoder.image_size,
                                           self.encoder.image_size, max(1, int(s.window_s * s.fps)),
                                           threads=s.decode_threads, damaged=damaged):
                f = self._encode(frames)
                times.append(t)
                feats.append(f)
                probs.append(self.score(f))
                hashes.append(frame_hashes(frames))
        except DATA_ERRORS as exc:
            out[REJECT_STAGE][i], out[ERROR][i] = self.name, f"{self.name}: {exc or type(exc).__name__}"
            return
        if not times:
            out[REJECT_STAGE][i] = self.name
            out[ERROR][i] = f"{self.name}: no frame decoded" + (f" (damaged from {damaged[0][0]:g} s)" if damaged else "")
            return
        out[FRAME_TIMES][i], out[FRAME_SCORES][i] = np.concatenate(times), np.concatenate(probs)
        out[FRAME_SIMS][i], out[FRAME_FEATS][i], _ = row_signals(np.concatenate(feats), None)
        out[FRAME_HASHES][i] = np.concatenate(hashes)
        out[DAMAGED_SPANS][i] = json.dumps(damaged) if damaged else ""
