"""HunyuanVideo-1.5 (8.3B, text-to-video): the family hooks and the tiny twin.

What differs from HunyuanVideo: prompts go through Qwen2.5-VL (hidden state -3 of a chat
template whose system part is cropped) and, for text in quotes, a ByT5 glyph encoder; no pooled
vector and no embedded guidance (classifier-free guidance through a guider); a 16x VAE with 32
channels and a scaling factor; the transformer takes the noisy latents concatenated with
conditioning latents and a mask (zeros in text-to-video) and a block of image tokens (zeros,
masked out in text-to-video). Its original checkpoint keeps q/k/v separate in the double blocks
and fuses them only in the token refiner.

The tiny twin keeps the rules: 16x spatial and 4x temporal VAE compression, patch size 1.
diffusers 0.42 gives this pipeline no LoRA loader mixin: adapters go through the transformer's
own `load_lora_adapter` (diffusers' PeftAdapterMixin), which every family supports.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from medgen_ray.models.weights import TINY_SEED

GUIDER_LOGGER = "diffusers.guiders.guider_utils"


class GuidersAreThePipelines(logging.Filter):
    """Drops diffusers' "Guiders are currently an experimental feature" notice, and nothing else:
    this pipeline's guidance is a guider by design and a new one is made per guidance value,
    so the notice came with every generation."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the notice only."""
        return "Guiders are currently an experimental feature" not in record.getMessage()


logging.getLogger(GUIDER_LOGGER).addFilter(GuidersAreThePipelines())

QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
# Qwen2's chat layout (what apply_chat_template renders for the released tokenizer).
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TINY_TEXT_TOKENS = 256  # ours: the twin reads 256 prompt tokens (the released pipeline 1000)
TINY_LATENT = 4
TINY_TEXT_DIM, TINY_GLYPH_DIM, TINY_IMAGE_DIM = 32, 16, 16


def full_config(family) -> dict[str, Any]:
    """The released 480p text-to-video transformer (diffusers' defaults, task t2v)."""
    return {"task_type": "t2v"}


def full_vae(family):
    """The released VAE at full size (random init), for GPU benchmarks."""
    from diffusers import AutoencoderKLHunyuanVideo15

    return AutoencoderKLHunyuanVideo15()


def tiny_components(family) -> dict[str, Any]:
    """Tiny transformer, 16x VAE, Qwen2.5-VL text model, ByT5, tokenizers, scheduler and guider, seeded."""
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        ClassifierFreeGuidance,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15Transformer3DModel,
    )
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, T5Config, T5EncoderModel

    from medgen_ray.models.tokenizers import byte_tokenizer

    torch.manual_seed(TINY_SEED)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=2 * TINY_LATENT + 1, out_channels=TINY_LATENT, num_attention_heads=2, attention_head_dim=16,
        num_layers=2, num_refiner_layers=1, text_embed_dim=TINY_TEXT_DIM, text_embed_2_dim=TINY_GLYPH_DIM,
        image_embed_dim=TINY_IMAGE_DIM, rope_axes_dim=(4, 6, 6), target_size=64, task_type="t2v")
    torch.manual_seed(TINY_SEED + 1)
    vae = AutoencoderKLHunyuanVideo15(latent_channels=TINY_LATENT, block_out_channels=(8, 8, 8, 8, 8),
                                      layers_per_block=1)
    tokenizer = byte_tokenizer(4096, QWEN_SPECIALS, pad="<|endoftext|>", bos=None, eos="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(TINY_SEED + 2)
    text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_TEXT_DIM, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))
    torch.manual_seed(TINY_SEED + 3)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=384, d_model=TINY_GLYPH_DIM, d_kv=8, d_ff=32, num_layers=2, dropout_rate=0.0,
                                             num_heads=2, decoder_start_token_id=0))
    return {"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "text_encoder_2": text_encoder_2, "tokenizer_2": ByT5Tokenizer(),
            "scheduler": FlowMatchEulerDiscreteScheduler(shift=family.shift),
            "guider": ClassifierFreeGuidance(guidance_scale=family.guidance)}


