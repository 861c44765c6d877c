"""The generator a Serve replica holds: one pipeline, LoRA adapters loaded once by name.

Plain class (no Ray import), so tests and GPU scripts use it directly. Adapters are switched
per request with peft's `set_adapters` / `disable_lora`: the base weights are loaded once.
A replica runs one job at a time (a lock around each job, whatever Serve does with a call it
gave up on), so switching adapters between jobs is safe.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

import numpy as np
import torch

from medgen_ray.config import ServeConfig
from medgen_ray.core.cluster import pick_device
from medgen_ray.core.encode import float_mp4_bytes
from medgen_ray.serve.store import JobStore, TransitionRefused

BASE = "base"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class JobCancelled(Exception):
    """The job was cancelled or deleted while it ran: stop denoising."""


class RankLost(Exception):
    """A rank of a multi-rank replica died or stopped answering during a job."""


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
        self.lock = threading.Lock()  # one job at a time on this pipeline, always
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.runs: list[str] = []  # jobs this generator ran (claimed), in order
        self.hooks: dict[str, Callable[[str], None]] = {}  # tests: name -> callable at named points
        self.workers: Any = None  # the other ranks of a multi-rank replica (setup)
        self.broken: str | None = None  # why this replica's ranks can run no more jobs (health check)
        self.last: dict[str, Any] = {}  # the last job: id, steps denoised, outcome

    def hook(self, name: str, job_id: str) -> None:
        """Call the test hook registered under `name`, if any (a barrier, an injected pause)."""
        fn = self.hooks.get(name)
        if fn is not None:
            fn(job_id)

    def setup(self, workers: Any = None) -> None:
        """Load the pipeline. `workers`: the other ranks of a multi-rank replica (serve/ranks.py
        RankWorkers: `join(port)`, `start(request)`, `wait(refs)`, `lost()`), already placed; this
        generator is rank 0 and opens the process group they join."""
        cfg = self.cfg
        if cfg.generator.threads:
            torch.set_num_threads(cfg.generator.threads)
        self.workers = workers
        if workers is not None:
            from medgen_ray.core.ports import free_port
            from medgen_ray.core.ranks import join_group

            host = workers.address
            port = free_port(host)
            joined = workers.join(port)  # every rank blocks in init_process_group until all have come
            join_group(0, cfg.generator.parallel.ranks, host, port, cfg.generator.collective_timeout_s)
            workers.wait(joined)
        self.pipe, self.adapters = build_pipeline(cfg)

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
        if self.workers is None:
            return generate_request(self, request, on_step)
        from medgen_ray.core.ranks import StopAgreed, agree_to_stop

        cancelled: list[JobCancelled] = []

        def agreed_step(done: int) -> None:  # every rank stops at the same step, or none does
            if on_step is not None:
                try:
                    on_step(done)
                except JobCancelled as exc:
                    cancelled.append(exc)
            agree_to_stop(bool(cancelled))

        running = self.workers.start({**request, "id": self.last.get("job")})
        try:
            frames = generate_request(self, request, agreed_step)
            self.workers.wait(running)
            return frames
        except StopAgreed:
            self.workers.wait(running)
            raise cancelled[0] from None
        except Exception as exc:  # a collective that failed: the group is unusable from here on
            self.broken = f"{type(exc).__name__}: {exc}"
            lost = self.workers.lost()
            if lost:
                raise RankLost(f"rank(s) {', '.join(map(str, lost))} of this replica died during the job "
                               f"({self.broken})") from exc
            raise

    def run_job(self, job_id: str, store: JobStore, owner: str | None = None) -> dict[str, Any]:
        """Generate a stored job and store its video; returns the record as it ends here.

        The job is claimed in the store first (queued, or running on a replica whose lease ran
        out), so it runs at most once at a time anywhere; a finished, cancelled or deleted job, or
        one another replica holds, is left alone and its record returned. One job runs at a time
        on this pipeline whatever the caller (`self.lock`): a call Serve gave up on keeps the
        pipeline until its thread ends, and the next waits. While it runs a heartbeat thread
        extends the lease and records progress; when the job is cancelled, deleted or taken over,
        the heartbeat is refused and denoising stops at the next step. The video and `done` are
        written in one transition, so a job cancelled meanwhile gets no video."""
        owner = owner or self.owner
        with self.lock:
            self.hook("run.locked", job_id)
            if self.broken:  # left unclaimed: the ingress's recovery hands it to the replica Serve starts instead
                raise RuntimeError(f"job {job_id}: this replica's ranks can run no more jobs ({self.broken})")
            try:
                record = store.claim(job_id, owner, self.cfg.lease_s, self.cfg.max_attempts)
            except TransitionRefused as refused:
                return refused.record or {"id": job_id, "status": "cancelled"}
            if record["status"] != "running":  # lost too often: failed by the claim
                return record
            self.runs.append(job_id)
            return self._run_claimed(job_id, record, store, owner)

    def _run_claimed(self, job_id: str, record: dict[str, Any], store: JobStore, owner: str) -> dict[str, Any]:
        request = record["request"]
        total = int(request["steps"])
        state = {"done": 0, "stop": None}
        beat_done = threading.Event()

        def heartbeat() -> None:
            while not beat_done.wait(self.cfg.heartbeat_s):
                try:
                    store.heartbeat(job_id, owner, self.cfg.lease_s, progress=(state["done"], total))
                except TransitionRefused as refused:
                    state["stop"] = refused
                    return

        self.last = {"job": job_id, "steps": 0, "outcome": "running"}

        def on_step(done: int) -> None:
            state["done"] = done
            self.last["steps"] = done
            self.hook("run.step", job_id)
            if state["stop"] is not None:
                raise JobCancelled(job_id)

        beat = threading.Thread(target=heartbeat, name=f"heartbeat-{job_id}", daemon=True)
        beat.start()
        t0 = time.perf_counter()
        try:
            frames = self.generate(request, on_step)
        except JobCancelled:
            self.last["outcome"] = "cancelled"
            return store.get(job_id) or {"id": job_id, "status": "cancelled"}
        except Exception as exc:  # every accepted job ends in a state: a model error or a lost rank fails it, named
            lost = isinstance(exc, RankLost)
            self.last["outcome"] = "rank_lost" if lost else "failed"
            try:
                return store.fail(job_id, owner, "rank_lost" if lost else "generation_failed",
                                  str(exc) if lost else f"{type(exc).__name__}: {exc}")
            except TransitionRefused as refused:
                return refused.record or {"id": job_id, "status": "cancelled"}
        finally:
            beat_done.set()
            beat.join()
        self.last["outcome"] = "done"
        try:
            return store.finish(job_id, owner, float_mp4_bytes(frames, self.cfg.fps), finished=time.time(),
                                seconds=time.perf_counter() - t0, progress={"steps_done": total, "steps_total": total})
        except TransitionRefused as refused:  # cancelled or deleted while the last steps ran
            return refused.record or {"id": job_id, "status": "cancelled"}


def build_pipeline(cfg: ServeConfig) -> tuple[Any, list[str]]:
    """The served pipeline with its adapters, on the replica's device, wired into the process
    group when the replica has several ranks (every rank builds the same)."""
    from medgen_ray.models.parallel import Degrees, context_parallel
    from medgen_ray.models.registry import load_model
    from medgen_ray.models.tiled_decode import split_decode, splits_decode
    from medgen_ray.models.video import unpadded_attention
    from medgen_ray.train.lora import load_lora_file

    device = pick_device(cfg.generator.num_gpus)
    dtype = DTYPES[cfg.dtype] if device == "cuda" else torch.float32
    pipe = load_model(cfg.model, cfg.weights, "cpu", kind="video")
    for name, path in cfg.adapters.items():
        if name == BASE:
            raise ValueError(f"serve.adapters: {BASE!r} is reserved for the model without adapters")
        # the transformer's own loader (diffusers' PeftAdapterMixin): every family has it, not every pipeline
        pipe.transformer.load_lora_adapter(load_lora_file(path, pipe.transformer), adapter_name=name,
                                           prefix="transformer")
    unpadded_attention(pipe.transformer)  # generate_video hands over trimmed prompts where it matters
    if cfg.vae_tiling:
        pipe.vae.enable_tiling()
    pipe.to(device, dtype)
    par = cfg.generator.parallel
    context_parallel(pipe.transformer, Degrees(par.ulysses, par.ring))
    if par.ranks > 1 and par.split_decode and splits_decode(pipe.vae):
        import torch.distributed as dist

        split_decode(pipe.vae, dist.get_rank(), par.ranks)  # every rank then decodes (rank_output_type)
    if cfg.compile:
        for block in transformer_blocks(pipe.transformer):
            block.compile()
    return pipe, list(cfg.adapters)


def rank_output_type(pipe: Any) -> str:
    """What a rank other than 0 asks the pipeline for: the video when the ranks share the VAE's
    decode (every rank takes part; rank 0 keeps the result), else the latents (rank 0 decodes)."""
    return "np" if hasattr(pipe.vae, "split_decode_tiles") else "latent"


def generate_request(generator: Any, request: dict[str, Any], on_step=None, output_type: str = "np"):
    """One stored request through a generator's pipeline (rank 0 and the rank workers alike):
    the adapter switched, the step cache of the request or the deployment."""
    from medgen_ray.models.video import generate_video

    generator.use_adapter(request.get("adapter") or BASE)
    with torch.no_grad():
        return generate_video(
            generator.pipe, request["prompt"], height=request["height"], width=request["width"],
            num_frames=request["num_frames"], steps=request["steps"], guidance=request["guidance"],
            seed=request["seed"], negative_prompt=request.get("negative_prompt") or None,
            true_cfg_scale=request.get("true_cfg_scale", 1.0), on_step=on_step, output_type=output_type,
            cache=request.get("cache") or generator.cfg.cache.kind, cache_params=generator.cfg.cache.params())
