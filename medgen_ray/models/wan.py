"""Wan2.1 / Wan2.2 (TI2V-5B, text-to-video mode): the family hooks and the tiny twins.

What differs from HunyuanVideo: one UMT5 text encoder whose output is zero-padded to 512
tokens and attended without a mask (Wan was trained that way, so training pads the same way);
latents normalised per channel with the VAE's `latents_mean` / `latents_std`; real classifier-free
guidance with a negative prompt instead of embedded guidance. Wan2.2-TI2V-5B has a 16x VAE with
48 latent channels and per-token timesteps (all equal in text-to-video, which equals one scalar
timestep per clip: the transformer embeds each token's copy of the same value).

Tiny twins keep the shape rules: 4x temporal compression, 8x VAE + 2x2 patches for Wan2.1
(16 px per token side) and a 16x residual VAE with 2x2 pixel patches for Wan2.2 (32 px).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from medgen_ray.models.weights import TINY_SEED

FULL_CONFIGS: dict[str, dict[str, Any]] = {  # the released transformers (diffusers configs of the hub ids)
    "wan2.1-t2v-1.3b": {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960, "num_layers": 30,
                        "in_channels": 16, "out_channels": 16},
    "wan2.1-t2v-14b": {"num_attention_heads": 40, "attention_head_dim": 128, "ffn_dim": 13824, "num_layers": 40,
                       "in_channels": 16, "out_channels": 16},
    "wan2.2-ti2v-5b": {"num_attention_heads": 24, "attention_head_dim": 128, "ffn_dim": 14336, "num_layers": 30,
                       "in_channels": 48, "out_channels": 48},
}
FULL_VAE: dict[str, dict[str, Any]] = {
    "wan2.2-ti2v-5b": {"base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "is_residual": True, "patch_size": 2,
                       "in_channels": 12, "out_channels": 12, "scale_factor_spatial": 16},
}
TINY_LATENT = {"wan2.1-t2v-1.3b": 4, "wan2.1-t2v-14b": 4, "wan2.2-ti2v-5b": 8}
TEXT_DIM = 32
EXPANDED_TIMESTEPS = {"wan2.2-ti2v-5b"}  # the pipeline hands each latent token its own timestep


def full_config(family) -> dict[str, Any]:
    """The released transformer's config."""
    return dict(FULL_CONFIGS[family.name])


