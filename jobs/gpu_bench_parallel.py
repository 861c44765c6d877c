"""One video over several GPUs, and step caching: end-to-end denoising time per family.

No Ray: torch and diffusers only, one process per GPU (torch.multiprocessing, NCCL; gloo for
`--tiny` on CPU ranks). Random weights (weights="random"), bf16, batch 1, at each family's
shape or --height/--width/--frames, `--steps` flow-matching Euler steps through the family's
own `model_inputs` (one transformer call per step: the guidance branch is not doubled, which is
what a guidance-distilled HunyuanVideo runs; Wan and HunyuanVideo-1.5 call twice per step in
their pipelines, so their real times are about twice the figure), then the VAE decode, tiled as
served: split across the ranks for the HunyuanVideo VAEs (models/tiled_decode.py), rank 0 for Wan.

Prints, per family:
- per degree (Ulysses over 1, 2, 4, 8 GPUs where the machine has them; "not measured: needs N
  GPUs" where not): seconds for all steps, speed-up over one GPU, peak memory of every rank, the
  final latents' and the decoded video's difference from one GPU's on the same seed, and the
  VAE decode's seconds and speed-up over one GPU;
- on one GPU, per step-cache kind: seconds, speed-up over uncached, and the final latents'
  relative difference from uncached (magcache is calibrated first, diffusers' calibration run);
- the one-GPU VAE decode's share of the one-GPU total.

Usage: python jobs/gpu_bench_parallel.py [--model hunyuan_video ...] [--steps 50] [--degrees 1 2 4 8]
       [--caches none first_block ...] [--height 720 --width 1280 --frames 129] [--json F] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHES = ["none", "first_block", "taylorseer", "pab", "magcache", "faster"]


def denoise(model, family, batch, steps: int, device, dtype, loop=None):
    """`steps` flow-matching Euler steps from the batch's latent noise; returns the final latents."""
    import torch

    from medgen_ray.models.video import model_inputs
    from medgen_ray.train.flow import timesteps_for

    x = batch["latent"].to(device, torch.float32)
    sigmas = torch.linspace(1.0, 0.0, steps + 1, device=device)
    with torch.no_grad():
        for i in range(steps):
            sigma = sigmas[i:i + 1]
            t = timesteps_for(sigma)
            if loop is not None:
                loop.current_timestep = t
            with model.cache_context("cond"):
                v = model(**model_inputs(family, model, x, t, batch, family.guidance, device, dtype),
                          return_dict=False)[0].float()
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x


def _setup(model_name: str, args, device, dtype):
    import torch
    from gpu_bench_families import make_batch

    from medgen_ray.models.families import family_of
    from medgen_ray.models.registry import load_transformer
    from medgen_ray.models.video import unpadded_attention

    family = family_of(model_name)
    name = f"{model_name}/tiny" if args.tiny else model_name
    torch.manual_seed(0)
    model = load_transformer(name, "random", dtype, device=str(device)).to(device).eval()
    unpadded_attention(model)
    h, w, f = (args.height or family.height, args.width or family.width, args.frames or family.frames)
    batch = make_batch(family, dict(model.config), f, h, w, args.real_tokens, padded=False, device=device)
    return family, model, batch, f"{h}x{w}x{f}"


def rank_main(rank: int, world: int, port: int, model_name: str, args, out: str) -> None:
    """One rank of a `world`-GPU run: time the denoising (rank 0 also decodes), write rank r's figures."""
    import torch
    from benchmarking import peak_gib, synchronize

    from medgen_ray.core.ranks import join_group, leave_group
    from medgen_ray.models.parallel import Degrees, context_parallel

    on_gpu = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda", rank) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    dtype = torch.bfloat16 if on_gpu else torch.float32
    if world > 1:
        join_group(rank, world, "127.0.0.1", port, 600)
    family, model, batch, shape = _setup(model_name, args, device, dtype)
    context_parallel(model, Degrees(world))
    denoise(model, family, batch, 1, device, dtype)  # warm-up (kernels, allocator)
    synchronize(device)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    latents = denoise(model, family, batch, args.steps, device, dtype)
    synchronize(device)
    result = {"rank": rank, "world": world, "shape": shape, "denoise_s": time.perf_counter() - t0,
              "peak_gib": peak_gib(device)}
    if rank == 0:
        torch.save(latents.cpu(), Path(out) / f"latents-{world}.pt")
    del model
    result.update(_decode(family, args, latents, rank, world, device, dtype, out))
    Path(out, f"rank{rank}-{world}.json").write_text(json.dumps(result))
    leave_group()


