"""Text-to-video models of every family: loading (tiny twin, hub, saved folder, a fine-tuned
transformer in place of the base one, random full size) and the calls the jobs make.

A family's hook module (`VideoFamily.impl`) provides the functions of the `FamilyHooks`
protocol (models/families.py), checked for every family by tests/unit/test_families.py.
Nothing outside the family modules branches on a family.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

import torch

from medgen_ray.models.families import VideoFamily, family_of, family_of_transformer
from medgen_ray.models.weights import RANDOM, TINY_SEED, WeightsUnavailable, stage_weights


def _diffusers(name: str):
    import diffusers

    return getattr(diffusers, name)


FAMILY_ATTR = "_medgen_family"


def pipeline_family(pipe) -> VideoFamily:
    """The family of a loaded pipeline: the one it was loaded as, else its transformer's class."""
    name = getattr(pipe, FAMILY_ATTR, None)
    return family_of(name) if name else family_of_transformer(type(pipe.transformer).__name__)


def in_aligned_memory(obj):
    """A loaded model or pipeline with its CPU weights in torch's own (64-byte aligned) memory.

    Weights read from safetensors sit in the file's buffer at offsets its header decides, so on
    the CPU most are not 64-byte aligned, and BLAS then runs other kernels (another summation
    order) than for the same weights in torch's memory: a pulled-and-loaded Wan twin generated
    1.5e-6 away from the built one with bit-equal weights (AMD EPYC). Misaligned CPU tensors are
    copied once; on a GPU nothing changes (moving there copies anyway)."""
    modules = [obj] if isinstance(obj, torch.nn.Module) else \
        [m for m in getattr(obj, "components", {}).values() if isinstance(m, torch.nn.Module)]
    with torch.no_grad():
        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                if t.device.type == "cpu" and t.data_ptr() % 64:
                    t.data = t.data.clone()
    return obj


def _tagged(pipe, family: VideoFamily):
    setattr(pipe, FAMILY_ATTR, family.name)
    return family.module().configure(pipe)


def tiny_pipeline(family: VideoFamily, **replace: Any):
    """The family's tiny twin pipeline (components seeded from TINY_SEED), configured."""
    torch.manual_seed(TINY_SEED)
    components = {**family.module().tiny_components(family), **replace}
    for module in components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()  # built, not loaded: modules start in training mode (T5's dropout would fire)
    return _tagged(_diffusers(family.pipeline)(**components), family)


def _is_pipeline_folder(path: str) -> bool:
    return (Path(path) / "model_index.json").is_file()


def _transformer_folder(path: str) -> str | None:
    """`path` itself or its transformer/ subfolder when it holds a transformer config."""
    for candidate in (Path(path), Path(path) / "transformer"):
        cfg = candidate / "config.json"
        if cfg.is_file() and "Transformer" in json.loads(cfg.read_text()).get("_class_name", ""):
            return str(candidate)
    return None


def _check_class(family: VideoFamily, folder: str, what: str) -> None:
    cfg = json.loads((Path(folder) / "config.json").read_text())
    found = cfg.get("_class_name")
    if found and found != family.transformer:
        raise ValueError(f"{what} {folder!r}: holds a {found}, model {family.name!r} needs a {family.transformer}")


def load_pipeline(model: str, tiny: bool, weights: str | None, device: str, dtype: torch.dtype | None = None):
    """A whole pipeline of `model` on a device.

    weights: None (tiny twin, or the hub id through the HF cache), a saved pipeline folder
    (`weights pull`, `save_pretrained`), or a fine-tuned transformer folder (a full fine-tune such as
    MedGen-1.3B: its `transformer/` replaces the base one, everything else is the base model's);
    "random": transformer and VAE at full size with random init (GPU benchmarks), no text encoders.
    """
    family = family_of(model)
    if weights == RANDOM:
        return {"transformer": load_transformer(model, tiny, RANDOM, dtype or torch.bfloat16, device),
                "vae": (family.module().full_vae(family) if not tiny else tiny_pipeline(family).vae).to(device)}
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    transformer = None
    if weights is not None:
        local = stage_weights(weights)
        if _is_pipeline_folder(local):
            pipe = _diffusers(family.pipeline).from_pretrained(local, **kwargs)
            _check_class(family, str(Path(local) / "transformer"), "weights")
            return in_aligned_memory(_tagged(pipe, family).to(device))
        folder = _transformer_folder(local)
        if folder is None:
            raise WeightsUnavailable(f"model {model!r}: weights {weights!r} hold neither a pipeline (model_index.json) "
                                     "nor a transformer (config.json)")
        _check_class(family, folder, "weights")
        transformer = in_aligned_memory(_diffusers(family.transformer).from_pretrained(folder, **kwargs))
    if tiny:
        pipe = tiny_pipeline(family, **({"transformer": transformer} if transformer is not None else {}))
        return pipe.to(device, dtype) if dtype is not None else pipe.to(device)
    try:
        extra = {"transformer": transformer} if transformer is not None else {}
        pipe = _diffusers(family.pipeline).from_pretrained(family.hub_id, **extra, **kwargs)
    except OSError as exc:
        raise _unavailable(family, model, exc) from exc
    return in_aligned_memory(_tagged(pipe, family).to(device))


