"""Generation latency through HTTP (Ray Serve, sync endpoint) against a direct in-process call
on the same tiny pipeline, same request, same thread count. A benchmark job, not a test.

The direct side runs `VideoGenerator.generate` + mp4 encoding in this process (what the
service does inside its replica); the HTTP side is POST /v1/videos/sync on 127.0.0.1, so the
difference is Serve's routing, the job record writes, the progress updates and the transfer.

Usage: python jobs/bench_serve.py [--runs 5] [--steps 20] [--size 128] [--frames 17]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
import urllib.request

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=17)
    args = ap.parse_args()

    from ray import serve

    from medgen_ray.config import load_config
    from medgen_ray.core.encode import float_mp4_bytes
    from medgen_ray.serve.generator import VideoGenerator
    from medgen_ray.serve.launch import start_serve
    from medgen_ray.serve.schema import VideoRequest, resolved

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tempfile.mkdtemp(prefix="medgen_bench_serve_")
    app = load_config(None, [
        "ray.num_cpus=2", f"serve.port={port}", f"serve.store={store}", "serve.generator.num_gpus=0",
        "serve.generator.num_cpus=1", "serve.generator.threads=1",
        f"serve.limits.sync_max_steps={args.steps}", "serve.fps=8"])
    body = {"prompt": "an endoscopic view of the stomach", "height": args.size, "width": args.size,
            "num_frames": args.frames, "steps": args.steps, "seed": 1}

    gen = VideoGenerator(app.serve)
    gen.setup()
    request = resolved(VideoRequest(**body), app.serve)
    direct = []
    for _ in range(args.runs + 1):
        t0 = time.perf_counter()
        float_mp4_bytes(gen.generate(request), app.serve.fps)
        direct.append(time.perf_counter() - t0)
    del gen

    url = start_serve(app)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=5)
            break
        except OSError:
            time.sleep(0.5)
    http = []
    for _ in range(args.runs + 1):
        req = urllib.request.Request(f"{url}/v1/videos/sync", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            assert r.status == 200 and len(r.read()) > 1000
        http.append(time.perf_counter() - t0)
    serve.shutdown()
    d, h = statistics.median(direct[1:]), statistics.median(http[1:])  # first of each: warm-up
    print(f"tiny HunyuanVideo twin, {args.size}x{args.size}x{args.frames}, {args.steps} steps, 1 torch thread, "
          f"CPU ({os.cpu_count()} cores), median of {args.runs}")
    print(f"  direct call (generate + mp4) : {d:.3f} s")
    print(f"  HTTP sync endpoint           : {h:.3f} s")
    print(f"  ratio HTTP / direct          : {h / d:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