def full_vae(family):
    """The released VAE at full size (random init), for GPU benchmarks."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(**FULL_VAE.get(family.name, {}))


def _tiny_vae(family):
    from diffusers import AutoencoderKLWan

    z = TINY_LATENT[family.name]
    wide = family.spatial == 32  # Wan2.2: residual 16x VAE over 2x2 pixel patches
    gen = torch.Generator().manual_seed(TINY_SEED + 5)
    return AutoencoderKLWan(
        base_dim=8, z_dim=z, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=(torch.randn(z, generator=gen) * 0.2).tolist(),
        latents_std=(1.0 + torch.rand(z, generator=gen)).tolist(),  # not 0/1: normalisation is exercised
        is_residual=wide, patch_size=2 if wide else None, scale_factor_spatial=16 if wide else 8,
        in_channels=12 if wide else 3, out_channels=12 if wide else 3)


def tiny_components(family) -> dict[str, Any]:
    """Tiny transformer, VAE, UMT5 encoder, byte-level tokenizer and UniPC flow scheduler, seeded."""
    from diffusers import UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from medgen_ray.models.tokenizers import byte_tokenizer

    z = TINY_LATENT[family.name]
    torch.manual_seed(TINY_SEED)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=z, out_channels=z,
        text_dim=TEXT_DIM, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=64)
    torch.manual_seed(TINY_SEED + 1)
    vae = _tiny_vae(family)
    tokenizer = byte_tokenizer(family.text_len, ["<pad>", "</s>"], pad="<pad>", bos=None, eos="</s>")
    torch.manual_seed(TINY_SEED + 2)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=TEXT_DIM, d_kv=16, d_ff=64, num_layers=2, num_heads=2, dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0))
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=family.shift)
    return {"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler, "expand_timesteps": family.name in EXPANDED_TIMESTEPS}


def configure(pipe):
    """Nothing follows the tokenizer here."""
    return pipe


def encode_text(pipe, text: str, max_len: int, device) -> dict[str, torch.Tensor]:
    """UMT5's last hidden state over the prompt's real tokens (the pipeline's own cleaning and
    encoding; its zero padding to 512 comes back at training time). Encoded at the family's
    length exactly as the pipeline encodes them: `max_len` does not apply."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    from medgen_ray.models.video import pipeline_family

    max_len = pipeline_family(pipe).text_len
    length = pipe.tokenizer([prompt_clean(text)], padding="max_length", max_length=max_len, truncation=True,
                            add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    n = int(length.attention_mask[0].sum())
    embeds = pipe._get_t5_prompt_embeds(prompt=text, max_sequence_length=max_len, device=device)
    return {"text_embeds": embeds[0, :n]}


def _padded(text: torch.Tensor, length: int) -> torch.Tensor:
    if text.shape[1] >= length:
        return text[:, :length]
    pad = text.new_zeros(text.shape[0], length - text.shape[1], text.shape[2])
    return torch.cat([text, pad], dim=1)


def model_inputs(family, transformer, noisy, timesteps, batch, guidance, device, dtype) -> dict[str, Any]:
    """Latents, one timestep per clip, UMT5 tokens zero-padded to the family's length (no mask:
    padding tokens are zeros, as at generation)."""
    text = batch["text_embeds"] * batch["text_mask"].unsqueeze(-1)  # collate's padding is zeros already
    return {"hidden_states": noisy.to(dtype), "timestep": timesteps,
            "encoder_hidden_states": _padded(text, family.text_len).to(device, dtype)}


def unpadded_attention(transformer, on: bool = True) -> int:
    """Wan attends to its zero-padded prompt without a mask: nothing to drop."""
    return 0


_WAN_ATTN = (("attn1", "self_attn"), ("attn2", "cross_attn"))
_WAN_PROJ = (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o"))


def original_groups(cfg: dict[str, Any]) -> list:
    """Wan's original checkpoint names every projection on its own (nothing fused):
    blocks.N.self_attn.q ... blocks.N.cross_attn.o, ffn.0 / ffn.2, and the output head.head."""
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    groups = [(r"blocks\.(\d+)\.", f"blocks.{{}}.{orig}.{o}", [(f"{attn}.{p}", inner)])
              for attn, orig in _WAN_ATTN for p, o in _WAN_PROJ]
    groups += [(r"blocks\.(\d+)\.", "blocks.{}.ffn.0", [("ffn.net.0.proj", cfg["ffn_dim"])]),
               (r"blocks\.(\d+)\.", "blocks.{}.ffn.2", [("ffn.net.2", inner)]),
               ("", "head.head", [("proj_out", cfg["out_channels"] * math.prod(cfg["patch_size"]))])]
    return groups


def generate(pipe, prompt: str, *, height: int, width: int, num_frames: int, steps: int, guidance: float,
             seed: int = 0, negative_prompt: str | None = None, true_cfg_scale: float = 1.0,
             output_type: str = "np"):
    """One video with classifier-free guidance `guidance` against the negative prompt (empty by
    default, as the pipeline). true_cfg_scale is HunyuanVideo's and has no meaning here."""
    out = pipe(prompt=prompt, negative_prompt=negative_prompt or "", height=height, width=width,
               num_frames=num_frames, num_inference_steps=steps, guidance_scale=guidance,
               generator=torch.Generator().manual_seed(seed), output_type=output_type)
    return out.frames[0]


def context_parallel_plan(transformer, training: bool = False) -> None:
    """Wan's transformer declares its own `_cp_plan` (diffusers): video tokens and RoPE split, the
    zero-padded text whole on every rank (cross-attention reads all of it)."""
    return None


def context_parallel_inputs(inputs: dict[str, Any], degree: int) -> dict[str, Any]:
    """Wan's plan leaves the text whole on every rank: nothing to pad."""
    return inputs
