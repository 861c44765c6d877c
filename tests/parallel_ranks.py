"""Rank processes for the context-parallel tests: torch.multiprocessing spawns these (they must be
importable by a fresh interpreter), each joins a gloo group on 127.0.0.1 and runs the code a
multi-rank Serve replica or a Ray Train worker runs, writing its results to a folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REQUEST = {"prompt": "a surgeon ties a knot in a laparoscopic view", "height": 32, "width": 64, "num_frames": 9,
           "steps": 3, "guidance": None, "seed": 7}


def serve_config(model: str, ulysses: int, **extra):
    from medgen_ray.config import ServeConfig

    return ServeConfig(model=model, default_height=32, default_width=64, default_frames=9, vae_tiling=False,
                       generator={"num_gpus": 0, "threads": 1, "parallel": {"ulysses": ulysses}}, **extra)


def generate_ranks(rank: int, world: int, port: int, models: list[str], out: str, ring: bool = False) -> None:
    """Every model's tiny twin through build_pipeline + generate_request (the replica's calls) on
    `world` ranks (Ulysses, or ring with the CPU shim); rank 0 decodes and saves the frames, the
    other ranks stop at the latents."""
    import torch

    from medgen_ray.core.ranks import join_group, leave_group

    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(1)
    if world > 1:
        join_group(rank, world, "127.0.0.1", port, 120)
    if ring:
        from tests import ring_shim

        ring_shim.install()
    for model in models:
        _generate_one(model, rank, world, out, ring)
    leave_group()


def _generate_one(model: str, rank: int, world: int, out: str, ring: bool = False) -> None:
    from medgen_ray.core.ranks import agree_to_stop
    from medgen_ray.serve.generator import build_pipeline, generate_request, rank_output_type

    cfg = serve_config(model, 1 if ring else world)
    if ring:  # the config refuses ring on CPU (no GPU backend); the test's shim provides one
        object.__setattr__(cfg.generator.parallel, "ring", world)  # frozen config: set past validation

    class Rank:  # what generate_request reads of a generator
        pass

    gen = Rank()
    gen.cfg = cfg
    gen.pipe, gen.adapters = build_pipeline(cfg)
    gen.use_adapter = lambda name: None
    steps: list[int] = []

    def step(done: int) -> None:
        steps.append(done)
        if world > 1:
            agree_to_stop(False)

    frames = generate_request(gen, REQUEST, step, output_type="np" if rank == 0 else rank_output_type(gen.pipe))
    if rank == 0:
        np.save(Path(out) / f"{model.replace('/', '_')}.npy", np.asarray(frames))
    (Path(out) / f"{model.replace('/', '_')}.rank{rank}.steps").write_text(",".join(map(str, steps)))


def train_step_ranks(rank: int, world: int, port: int, models: list[str], out: str, training: bool) -> None:
    """One flow-matching training step (train.loop.flow_step_loss, LoRA on the tiny twin) on
    `world` context-parallel ranks: every rank draws the same noise and timestep and holds the same
    clip; rank r saves its loss and LoRA gradients."""
    import torch

    from medgen_ray.config import TrainConfig
    from medgen_ray.core.ranks import join_group, leave_group
    from medgen_ray.models.families import family_of
    from medgen_ray.models.parallel import Degrees, context_parallel
    from medgen_ray.models.video import encode_text, load_encoders, load_transformer, unpadded_attention
    from medgen_ray.train.loop import flow_step_loss
    from medgen_ray.train.lora import add_lora
    from medgen_ray.train.precompute import collate

    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(1)
    if world > 1:
        join_group(rank, world, "127.0.0.1", port, 120)
    for model in models:
        family = family_of(model)
        cfg = TrainConfig(model=model, gradient_checkpointing=True, mixed_precision="no", caption_dropout=0.0,
                          num_workers=world, context_parallel={"ulysses": world})
        pipe = load_encoders(model, True, None)
        text = encode_text(pipe, family, "a surgeon ties a knot in a laparoscopic view", 64, "cpu")
        torch.manual_seed(0)
        transformer = load_transformer(model, True, None)
        transformer.enable_gradient_checkpointing()
        add_lora(transformer, 4, 4.0, list(family.lora_targets))
        for name, p in transformer.named_parameters():
            if p.requires_grad:  # LoRA B starts at zero: give it values so every gradient is non-trivial
                p.data = torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.05
        unpadded_attention(transformer)
        if world > 1:
            context_parallel(transformer, Degrees(world), training=training)
        channels = transformer.config.out_channels
        latent = torch.randn(channels, 3, 4, 8, generator=torch.Generator().manual_seed(1))
        batch = collate([{"latent": latent, **text}])
        loss = flow_step_loss(transformer, batch, cfg, torch.Generator().manual_seed(5), torch.device("cpu"),
                              torch.float32, family)
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in transformer.named_parameters() if p.requires_grad}
        torch.save({"loss": float(loss.detach()), "grads": grads},
                   Path(out) / f"{model.replace('/', '_')}.rank{rank}.pt")
    leave_group()


DECODE_MODELS = ["hunyuan_video/tiny", "hunyuan_video_1_5/tiny"]


def small_tiles(vae) -> None:
    """Tiles small enough that the twins' 9-frame 64x96 video is many of them (space, and time
    where the VAE tiles time)."""
    if type(vae).__name__ == "AutoencoderKLHunyuanVideo":
        vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_stride_height=24,
                          tile_sample_stride_width=24, tile_sample_min_num_frames=4, tile_sample_stride_num_frames=4)
    else:
        s = vae.config.spatial_compression_ratio  # 4 latent pixels a tile: diffusers' overlap and crop agree
        vae.enable_tiling(tile_sample_min_height=4 * s, tile_sample_min_width=4 * s,
                          tile_latent_min_height=4, tile_latent_min_width=4)


def decode_ranks(rank: int, world: int, port: int, out: str) -> None:
    """Each VAE twin's tiled decode of the same seeded latents, split across `world` ranks
    (one rank: diffusers' own tiled decode); rank r saves the video and its tile count."""
    import torch

    from medgen_ray.core.ranks import join_group, leave_group
    from medgen_ray.models.registry import load_model
    from medgen_ray.models.tiled_decode import split_decode

    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(1)
    if world > 1:
        join_group(rank, world, "127.0.0.1", port, 120)
    for model in DECODE_MODELS:
        vae = load_model(model, None, "cpu", kind="video").vae.eval()
        small_tiles(vae)
        s, r = vae.config.spatial_compression_ratio, vae.config.temporal_compression_ratio
        z = torch.randn(1, vae.config.latent_channels, (9 - 1) // r + 1, 64 // s, 96 // s,
                        generator=torch.Generator().manual_seed(3))
        if world > 1:
            split_decode(vae, rank, world)
        with torch.no_grad():
            video = vae.decode(z, return_dict=False)[0]
        name = model.replace("/", "_")
        np.save(Path(out) / f"{name}.rank{rank}.npy", video.numpy())
        (Path(out) / f"{name}.rank{rank}.tiles").write_text(str(getattr(vae, "split_decode_tiles", -1)))
    if world > 1:
        leave_group()
