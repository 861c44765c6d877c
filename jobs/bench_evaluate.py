"""Med-VBench scoring throughput per dimension: videos/min, from the scoring stage's own
per-dimension timings (decode excluded), on generated videos. CPU with tiny/weight-free
models by default; `--real` takes the production model names with random weights on the
GPU (torch, diffusers-free; no Ray). A benchmark job, not a test.

Usage: python jobs/bench_evaluate.py [--videos 8] [--frames 33] [--size 256] [--real --device cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = ["evaluate.dino_model=dino/tiny", "evaluate.clip_model=clip/tiny", "evaluate.iqa_model=musiq/tiny",
        "evaluate.flow_model=farneback", "evaluate.aesthetic_model=aesthetic/vbench-tiny", "evaluate.interpolator_model=linear"]


def real_models(device: str) -> dict:
    """Production architectures (VBench's models) with seeded random weights (no download)."""
    from medgen_ray.config import FrameClassifierConfig
    from medgen_ray.curate.classify import MedicalFrameScorer
    from medgen_ray.evaluate.models import load_aesthetic, load_dino, load_flow, load_interpolator, load_iqa
    from medgen_ray.models.registry import load_model

    clip = load_model("clip/vit-b-32", "random", device, kind="clip")
    prompts = FrameClassifierConfig()
    return {"dino": load_dino("dino/vit-b-16", "random", device), "clip": clip,
            "iqa": load_iqa("musiq/spaq", "random", device), "flow": load_flow("raft/things", "random", device),
            "interpolator": load_interpolator("amt/s", "random", device),
            "aesthetic": load_aesthetic("aesthetic/vbench", "random", device),
            "medical": MedicalFrameScorer(clip, "clip/vit-b-32", None, prompts.medical_prompts, prompts.other_prompts)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--real", action="store_true", help="production architectures, random weights")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)


    from medgen_ray.config import load_config
    from medgen_ray.evaluate.score import VideoScoreStage
    from medgen_ray.samples.generator import Segment, VideoSpec, render_video
    from medgen_ray.samples.scenes import MEDICAL_SCENES

    cfg = load_config(None, [] if args.real else TINY).evaluate
    stage = VideoScoreStage(cfg, device=args.device)
    if args.real:
        stage.models = real_models(args.device)
    else:
        stage.setup()
    stage._ready = True
    folder = Path(tempfile.mkdtemp(prefix="medgen_bench_eval_"))
    totals = {d: 0.0 for d in cfg.dimensions}
    t_all = time.perf_counter()
    for i in range(args.videos):
        path = folder / f"v{i}.mp4"
        render_video(VideoSpec(f"v{i}", [Segment(MEDICAL_SCENES[i % 3], args.frames / 8)], width=args.size,
                               height=args.size * 3 // 4 // 16 * 16, fps=8, seed=i), path)
        row = stage.process({"video_id": f"v{i}", "model": "m", "prompt": "an endoscopic view", "video_uri": str(path)})
        for d in cfg.dimensions:
            totals[d] += row[f"time_{d}"]
    wall = time.perf_counter() - t_all
    print(f"Med-VBench scoring, {'production architectures (random weights)' if args.real else 'tiny/weight-free'} "
          f"models on {args.device}, {args.videos} videos of {args.frames} frames at {args.size} px wide")
    rates = {}
    for d in cfg.dimensions:
        rates[d] = 60.0 * args.videos / max(totals[d], 1e-9)
        print(f"  {d:24s} {rates[d]:10.1f} videos/min")
    print(f"  {'all (incl. decode)':24s} {60.0 * args.videos / wall:10.1f} videos/min")
    return {"videos_per_min": rates, "wall_s": wall}


if __name__ == "__main__":
    main()
