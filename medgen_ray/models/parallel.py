"""One video over several ranks: diffusers' context parallelism on our families' transformers.

Ulysses splits the video tokens (and the text where the family's plan says so) by sequence
over the ranks; each attention layer swaps sequence for heads with an all-to-all, so every rank
attends over the whole sequence for 1/N of the heads. Ring keeps the heads and passes key/value
blocks round the ranks, which needs the attention's log-sum-exp (a GPU backend: flash or cuDNN)
and no padding mask. diffusers (0.42) marks `enable_parallelism` experimental: the version range
is pinned (core/ray_compat.py checks it at import).

The process group is the caller's (a Serve replica with its rank workers, a Ray Train run): this
module only checks degrees and wires a transformer into the group's mesh. No Ray here, and no
torch at import (configs check degrees with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medgen_ray.models.families import TINY_HEADS, VideoFamily, family_of, family_of_transformer


@dataclass(frozen=True)
class Degrees:
    """Context-parallel degrees: ranks = ulysses x ring."""

    ulysses: int = 1
    ring: int = 1

    @property
    def ranks(self) -> int:
        return self.ulysses * self.ring


def heads_of(model: str) -> int:
    """Attention heads of a registry name's transformer, without loading it."""
    return TINY_HEADS if model.endswith("/tiny") else family_of(model).heads


def degree_problems(model: str, degrees: Degrees, *, where: str, training: bool = False) -> list[str]:
    """Why these degrees cannot run `model` (empty when they can), each naming the numbers."""
    family = family_of(model)
    heads = heads_of(model)
    out = []
    if degrees.ulysses < 1 or degrees.ring < 1:
        out.append(f"{where}: degrees must be >= 1 (ulysses {degrees.ulysses}, ring {degrees.ring})")
        return out
    if degrees.ulysses > 1 and heads % degrees.ulysses:
        out.append(f"{where}.ulysses={degrees.ulysses}: must divide {family.label}'s {heads} attention heads"
                   f"{' (tiny twin)' if model.endswith('/tiny') else ''}")
    if degrees.ring > 1 and not family.ring_attention:
        out.append(f"{where}.ring={degrees.ring}: {family.label}'s attention masks its text padding, which ring "
                   "attention cannot take; use ulysses")
    if degrees.ring > 1 and training:
        out.append(f"{where}.ring={degrees.ring}: ring attention does not train with gradient checkpointing "
                   "(diffusers raises CheckpointError); use ulysses")
    return out


def placement_problems(ranks: int, gpus_per_rank: float, cpus_per_rank: float, nodes: list[dict[str, float]],
                       *, where: str) -> list[str]:
    """Why a replica of `ranks` one-device bundles packed on one node cannot be placed on a cluster
    whose nodes have these resources (Ray's per-node totals), each naming the numbers."""
    out = []
    if ranks <= 1:
        return out
    need = {"GPU": gpus_per_rank * ranks, "CPU": cpus_per_rank * ranks}
    for kind, amount in need.items():
        if amount <= 0:
            continue
        biggest = max((n.get(kind, 0.0) for n in nodes), default=0.0)
        total = sum(n.get(kind, 0.0) for n in nodes)
        if amount > total:
            out.append(f"{where}: {ranks} ranks x {amount / ranks:g} {kind} = {amount:g} {kind}, the cluster has "
                       f"{total:g}")
        elif amount > biggest:
            out.append(f"{where}: {ranks} ranks x {amount / ranks:g} {kind} = {amount:g} {kind} on one node "
                       f"(a replica's ranks share a node), the largest node has {biggest:g}")
    return out


def cpu_ranks_see_one_device() -> None:
    """diffusers picks a rank's device as `rank % torch.accelerator.device_count()`, which is a
    division by zero on a host without accelerators; CPU ranks (gloo, tests) all use `cpu`."""
    import torch

    if not torch.cuda.is_available() and torch.accelerator.device_count() == 0:
        torch.accelerator.device_count = lambda: 1


RING_BACKEND = "_native_flash"  # diffusers' backend whose forward op returns the log-sum-exp ring merges with


def context_parallel(transformer: Any, degrees: Degrees, mesh: Any = None, training: bool = False) -> Any:
    """Wire a loaded transformer into the current process group for these degrees (in place).

    Every rank of the group calls this with the same degrees, after init_process_group. `mesh` is a
    DeviceMesh with "ring" and "ulysses" dimensions when the group is larger than one video's ranks
    (data parallel x context parallel); None builds one over the whole group. Inference lets
    Ulysses take sequences the degree does not divide (`ulysses_anything`: a prompt's real tokens);
    training needs divisible ones (the backward of the uneven all-to-all is not implemented)."""
    from diffusers import ContextParallelConfig

    if degrees.ranks == 1:
        return transformer
    family: VideoFamily = family_of_transformer(type(transformer).__name__)
    cpu_ranks_see_one_device()
    plan = family.module().context_parallel_plan(transformer, training)
    uneven = not training  # inference takes sequences the degree does not divide (a prompt's real tokens)
    config = ContextParallelConfig(ulysses_degree=degrees.ulysses, ring_degree=degrees.ring, mesh=mesh,
                                   ulysses_anything=uneven and degrees.ring == 1,
                                   ring_anything=uneven and degrees.ulysses == 1)
    if degrees.ring > 1:
        transformer.set_attention_backend(RING_BACKEND)
    transformer.enable_parallelism(config=config, cp_plan=plan)
    return transformer


def pad_tokens(inputs: dict[str, Any], key: str, mask_key: str, extra: int) -> dict[str, Any]:
    """`inputs` with `extra` zero tokens after the token stream `key` (B, n, d) and False after its
    boolean mask `mask_key` (B, n)."""
    import torch

    if not extra:
        return inputs
    tokens, mask = inputs[key], inputs[mask_key]
    return {**inputs,
            key: torch.cat([tokens, tokens.new_zeros(tokens.shape[0], extra, tokens.shape[2])], dim=1),
            mask_key: torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1)}
