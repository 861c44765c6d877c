"""One denoising step of the full-size HunyuanVideo transformer on one GPU: ours vs plain.

No Ray: torch and diffusers only. Random weights, bf16, batch 1, inference (no grad), at
720x1280 and 129 frames by default (33 x 45 x 80 = 118,800 video tokens).

- plain: the pipeline's own call: prompt padded to 256 tokens with its mask, default
  attention processor (masked SDPA, no flash kernels).
- ours: the generator's call: prompt trimmed to its real tokens, the mask dropped
  (`set_unpadded_attention`, exact at batch 1); `--compile` adds torch.compile of each block.

Prints seconds per step (median), the ratio ours/plain (target <= 0.75) and peak memory.
`--tiny` runs the same code on the tiny twin (CPU smoke test).

Usage: python jobs/gpu_bench_generate.py [--steps 3] [--warmup 1] [--real-tokens 60] [--compile]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_variant(name: str, args, device, dtype) -> dict:
    import torch
    from benchmarking import free_memory, peak_gib

    from medgen_ray.models.attention import set_unpadded_attention
    from medgen_ray.models.registry import load_transformer

    torch.manual_seed(0)
    model = load_transformer("hunyuan_video/tiny" if args.tiny else "hunyuan_video", "random", dtype,
                             device=str(device)).to(device).eval()
    ours = name == "ours"
    if ours:
        set_unpadded_attention(model)
        if args.compile:
            for block in list(model.transformer_blocks) + list(model.single_transformer_blocks):
                block.compile()
    cfg = dict(model.config)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, cfg["in_channels"], (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8,
                          generator=g).to(device, dtype)
    text = torch.randn(1, args.text_len, cfg["text_embed_dim"], generator=g).to(device, dtype)
    mask = torch.zeros(1, args.text_len, dtype=torch.bool, device=device)
    mask[0, :args.real_tokens] = True
    if ours:
        text, mask = text[:, :args.real_tokens], mask[:, :args.real_tokens]
    pooled = torch.randn(1, cfg["pooled_projection_dim"], generator=g).to(device, dtype)
    kwargs = dict(hidden_states=latents, timestep=torch.tensor([900.0], device=device),
                  encoder_hidden_states=text, encoder_attention_mask=mask, pooled_projections=pooled,
                  guidance=torch.tensor([6000.0], device=device, dtype=dtype), return_dict=False)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        for _ in range(args.warmup):
            model(**kwargs)
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            model(**kwargs)
            sync()
            times.append(time.perf_counter() - t0)
    out = {"variant": name, "step_s": sorted(times)[len(times) // 2], "text_tokens": int(mask.shape[1]),
           "video_tokens": latents.shape[2] * (latents.shape[3] // cfg["patch_size"]) * (latents.shape[4] // cfg["patch_size"]),
           "peak_gib": peak_gib(device)}
    del model, latents, text
    free_memory(device)
    return out


def main(argv: list[str] | None = None) -> dict:
    import torch
    from benchmarking import add_shape_args

    ap = argparse.ArgumentParser()
    add_shape_args(ap, 720, 1280, 129)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    card = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    plain, ours = run_variant("plain", args, device, dtype), run_variant("ours", args, device, dtype)
    print(f"denoising step, HunyuanVideo transformer {'(tiny twin)' if args.tiny else '(full size, random weights)'}, "
          f"{args.height}x{args.width}x{args.frames}, batch 1, on {card}")
    for r in (plain, ours):
        mem = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "n/a"
        print(f"  {r['variant']:5s}: {r['step_s']:.3f} s/step ({r['video_tokens']} video + {r['text_tokens']} text "
              f"tokens), peak {mem}")
    ratio = ours["step_s"] / plain["step_s"]
    print(f"  ours / plain: {ratio:.3f} (target <= 0.75)")
    summary = {"card": card, "ratio": ratio, "results": [plain, ours], "args": vars(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
