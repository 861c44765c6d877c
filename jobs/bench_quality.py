"""Clip quality stages on CPU: clips/s per stage, and for OCR and aesthetics the stage against a
bare model loop on the same frames (the stage's overhead). A benchmark job, not a test.

Usage: python jobs/bench_quality.py [--clips 12] [--aesthetic aesthetic/tiny] [--out bench_out]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--aesthetic", default="aesthetic/tiny")
    ap.add_argument("--out", default="bench_out")
    args = ap.parse_args()

    import numpy as np

    from medgen_ray.config import load_config
    from medgen_ray.core.batch import from_rows
    from medgen_ray.curate.aesthetic import AestheticStage
    from medgen_ray.curate.borders import BorderStage
    from medgen_ray.curate.captions import CaptionStage
    from medgen_ray.curate.clipframes import ClipFramesStage
    from medgen_ray.curate.motion import MotionStage
    from medgen_ray.curate.ocr import OcrStage
    from medgen_ray.curate.technical import TechnicalStage
    from medgen_ray.samples.generator import Segment, VideoSpec, render_video
    from medgen_ray.samples.scenes import MEDICAL_SCENES

    folder = Path(args.out) / "quality_clips"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.clips):
        p = folder / f"c{i:03d}.mp4"
        if not p.exists():
            seg = Segment(MEDICAL_SCENES[i % 3], 8, text_words=30 if i % 4 == 0 else 0)
            render_video(VideoSpec(f"c{i}", [seg], 640, 480, 25, letterbox=60 if i % 5 == 0 else 0, seed=i), p)
        rows.append({"video_id": f"c{i}", "clip_id": f"c{i}", "clip_uri": str(p), "t_start": 0.0, "t_end": 8.0,
                     "title": "Laparoscopic surgery lecture", "description": "", "transcript": ""})
    os.environ.pop("OPENAI_API_KEY", None)
    cfg = load_config(None, [f"curate.quality.aesthetic.model={args.aesthetic}"]).curate
    q = cfg.quality
    stages = [ClipFramesStage(q.clipframes), MotionStage(q.motion), BorderStage(q.borders, cfg.cut),
              AestheticStage(q.aesthetic), TechnicalStage(q.technical), OcrStage(q.ocr), CaptionStage(cfg.captions, str(Path(args.out) / "quality_ds"))]
    batch = from_rows(rows)
    frames_for_bare = None
    print(f"{args.clips} clips of 8 s, 640x480, CPU ({os.cpu_count()} cores), aesthetic model {args.aesthetic}")
    timings = {}
    for stage in stages:
        stage.setup()
        stage._ready = True
        if stage.name == "motion":
            frames_for_bare = [np.asarray(q) for q in batch["qframes"]]
        t = time.perf_counter()
        batch = stage(batch)
        timings[stage.name] = time.perf_counter() - t
        print(f"  {stage.name:11s} {args.clips / timings[stage.name]:8.2f} clips/s")

    ocr, aest = stages[5].ocr, stages[3].scorer
    t = time.perf_counter()
    for frames in frames_for_bare:
        for f in frames:
            ocr(f)
    bare_ocr = time.perf_counter() - t
    t = time.perf_counter()
    for frames in frames_for_bare:
        aest.score(frames)
    bare_aes = time.perf_counter() - t
    print(f"OCR: stage throughput / bare rapidocr loop on the same frames = {bare_ocr / timings['ocr']:.2f} "
          f"(stage {timings['ocr']:.2f} s, bare {bare_ocr:.2f} s)")
    print(f"aesthetic: stage throughput / bare CLIP+head loop on the same frames = "
          f"{bare_aes / timings['aesthetic']:.2f} (stage {timings['aesthetic']:.2f} s, bare {bare_aes:.2f} s)")


if __name__ == "__main__":
    main()
