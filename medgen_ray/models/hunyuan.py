"""HunyuanVideo components: the real model (hub id / local folder / random init) and a tiny twin.

The tiny twin keeps every shape rule of the real model that our code depends on: 8x spatial
and 4x temporal VAE compression (so clips need 4k+1 frames and sides that are multiples of 16
after patching), a Llama-style text encoder read at its third-from-last hidden state, a CLIP
text encoder for the pooled vector, a guidance-embedded transformer with to_q/to_k/to_v/to_out.0
attention projections (the LoRA targets). Its tokenizers are byte-level and built in code, so
nothing is downloaded.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from medgen_ray.models.tokenizers import byte_tokenizer
from medgen_ray.models.weights import TINY_SEED

PIPELINE_LOGGER = "diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video"


class ClipTruncationIsByDesign(logging.Filter):
    """Drops diffusers' "truncated because CLIP can only handle ... 77 tokens" warning, and
    nothing else: HunyuanVideo's pooled prompt is CLIP's first 77 tokens by design (the Llama
    encoder reads the whole prompt), so the warning fired on every long caption of a run."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the truncation warning only."""
        return "truncated because CLIP can only handle" not in record.getMessage()


logging.getLogger(PIPELINE_LOGGER).addFilter(ClipTruncationIsByDesign())
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<pad>"]

# The released model's prompt template; crop_start is recomputed for the tiny tokenizer.
PROMPT_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
REAL_CROP_START = 95

TINY_TRANSFORMER_CFG: dict[str, Any] = {
    "in_channels": 4, "out_channels": 4, "num_attention_heads": 2, "attention_head_dim": 16,
    "num_layers": 2, "num_single_layers": 2, "num_refiner_layers": 1, "patch_size": 1, "patch_size_t": 1,
    "guidance_embeds": True, "text_embed_dim": 32, "pooled_projection_dim": 16, "rope_axes_dim": (4, 6, 6),
}
TINY_VAE_CFG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "down_block_types": ("HunyuanVideoDownBlock3D",) * 4, "up_block_types": ("HunyuanVideoUpBlock3D",) * 4,
    "block_out_channels": (8, 8, 8, 8), "layers_per_block": 1, "norm_num_groups": 4,
    "spatial_compression_ratio": 8, "temporal_compression_ratio": 4, "mid_block_add_attention": True,
}


def template_crop_start(tokenizer, template: str = PROMPT_TEMPLATE) -> int:
    """Number of tokens before the user prompt in `template` (what the pipeline crops away)."""
    prefix = template.split("{}")[0]
    return len(tokenizer(prefix, add_special_tokens=False)["input_ids"])


