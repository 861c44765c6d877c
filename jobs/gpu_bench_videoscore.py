"""VideoScore v1.1 throughput: videos per minute through the Med-VBench scorer at full size
(Mantis-Idefics2-8B's shape, random weights, bf16 on CUDA), 720p x 129-frame mp4s written here.

Runs with torch + transformers and no Ray, so it can run on a lent GPU machine.

  python jobs/gpu_bench_videoscore.py --device cuda --videos 8              # the README's figure
  python jobs/gpu_bench_videoscore.py --tiny --device cpu --videos 2 --height 64 --width 96 --frames 9
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> dict:
    from medgen_ray.core.encode import write_mp4
    from medgen_ray.evaluate.videoscore import load_videoscore

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="videoscore/tiny instead of the full-size network")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--frames", type=int, default=129)
    ap.add_argument("--max-frames", type=int, default=16, help="frames VideoScore sees (the paper: 16; v1.1: 48)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    scorer = load_videoscore("videoscore/tiny" if args.tiny else "videoscore/v1.1",
                             None if args.tiny else "random", args.device, args.max_frames)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/v.mp4"
        base = rng.integers(0, 255, (args.height, args.width + 2 * args.frames, 3), dtype=np.uint8)
        write_mp4(np.stack([base[:, 2 * i:2 * i + args.width] for i in range(args.frames)]), path, fps=24)
        scorer.score(path, "warm-up")
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i in range(args.videos):
            scores = scorer.score(path, f"a laparoscopic view of the gallbladder, take {i}")
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    out = {"model": scorer.name, "device": args.device, "videos": args.videos,
           "shape": f"{args.frames}x{args.height}x{args.width}", "max_frames": args.max_frames,
           "load_s": round(load_s, 1), "s_per_video": round(wall / args.videos, 3),
           "videos_per_min": round(60 * args.videos / wall, 2), "last_scores": scores}
    if args.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
