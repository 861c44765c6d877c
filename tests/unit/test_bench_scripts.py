"""The benchmark scripts run (correctness only; their timings are printed, never asserted)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "jobs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_clip_stage_benchmark_runs_on_cpu():
    out = _load("gpu_bench_clip").bench("clip/tiny", "cpu", frames=64, per_video=16, batch=32, repeats=1)
    assert out["frames"] == 64 and out["bare_frames_per_s"] > 0 and out["stage_frames_per_s"] > 0
