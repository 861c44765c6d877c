"""Per model family, one LoRA training step and one denoising step of the full-size transformer
on one GPU: ours vs plain diffusers + peft, with peak memory.

No Ray: torch, diffusers and peft only. Random weights (weights="random"), bf16, batch 1, at
each family's common shape (its spec's default height x width x frames, or --height/--width/
--frames). Inputs are built from the transformer's config and go through the family's own
`model_inputs` (the training loop's path), so both variants see the family's real input layout.

- plain: the prompt padded to the pipeline's length with its mask (256 Llama tokens for
  HunyuanVideo, 1000 Qwen + 256 glyph tokens for HunyuanVideo-1.5, 512 UMT5 for Wan), default
  attention, LoRA in bf16, per-tensor AdamW.
- ours: the prompt trimmed to its real tokens, the family's `unpadded_attention` (HunyuanVideo
  only; the others attend a padded or masked prompt by design), fp32 LoRA under bf16 autocast,
  fused AdamW. Wan pads to 512 in both (its training contract): there the difference is the
  optimizer and LoRA precision alone.

Targets (as for HunyuanVideo): LoRA step >= 1.25x plain, denoising step <= 0.75x plain's time.
`--tiny` runs the same code on the tiny twins on the CPU (a smoke test of this script).

Usage: python jobs/gpu_bench_families.py [--model wan2.1-t2v-1.3b ...] [--steps 3] [--real-tokens 60]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PLAIN_TEXT = {"text_embeds": 256, "text_embeds_2": 256}  # padded lengths where the family does not fix one


def make_batch(family, cfg: dict, frames: int, height: int, width: int, real_tokens: int, padded: bool, device):
    """A collate()-shaped batch for the transformer `cfg` of `family`."""
    import torch

    g = torch.Generator().manual_seed(0)
    patch = cfg.get("patch_size", 1)
    patch = patch[-1] if isinstance(patch, (list, tuple)) else patch
    ratio = family.spatial // patch  # the VAE's compression (latent pixels per side)
    lat = (1, cfg["out_channels"], (frames - 1) // family.temporal + 1, height // ratio, width // ratio)
    batch = {"latent": torch.randn(lat, generator=g)}
    dims = {"text_embeds": cfg.get("text_embed_dim") or cfg.get("text_dim"), "text_embeds_2": cfg.get("text_embed_2_dim")}
    masks = {"text_embeds": "text_mask", "text_embeds_2": "text_mask_2"}
    for key, dim in dims.items():
        if not dim:
            continue
        length = max(family.text_len, PLAIN_TEXT[key]) if padded else real_tokens
        mask = torch.zeros(1, length, dtype=torch.bool)
        mask[0, :real_tokens] = True
        batch[key] = torch.randn(1, length, dim, generator=g) * mask.unsqueeze(-1)
        batch[masks[key]] = mask
    if cfg.get("pooled_projection_dim"):
        batch["pooled"] = torch.randn(1, cfg["pooled_projection_dim"], generator=g)
    return {k: v.to(device) for k, v in batch.items()}


def run_variant(model_name: str, ours: bool, args, device, dtype) -> dict:
    import torch
    from benchmarking import median_seconds, peak_gib

    from medgen_ray.models.families import family_of
    from medgen_ray.models.registry import load_transformer
    from medgen_ray.models.video import model_inputs, unpadded_attention
    from medgen_ray.train.flow import flow_loss, noisy_latents, timesteps_for
    from medgen_ray.train.lora import add_lora

    family = family_of(model_name)
    torch.manual_seed(0)
    model = load_transformer(model_name, "random", dtype, device=str(device)).to(device)
    model.enable_gradient_checkpointing()
    add_lora(model, args.rank, args.rank, list(family.lora_targets))
    params = [p for p in model.parameters() if p.requires_grad]
    if ours:
        for p in params:
            p.data = p.data.float()
        unpadded_attention(model)
        optimizer = torch.optim.AdamW(params, lr=5e-5, fused=device.type == "cuda")
    else:
        optimizer = torch.optim.AdamW(params, lr=5e-5, foreach=False)
    h, w, f = (args.height or family.height, args.width or family.width, args.frames or family.frames)
    batch = make_batch(family, dict(model.config), f, h, w, args.real_tokens, padded=not ours, device=device)
    x0 = batch["latent"].float()
    noise = torch.randn_like(x0)
    sigmas = torch.full((1,), 0.7, device=device)

    def inputs():
        return model_inputs(family, model, noisy_latents(x0, noise, sigmas), timesteps_for(sigmas), batch, 1.0,
                            device, dtype)

    def train_step():
        with torch.autocast(device.type, dtype=dtype, enabled=ours and dtype != torch.float32):
            loss = flow_loss(model(**inputs(), return_dict=False)[0], x0, noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def denoise_step():
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=ours and dtype != torch.float32):
            model(**inputs(), return_dict=False)

    out = {"variant": "ours" if ours else "plain", "shape": f"{h}x{w}x{f}"}
    for name, fn in (("lora_step_s", train_step), ("denoise_step_s", denoise_step)):
        out[name] = median_seconds(fn, device, args.warmup, args.steps)
        out[name.removesuffix("_s") + "_peak_gib"] = peak_gib(device)
    return out  # the model goes with this frame; main frees the device memory


def main(argv: list[str] | None = None) -> dict:
    import torch
    from benchmarking import free_memory

    from medgen_ray.models.families import FAMILIES

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", nargs="*", default=list(FAMILIES), help="families (default: all)")
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--real-tokens", type=int, default=60)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="the tiny twins on the CPU: smoke test of this script")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    card = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    summary = {"card": card, "families": {}}
    for name in args.model:
        model_name = f"{name}/tiny" if args.tiny else name
        plain = run_variant(model_name, False, args, device, dtype)
        free_memory(device)
        ours = run_variant(model_name, True, args, device, dtype)
        free_memory(device)
        lora_x = plain["lora_step_s"] / ours["lora_step_s"]
        denoise_r = ours["denoise_step_s"] / plain["denoise_step_s"]
        summary["families"][name] = {"plain": plain, "ours": ours, "lora_speedup": lora_x, "denoise_ratio": denoise_r}
        mem = {v["variant"]: v["lora_step_peak_gib"] for v in (plain, ours)}
        print(f"{name} {'(tiny twin)' if args.tiny else '(full size, random weights)'} at {plain['shape']} on {card}: "
              f"LoRA step plain {plain['lora_step_s']:.3f} s / ours {ours['lora_step_s']:.3f} s = {lora_x:.2f}x "
              f"(target >= 1.25x); denoising step ours/plain {denoise_r:.2f} (target <= 0.75); "
              f"peak GiB plain {mem['plain']} / ours {mem['ours']}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
