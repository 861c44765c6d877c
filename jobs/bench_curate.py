"""Curation throughput and driver memory, in one run (a benchmark job, not a test).

Prints:
  - raw PyAV decode throughput of the sample corpus (every frame decoded, nothing converted;
    one process per core, the machine's decode capacity): source-video-seconds per second;
  - the curation pipeline's source-video-seconds per second on a local Ray with tiny models,
    on the same corpus at 1x and at 10x (the corpus repeated under other names);
  - their ratio (target >= 0.5), and the driver's peak RSS at 1x and 10x (target: < 20% growth);
  - for one long source (--long-minutes, 640x480 at 12 fps): the largest row leaving sampling and
    leaving the classifier, windowed (sample.window_s, the default) and not, and the driver's
    peak RSS and wall time of the pipeline on it.

Usage: python jobs/bench_curate.py [--videos 10] [--seconds 30] [--long-minutes 20] [--out bench_out]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _decode(path: str) -> float:
    from medgen_ray.core.decode import decode_all

    return decode_all(path, threads=1)[1]


def raw_decode(files: list[str], workers: int) -> tuple[float, float]:
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        seconds = sum(pool.map(_decode, files))
    return seconds, time.perf_counter() - t


def replicate(corpus: Path, dest: Path, scale: int) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for k in range(scale):
        for f in corpus.glob("*.mp4"):
            os.link(f, dest / f"r{k:02d}_{f.name}")
            side = f.with_suffix(".info.json")
            if side.exists():
                os.link(side, dest / f"r{k:02d}_{side.name}")
    return dest


# A 2-core budget: the tiny-model actors get a quarter core, decode/cut tasks three quarters each, so
# two decodes run beside it; one FFmpeg thread per task (two tasks already fill the cores).
CPU_SPLIT = ["curate.classify.pool.num_cpus=0.25", "curate.quality.pool.num_cpus=0.25", "curate.task_num_cpus=0.75",
             "curate.sample.decode_threads=1", "curate.quality.aesthetic.model=aesthetic/tiny"]


def child(folder: str, out: str, probe: str, tau: float, quality: bool) -> None:
    """One pipeline run in a fresh driver process: prints JSON with wall time and peak RSS."""
    from medgen_ray.config import load_config
    from medgen_ray.core.cluster import init_ray
    from medgen_ray.runner import run_curate

    app = load_config(None, [f"curate.output={out}", f"curate.source.uris=[{folder}]", "ray.num_cpus=2",
                             "curate.classify.clip_model=clip/tiny", f"curate.classify.probe_path={probe}",
                             f"curate.segment.similarity_threshold={tau}", f"curate.quality.enabled={quality}",
                             *CPU_SPLIT])
    init_ray(app.ray)
    t = time.perf_counter()
    summary = run_curate(app)
    wall = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"wall_s": wall, "driver_peak_rss_mb": rss_mb, "clips": summary["clips_kept"],
                                  "inputs": summary["inputs"]}))


def row_bytes(row_batch) -> int:
    """The largest row of a batch: bytes of its array columns."""
    import numpy as np

    n = len(next(iter(row_batch.values())))
    return max(sum(np.asarray(v[i]).nbytes for v in row_batch.values() if isinstance(v[i], np.ndarray))
               for i in range(n))


def long_source_rows(path: Path, probe: str, window_s: float) -> tuple[int, int]:
    """(largest row out of sampling, out of the classifier) for one source, stages in-process."""
    from medgen_ray.config import load_config
    from medgen_ray.core.batch import from_rows
    from medgen_ray.curate.classify import FrameClassifierStage
    from medgen_ray.curate.container import ProbeStage
    from medgen_ray.curate.sampling import SampleStage
    from medgen_ray.models.registry import TINY_CLIP_CFG

    cfg = load_config(None, ["curate.classify.clip_model=clip/tiny", f"curate.classify.probe_path={probe}",
                             f"curate.sample.window_s={window_s}"]).curate
    batch = ProbeStage(cfg)(from_rows([{"video_id": path.stem, "source_uri": str(path), "reject_stage": "",
                                        "reject_reason": "", "error": ""}]))
    sampled = SampleStage(cfg.sample, TINY_CLIP_CFG["vision_cfg"]["image_size"])(batch)
    classified = FrameClassifierStage(cfg, device="cpu")(sampled)
    return row_bytes(sampled), row_bytes(classified)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--scales", default="1,10")
    ap.add_argument("--long-minutes", type=float, default=20.0, help="one long source (0: skip)")
    ap.add_argument("--quality", action="store_true",
                    help="include the clip quality stages (borders, OCR, motion); off: the core pipeline")
    ap.add_argument("--child", nargs=5, metavar=("FOLDER", "OUT", "PROBE", "TAU", "QUALITY"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], float(args.child[3]), args.child[4] == "True")
        return

    from medgen_ray.core.decode import probe_video
    from medgen_ray.curate.classifiers import train_frame_probe
    from medgen_ray.demo import calibrate_tau, write_frame_training
    from medgen_ray.samples.generator import make_corpus

    out = Path(args.out)
    corpus = out / "corpus"
    make_corpus(corpus, args.videos, args.seconds, seed=0)
    probe = out / "frames.probe.npz"
    if not probe.exists():
        train_frame_probe(str(write_frame_training(out / "train", 60, 2000)), "clip/tiny", str(probe))
    tau = calibrate_tau("clip/tiny", 3000)["tau"]
    files = sorted(str(p) for p in corpus.glob("*.mp4"))
    video_s = sum(probe_video(f).duration for f in files)
    workers = os.cpu_count() or 1
    dec_s, dec_wall = raw_decode(files, workers)
    raw_rate = dec_s / dec_wall
    print(f"corpus: {len(files)} videos, {video_s:.0f} s of video; quality stages "
          f"{'on' if args.quality else 'off (core pipeline)'}")
    print(f"raw PyAV decode ({workers} processes): {raw_rate:8.1f} video-s/s  ({dec_wall:.2f} s wall)")
    results = {}
    for scale in [int(s) for s in args.scales.split(",")]:
        folder = replicate(corpus, out / f"x{scale}", scale)
        ds_out = out / f"dataset_x{scale}"
        shutil.rmtree(ds_out, ignore_errors=True)
        proc = subprocess.run([sys.executable, __file__, "--child", str(folder), str(ds_out), str(probe), str(tau),
                               str(args.quality)],
                              capture_output=True, text=True, check=True)
        res = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
        res["video_s"] = video_s * scale
        res["rate"] = res["video_s"] / res["wall_s"]
        results[scale] = res
        print(f"pipeline x{scale:<3d} {res['rate']:8.1f} video-s/s  ({res['wall_s']:.1f} s wall incl. actor start, "
              f"{res['clips']} clips)  ratio to raw decode {res['rate'] / raw_rate:.2f}  "
              f"driver peak RSS {res['driver_peak_rss_mb']:.0f} MB")
    if 1 in results and 10 in results:
        growth = results[10]["driver_peak_rss_mb"] / results[1]["driver_peak_rss_mb"] - 1
        print(f"driver peak RSS growth 1x -> 10x: {growth * 100:+.1f}% (target < 20%)")
        print(f"ratio at 10x: {results[10]['rate'] / raw_rate:.2f} (target >= 0.5)")
    if args.long_minutes > 0:
        from medgen_ray.samples.generator import Segment, VideoSpec, render_video

        folder = out / "long"
        folder.mkdir(exist_ok=True)
        src = folder / "lecture.mp4"
        scenes = ["endoscopy", "slide", "ultrasound", "talking_head", "anatomy", "game"]
        n = max(1, int(args.long_minutes * 2))
        render_video(VideoSpec("lecture", [Segment(scenes[i % 6], 30) for i in range(n)], 640, 480, 12, seed=3), src)
        minutes = probe_video(str(src)).duration / 60
        for label, window in (("windowed (sample.window_s=300)", 300.0), ("unwindowed", 1e9)):
            sampled, classified = long_source_rows(src, str(probe), window)
            print(f"long source {minutes:.0f} min, {label}: largest row out of sampling {sampled / 2**20:.1f} MiB, "
                  f"out of the classifier {classified / 2**20:.2f} MiB (tiny CLIP: 64 px frames, 64-d features)")
        ds_out = out / "dataset_long"
        shutil.rmtree(ds_out, ignore_errors=True)
        proc = subprocess.run([sys.executable, __file__, "--child", str(folder), str(ds_out), str(probe), str(tau),
                               str(args.quality)], capture_output=True, text=True, check=True)
        res = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
        print(f"long source pipeline: {res['wall_s']:.1f} s wall, {res['clips']} clips, driver peak RSS "
              f"{res['driver_peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