def build_tiny_components() -> dict[str, Any]:
    """The tiny HunyuanVideo twin's components (transformer, VAE, both text encoders, tokenizers, scheduler), seeded."""
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoTransformer3DModel
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    torch.manual_seed(TINY_SEED)
    transformer = HunyuanVideoTransformer3DModel(**TINY_TRANSFORMER_CFG)
    torch.manual_seed(TINY_SEED + 1)
    vae = AutoencoderKLHunyuanVideo(**TINY_VAE_CFG)
    tokenizer = byte_tokenizer(512, LLAMA_SPECIALS, pad="<pad>", bos=None, eos="<|eot_id|>")
    torch.manual_seed(TINY_SEED + 2)
    text_encoder = LlamaModel(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_TRANSFORMER_CFG["text_embed_dim"], intermediate_size=64,
        num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id))
    tokenizer_2 = byte_tokenizer(77, ["<|startoftext|>", "<|endoftext|>"], pad="<|endoftext|>",
                                 bos="<|startoftext|>", eos="<|endoftext|>")
    torch.manual_seed(TINY_SEED + 3)
    text_encoder_2 = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer_2), hidden_size=TINY_TRANSFORMER_CFG["pooled_projection_dim"], intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
        eos_token_id=tokenizer_2.eos_token_id, bos_token_id=tokenizer_2.bos_token_id,
        pad_token_id=tokenizer_2.pad_token_id))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return {"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "text_encoder_2": text_encoder_2, "tokenizer_2": tokenizer_2, "scheduler": scheduler}


def build_pipeline(components: dict[str, Any]):
    """A HunyuanVideoPipeline from components."""
    from diffusers import HunyuanVideoPipeline

    return HunyuanVideoPipeline(**components)


def prompt_template_for(pipe) -> dict[str, Any]:
    """The prompt template (and crop start) that matches the pipeline's tokenizer."""
    tiny = len(pipe.tokenizer) < 1024  # the byte-level twin; the released Llama vocab is 128k
    crop = template_crop_start(pipe.tokenizer) if tiny else REAL_CROP_START
    return {"template": PROMPT_TEMPLATE, "crop_start": crop}


def configure(pipe):
    """Nothing follows the tokenizer here beyond the template crop, which `prompt_template_for` computes."""
    return pipe


def tiny_components(family) -> dict[str, Any]:
    """The family hook: the tiny twin's components."""
    return build_tiny_components()


def full_config(family) -> dict[str, Any]:
    """The released transformer's config (diffusers' defaults are the 13B model's)."""
    return {}


def full_vae(family):
    """The released VAE at full size (random init), for GPU benchmarks."""
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo()


def encode_text(pipe, text: str, max_len: int, device) -> dict[str, torch.Tensor]:
    """Llama hidden states trimmed to the prompt's tokens, and CLIP's pooled vector."""
    embeds, pooled, mask = pipe.encode_prompt(prompt=text, prompt_template=prompt_template_for(pipe),
                                              max_sequence_length=max_len, device=device)
    n = int(mask[0].sum())
    return {"text_embeds": embeds[0, :n], "pooled": pooled[0]}


def model_inputs(family, transformer, noisy, timesteps, batch, guidance, device, dtype) -> dict[str, Any]:
    """Latents, timestep, Llama tokens with their mask, CLIP's pooled vector, embedded guidance (x1000)."""
    n = noisy.shape[0]
    return {"hidden_states": noisy.to(dtype), "timestep": timesteps,
            "encoder_hidden_states": batch["text_embeds"].to(device, dtype),
            "encoder_attention_mask": batch["text_mask"].to(device),
            "pooled_projections": batch["pooled"].to(device, dtype),
            "guidance": torch.full((n,), guidance * 1000.0, device=device, dtype=dtype)}


def unpadded_attention(transformer, on: bool = True) -> int:
    """Swap in the processor that drops the all-true text mask (see models.attention)."""
    from medgen_ray.models.attention import set_unpadded_attention

    return set_unpadded_attention(transformer, on)


def original_groups(cfg: dict[str, Any]) -> list:
    """HunyuanVideo's original checkpoint fuses q/k/v (and the single blocks' MLP input)."""
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    mlp = int(inner * cfg["mlp_ratio"])
    return [
        (r"transformer_blocks\.(\d+)\.", "double_blocks.{}.img_attn_qkv",
         [("attn.to_q", inner), ("attn.to_k", inner), ("attn.to_v", inner)]),
        (r"transformer_blocks\.(\d+)\.", "double_blocks.{}.txt_attn_qkv",
         [("attn.add_q_proj", inner), ("attn.add_k_proj", inner), ("attn.add_v_proj", inner)]),
        (r"transformer_blocks\.(\d+)\.", "double_blocks.{}.img_attn_proj", [("attn.to_out.0", inner)]),
        (r"transformer_blocks\.(\d+)\.", "double_blocks.{}.txt_attn_proj", [("attn.to_add_out", inner)]),
        (r"single_transformer_blocks\.(\d+)\.", "single_blocks.{}.linear1",
         [("attn.to_q", inner), ("attn.to_k", inner), ("attn.to_v", inner), ("proj_mlp", mlp)]),
        (r"single_transformer_blocks\.(\d+)\.", "single_blocks.{}.linear2", [("proj_out", inner)]),
        (r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.",
         "txt_in.individual_token_refiner.blocks.{}.self_attn_qkv",
         [("attn.to_q", inner), ("attn.to_k", inner), ("attn.to_v", inner)]),
        (r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.",
         "txt_in.individual_token_refiner.blocks.{}.self_attn_proj", [("attn.to_out.0", inner)]),
    ]


def generate(pipe, prompt: str, *, height: int, width: int, num_frames: int, steps: int, guidance: float,
             seed: int = 0, negative_prompt: str | None = None, true_cfg_scale: float = 1.0,
             max_sequence_length: int = 256, output_type: str = "np"):
    """One video, with the prompt trimmed to its real tokens so attention needs no mask
    (the transformer may carry the unpadded processor). `guidance` is the embedded guidance;
    a negative prompt takes effect with true_cfg_scale > 1. Returns frames (F, H, W, 3) in [0, 1]."""
    from medgen_ray.models.attention import trim_text

    device = pipe._execution_device
    template = prompt_template_for(pipe)

    def encode(text: str):
        embeds, pooled, mask = pipe.encode_prompt(prompt=text, prompt_template=template, device=device,
                                                  max_sequence_length=max_sequence_length)
        embeds, mask = trim_text(embeds, mask)
        return embeds, pooled, mask

    embeds, pooled, mask = encode(prompt)
    kwargs = {}
    if negative_prompt is not None and true_cfg_scale > 1:
        n_embeds, n_pooled, n_mask = encode(negative_prompt)
        kwargs = {"negative_prompt_embeds": n_embeds, "negative_pooled_prompt_embeds": n_pooled,
                  "negative_prompt_attention_mask": n_mask, "true_cfg_scale": true_cfg_scale}
    out = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, prompt_attention_mask=mask, height=height,
               width=width, num_frames=num_frames, num_inference_steps=steps, guidance_scale=guidance,
               generator=torch.Generator().manual_seed(seed), output_type=output_type, prompt_template=template,
               **kwargs)
    return out.frames[0]


