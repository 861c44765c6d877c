"""Test-only: ring attention on CPU ranks.

diffusers' ring attention merges each key block's partial result with the attention's
log-sum-exp, which its native CPU backend does not return; its `_native_flash` backend (what
models.parallel picks for ring on CUDA) calls the CUDA flash kernel. This swaps that backend's
forward op for torch's own CPU flash kernel (`_scaled_dot_product_flash_attention_for_cpu`,
which returns the log-sum-exp), so the ring code path itself runs on gloo ranks. Inference only
(no backward), and only inside the test's rank processes."""

from __future__ import annotations

import torch


def cpu_flash_forward_op(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                         enable_gqa=False, return_lse=False, _save_ctx=True, _parallel_config=None):
    """diffusers' forward-op signature; (B, S, H, D) in and out, the log-sum-exp as (B, S, H)."""
    if attn_mask is not None or enable_gqa:
        raise ValueError("the CPU ring shim takes no mask and no grouped-query attention")
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query.transpose(1, 2).contiguous(), key.transpose(1, 2).contiguous(), value.transpose(1, 2).contiguous(),
        dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    out, lse = out.transpose(1, 2).contiguous(), lse.transpose(1, 2).contiguous()
    return (out, lse) if return_lse else out


def install() -> None:
    from diffusers.models import attention_dispatch

    attention_dispatch._native_flash_attention_forward_op = cpu_flash_forward_op