def configure(pipe):
    """The chat template's system part is cropped from the Qwen states: 108 tokens with the
    released tokenizer, recounted for any other (the twin's byte-level one), whose prompt budget
    is also smaller."""
    tok = pipe.tokenizer
    if tok is not None and len(tok) < 100_000:  # the released Qwen vocabulary is 151k
        messages = [{"role": "system", "content": pipe.system_message}, {"role": "user", "content": "\x00"}]
        prefix = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True).split("\x00")[0]
        pipe.prompt_template_encode_start_idx = len(tok(prefix, add_special_tokens=False)["input_ids"])
        pipe.tokenizer_max_length = TINY_TEXT_TOKENS
    return pipe


def encode_text(pipe, text: str, max_len: int, device) -> dict[str, torch.Tensor]:
    """Qwen states and ByT5 glyph states, each trimmed to its real tokens (the glyph part is
    empty when the prompt quotes no text). max_len: the pipeline's own budget applies."""
    embeds, mask, embeds_2, mask_2 = pipe.encode_prompt(prompt=text, device=device)
    return {"text_embeds": embeds[0, mask[0].bool()], "text_embeds_2": embeds_2[0, mask_2[0].bool()]}


def model_inputs(family, transformer, noisy, timesteps, batch, guidance, device, dtype) -> dict[str, Any]:
    """Latents + zero condition latents + zero mask (text-to-video), Qwen and glyph tokens with
    their masks, the zero image block the pipeline hands over (masked out inside)."""
    n, c, f, h, w = noisy.shape
    cond = torch.zeros(n, c + 1, f, h, w, device=noisy.device, dtype=noisy.dtype)
    cfg = transformer.config
    glyph = batch.get("text_embeds_2")
    glyph_mask = batch.get("text_mask_2")
    if glyph is None or glyph.shape[1] == 0:  # no quoted text: one masked zero token
        glyph = torch.zeros(n, 1, cfg.text_embed_2_dim)
        glyph_mask = torch.zeros(n, 1, dtype=torch.bool)
    image = torch.zeros(n, VISION_TOKENS, cfg.image_embed_dim, device=device, dtype=dtype)
    return {"hidden_states": torch.cat([noisy, cond], dim=1).to(dtype), "timestep": timesteps,
            "encoder_hidden_states": batch["text_embeds"].to(device, dtype),
            "encoder_attention_mask": batch["text_mask"].to(device),
            "encoder_hidden_states_2": glyph.to(device, dtype), "encoder_attention_mask_2": glyph_mask.to(device),
            "image_embeds": image}


VISION_TOKENS = 729  # the pipeline's vision_num_semantic_tokens


def unpadded_attention(transformer, on: bool = True) -> int:
    """The transformer always joins masked image tokens: nothing to drop."""
    return 0


def original_groups(cfg: dict[str, Any]) -> list:
    """HunyuanVideo-1.5's original names (diffusers' convert_hunyuan_video1_5_to_diffusers.py):
    double_blocks.N.img_attn_q/k/v/proj and txt_attn_q/k/v/proj on their own, the token refiner's
    self_attn_qkv fused."""
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    double = r"transformer_blocks\.(\d+)\."
    refiner = r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\."
    pairs = [("attn.to_q", "img_attn_q"), ("attn.to_k", "img_attn_k"), ("attn.to_v", "img_attn_v"),
             ("attn.to_out.0", "img_attn_proj"), ("attn.add_q_proj", "txt_attn_q"),
             ("attn.add_k_proj", "txt_attn_k"), ("attn.add_v_proj", "txt_attn_v"), ("attn.to_add_out", "txt_attn_proj")]
    groups = [(double, f"double_blocks.{{}}.{orig}", [(ours, inner)]) for ours, orig in pairs]
    groups += [(refiner, "txt_in.individual_token_refiner.blocks.{}.self_attn_qkv",
                [("attn.to_q", inner), ("attn.to_k", inner), ("attn.to_v", inner)]),
               (refiner, "txt_in.individual_token_refiner.blocks.{}.self_attn_proj", [("attn.to_out.0", inner)])]
    return groups


def generate(pipe, prompt: str, *, height: int, width: int, num_frames: int, steps: int, guidance: float,
             seed: int = 0, negative_prompt: str | None = None, true_cfg_scale: float = 1.0,
             output_type: str = "np"):
    """One video with classifier-free guidance `guidance` (the pipeline's guider) against the
    negative prompt (empty by default)."""
    from diffusers import ClassifierFreeGuidance

    if getattr(pipe.guider, "guidance_scale", None) != guidance:
        pipe.guider = ClassifierFreeGuidance(guidance_scale=guidance)
    out = pipe(prompt=prompt, negative_prompt=negative_prompt or "", height=height, width=width,
               num_frames=num_frames, num_inference_steps=steps,
               generator=torch.Generator().manual_seed(seed), output_type=output_type)
    return out.frames[0]


