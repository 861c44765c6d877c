"""The other ranks of a multi-rank generator replica (`serve.generator.parallel`).

A replica with N ranks is placed by Serve in a STRICT_PACK placement group of N bundles of one
rank's resources (one GPU each on a GPU cluster); the replica itself takes the first bundle and is
rank 0, and starts N-1 `RankWorker` actors in the other bundles. All N join one torch.distributed
group, load the same pipeline and adapters, and denoise every job together: rank 0 hands each
worker the stored request (prompt, seed, adapter, cache), every rank agrees at each step whether to
stop (a cancel stops all of them at the same step); the ranks share the VAE's tiled decode where
the family's VAE allows it (models/tiled_decode.py; otherwise the workers stop at the latents and
rank 0 decodes), and rank 0 alone encodes and stores. The workers are owned by the replica, so they die with it;
a worker that dies fails the running job (`rank_lost`) and the replica reports itself unhealthy,
so Serve replaces it with a fresh group.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import ray
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from medgen_ray.config import ServeConfig

WORKER_PREFIX = "medgen-rank"  # worker actors are named medgen-rank<r>-<replica tag> (ray list actors)


class RankWorker:
    """Rank r > 0 of a replica: the same pipeline as rank 0, driven by rank 0's requests."""

    def __init__(self, cfg: dict[str, Any], rank: int):
        self.cfg = ServeConfig.model_validate(cfg)
        self.rank = rank
        self.pipe: Any = None
        self.adapters: list[str] = []
        self.last: dict[str, Any] = {}  # the last job: rank, job id, steps denoised, outcome
        self.held_at: int | None = None  # a pause at a named point (tests, debugging): hold before this step's
        self.held = threading.Event()    # agreement until release(); rank 0 waits in the collective meanwhile
        self.holding = threading.Event()

    def join(self, address: str, port: int) -> int:
        """Join rank 0's group, then load the pipeline into it (returns the rank)."""
        import torch

        from medgen_ray.core.ranks import join_group
        from medgen_ray.serve.generator import build_pipeline

        cfg = self.cfg
        if cfg.generator.threads:
            torch.set_num_threads(cfg.generator.threads)
        join_group(self.rank, cfg.generator.parallel.ranks, address, port, cfg.generator.collective_timeout_s)
        self.pipe, self.adapters = build_pipeline(cfg)
        return self.rank

    def use_adapter(self, name: str) -> None:
        from medgen_ray.serve.generator import VideoGenerator

        VideoGenerator.use_adapter(self, name)  # type: ignore[arg-type]  # same attributes: pipe, adapters

    def generate(self, request: dict[str, Any]) -> str:
        """Denoise one request with rank 0 (and share its decode where the VAE splits; rank 0 keeps the video):
        "done", or "cancelled" when rank 0 said stop."""
        from medgen_ray.core.ranks import StopAgreed, agree_to_stop
        from medgen_ray.serve.generator import generate_request, rank_output_type

        self.last = {"rank": self.rank, "job": request.get("id"), "steps": 0, "outcome": "running"}

        def step(done: int) -> None:
            if done == self.held_at:
                self.holding.set()
                self.held.wait()
            agree_to_stop(False)
            self.last["steps"] = done

        try:
            generate_request(self, request, step, output_type=rank_output_type(self.pipe))
        except StopAgreed:
            self.last["outcome"] = "cancelled"
            return "cancelled"
        self.last["outcome"] = "done"
        return "done"

    def ping(self) -> int:
        return self.rank

    def status(self) -> dict[str, Any]:
        return dict(self.last)

    def hold(self, step: int) -> None:
        """Pause the next job before step `step`'s agreement until `release()`."""
        self.held.clear()
        self.holding.clear()
        self.held_at = step

    def wait_holding(self, timeout_s: float = 120) -> bool:
        return self.holding.wait(timeout_s)

    def release(self) -> None:
        self.held_at = None
        self.held.set()


class RankWorkers:
    """Rank 0's handle on its replica's other ranks (Ray actors in the replica's placement group)."""

    def __init__(self, cfg: ServeConfig):
        ranks = cfg.generator.parallel.ranks
        group = get_current_placement_group()
        if group is None:
            raise RuntimeError(f"serve.generator.parallel asks for {ranks} ranks but this replica has no placement "
                               "group (build_app gives it one)")
        g = cfg.generator
        actor = ray.remote(RankWorker)
        data = cfg.model_dump(mode="json")
        self.address = ray.util.get_node_ip_address()
        tag = uuid.uuid4().hex[:8]
        self.actors = [
            actor.options(name=f"{WORKER_PREFIX}{rank}-{tag}", num_cpus=g.num_cpus, num_gpus=g.num_gpus,
                          max_restarts=0, max_concurrency=3, scheduling_strategy=(
                PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=rank)),
            ).remote(data, rank)
            for rank in range(1, ranks)]
        self.timeout_s = g.collective_timeout_s

    def join(self, port: int) -> list[Any]:
        return [a.join.remote(self.address, port) for a in self.actors]

    def start(self, request: dict[str, Any]) -> list[Any]:
        return [a.generate.remote(request) for a in self.actors]

    def wait(self, refs: list[Any]) -> list[Any]:
        return ray.get(refs, timeout=self.timeout_s)

    def status(self) -> list[dict[str, Any]]:
        return ray.get([a.status.remote() for a in self.actors], timeout=self.timeout_s)

    def lost(self) -> list[int]:
        """Ranks that no longer answer (a worker answers `ping` while it generates: it has threads to spare)."""
        out = []
        for rank, actor in enumerate(self.actors, start=1):
            try:
                ray.get(actor.ping.remote(), timeout=10)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                out.append(rank)
        return out
