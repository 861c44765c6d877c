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

from medgen_ray.models.weights import RANDOM, TINY_SEED, WeightsUnavailable, stage_weights

HUB_ID = "hunyuanvideo-community/HunyuanVideo"
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


def byte_tokenizer(max_length: int, specials: list[str], pad: str, bos: str | None, eos: str):
    """A byte-level BPE tokenizer with no merges: every string tokenizes, no vocab file needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length)
    fast.add_special_tokens({"pad_token": pad, "eos_token": eos, **({"bos_token": bos} if bos else {}),
                             "additional_special_tokens": [s for s in specials if s not in (pad, eos, bos)]})
    return fast


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


def load_tiny_pipeline(weights: str | None, device: str):
    """The tiny twin pipeline on a device, built or from a saved folder."""
    if weights not in (None, RANDOM):
        return _from_folder(weights, device)
    return build_pipeline(build_tiny_components()).to(device)


def load_real_pipeline(weights: str | None, device: str, dtype: torch.dtype = torch.bfloat16):
    """weights=None: hub id through the HF cache; a folder: a saved pipeline; "random": transformer
    and VAE at full size with random init (for GPU benchmarks), no text encoders."""
    if weights == RANDOM:
        from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoTransformer3DModel

        return {"transformer": HunyuanVideoTransformer3DModel().to(device, dtype),
                "vae": AutoencoderKLHunyuanVideo().to(device, dtype)}
    if weights is not None:
        return _from_folder(weights, device, dtype)
    from diffusers import HunyuanVideoPipeline

    try:
        return HunyuanVideoPipeline.from_pretrained(HUB_ID, torch_dtype=dtype).to(device)
    except OSError as exc:
        raise WeightsUnavailable(
            f"model 'hunyuan_video': weights for {HUB_ID!r} are unavailable ({exc}). Pre-stage them with "
            "`medgen weights pull hunyuan_video --dest DIR` and pass the path, or use hunyuan_video/tiny."
        ) from exc


def _from_folder(path: str, device: str, dtype: torch.dtype | None = None):
    from diffusers import HunyuanVideoPipeline

    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    return HunyuanVideoPipeline.from_pretrained(path, **kwargs).to(device)


def load_encoders(name: str, tiny: bool, weights: str | None, dtype: torch.dtype | None = None):
    """The pipeline without its transformer: VAE, both text encoders and tokenizers, on the CPU
    (what latent precompute uses; the 13B transformer is never read)."""
    from diffusers import HunyuanVideoPipeline

    if weights == RANDOM:
        raise ValueError(f"model {name!r}: weights=random has no text encoders; precompute needs real or tiny ones")
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    if weights is not None:
        return HunyuanVideoPipeline.from_pretrained(stage_weights(weights), transformer=None, **kwargs)
    if tiny:
        return build_pipeline({**build_tiny_components(), "transformer": None})
    try:
        return HunyuanVideoPipeline.from_pretrained(HUB_ID, transformer=None, **kwargs)
    except OSError as exc:
        raise WeightsUnavailable(f"model {name!r}: encoder weights for {HUB_ID!r} are unavailable ({exc})") from exc


def load_transformer(name: str, tiny: bool, weights: str | None, dtype: torch.dtype = torch.float32,
                     device: str = "cpu"):
    """Only the video transformer (what training updates): tiny twin, random full size,
    a saved pipeline folder, or the hub. Random weights are initialised on `device` (13B
    parameters initialise in seconds on a GPU, minutes on a CPU)."""
    from diffusers import HunyuanVideoTransformer3DModel

    if weights not in (None, RANDOM):
        local = stage_weights(weights)
        return HunyuanVideoTransformer3DModel.from_pretrained(local, subfolder="transformer", torch_dtype=dtype)
    if tiny:
        return build_tiny_components()["transformer"].to(dtype)
    if weights == RANDOM:
        with torch.device(device):
            return HunyuanVideoTransformer3DModel().to(dtype)
    try:
        return HunyuanVideoTransformer3DModel.from_pretrained(HUB_ID, subfolder="transformer", torch_dtype=dtype)
    except OSError as exc:
        raise WeightsUnavailable(f"model {name!r}: transformer weights for {HUB_ID!r} are unavailable ({exc})") from exc


def generate_video(pipe, prompt: str, *, height: int, width: int, num_frames: int, steps: int,
                   guidance: float = 6.0, seed: int = 0, negative_prompt: str | None = None,
                   true_cfg_scale: float = 1.0, max_sequence_length: int = 256, callback=None,
                   output_type: str = "np"):
    """One video, with the prompt trimmed to its real tokens so attention needs no mask
    (the transformer may carry `set_unpadded_attention`). Returns frames (F, H, W, 3) in [0, 1]."""
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
    if callback is not None:
        kwargs["callback_on_step_end"] = callback
    out = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, prompt_attention_mask=mask, height=height,
               width=width, num_frames=num_frames, num_inference_steps=steps, guidance_scale=guidance,
               generator=torch.Generator().manual_seed(seed), output_type=output_type, prompt_template=template,
               **kwargs)
    return out.frames[0]
