"""Frames/s of the curation's model stages at production sizes, each beside a bare model loop on
the same frames: classify (CLIP ViT-B/32 on 1-fps 224 px frames), aesthetic (CLIP ViT-L/14 +
the LAION head on the quality frames, 640 px long side), technical (its configured metric) and
OCR (rapidocr: onnxruntime on the CPU unless an onnxruntime GPU build is installed; said in the
output). Random weights (weights=random), torch only, no Ray: a short script for a lent GPU
machine. `--tiny` runs the twins on the CPU (the test of this script).

  python jobs/gpu_bench_curate_models.py --device cuda
  python jobs/gpu_bench_curate_models.py --tiny --device cpu --clips 2     # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarking.py beside this script


def bench(device: str, tiny: bool, clips: int, frames_per_clip: int, classify_frames: int,
          repeats: int = 3) -> dict:
    from medgen_ray.config import load_config
    from medgen_ray.core.batch import from_rows
    from medgen_ray.curate.aesthetic import AestheticStage
    from medgen_ray.curate.classify import FrameClassifierStage
    from medgen_ray.curate.ocr import OcrStage
    from medgen_ray.curate.technical import TechnicalStage

    clip_model, aesthetic = ("clip/tiny", "aesthetic/tiny") if tiny else ("clip/vit-b-32", "aesthetic/laion")
    cfg = load_config(None, [f"curate.classify.clip_model={clip_model}", "curate.classify.weights=random",
                             f"curate.quality.aesthetic.model={aesthetic}", "curate.quality.aesthetic.weights=random"]).curate
    q = cfg.quality
    rng = np.random.default_rng(0)
    out: dict = {"device": device, "tiny": tiny, "stages": {}}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()

    # classify: 1-fps frames of source videos at the CLIP input size
    cls = FrameClassifierStage(cfg, device=device)
    cls.setup()
    size = cls.encoder.image_size
    data = rng.integers(0, 255, size=(classify_frames, size, size, 3), dtype=np.uint8)
    per_video = max(1, classify_frames // 8)
    rows = [{"video_id": f"v{i}", "frames": data[i * per_video:(i + 1) * per_video]} for i in range(8)]
    used = per_video * 8

    def bare_clip() -> None:
        with torch.inference_mode():
            for i in range(0, used, 256):
                cls.encoder.model.encode_image(cls.encoder.preprocess(data[i:i + 256]))

    out["stages"]["classify"] = _pair(lambda: cls(from_rows(rows)), bare_clip, used, device, repeats)

    # quality stages: uniformly sampled frames of each clip, long side 640 (4:3)
    h, w = (q.clipframes.max_side * 3 // 4, q.clipframes.max_side)
    qframes = [rng.integers(0, 255, size=(frames_per_clip, h, w, 3), dtype=np.uint8) for _ in range(clips)]
    qrows = [{"clip_id": f"c{i}", "qframes": f} for i, f in enumerate(qframes)]
    n = clips * frames_per_clip
    aes = AestheticStage(q.aesthetic, device=device)
    aes.setup()
    aes._ready = True
    out["stages"]["aesthetic"] = _pair(lambda: aes(from_rows(qrows)),
                                       lambda: [aes.scorer.score(f) for f in qframes], n, device, repeats)
    tech = TechnicalStage(q.technical, device=device)
    tech.setup()
    tech._ready = True
    out["stages"]["technical"] = _pair(lambda: tech(from_rows(qrows)),
                                       lambda: [tech.fn(f) for f in qframes], n, device, repeats)
    out["stages"]["technical"]["metric"] = q.technical.metric
    ocr = OcrStage(q.ocr)
    ocr.setup()
    ocr._ready = True
    out["stages"]["ocr"] = _pair(lambda: ocr(from_rows(qrows)),
                                 lambda: [ocr.ocr(x) for f in qframes for x in f], n, device, 1)
    import onnxruntime

    out["stages"]["ocr"]["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return out


def _pair(stage: Callable[[], object], bare: Callable[[], object], frames: int, device: str, repeats: int) -> dict:
    from benchmarking import best_seconds

    t_stage, t_bare = best_seconds(stage, device, repeats), best_seconds(bare, device, repeats)
    return {"frames": frames, "stage_frames_per_s": round(frames / t_stage, 1),
            "bare_frames_per_s": round(frames / t_bare, 1), "stage_over_bare": round(t_bare / t_stage, 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny twins (CPU smoke run)")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--frames-per-clip", type=int, default=5)
    ap.add_argument("--classify-frames", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    out = bench(args.device, args.tiny, args.clips, args.frames_per_clip, args.classify_frames, args.repeats)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
