"""Flow-matching maths as HunyuanVideo trains: the one place the noise schedule and loss live.

x_σ = (1 − σ)·x0 + σ·ε and the model predicts the velocity ε − x0, so the sampler's Euler step
x_{σ'} = x_σ + (σ' − σ)·v walks from noise (σ=1) to data (σ=0). The transformer takes the
timestep as σ·1000, as FlowMatchEulerDiscreteScheduler hands it at inference.
"""

from __future__ import annotations

import torch

TIMESTEP_SCALE = 1000.0
SAMPLINGS = ("uniform", "logit_normal", "mode")


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3/HunyuanVideo time shift: shift > 1 spends more steps at high noise."""
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def sample_sigmas(n: int, *, sampling: str = "uniform", shift: float = 1.0, logit_mean: float = 0.0,
                  logit_std: float = 1.0, mode_scale: float = 1.29,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw n training noise levels in (0, 1), then apply the time shift."""
    if sampling == "uniform":
        u = torch.rand(n, generator=generator)
    elif sampling == "logit_normal":
        u = torch.sigmoid(logit_mean + logit_std * torch.randn(n, generator=generator))
    elif sampling == "mode":
        u = torch.rand(n, generator=generator)
        u = 1 - u - mode_scale * (torch.cos(torch.pi * u / 2) ** 2 - 1 + u)
    else:
        raise ValueError(f"timestep sampling {sampling!r}: choose one of {', '.join(SAMPLINGS)}")
    return shift_sigmas(u.clamp(1e-5, 1 - 1e-5), shift)


def _expand(sigmas: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigmas.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Flow-matching interpolation (1 - sigma) * x0 + sigma * noise."""
    s = _expand(sigmas, x0)
    return (1.0 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching target noise - x0."""
    return noise - x0


def flow_loss(pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error against the velocity target, in float32 whatever the model's dtype."""
    return torch.nn.functional.mse_loss(pred.float(), velocity_target(x0, noise).float())


def timesteps_for(sigmas: torch.Tensor) -> torch.Tensor:
    """Transformer timesteps (x1000) for sigmas."""
    return sigmas * TIMESTEP_SCALE