def _unavailable(family: VideoFamily, model: str, exc: Exception) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"model {model!r}: weights for {family.hub_id!r} are unavailable ({exc}). Pre-stage them with "
        f"`medgen weights pull {family.name} --dest DIR` and pass the path, or use {family.name}/tiny.")


def load_encoders(model: str, tiny: bool, weights: str | None, dtype: torch.dtype | None = None):
    """The pipeline without its transformer (VAE, text encoders, tokenizers) on the CPU: what
    latent precompute uses (the transformer is never read)."""
    family = family_of(model)
    if weights == RANDOM:
        raise ValueError(f"model {model!r}: weights=random has no text encoders; precompute needs real or tiny ones")
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    if weights is not None:
        local = stage_weights(weights)
        if _is_pipeline_folder(local):
            return in_aligned_memory(
                _tagged(_diffusers(family.pipeline).from_pretrained(local, transformer=None, **kwargs), family))
        weights = None  # a fine-tuned transformer alone: the encoders are the base model's
    if tiny:
        return tiny_pipeline(family, transformer=None)
    try:
        return in_aligned_memory(
            _tagged(_diffusers(family.pipeline).from_pretrained(family.hub_id, transformer=None, **kwargs), family))
    except OSError as exc:
        raise _unavailable(family, model, exc) from exc


def load_transformer(model: str, tiny: bool, weights: str | None, dtype: torch.dtype = torch.float32,
                     device: str = "cpu"):
    """Only the video transformer (what training updates): tiny twin, random full size (initialised
    on `device`: billions of parameters initialise in seconds on a GPU), a saved pipeline or
    transformer folder, or the hub."""
    family = family_of(model)
    cls = _diffusers(family.transformer)
    if weights not in (None, RANDOM):
        local = stage_weights(weights)
        folder = _transformer_folder(local)
        if folder is None:
            raise WeightsUnavailable(f"model {model!r}: no transformer config in {weights!r}")
        _check_class(family, folder, "weights")
        return in_aligned_memory(cls.from_pretrained(folder, torch_dtype=dtype))
    if tiny:
        torch.manual_seed(TINY_SEED)
        return family.module().tiny_components(family)["transformer"].to(dtype)
    if weights == RANDOM:
        with torch.device(device):
            return cls(**family.module().full_config(family)).to(dtype)
    try:
        return in_aligned_memory(cls.from_pretrained(family.hub_id, subfolder="transformer", torch_dtype=dtype))
    except OSError as exc:
        raise _unavailable(family, model, exc) from exc


@contextlib.contextmanager
def step_reporter(pipe, on_step: Callable[[int], None] | None):
    """Calls on_step(steps done) after every scheduler step of a generation, whatever the
    pipeline (some have no step callback); an exception raised there stops the generation."""
    if on_step is None:
        yield
        return
    scheduler = pipe.scheduler
    original = scheduler.step
    done = [0]

    def step(*args, **kwargs):
        out = original(*args, **kwargs)
        done[0] += 1
        on_step(done[0])
        return out

    scheduler.step = step
    try:
        yield
    finally:
        del scheduler.step  # the instance attribute goes; the class method is back


# Step caching (diffusers' CacheMixin hooks on the transformer): reuse work across denoising
# steps at a small cost in fidelity. "none" leaves the transformer as it is (no hook at all).
CACHE_KINDS = ("none", "first_block", "taylorseer", "pab", "magcache", "faster")


