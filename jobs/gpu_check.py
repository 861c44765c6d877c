"""The whole device check in one prepared run: every `jobs/gpu_bench_*.py` at reduced counts, one
after another, each under its own time limit, everything written under one folder.

Sized for one H100/H200 in under 8 minutes (the limits below add up to 450 s plus start-up), so
a 15-minute device lease can run it and rerun it once. Reduced: fewer frames, steps and videos
than each script's defaults, and HunyuanVideo's family shape (544x960x33) for the multi-GPU and
cache figures instead of 720p x 129 (whose 50 steps take ~26 minutes on one H200). Each script
writes `<name>.json` (its figures) and `<name>.log` (its console) under --out; `summary.md` lists
what ran, what failed and what ran out of time. No Ray.

On the lent machine (no internet, python3 with torch but not diffusers/pydantic/av): carry the
wheels `scripts/gpu_wheels.sh` downloads, then
    python3 jobs/gpu_check.py --out $OUT
`--tiny` runs the same plan on the tiny twins on the CPU (a smoke test); `--dry-run` prints it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (script, reduced arguments, seconds allowed on one H100/H200)
PLAN: list[tuple[str, list[str], int]] = [
    ("gpu_bench_parallel", ["--model", "hunyuan_video", "--height", "544", "--width", "960", "--frames", "33",
                            "--steps", "10"], 150),
    ("gpu_bench_generate", ["--steps", "2", "--warmup", "1"], 90),
    ("gpu_bench_families", ["--steps", "1", "--warmup", "1"], 90),
    ("gpu_bench_lora", ["--steps", "2", "--warmup", "1"], 40),
    ("gpu_bench_videoscore", ["--videos", "2", "--frames", "33"], 40),
    ("gpu_bench_curate_models", ["--clips", "16", "--classify-frames", "2048", "--repeats", "1"], 20),
    ("gpu_bench_clip", ["--model", "clip/tiny", "--frames", "2048"], 20),
]
TINY = {  # the same plan on CPU twins: shapes the twins take, counts a 2-core machine runs in seconds
    "gpu_bench_parallel": ["--tiny", "--model", "hunyuan_video", "--height", "32", "--width", "64", "--frames", "9",
                           "--steps", "3", "--degrees", "1", "2"],
    "gpu_bench_generate": ["--tiny", "--steps", "1", "--warmup", "0", "--height", "32", "--width", "48", "--frames",
                           "5", "--text-len", "32", "--real-tokens", "9"],
    "gpu_bench_families": ["--tiny", "--steps", "1", "--warmup", "0", "--height", "32", "--width", "64",
                           "--frames", "5", "--real-tokens", "9", "--rank", "4"],
    "gpu_bench_lora": ["--tiny", "--steps", "1", "--warmup", "0", "--height", "32", "--width", "48", "--frames", "5",
                       "--text-len", "32", "--real-tokens", "9", "--rank", "4"],
    "gpu_bench_videoscore": ["--tiny", "--device", "cpu", "--videos", "1", "--height", "64", "--width", "64",
                             "--frames", "9", "--max-frames", "4"],
    "gpu_bench_curate_models": ["--tiny", "--device", "cpu", "--clips", "2", "--frames-per-clip", "3",
                                "--classify-frames", "16", "--repeats", "1"],
    "gpu_bench_clip": ["--model", "clip/tiny", "--device", "cpu", "--frames", "32", "--per-video", "8", "--batch",
                       "16"],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="folder for every script's json and log, and summary.md")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--only", nargs="*", help="run these scripts of the plan only")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    lines = ["| script | seconds | limit | result |", "| --- | --- | --- | --- |"]
    failed = 0
    for name, reduced, limit in PLAN:
        if args.only and name not in args.only:
            continue
        extra = TINY[name] if args.tiny else reduced
        json_flag = [] if name in ("gpu_bench_clip", "gpu_bench_curate_models", "gpu_bench_videoscore") else \
            ["--json", str(out / f"{name}.json")]
        cmd = [sys.executable, str(ROOT / "jobs" / f"{name}.py"), *extra, *json_flag]
        if args.dry_run:
            print(f"{limit:4d} s  {' '.join(cmd)}")
            continue
        t0 = time.perf_counter()
        with open(out / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    timeout=limit * (20 if args.tiny else 1)).returncode
                result = "ok" if rc == 0 else f"failed (exit {rc}, see {name}.log)"
            except subprocess.TimeoutExpired:
                rc, result = -1, f"ran out of its {limit} s"
        failed += rc != 0
        lines.append(f"| {name} | {time.perf_counter() - t0:.0f} | {limit} | {result} |")
        print(lines[-1], flush=True)
    if not args.dry_run:
        (out / "summary.md").write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