def _key_mask_processor_cls():
    from diffusers.models.attention_dispatch import dispatch_attention_fn
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.transformers.transformer_hunyuan_video15 import HunyuanVideo15AttnProcessor2_0

    class KeyMaskAttnProcessor(HunyuanVideo15AttnProcessor2_0):
        """HunyuanVideo-1.5's joint attention with the text padding as a key mask.

        diffusers' processor builds a (tokens x tokens) mask that also blanks padded queries; under
        context parallelism each rank holds a share of the queries, and only a key mask of the local
        tokens can be gathered with the keys (diffusers' Ulysses all-gathers a mask whose last side
        is the local sequence). The video tokens' outputs are the same: a padded token is never a
        key, so what a padded query computes reaches nothing (tests compare whole generations)."""

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                     image_rotary_emb=None):
            def project(x, q, k, v, norm_q, norm_k):
                q, k, v = (p(x).unflatten(2, (attn.heads, -1)) for p in (q, k, v))
                return (norm_q(q) if norm_q is not None else q), (norm_k(k) if norm_k is not None else k), v

            query, key, value = project(hidden_states, attn.to_q, attn.to_k, attn.to_v, attn.norm_q, attn.norm_k)
            if image_rotary_emb is not None:
                query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
                key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
            text = project(encoder_hidden_states, attn.add_q_proj, attn.add_k_proj, attn.add_v_proj,
                           attn.norm_added_q, attn.norm_added_k)
            query, key, value = (torch.cat(pair, dim=1) for pair in zip((query, key, value), text))
            batch, tokens = query.shape[:2]
            keys = torch.nn.functional.pad(attention_mask.bool(), (tokens - attention_mask.shape[1], 0), value=True)
            out = dispatch_attention_fn(query, key, value, attn_mask=keys.view(batch, 1, 1, tokens), dropout_p=0.0,
                                        is_causal=False, backend=self._attention_backend,
                                        parallel_config=self._parallel_config)
            out = out.flatten(2, 3).to(query.dtype)
            n_text = encoder_hidden_states.shape[1]
            video = attn.to_out[1](attn.to_out[0](out[:, :-n_text]))
            return video, attn.to_add_out(out[:, -n_text:])

    return KeyMaskAttnProcessor


def context_parallel_plan(transformer, training: bool = False) -> dict[str, Any]:
    """diffusers 0.42 gives HunyuanVideo-1.5 no `_cp_plan`; ours: RoPE tables, video tokens and the
    joined text/image tokens split by sequence at the first block, the text mask split at every
    block (each block is handed the whole mask again), the output gathered at `proj_out`; the
    double blocks' processors take the mask as a key mask (see KeyMaskAttnProcessor)."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    processor = _key_mask_processor_cls()
    for block in transformer.transformer_blocks:
        block.attn.set_processor(processor())
    split_rope = ContextParallelInput(split_dim=0, expected_dims=2, split_output=True)
    split_mask = ContextParallelInput(split_dim=1, expected_dims=2)
    plan: dict[str, Any] = {
        "rope": {0: split_rope, 1: split_rope},
        "transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
                                 "encoder_hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
                                 "attention_mask": split_mask},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }
    for i in range(1, len(transformer.transformer_blocks)):
        plan[f"transformer_blocks.{i}"] = {"attention_mask": split_mask}
    return plan


def context_parallel_inputs(inputs: dict[str, Any], degree: int) -> dict[str, Any]:
    """Training under Ulysses splits the joined image + glyph + prompt tokens without uneven
    shares: pad the prompt with masked zero tokens until their sum is a multiple of the degree."""
    from medgen_ray.models.parallel import pad_tokens

    joined = (inputs["image_embeds"].shape[1] + inputs["encoder_hidden_states_2"].shape[1]
              + inputs["encoder_hidden_states"].shape[1])
    return pad_tokens(inputs, "encoder_hidden_states", "encoder_attention_mask", -joined % degree)