def _decode(family, args, latents, rank: int, world: int, device, dtype, out: str) -> dict:
    """The VAE decode of the final latents (the process's first: cold at every degree alike), tiled
    as the service decodes; split across the ranks where the family's VAE allows it
    (models/tiled_decode.py), else on rank 0 alone. Rank 0 keeps a strided sample of the video to
    compare with one GPU's."""
    import torch
    from benchmarking import synchronize

    from medgen_ray.models.tiled_decode import split_decode, splits_decode
    from medgen_ray.models.video import tiny_pipeline

    vae = (tiny_pipeline(family).vae if args.tiny else family.module().full_vae(family)).to(device, dtype).eval()
    vae.enable_tiling()  # as the service decodes (serve.vae_tiling)
    split = world > 1 and splits_decode(vae)
    if split:
        split_decode(vae, rank, world)
    if not (split or rank == 0):
        return {"decode_s": None, "decode_split": False}
    if device.type == "cuda":
        torch.cuda.empty_cache()
    synchronize(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        video = vae.decode(latents.to(dtype), return_dict=False)[0]
    synchronize(device)
    seconds = time.perf_counter() - t0
    if rank == 0:
        torch.save(video[:, :, ::2, ::8, ::8].float().cpu(), Path(out) / f"video-{world}.pt")
    return {"decode_s": seconds, "decode_split": split, "decode_tiles": getattr(vae, "split_decode_tiles", None)}


def run_degree(model_name: str, world: int, args, out: str) -> dict:
    import torch
    import torch.multiprocessing as mp

    from medgen_ray.core.ports import free_port

    if world == 1:
        rank_main(0, 1, 0, model_name, args, out)
    else:
        mp.spawn(rank_main, args=(world, free_port(), model_name, args, out), nprocs=world, join=True)
    ranks = [json.loads(Path(out, f"rank{r}-{world}.json").read_text()) for r in range(world)]
    one = torch.load(Path(out) / "latents-1.pt")
    mine = torch.load(Path(out) / f"latents-{world}.pt")
    video_one, video = torch.load(Path(out) / "video-1.pt"), torch.load(Path(out) / f"video-{world}.pt")
    return {"world": world, "shape": ranks[0]["shape"], "denoise_s": ranks[0]["denoise_s"],
            "peak_gib_per_rank": [r["peak_gib"] for r in ranks],
            "latents_rel_diff_vs_1": float((mine - one).abs().max() / one.abs().max()),
            "decode_s": ranks[0]["decode_s"], "decode_split": ranks[0]["decode_split"],
            "decode_tiles_per_rank": [r.get("decode_tiles") for r in ranks],
            "video_max_diff_vs_1": float((video - video_one).abs().max())}


def run_caches(model_name: str, args, out: str) -> list[dict]:
    """Every cache kind on one device."""
    import torch
    from benchmarking import synchronize

    from medgen_ray.models.video import FAMILY_ATTR, magcache_calibration, step_cache

    on_gpu = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    family, model, batch, _ = _setup(model_name, args, device, dtype)
    loop = SimpleNamespace(transformer=model, current_timestep=None, **{FAMILY_ATTR: family.name})
    params: dict = {}
    if "magcache" in args.caches:  # diffusers' calibration run first
        with magcache_calibration(model, args.steps) as ratios:
            denoise(model, family, batch, args.steps, device, dtype, loop)
        path = Path(out) / "magcache.json"
        path.write_text(json.dumps({family.name: {"cond": ratios[0]}}))
        params["mag_ratios"] = str(path)
    rows, base = [], None
    for kind in args.caches:
        if kind in family.unsupported_caches:
            rows.append({"cache": kind, "skipped": f"fails on {family.label} in diffusers 0.42"})
            continue
        with step_cache(loop, kind, steps=args.steps, **params):
            denoise(model, family, batch, 1, device, dtype, loop)  # warm-up
            synchronize(device)
            t0 = time.perf_counter()
            latents = denoise(model, family, batch, args.steps, device, dtype, loop)
            synchronize(device)
            seconds = time.perf_counter() - t0
        if kind == "none":
            base = (latents, seconds)
        row = {"cache": kind, "denoise_s": seconds}
        if base is not None:
            row.update(speedup=base[1] / seconds,
                       latents_rel_diff=float((latents - base[0]).abs().max() / base[0].abs().max()))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    import torch

    from medgen_ray.models.families import FAMILIES

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", nargs="*", default=["hunyuan_video"], choices=list(FAMILIES))
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--real-tokens", type=int, default=60)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--degrees", nargs="*", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--caches", nargs="*", default=CACHES, choices=CACHES)
    ap.add_argument("--tiny", action="store_true", help="tiny twins on CPU ranks (gloo): smoke test of this script")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if "none" not in args.caches:
        args.caches = ["none", *args.caches]
    on_gpu = torch.cuda.is_available() and not args.tiny
    available = torch.cuda.device_count() if on_gpu else max(args.degrees)
    card = torch.cuda.get_device_name() if on_gpu else "CPU"
    summary: dict = {"card": card, "gpus": available if on_gpu else 0, "args": vars(args), "families": {}}
    for model_name in args.model:
        with tempfile.TemporaryDirectory() as out:
            degrees = [run_degree(model_name, d, args, out) if d <= available else
                       {"world": d, "not_measured": f"needs {d} GPUs, this machine has {available}"}
                       for d in sorted(set([1, *args.degrees]))]
            caches = run_caches(model_name, args, out)
        one = degrees[0]["denoise_s"]
        for d in degrees:
            if "denoise_s" in d:
                d["speedup_vs_1"] = one / d["denoise_s"]
                d["decode_speedup_vs_1"] = degrees[0]["decode_s"] / d["decode_s"]
        decode = {"vae_decode_s": degrees[0]["decode_s"],
                  "share_of_one_gpu_total": degrees[0]["decode_s"] / (degrees[0]["decode_s"] + one)}
        summary["families"][model_name] = {"degrees": degrees, "caches": caches, **decode}
        print(f"{model_name} ({'tiny twin' if args.tiny else 'full size, random weights'}), {degrees[0]['shape']}, "
              f"{args.steps} steps, on {card}:")
        for d in degrees:
            if "not_measured" in d:
                print(f"  {d['world']} GPU(s): not measured ({d['not_measured']})")
                continue
            mem = ", ".join(f"{m:.1f}" for m in d["peak_gib_per_rank"] if m is not None) or "n/a"
            print(f"  {d['world']} rank(s): {d['denoise_s']:.2f} s ({d['speedup_vs_1']:.2f}x), peak GiB per rank "
                  f"[{mem}], latents vs 1 rank {d['latents_rel_diff_vs_1']:.1e}; VAE decode {d['decode_s']:.2f} s "
                  f"({d['decode_speedup_vs_1']:.2f}x, {'split across the ranks' if d['decode_split'] else 'rank 0'}), "
                  f"video vs 1 rank {d['video_max_diff_vs_1']:.1e}")
        for c in caches:
            print(f"  cache {c['cache']:11s}: " + (c["skipped"] if "skipped" in c else
                  f"{c['denoise_s']:.2f} s, {c.get('speedup', 1.0):.2f}x, latents vs uncached "
                  f"{c.get('latents_rel_diff', 0.0):.1e}"))
        print(f"  VAE decode: {decode['vae_decode_s']:.2f} s ({decode.get('share_of_one_gpu_total', 0):.0%} of the "
              "one-GPU total)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