def cache_config(pipe, kind: str, *, threshold: float = 0.05, cache_interval: int = 5, disable_before: int = 3,
                 max_order: int = 1, skip_range: int = 2, timestep_range: tuple[int, int] = (100, 800),
                 steps: int = 50, mag_ratios: str | None = None, mag_threshold: float = 0.06, mag_max_skip: int = 3,
                 mag_retention: float = 0.2, faster_skip_range: int = 2,
                 faster_timestep_range: tuple[int, int] = (-1, 681)):
    """diffusers' cache config of a kind: first_block (FirstBlockCacheConfig: skip the other
    blocks while the first block's output changes by less than `threshold`), taylorseer
    (TaylorSeerCacheConfig: full steps every `cache_interval`, Taylor-predicted between),
    pab (PyramidAttentionBroadcastConfig: spatial attention reused for `skip_range` blocks inside
    `timestep_range`), magcache (MagCacheConfig with this model's calibrated ratios from the
    `mag_ratios` file, interpolated to `steps`), faster (FasterCacheConfig: spatial attention
    reused every `faster_skip_range` steps inside `faster_timestep_range`, no unconditional-branch
    skipping: our families run guidance as separate calls or embedded); None for none."""
    import diffusers

    if kind == "none":
        return None
    _register_cached_blocks()
    if kind == "magcache":
        return diffusers.MagCacheConfig(mag_ratios=load_mag_ratios(mag_ratios, pipeline_family(pipe).name),
                                        num_inference_steps=steps, threshold=mag_threshold,
                                        max_skip_steps=mag_max_skip, retention_ratio=mag_retention)
    if kind == "faster":
        return diffusers.FasterCacheConfig(
            spatial_attention_block_skip_range=faster_skip_range,
            spatial_attention_timestep_skip_range=tuple(faster_timestep_range),
            current_timestep_callback=lambda: pipe.current_timestep, attention_weight_callback=lambda _: 0.5,
            is_guidance_distilled=True, tensor_format="BCFHW")
    if kind == "first_block":
        return diffusers.FirstBlockCacheConfig(threshold=threshold)
    if kind == "taylorseer":
        return diffusers.TaylorSeerCacheConfig(cache_interval=cache_interval, disable_cache_before_step=disable_before,
                                               max_order=max_order, taylor_factors_dtype=pipe.transformer.dtype)
    if kind == "pab":
        return diffusers.PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=skip_range, spatial_attention_timestep_skip_range=tuple(timestep_range),
            current_timestep_callback=lambda: pipe.current_timestep)
    raise ValueError(f"cache {kind!r}: choices {', '.join(CACHE_KINDS)}")


