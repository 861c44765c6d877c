"""Ray Train LoRA loop vs a bare torch loop on the same tiny model and shards (CPU).

Both loops run the same step (`flow_step_loss` + `DdpStrategy.micro_step`) for the same number
of optimizer steps on one worker; the Ray loop also reads its rows through Ray Data and
reports checkpoints. Prints steps/s of each (steady state: median step time; mean: epoch starts included), the
wall time including start-up, and the overhead ratio; a third run streams every epoch through
Ray Data (train.cache_mb_per_worker=0) to show what the worker cache saves on small sets. A benchmark job, not a test.

Usage: python jobs/bench_train.py [--steps 200] [--clips 8] [--out bench_out]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BUCKETS = ("precompute.buckets=[{frames: 9, height: 32, width: 48}, {frames: 9, height: 48, width: 32}, "
           "{frames: 9, height: 48, width: 48}]")


def make_shards(out: Path, clips: int) -> Path:
    from medgen_ray.config import load_config
    from medgen_ray.runner import run_precompute
    from medgen_ray.samples.clipset import make_clip_dataset

    latents = out / "train_latents"
    if not (latents / "shards").exists():
        dataset = make_clip_dataset(out / "train_clips", n=clips)
        run_precompute(load_config(None, [
            "ray.num_cpus=2", f"precompute.dataset={dataset}", f"precompute.output={latents}", BUCKETS,
            "precompute.dtype=fp32", "precompute.pool.num_gpus=0", "precompute.pool.num_cpus=0.5",
            "precompute.max_sequence_length=128"]))
    return latents


def train_overrides(latents: Path, runs: Path, steps: int) -> list[str]:
    return ["ray.num_cpus=2", f"train.data={latents}", f"train.storage_path={runs}", "train.name=bench",
            "train.use_gpu=false", "train.num_workers=1", "train.cpus_per_worker=1", f"train.max_steps={steps}",
            f"train.checkpoint_every={steps}", "train.lr=1e-3", "train.warmup_steps=0", "train.lora.rank=8",
            "train.lora.alpha=8", "train.gradient_checkpointing=false", "train.validation.prompts=[]",
            f"train.log_every={steps}", "train.shuffle_buffer=8"]


def bare_loop(latents: Path, cfg) -> dict[str, float]:
    """The same step with rows read by pyarrow into memory once: no Ray anywhere."""
    import pyarrow.parquet as pq
    import torch

    from medgen_ray.models.registry import load_transformer
    from medgen_ray.train.loop import flow_step_loss
    from medgen_ray.train.lora import add_lora
    from medgen_ray.train.precompute import collate, decode_row
    from medgen_ray.train.strategy import DdpStrategy

    t0 = time.perf_counter()
    rows = pq.read_table(str(latents / "shards")).to_pylist()
    torch.manual_seed(cfg.seed)
    tr = load_transformer(cfg.model, None)
    add_lora(tr, cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets)
    strategy = DdpStrategy(tr, [p for p in tr.parameters() if p.requires_grad], cfg, world=1)
    times = []
    for step in range(cfg.max_steps):
        s = time.perf_counter()
        batch = collate([decode_row(rows[step % len(rows)])])
        gen = torch.Generator().manual_seed(step)
        loss = flow_step_loss(strategy.model, batch, cfg, gen, torch.device("cpu"), torch.float32)
        strategy.micro_step(loss)
        times.append(time.perf_counter() - s)
    return {"wall_s": time.perf_counter() - t0, "median_step_s": statistics.median(times),
            "mean_step_s": statistics.fmean(times)}


def ray_loop(latents: Path, runs: Path, steps: int, *extra: str) -> dict[str, float]:
    import json

    from medgen_ray.config import load_config
    from medgen_ray.runner import run_train

    shutil.rmtree(runs, ignore_errors=True)
    t0 = time.perf_counter()
    summary = run_train(load_config(None, [*train_overrides(latents, runs, steps), *extra]))
    wall = time.perf_counter() - t0
    history = json.loads((Path(summary["checkpoint"]) / "loop_state.json").read_text())["history"]
    # the first steps carry model load and the dataset's start: steady state is the median
    step_s = [h["step_s"] for h in history[1:]]
    return {"wall_s": wall, "median_step_s": statistics.median(step_s), "mean_step_s": statistics.fmean(step_s)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--out", default="bench_out")
    args = ap.parse_args()

    from medgen_ray.config import load_config

    out = Path(args.out)
    latents = make_shards(out, args.clips)
    cfg = load_config(None, train_overrides(latents, out / "train_runs", args.steps)).train
    bare = bare_loop(latents, cfg)
    ray = ray_loop(latents, out / "train_runs", args.steps)
    stream = ray_loop(latents, out / "train_runs", args.steps, "train.cache_mb_per_worker=0")
    print(f"LoRA step, tiny HunyuanVideo twin, CPU ({os.cpu_count()} cores), {args.steps} steps, {args.clips} clips")
    for name, r in (("bare torch loop", bare), ("Ray Train loop ", ray), ("Ray, no cache  ", stream)):
        print(f"  {name}: {1 / r['median_step_s']:7.1f} steps/s steady (median), {1 / r['mean_step_s']:7.1f} "
              f"steps/s mean (epoch starts included), wall {r['wall_s']:6.1f} s")
    print(f"  overhead ratio, steady (Ray / bare steps/s): {bare['median_step_s'] / ray['median_step_s']:.2f}")
    print(f"  overhead ratio, mean   (Ray / bare steps/s): {bare['mean_step_s'] / ray['mean_step_s']:.2f}")
    print(f"  without the worker cache (Ray Data restarts each epoch): mean ratio "
          f"{bare['mean_step_s'] / stream['mean_step_s']:.2f}")
    print(f"  wall ratio (bare wall / Ray wall, start-up included): {bare['wall_s'] / ray['wall_s']:.2f}")


if __name__ == "__main__":
    main()