def _cp_mask_processor_cls():
    from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoAttnProcessor2_0

    class ContextParallelMaskProcessor(HunyuanVideoAttnProcessor2_0):
        """HunyuanVideo's joint attention with padded text under Ulysses (training).

        The transformer builds one key mask over [all video tokens, all text tokens]; under
        Ulysses each rank holds a share of both, and the all-to-all gathers the keys as
        [video share 0, text share 0, video share 1, ...]. The mask is put in that order (the
        whole-sequence mask is then used as it is, not gathered)."""

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                     image_rotary_emb=None):
            if attention_mask is not None and self._parallel_config is not None:
                world = self._parallel_config.context_parallel_config.ulysses_degree
                video, text = hidden_states.shape[1], encoder_hidden_states.shape[1]
                parts = (attention_mask[..., :world * video].unflatten(-1, (world, video)),
                         attention_mask[..., world * video:].unflatten(-1, (world, text)))
                attention_mask = torch.cat(parts, dim=-1).flatten(-2)
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)

    return ContextParallelMaskProcessor


def context_parallel_plan(transformer, training: bool = False) -> dict[str, Any]:
    """diffusers 0.42 gives HunyuanVideo's transformer no `_cp_plan`; ours: the RoPE tables, the
    video tokens and the refined text tokens are split by sequence at the first double block (the
    single blocks take them as they come), the output gathered at `proj_out`. Generation hands over
    trimmed prompts (batch 1, nothing masked), so the processor without the text mask goes in and
    Ulysses takes uneven shares; training pads the text to a multiple of the degree
    (context_parallel_inputs) and attends with the mask in the gathered order."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    split_rope = ContextParallelInput(split_dim=0, expected_dims=2, split_output=True)
    if training:
        processor = _cp_mask_processor_cls()
        for module in transformer.modules():
            if getattr(module, "processor", None) is not None and hasattr(module, "set_processor") \
                    and type(module.processor).__name__ in ("HunyuanVideoAttnProcessor2_0", "UnpaddedAttnProcessor"):
                module.set_processor(processor())
    else:
        unpadded_attention(transformer, True)
    return {
        "rope": {0: split_rope, 1: split_rope},
        "transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
                                 "encoder_hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


def context_parallel_inputs(inputs: dict[str, Any], degree: int) -> dict[str, Any]:
    """Training under Ulysses splits the text by sequence without uneven shares: pad the prompt
    with masked zero tokens to a multiple of the degree."""
    from medgen_ray.models.parallel import pad_tokens

    return pad_tokens(inputs, "encoder_hidden_states", "encoder_attention_mask",
                      -inputs["encoder_hidden_states"].shape[1] % degree)
