"""Uncertainty of Med-VBench numbers: bootstrap over prompts.

A model's score on a dimension is a mean over its videos; resampling the prompts (with
replacement) gives a percentile interval. Two models generated from the same prompts are
compared on paired differences, so prompt difficulty cancels.
"""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                 weights=None) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of `values` (NaNs dropped). With `weights` the mean is
    sum(w * x) / sum(w) (VBench's frame-weighted consistency totals), and each resample of the
    videos recomputes that ratio."""
    x = np.asarray(values, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != x.shape:
        raise ValueError(f"weights {w.shape} do not match values {x.shape}")
    keep = ~np.isnan(x) & (w > 0)
    x, w = x[keep], w[keep]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = (x[idx] * w[idx]).sum(axis=1) / w[idx].sum(axis=1)
    a = (1 - level) / 2
    return float((x * w).sum() / w.sum()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_difference_ci(a, b, **kwargs) -> tuple[float, float, float]:
    """CI of mean(a - b) over items present in both (same prompt order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same prompts: {a.shape} vs {b.shape}")
    return bootstrap_ci(a - b, **kwargs)
