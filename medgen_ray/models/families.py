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
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class FamilyHooks(Protocol):
    """What a family's hook module (`VideoFamily.impl`) provides: every function the jobs call on
    it, by these names and parameters (`tests/unit/test_families.py` checks each family's module
    against this and every `module().<hook>` call in the code against its members)."""

    def tiny_components(self, family: VideoFamily) -> dict[str, Any]:
        """The twin's pipeline components, seeded."""

    def full_config(self, family: VideoFamily) -> dict[str, Any]:
        """The full-size transformer's config (random weights for GPU benchmarks)."""

    def full_vae(self, family: VideoFamily) -> Any:
        """The full-size VAE with random weights."""

    def configure(self, pipe: Any) -> Any:
        """Settings that follow the tokenizer (prompt template crop); returns the pipeline."""

    def encode_text(self, pipe: Any, text: str, max_len: int, device: Any) -> dict[str, Any]:
        """Batch-1 prompt tensors trimmed to real tokens: text_embeds (n, d) [+ pooled (d,)]
        [+ text_embeds_2 (m, d2)]."""

    def model_inputs(self, family: VideoFamily, transformer: Any, noisy: Any, timesteps: Any, batch: dict[str, Any],
                     guidance: Any, device: Any, dtype: Any) -> dict[str, Any]:
        """The transformer's keyword arguments for a training batch."""

    def generate(self, pipe: Any, prompt: str, *, height: int, width: int, num_frames: int, steps: int,
                 guidance: float, seed: int = 0, negative_prompt: str | None = None, true_cfg_scale: float = 1.0,
                 output_type: str = "np") -> Any:
        """One video through the pipeline, (F, H, W, 3) in [0, 1]."""

    def original_groups(self, cfg: dict[str, Any]) -> list:
        """LoRA module groups for the original-key export."""

    def unpadded_attention(self, transformer: Any, on: bool = True) -> int:
        """Attention without the text mask where it is exact; the number of processors swapped."""

    def context_parallel_plan(self, transformer: Any, training: bool = False) -> dict[str, Any] | None:
        """diffusers' context-parallel plan for this transformer (None: the class's own `_cp_plan`);
        may swap in attention processors that context parallelism needs."""

    def context_parallel_inputs(self, inputs: dict[str, Any], degree: int) -> dict[str, Any]:
        """Training inputs whose split sequences divide by the degree (masked padding)."""


@dataclass(frozen=True, kw_only=True)
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
    heads: int  # attention heads of the released transformer (a Ulysses degree must divide them)
    text_len: int = 0  # >0: prompts are zero-padded to this many tokens (how the model was trained)
    # LoRA target names whose output the model can discard (a block's last text-stream projections
    # whose result no later layer reads): DDP must then look for unused parameters
    discarded_outputs: tuple[str, ...] = ()
    # ring attention splits keys too; a family whose attention needs a padding mask cannot use it
    ring_attention: bool = True
    unsupported_caches: tuple[str, ...] = ()  # step-cache kinds that fail on this family, why in `notes`
    notes: str = ""

    def module(self) -> FamilyHooks:
        """The family's hook module (the `FamilyHooks` contract)."""
        return importlib.import_module(self.impl)  # type: ignore[return-value]

    def check_frames(self, frames: int) -> str | None:
        """None when `frames` fits the VAE's frame rule, else the reason."""
        if (frames - 1) % self.temporal:
            return f"{self.label} needs {self.temporal}k+1 frames (1, {1 + self.temporal}, {1 + 2 * self.temporal}, ...)"
        return None

    def discards_any(self, targets: list[str] | tuple[str, ...]) -> bool:
        """Whether a LoRA on these targets can have parameters without a gradient in a step."""
        return any(t == d or t.startswith(d + ".") for t in targets for d in self.discarded_outputs)

    def check_side(self, side: int) -> str | None:
        """None when a pixel side fits the VAE and patch size, else the reason."""
        if side % self.spatial:
            return f"{self.label} needs sides that are multiples of {self.spatial}"
        return None


_ATTN = ("to_q", "to_k", "to_v", "to_out.0")
TINY_HEADS = 2  # attention heads of every family's tiny twin (tests/unit/test_families.py checks)

