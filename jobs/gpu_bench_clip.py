"""CLIP frames/s inside the classify stage vs a bare `encode_image` loop on the same device.

Runs with torch + open_clip and no Ray (the stage is a plain class), so it can run on a lent
GPU machine. Full-size architecture with random weights (no download): weights="random".

  python jobs/gpu_bench_clip.py --model clip/vit-b-32 --device cuda --frames 8192
  python jobs/gpu_bench_clip.py --model clip/tiny --device cpu --frames 256     # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarking.py beside this script


def bench(model: str, device: str, frames: int, per_video: int, batch: int, repeats: int = 3) -> dict:
    from medgen_ray.config import load_config
    from medgen_ray.core.batch import from_rows
    from medgen_ray.curate.classify import FrameClassifierStage

    cfg = load_config(None, [f"curate.classify.clip_model={model}", "curate.classify.weights=random",
                             f"curate.classify.pool.batch_size={max(1, batch // 32)}"]).curate
    stage = FrameClassifierStage(cfg, device=device)
    stage.setup()
    enc = stage.encoder
    size = enc.image_size
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, size=(frames, size, size, 3), dtype=np.uint8)
    n_videos = max(1, frames // per_video)
    rows = [{"video_id": f"v{i}", "frames": data[i * per_video : (i + 1) * per_video]} for i in range(n_videos)]
    used = n_videos * per_video

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, used, batch):
                enc.model.encode_image(enc.preprocess(data[i : i + batch]))

    def staged() -> None:
        stage(from_rows(rows))

    from benchmarking import best_seconds

    results = {name: used / best_seconds(fn, device, repeats)
               for name, fn in (("bare_encode_image", bare), ("classify_stage", staged))}
    out = {"model": model, "device": device, "frames": used, "batch": batch,
           "bare_frames_per_s": round(results["bare_encode_image"], 1),
           "stage_frames_per_s": round(results["classify_stage"], 1),
           "stage_over_bare": round(results["classify_stage"] / results["bare_encode_image"], 3)}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="clip/vit-b-32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=8192)
    ap.add_argument("--per-video", type=int, default=64, help="1-fps frames per source row")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    print(json.dumps(bench(args.model, args.device, args.frames, args.per_video, args.batch)))


if __name__ == "__main__":
    main()
