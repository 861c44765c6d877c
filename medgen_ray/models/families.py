"""Video model families: one spec each, holding everything that differs between base models.

Precompute, training, export, serving and the Med-VBench job read a family from here and call
its hooks (`impl`, a module with one fixed set of functions, see `models/video.py`); none of them
names a family. This module is data only (no torch import), so configs can check shapes with it.

The numbers are the families' published ones (diffusers configs of the hub ids below and the
model cards); where a value is ours it says so.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class VideoFamily:
    """Everything that differs between text-to-video base models."""

    name: str
    label: str  # report / README name
    hub_id: str  # diffusers-format repository `weights pull` fetches
    params: str  # transformer size
    pipeline: str  # diffusers pipeline class
    transformer: str  # diffusers transformer class
    vae: str  # diffusers VAE class
    text_encoders: str  # what encodes prompts, in words
    latent_norm: str  # "scaling_factor" | "mean_std" (per-channel, from the VAE config)
    temporal: int  # VAE temporal compression: clips need temporal*k + 1 frames
    spatial: int  # pixels per latent token side (VAE spatial compression x patch size)
    fps: int  # frame rate the model was trained at
    shift: float  # flow-matching time shift (the released scheduler's)
    guidance: float  # default guidance at generation
    height: int  # default (serving / training) shape
    width: int
    frames: int
    lora_targets: tuple[str, ...]  # default LoRA target module names (diffusers names)
    original_keys: str  # what the ComfyUI / original-key export writes, in words
    impl: str  # module with the family's hooks
    text_len: int = 0  # >0: prompts are zero-padded to this many tokens (how the model was trained)
    notes: str = ""

    def module(self) -> ModuleType:
        """The family's hook module."""
        return importlib.import_module(self.impl)

    def check_frames(self, frames: int) -> str | None:
        """None when `frames` fits the VAE's frame rule, else the reason."""
        if (frames - 1) % self.temporal:
            return f"{self.label} needs {self.temporal}k+1 frames (1, {1 + self.temporal}, {1 + 2 * self.temporal}, ...)"
        return None

    def check_side(self, side: int) -> str | None:
        """None when a pixel side fits the VAE and patch size, else the reason."""
        if side % self.spatial:
            return f"{self.label} needs sides that are multiples of {self.spatial}"
        return None


_ATTN = ("to_q", "to_k", "to_v", "to_out.0")

FAMILIES: dict[str, VideoFamily] = {f.name: f for f in [
    VideoFamily(
        "hunyuan_video", "HunyuanVideo", "hunyuanvideo-community/HunyuanVideo", "13B", "HunyuanVideoPipeline",
        "HunyuanVideoTransformer3DModel", "AutoencoderKLHunyuanVideo",
        "Llama-3 8B (LLaVA) hidden state -3 + CLIP-L pooled", "scaling_factor", 4, 16, 24, 7.0, 6.0,
        544, 960, 33, _ATTN, "double_blocks/single_blocks, fused qkv (+mlp in single blocks)",
        "medgen_ray.models.hunyuan", notes="the paper's base model"),
    VideoFamily(
        "hunyuan_video_1_5", "HunyuanVideo-1.5", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_t2v", "8.3B",
        "HunyuanVideo15Pipeline", "HunyuanVideo15Transformer3DModel", "AutoencoderKLHunyuanVideo15",
        "Qwen2.5-VL 7B hidden state -3 + ByT5 glyph encoder (quoted text)", "scaling_factor", 4, 16, 24, 5.0, 6.0,
        480, 848, 121, _ATTN, "double_blocks img/txt_attn_q/k/v/proj (separate), refiner self_attn_qkv fused",
        "medgen_ray.models.hunyuan15", notes="480p t2v; the 720p t2v checkpoint samples with shift 9"),
    VideoFamily(
        "wan2.1-t2v-1.3b", "Wan2.1-T2V-1.3B", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "1.3B", "WanPipeline",
        "WanTransformer3DModel", "AutoencoderKLWan", "UMT5-XXL, zero-padded to 512 tokens", "mean_std", 4, 16, 16,
        3.0, 5.0, 480, 832, 81, _ATTN, "blocks.N.self_attn/cross_attn.q/k/v/o", "medgen_ray.models.wan", 512,
        notes="MedGen-1.3B (the authors' release) is a fine-tune of this"),
    VideoFamily(
        "wan2.1-t2v-14b", "Wan2.1-T2V-14B", "Wan-AI/Wan2.1-T2V-14B-Diffusers", "14B", "WanPipeline",
        "WanTransformer3DModel", "AutoencoderKLWan", "UMT5-XXL, zero-padded to 512 tokens", "mean_std", 4, 16, 16,
        5.0, 5.0, 720, 1280, 81, _ATTN, "blocks.N.self_attn/cross_attn.q/k/v/o", "medgen_ray.models.wan", 512),
    VideoFamily(
        "wan2.2-ti2v-5b", "Wan2.2-TI2V-5B", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "5B", "WanPipeline",
        "WanTransformer3DModel", "AutoencoderKLWan (Wan2.2, 16x spatial, 48 channels)",
        "UMT5-XXL, zero-padded to 512 tokens", "mean_std", 4, 32, 24, 5.0, 5.0, 704, 1280, 121, _ATTN,
        "blocks.N.self_attn/cross_attn.q/k/v/o", "medgen_ray.models.wan", 512,
        notes="text-to-video mode (per-token timesteps all equal)"),
]}

DEFAULT_FAMILY = "hunyuan_video"


def family_of(model: str) -> VideoFamily:
    """The family of a registry name (`wan2.1-t2v-1.3b`, `wan2.1-t2v-1.3b/tiny`); KeyError naming
    the choices for an unknown one."""
    base = model.split("/")[0]
    if base not in FAMILIES:
        raise KeyError(f"unknown video model {model!r}; families: {', '.join(FAMILIES)} (add /tiny for the twin)")
    return FAMILIES[base]


def family_of_transformer(class_name: str) -> VideoFamily:
    """The first family whose transformer class is `class_name` (families sharing a class share
    its module names, so LoRA key mapping is the same)."""
    for f in FAMILIES.values():
        if f.transformer == class_name:
            return f
    raise KeyError(f"transformer class {class_name!r} belongs to no known family")
