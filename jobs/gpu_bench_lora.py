"""LoRA training step of the full-size HunyuanVideo transformer on one GPU: ours vs plain.

No Ray: torch, diffusers and peft only (carry the diffusers wheel to a bare GPU machine).
Random weights (weights="random" in the registry), bf16, gradient checkpointing, batch 1 at
544x960, 33 frames (9 x 34 x 60 = 18,360 video tokens after the VAE and 2x2 patches).

- plain: the diffusers + peft recipe: prompt padded to 256 tokens with its mask (the
  pipeline's default), default attention processor (masked SDPA: no flash kernels), AdamW
  with per-tensor kernels.
- ours: the prompt trimmed to its real tokens and the mask dropped (`set_unpadded_attention`,
  exact at batch 1), fused AdamW, LoRA in float32 under bf16 autocast as the Ray Train loop
  does; `--compile` adds torch.compile of each transformer block.

Both time the same step: forward, flow-matching loss, backward, optimizer step. Prints step
time, tokens/s, peak memory, TFLOP/s (3 x forward FLOPs counted by torch's FlopCounterMode)
and the speed-up. `--tiny` runs the same code on the tiny twin (CPU smoke test).

Usage: python jobs/gpu_bench_lora.py [--steps 5] [--warmup 2] [--real-tokens 60] [--compile]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_inputs(cfg: dict, frames: int, height: int, width: int, text_len: int, real_tokens: int, device, dtype):
    import torch

    g = torch.Generator().manual_seed(0)
    lat_shape = (1, cfg["in_channels"], (frames - 1) // 4 + 1, height // 8, width // 8)
    text = torch.randn(1, text_len, cfg["text_embed_dim"], generator=g)
    mask = torch.zeros(1, text_len, dtype=torch.bool)
    mask[0, :real_tokens] = True
    return {
        "x0": torch.randn(lat_shape, generator=g).to(device),
        "noise": torch.randn(lat_shape, generator=g).to(device),
        "text": text.to(device, dtype), "mask": mask.to(device),
        "pooled": torch.randn(1, cfg["pooled_projection_dim"], generator=g).to(device, dtype),
    }


def step_fn(model, inputs: dict, optimizer, dtype, device, trimmed: bool):
    import torch

    from medgen_ray.train.flow import flow_loss, noisy_latents, timesteps_for

    text, mask = inputs["text"], inputs["mask"]
    if trimmed:
        n = int(mask[0].sum())
        text, mask = text[:, :n], mask[:, :n]
    sigma = torch.tensor([0.7], device=device)
    x = noisy_latents(inputs["x0"], inputs["noise"], sigma)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        pred = model(hidden_states=x.to(dtype), timestep=timesteps_for(sigma), encoder_hidden_states=text,
                     encoder_attention_mask=mask, pooled_projections=inputs["pooled"],
                     guidance=torch.tensor([1000.0], device=device, dtype=dtype), return_dict=False)[0]
    loss = flow_loss(pred, inputs["x0"], inputs["noise"])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def forward_flops(model, inputs: dict, dtype, device, trimmed: bool) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    text, mask = inputs["text"], inputs["mask"]
    if trimmed:
        n = int(mask[0].sum())
        text, mask = text[:, :n], mask[:, :n]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        model(hidden_states=inputs["x0"].to(dtype), timestep=torch.tensor([700.0], device=device),
              encoder_hidden_states=text, encoder_attention_mask=mask, pooled_projections=inputs["pooled"],
              guidance=torch.tensor([1000.0], device=device, dtype=dtype), return_dict=False)
    return float(counter.get_total_flops())


def run_variant(name: str, args, device, dtype) -> dict:
    import torch
    from benchmarking import free_memory, median_seconds, peak_gib

    from medgen_ray.models.attention import set_unpadded_attention
    from medgen_ray.models.registry import load_transformer
    from medgen_ray.train.lora import add_lora

    torch.manual_seed(0)
    model = load_transformer("hunyuan_video/tiny" if args.tiny else "hunyuan_video", "random", dtype,
                             device=str(device)).to(device)
    model.enable_gradient_checkpointing()
    add_lora(model, args.rank, args.rank, ["to_q", "to_k", "to_v", "to_out.0"])
    params = [p for p in model.parameters() if p.requires_grad]
    ours = name == "ours"
    if ours:
        for p in params:
            p.data = p.data.float()  # fp32 master LoRA weights, bf16 compute under autocast
        set_unpadded_attention(model)
        optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01, fused=device.type == "cuda")
        if args.compile:
            for block in list(model.transformer_blocks) + list(model.single_transformer_blocks):
                block.compile()
    else:
        optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01, foreach=False)
    cfg = dict(model.config)
    inputs = make_inputs(cfg, args.frames, args.height, args.width, args.text_len, args.real_tokens, device, dtype)
    flops = forward_flops(model, inputs, dtype, device, trimmed=ours)
    step_s = median_seconds(lambda: step_fn(model, inputs, optimizer, dtype, device, ours), device, args.warmup,
                            args.steps)
    video_tokens = inputs["x0"].shape[2] * (inputs["x0"].shape[3] // cfg["patch_size"]) * \
        (inputs["x0"].shape[4] // cfg["patch_size"])
    text_tokens = args.real_tokens if ours else args.text_len
    out = {
        "variant": name, "step_s": step_s, "tokens_per_s": (video_tokens + text_tokens) / step_s,
        "video_tokens": video_tokens, "text_tokens": text_tokens,
        "peak_gib": peak_gib(device),
        "tflops": 3 * flops / step_s / 1e12, "forward_tflop": flops / 1e12,
    }
    model = optimizer = inputs = None  # freed before free_memory
    free_memory(device)
    return out


def main(argv: list[str] | None = None) -> dict:
    import torch
    from benchmarking import add_shape_args

    ap = argparse.ArgumentParser()
    add_shape_args(ap, 544, 960, 33)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="tiny twin on CPU: smoke test of this script")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    card = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    results = [run_variant("plain", args, device, dtype), run_variant("ours", args, device, dtype)]
    plain, ours = results
    print(f"LoRA step, HunyuanVideo transformer {'(tiny twin)' if args.tiny else '(full size, random weights)'}, "
          f"{args.height}x{args.width}x{args.frames}, batch 1, rank {args.rank}, on {card}")
    for r in results:
        mem = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "n/a"
        print(f"  {r['variant']:5s}: {r['step_s']:.3f} s/step, {r['tokens_per_s']:,.0f} tokens/s "
              f"({r['video_tokens']} video + {r['text_tokens']} text), peak {mem}, {r['tflops']:.1f} TFLOP/s")
    speedup = plain["step_s"] / ours["step_s"]
    print(f"  speed-up ours vs plain: {speedup:.2f}x (target >= 1.25x)")
    summary = {"card": card, "speedup": speedup, "results": results, "args": vars(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
