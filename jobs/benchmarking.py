"""Small pieces the GPU benchmark scripts share (they run without Ray on a bare GPU machine)."""

from __future__ import annotations

import argparse
import gc
import time
from typing import Callable


def add_shape_args(ap: argparse.ArgumentParser, height: int, width: int, frames: int) -> None:
    """Video shape and prompt-length flags, with the padded vs real prompt lengths compared."""
    ap.add_argument("--height", type=int, default=height)
    ap.add_argument("--width", type=int, default=width)
    ap.add_argument("--frames", type=int, default=frames)
    ap.add_argument("--text-len", type=int, default=256, help="padded prompt length (the pipeline's default)")
    ap.add_argument("--real-tokens", type=int, default=60, help="real prompt tokens (a MedVideoCap caption)")


def free_memory(device) -> None:
    """Drop what a finished variant left on the accelerator before the next one is measured."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_gib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def synchronize(device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed_calls(fn: Callable[[], object], device, warmup: int, repeats: int) -> list[float]:
    """Seconds of `repeats` calls after `warmup` untimed ones, the device synchronised around
    each; the CUDA peak-memory counter is reset after the warm-up (read it with `peak_gib`)."""
    import torch

    for _ in range(warmup):
        fn()
    synchronize(device)
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return times


def best_seconds(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Fastest of `repeats` timed calls after one warm-up call (kernels, allocator, autotune)."""
    return min(timed_calls(fn, device, 1, repeats))


def median_seconds(fn: Callable[[], object], device, warmup: int, steps: int) -> float:
    """Median of `steps` timed calls after `warmup` untimed ones."""
    times = timed_calls(fn, device, warmup, steps)
    return sorted(times)[len(times) // 2]
