"""The generator a Serve replica holds: one pipeline, LoRA adapters loaded once by name.

Plain class (no Ray import), so tests and GPU scripts use it directly. Adapters are switched
per request with peft's `set_adapters` / `disable_lora`: the base weights are loaded once.
A replica runs one job at a time (the deployment's max_ongoing_requests is 1), so switching
adapters between jobs is safe.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from medgen_ray.config import ServeConfig
from medgen_ray.core.cluster import pick_device
from medgen_ray.core.encode import float_mp4_bytes
from medgen_ray.serve.store import JobStore

BASE = "base"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class JobCancelled(Exception):
    """The job was cancelled or deleted while it ran: stop denoising."""


def transformer_blocks(transformer: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a video transformer (every top-level ModuleList named *blocks)."""
    return [b for name, child in transformer.named_children()
            if name.endswith("blocks") and isinstance(child, torch.nn.ModuleList) for b in child]


class VideoGenerator:
    """One pipeline with its LoRA adapters loaded by name; generates and stores jobs."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.pipe: Any = None
        self.adapters: list[str] = []

    def setup(self) -> None:
        from medgen_ray.models.registry import load_model
        from medgen_ray.models.video import unpadded_attention
        from medgen_ray.train.lora import load_lora_file

        cfg = self.cfg
        if cfg.generator.threads:
            torch.set_num_threads(cfg.generator.threads)
        device = pick_device(cfg.generator.num_gpus)
        dtype = DTYPES[cfg.dtype] if device == "cuda" else torch.float32
        pipe = load_model(cfg.model, cfg.weights, "cpu", kind="video")
        for name, path in cfg.adapters.items():
            if name == BASE:
                raise ValueError(f"serve.adapters: {BASE!r} is reserved for the model without adapters")
            # the transformer's own loader (diffusers' PeftAdapterMixin): every family has it, not every pipeline
            pipe.transformer.load_lora_adapter(load_lora_file(path, pipe.transformer), adapter_name=name,
                                               prefix="transformer")
        self.adapters = list(cfg.adapters)
        unpadded_attention(pipe.transformer)  # generate_video hands over trimmed prompts where it matters
        if cfg.vae_tiling:
            pipe.vae.enable_tiling()
        pipe.to(device, dtype)
        if cfg.compile:
            for block in transformer_blocks(pipe.transformer):
                block.compile()
        self.pipe = pipe

    def use_adapter(self, name: str) -> None:
        transformer = self.pipe.transformer
        if name == BASE:
            if self.adapters:
                transformer.disable_lora()
            return
        if name not in self.adapters:
            raise ValueError(f"adapter {name!r}: not loaded; choices: {', '.join([BASE, *self.adapters])}")
        transformer.enable_lora()
        transformer.set_adapters([name], weights=[1.0])

    def generate(self, request: dict[str, Any], on_step=None) -> np.ndarray:
        from medgen_ray.models.video import generate_video

        self.use_adapter(request.get("adapter") or BASE)
        with torch.no_grad():
            return generate_video(
                self.pipe, request["prompt"], height=request["height"], width=request["width"],
                num_frames=request["num_frames"], steps=request["steps"], guidance=request["guidance"],
                seed=request["seed"], negative_prompt=request.get("negative_prompt") or None,
                true_cfg_scale=request.get("true_cfg_scale", 1.0), on_step=on_step)

    def run_job(self, job_id: str, store: JobStore) -> dict[str, Any]:
        """Generate a stored job and store its video. Idempotent: a finished job is left alone
        (a re-dispatch after an ingress restart costs nothing)."""
        record = store.get(job_id)
        if record is None or record["status"] == "cancelled":  # deleted or cancelled before it started
            return record or {"id": job_id, "status": "cancelled"}
        if record["status"] == "done" and store.read_video(job_id) is not None:
            return record
        request = record["request"]
        total = int(request["steps"])
        store.update(job_id, status="running", started=time.time(),
                     progress={"steps_done": 0, "steps_total": total})
        last = [0.0]

        def on_step(done: int) -> None:
            now = time.monotonic()
            if done == total or now - last[0] >= 0.5:  # progress writes at most twice a second
                last[0] = now
                current = store.get(job_id)
                if current is None or current["status"] == "cancelled":
                    raise JobCancelled(job_id)
                store.update(job_id, progress={"steps_done": done, "steps_total": total})

        t0 = time.perf_counter()
        try:
            frames = self.generate(request, on_step)
        except JobCancelled:
            return store.get(job_id) or {"id": job_id, "status": "cancelled"}
        except ValueError as exc:
            return store.update(job_id, status="failed", error=str(exc))
        current = store.get(job_id)
        if current is None or current["status"] == "cancelled":
            return current or {"id": job_id, "status": "cancelled"}
        store.put_video(job_id, float_mp4_bytes(frames, self.cfg.fps))
        return store.update(job_id, status="done", finished=time.time(), seconds=time.perf_counter() - t0,
                            progress={"steps_done": total, "steps_total": total})