FAMILIES: dict[str, VideoFamily] = {f.name: f for f in [
    VideoFamily(
        name="hunyuan_video", label="HunyuanVideo", hub_id="hunyuanvideo-community/HunyuanVideo", params="13B",
        pipeline="HunyuanVideoPipeline", transformer="HunyuanVideoTransformer3DModel",
        vae="AutoencoderKLHunyuanVideo", text_encoders="Llama-3 8B (LLaVA) hidden state -3 + CLIP-L pooled",
        latent_norm="scaling_factor", temporal=4, spatial=16, fps=24, shift=7.0, guidance=6.0,
        height=544, width=960, frames=33, lora_targets=_ATTN,
        original_keys="double_blocks/single_blocks, fused qkv (+mlp in single blocks)",
        impl="medgen_ray.models.hunyuan", heads=24, notes="the paper's base model"),
    VideoFamily(
        name="hunyuan_video_1_5", label="HunyuanVideo-1.5",
        hub_id="hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_t2v", params="8.3B",
        pipeline="HunyuanVideo15Pipeline", transformer="HunyuanVideo15Transformer3DModel",
        vae="AutoencoderKLHunyuanVideo15",
        text_encoders="Qwen2.5-VL 7B hidden state -3 + ByT5 glyph encoder (quoted text)",
        latent_norm="scaling_factor", temporal=4, spatial=16, fps=24, shift=5.0, guidance=6.0,
        height=480, width=848, frames=121, lora_targets=_ATTN,
        original_keys="double_blocks img/txt_attn_q/k/v/proj (separate), refiner self_attn_qkv fused",
        discarded_outputs=("to_add_out", "ff_context"),  # the last double block's text stream
        impl="medgen_ray.models.hunyuan15", heads=16, ring_attention=False,
        notes="480p t2v; the 720p t2v checkpoint samples with shift 9"),
    VideoFamily(
        name="wan2.1-t2v-1.3b", label="Wan2.1-T2V-1.3B", hub_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", params="1.3B",
        pipeline="WanPipeline", transformer="WanTransformer3DModel", vae="AutoencoderKLWan",
        text_encoders="UMT5-XXL, zero-padded to 512 tokens", latent_norm="mean_std", temporal=4, spatial=16,
        fps=16, shift=3.0, guidance=5.0, height=480, width=832, frames=81, lora_targets=_ATTN,
        original_keys="blocks.N.self_attn/cross_attn.q/k/v/o", impl="medgen_ray.models.wan", text_len=512,
        unsupported_caches=("faster",),
        heads=12, notes="MedGen-1.3B (the authors' release) is a fine-tune of this"),
    VideoFamily(
        name="wan2.1-t2v-14b", label="Wan2.1-T2V-14B", hub_id="Wan-AI/Wan2.1-T2V-14B-Diffusers", params="14B",
        pipeline="WanPipeline", transformer="WanTransformer3DModel", vae="AutoencoderKLWan",
        text_encoders="UMT5-XXL, zero-padded to 512 tokens", latent_norm="mean_std", temporal=4, spatial=16,
        fps=16, shift=5.0, guidance=5.0, height=720, width=1280, frames=81, lora_targets=_ATTN,
        original_keys="blocks.N.self_attn/cross_attn.q/k/v/o", impl="medgen_ray.models.wan", text_len=512,
        unsupported_caches=("faster",),
        heads=40),
    VideoFamily(
        name="wan2.2-ti2v-5b", label="Wan2.2-TI2V-5B", hub_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers", params="5B",
        pipeline="WanPipeline", transformer="WanTransformer3DModel",
        vae="AutoencoderKLWan (Wan2.2, 16x spatial, 48 channels)",
        text_encoders="UMT5-XXL, zero-padded to 512 tokens", latent_norm="mean_std", temporal=4, spatial=32,
        fps=24, shift=5.0, guidance=5.0, height=704, width=1280, frames=121, lora_targets=_ATTN,
        original_keys="blocks.N.self_attn/cross_attn.q/k/v/o", impl="medgen_ray.models.wan", text_len=512,
        unsupported_caches=("faster",),
        heads=24, notes="text-to-video mode (per-token timesteps all equal)"),
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
