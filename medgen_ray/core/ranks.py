"""Process groups of ranks that work on one thing together (one video over N devices).

torch.distributed only, no Ray: the Serve replica with its rank workers and the GPU scripts
use the same calls. CPU tensors always travel over gloo (the stop flag, tests on CPU ranks);
CUDA tensors over NCCL. Every collective has the group's timeout, so a rank that dies makes the
others raise instead of waiting for ever.
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist


class StopAgreed(Exception):
    """Rank 0 said stop at this step: every rank leaves the generation at the same step."""


def join_group(rank: int, world: int, address: str, port: int, timeout_s: float) -> None:
    """Join the process group of `world` ranks whose rank 0 listens on address:port (blocks until
    every rank has joined, or the timeout)."""
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "cpu:gloo"
    dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))


def leave_group() -> None:
    """Leave this process's group (no-op outside one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def agree_to_stop(stop: bool) -> None:
    """Called by every rank once per denoising step: rank 0's `stop` is broadcast, and every rank
    raises StopAgreed together when it is true (a cancel stops all ranks at the same step)."""
    flag = torch.tensor([1 if stop else 0], dtype=torch.int32)
    dist.broadcast(flag, src=0)
    if int(flag.item()):
        raise StopAgreed()
