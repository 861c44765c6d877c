"""Our diffusers-format LoRA export through diffusers' own `load_lora_weights` (diffusers 0.42.1,
peft 0.21.2): it must load without diffusers' unhandled-key warning (src/diffusers/utils/
peft_utils.py, `_maybe_warn_for_unhandled_keys`: "led to unexpected keys" / "led to missing
keys") or the no-keys warning of loaders/peft.py, and change the pipeline's output."""

import contextlib
import logging

import torch
from safetensors.torch import load_file, save_file

from medgen_ray.models.hunyuan import build_pipeline, build_tiny_components
from medgen_ray.train import lora
from tests.unit.test_lora import _generate, _trained_state


@contextlib.contextmanager
def diffusers_warnings():
    """Warnings diffusers logs while the block runs (its loggers do not reach the root logger)."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger, keep = logging.getLogger("diffusers"), Keep(logging.WARNING)
    logger.addHandler(keep)
    try:
        yield messages
    finally:
        logger.removeHandler(keep)


def _key_warnings(messages: list[str]) -> list[str]:
    return [m for m in messages if "unexpected keys" in m or "missing keys" in m or "No LoRA keys" in m]


def test_export_loads_clean_through_diffusers_and_changes_output(tmp_path):
    _, state = _trained_state()
    path = lora.save_diffusers_lora(state, 4, 8.0, str(tmp_path / "lora"))
    base = _generate(build_pipeline(build_tiny_components()))
    pipe = build_pipeline(build_tiny_components())
    with diffusers_warnings() as messages:
        pipe.load_lora_weights(path, adapter_name="medgen")
    assert not _key_warnings(messages), messages
    assert not torch.allclose(_generate(pipe), base, atol=1e-3)


def test_a_file_missing_a_key_is_caught_by_the_same_check(tmp_path):
    """The check can fail: drop one lora_B tensor and diffusers warns about the missing key."""
    _, state = _trained_state()
    path = lora.save_diffusers_lora(state, 4, 8.0, str(tmp_path / "lora"))
    tensors = load_file(path)
    dropped = next(k for k in sorted(tensors) if ".lora_B." in k)
    del tensors[dropped]
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken))
    pipe = build_pipeline(build_tiny_components())
    with diffusers_warnings() as messages:
        pipe.load_lora_weights(str(broken), adapter_name="medgen")
    assert _key_warnings(messages), messages
