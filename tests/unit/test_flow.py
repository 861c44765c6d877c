import pytest
import torch

from medgen_ray.train.flow import flow_loss, noisy_latents, sample_sigmas, shift_sigmas, timesteps_for, velocity_target


def test_noisy_interpolates_between_data_and_noise():
    x0, eps = torch.ones(2, 4, 3, 2, 2), -torch.ones(2, 4, 3, 2, 2)
    s = torch.tensor([0.0, 1.0])
    out = noisy_latents(x0, eps, s)
    assert torch.equal(out[0], x0[0]) and torch.equal(out[1], eps[1])
    mid = noisy_latents(x0, eps, torch.tensor([0.25, 0.25]))
    assert torch.allclose(mid, torch.full_like(mid, 0.5))


def test_euler_step_with_exact_velocity_recovers_data():
    """The pipeline's sampler x' = x + (σ' − σ)·v must land on x0 when v is the training target."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 2, 3, 3, generator=g), torch.randn(1, 4, 2, 3, 3, generator=g)
    sigma = torch.tensor([0.7])
    x = noisy_latents(x0, eps, sigma)
    x_next = x + (0.0 - 0.7) * velocity_target(x0, eps)
    assert torch.allclose(x_next, x0, atol=1e-6)


def test_shift_matches_scheduler_formula():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=7.0)
    sigmas = torch.linspace(0.05, 1.0, 20)
    ours = shift_sigmas(sigmas, 7.0)
    theirs = sched.config.shift * sigmas / (1 + (sched.config.shift - 1) * sigmas)
    assert torch.allclose(ours, theirs)
    assert (ours >= sigmas).all() and torch.isclose(ours[-1], torch.tensor(1.0))


@pytest.mark.parametrize("sampling", ["uniform", "logit_normal", "mode"])
def test_sampled_sigmas_in_open_unit_interval(sampling):
    s = sample_sigmas(1000, sampling=sampling, shift=3.0, generator=torch.Generator().manual_seed(1))
    assert s.shape == (1000,) and (s > 0).all() and (s < 1).all()
    assert timesteps_for(s).max() < 1000


def test_shift_moves_mass_to_high_noise():
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    assert sample_sigmas(4000, shift=7.0, generator=g1).mean() > sample_sigmas(4000, shift=1.0, generator=g2).mean() + 0.2


def test_unknown_sampling_names_choices():
    with pytest.raises(ValueError, match="logit_normal"):
        sample_sigmas(4, sampling="cosine")


def test_loss_zero_at_target_and_float32():
    x0, eps = torch.randn(2, 4, 1, 2, 2).bfloat16(), torch.randn(2, 4, 1, 2, 2).bfloat16()
    loss = flow_loss((eps - x0), x0, eps)
    assert loss.dtype == torch.float32 and loss.item() == 0.0
    assert flow_loss(torch.zeros_like(x0), x0, eps).item() > 0