def _register_cached_blocks() -> None:
    """diffusers 0.42 knows which outputs of HunyuanVideo's and Wan's blocks are the hidden
    states, not HunyuanVideo-1.5's: its block returns (hidden_states, encoder_hidden_states) as
    HunyuanVideo's does (transformer_hunyuan_video15.py, `HunyuanVideo15TransformerBlock.forward`)."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
    from diffusers.models.transformers.transformer_hunyuan_video15 import HunyuanVideo15TransformerBlock

    try:
        TransformerBlockRegistry.get(HunyuanVideo15TransformerBlock)
    except ValueError:  # not registered
        TransformerBlockRegistry.register(model_class=HunyuanVideo15TransformerBlock, metadata=TransformerBlockMetadata(
            return_hidden_states_index=0, return_encoder_hidden_states_index=1))


MAGCACHE_MARK = "[MagCache] Calibration Complete"


def calibrate_magcache(pipe, prompt: str, *, height: int, width: int, num_frames: int, steps: int,
                       seed: int = 0) -> dict[str, list[float]]:
    """MagCache's ratios for this pipeline (diffusers' own calibration: one full generation with
    `MagCacheConfig(calibrate=True)`, which prints the ratios of each guidance branch when it ends).
    Returns {"cond": [...], "uncond": [...]} ("uncond" only where guidance is a second call)."""
    with magcache_calibration(pipe.transformer, steps) as found:
        generate_video(pipe, prompt, height=height, width=width, num_frames=num_frames, steps=steps, seed=seed)
    return dict(zip(("cond", "uncond"), found))


@contextlib.contextmanager
def magcache_calibration(transformer, steps: int):
    """diffusers' MagCache calibration on `transformer` for the duration (no block skipped); the
    yielded list receives the ratios it prints for each guidance branch when the run ends."""
    import ast
    import io

    import diffusers

    _register_cached_blocks()
    transformer.enable_cache(diffusers.MagCacheConfig(calibrate=True, num_inference_steps=steps))
    printed = io.StringIO()
    found: list[list[float]] = []
    try:
        with contextlib.redirect_stdout(printed), torch.no_grad():
            yield found
    finally:
        transformer.disable_cache()
    lines = printed.getvalue().splitlines()
    found += [ast.literal_eval(lines[i + 1]) for i, line in enumerate(lines[:-1]) if MAGCACHE_MARK in line]
    if not found:
        raise RuntimeError("MagCache calibration printed no ratios (diffusers' format changed?)")


def load_mag_ratios(path: str | None, family: str) -> list[float]:
    """The calibrated ratios of a family from a `medgen cache calibrate` file."""
    import fsspec

    if not path:
        raise ValueError("cache magcache: no serve.cache.mag_ratios file (write one with `medgen cache calibrate`)")
    with fsspec.open(path) as fh:
        table = json.load(fh)
    if family not in table:
        raise ValueError(f"cache magcache: {path} holds ratios for {', '.join(table) or 'no model'}, not {family}")
    return table[family]["cond"]


@contextlib.contextmanager
def step_cache(pipe, kind: str | None, **params: Any):
    """The transformer with a step cache for the duration (state fresh for each video), none
    after: `disable_cache` removes every hook, so uncached output is what it was before."""
    config = cache_config(pipe, kind or "none", **params)
    if config is None:
        yield
        return
    pipe.transformer.enable_cache(config)
    try:
        yield
    finally:
        pipe.transformer.disable_cache()


def generate_video(pipe, prompt: str, *, height: int, width: int, num_frames: int, steps: int,
                   guidance: float | None = None, seed: int = 0, negative_prompt: str | None = None,
                   true_cfg_scale: float = 1.0, on_step: Callable[[int], None] | None = None,
                   output_type: str = "np", cache: str | None = None, cache_params: dict[str, Any] | None = None,
                   **family_kwargs: Any):
    """One video from any family's pipeline: (F, H, W, 3) in [0, 1]. guidance None = the family's;
    `cache` a step cache of CACHE_KINDS (None / "none": uncached) with `cache_params`;
    family_kwargs go to the family's generate (HunyuanVideo's max_sequence_length)."""
    family = pipeline_family(pipe)
    with step_reporter(pipe, on_step), step_cache(pipe, cache, **{"steps": steps, **(cache_params or {})}):
        return family.module().generate(
            pipe, prompt, height=height, width=width, num_frames=num_frames, steps=steps,
            guidance=family.guidance if guidance is None else guidance, seed=seed, negative_prompt=negative_prompt,
            true_cfg_scale=true_cfg_scale, output_type=output_type, **family_kwargs)


def encode_latent(pipe, family: VideoFamily, video: torch.Tensor) -> torch.Tensor:
    """Clip (1, 3, F, H, W) in [-1, 1] -> the normalised latent the transformer trains on
    (posterior mean: deterministic). Scaling factor or per-channel mean/std, by family."""
    mean = pipe.vae.encode(video).latent_dist.mode()
    cfg = pipe.vae.config
    if family.latent_norm == "mean_std":
        shape = (1, -1) + (1,) * (mean.ndim - 2)
        mu = torch.tensor(cfg.latents_mean, dtype=mean.dtype, device=mean.device).view(shape)
        std = torch.tensor(cfg.latents_std, dtype=mean.dtype, device=mean.device).view(shape)
        return ((mean - mu) / std)[0]
    return (mean * cfg.scaling_factor)[0]


def encode_text(pipe, family: VideoFamily, text: str, max_len: int, device) -> dict[str, torch.Tensor]:
    """Batch-1 prompt tensors trimmed to their real tokens (see the module doc)."""
    with torch.no_grad():
        return family.module().encode_text(pipe, text, max_len, device)


def model_inputs(family: VideoFamily, transformer, noisy: torch.Tensor, timesteps: torch.Tensor,
                 batch: dict[str, torch.Tensor], guidance: float, device, dtype, cp_degree: int = 1) -> dict[str, Any]:
    """The transformer's keyword arguments for a training batch of this family; under context
    parallelism of `cp_degree` ranks, with the text padded (masked) so its split is even."""
    hooks = family.module()
    inputs = hooks.model_inputs(family, transformer, noisy, timesteps, batch, guidance, device, dtype)
    return hooks.context_parallel_inputs(inputs, cp_degree) if cp_degree > 1 else inputs


def unpadded_attention(transformer: torch.nn.Module, on: bool = True) -> int:
    """Attention without the text mask where the family's transformer allows it exactly; returns
    how many processors changed (0 where the family has nothing to drop)."""
    family = family_of_transformer(type(transformer).__name__)
    return family.module().unpadded_attention(transformer, on)


def original_groups(transformer_cls: str, cfg: dict[str, Any]) -> list:
    """The original-key LoRA groups of a transformer class with this config."""
    return family_of_transformer(transformer_cls).module().original_groups(cfg)
