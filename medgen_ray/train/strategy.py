"""How gradients become updates: DDP (plain torch optimizer) or DeepSpeed ZeRO.

Both expose the same small surface to the loop: `model` (what to call), `micro_step(loss)`
(returns True when an optimizer step happened, i.e. every `grad_accum` micro-batches),
`lr()`, and `save(dir)` / `load(dir)` of everything a resume needs besides the loop's own
counters. Gradient accumulation, clipping and the warm-up schedule live here so both
strategies give the same update for the same data.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from medgen_ray.config import TrainConfig

STATE_FILE = "optim_state.pt"
DS_TAG = "deepspeed"


def warmup_lambda(warmup_steps: int):
    """Constant learning rate after a linear warm-up (the paper's schedule)."""
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the LoRA parameters (fused on GPU)."""
    fused = bool(params) and params[0].is_cuda  # one kernel for all LoRA tensors on GPU
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


class DdpStrategy:
    """Plain DDP: gradient all-reduce, clipping and optimizer steps with accumulation."""

    def __init__(self, model: torch.nn.Module, params: list[torch.nn.Parameter], cfg: TrainConfig, world: int):
        self.cfg = cfg
        self.params = params
        self.raw = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [model.device.index] if next(model.parameters()).is_cuda else None
            self.model = DistributedDataParallel(model, device_ids=device_ids,
                                                 find_unused_parameters=cfg.find_unused)
        else:
            self.model = model
        self.optimizer = make_optimizer(params, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_lambda(cfg.warmup_steps))
        self.micro = 0

    def sync_context(self):
        """Skip the gradient all-reduce on micro-batches that do not end an accumulation."""
        last = (self.micro + 1) % self.cfg.grad_accum == 0
        if last or not hasattr(self.model, "no_sync"):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def micro_step(self, loss: torch.Tensor) -> bool:
        (loss / self.cfg.grad_accum).backward()
        self.micro += 1
        if self.micro % self.cfg.grad_accum:
            return False
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def lora_state(self) -> dict[str, torch.Tensor]:
        from medgen_ray.train.lora import lora_state

        return lora_state(self.raw)

    def save(self, folder: str, rank: int) -> None:
        if rank == 0:
            torch.save({"lora": self.lora_state(), "rank": self.cfg.lora.rank, "alpha": self.cfg.lora.alpha,
                        "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict()}, Path(folder) / STATE_FILE)

    def load(self, folder: str) -> None:
        from medgen_ray.train.lora import load_lora_state

        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
        load_lora_state(self.raw, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def deepspeed_config(cfg: TrainConfig, on_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed config dict for the training settings."""
    mp = cfg.mixed_precision if on_gpu else "no"
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.max_grad_norm or 0.0,
        "zero_optimization": {"stage": cfg.zero_stage, "overlap_comm": on_gpu,
                              "stage3_gather_16bit_weights_on_model_save": cfg.zero_stage == 3},
        "bf16": {"enabled": mp == "bf16"},
        "fp16": {"enabled": mp == "fp16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class DeepSpeedStrategy:
    """DeepSpeed ZeRO (stage 1-3) over the LoRA parameters."""

    def __init__(self, model: torch.nn.Module, params: list[torch.nn.Parameter], cfg: TrainConfig, world: int):
        import deepspeed

        self.cfg = cfg
        self.raw = model
        self.params = params
        optimizer = make_optimizer(params, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(cfg.warmup_steps))
        on_gpu = next(model.parameters()).is_cuda
        # Ray Train has already formed the process group; DeepSpeed joins it.
        os.environ.setdefault("LOCAL_RANK", "0")
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=params, optimizer=optimizer, lr_scheduler=scheduler,
            config=deepspeed_config(cfg, on_gpu), dist_init_required=False)
        self.model = self.engine

    def sync_context(self):
        return contextlib.nullcontext()  # the engine accumulates and reduces at the boundary itself

    def micro_step(self, loss: torch.Tensor) -> bool:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.backward(loss)
        self.engine.step()
        return boundary

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def lora_state(self) -> dict[str, torch.Tensor]:
        from medgen_ray.train.lora import lora_state

        if self.cfg.zero_stage == 3:  # parameters are partitioned: gather them to read them whole
            import deepspeed

            with deepspeed.zero.GatheredParameters(self.params, modifier_rank=None):
                return lora_state(self.raw)
        return lora_state(self.raw)

    def save(self, folder: str, rank: int) -> None:
        self.engine.save_checkpoint(folder, tag=DS_TAG)  # collective: every rank writes its shard

    def load(self, folder: str) -> None:
        path, _ = self.engine.load_checkpoint(folder, tag=DS_TAG)
        if path is None:
            raise FileNotFoundError(f"DeepSpeed checkpoint {folder}/{DS_TAG}: not found or incomplete")


def make_strategy(model, params, cfg: TrainConfig, world: int):
    """The DDP or DeepSpeed strategy the config names."""
    if cfg.strategy == "deepspeed":
        return DeepSpeedStrategy(model, params, cfg, world)
    return DdpStrategy(model, params, cfg, world)
