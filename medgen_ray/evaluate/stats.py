"""Uncertainty of Med-VBench numbers: bootstrap over prompts.

A model's score on a dimension is a mean over its videos; resampling the prompts (with
replacement) gives a percentile interval. Two models generated from the same prompts are
compared on paired differences, so prompt difficulty cancels.
"""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of `values` (NaNs dropped)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_difference_ci(a, b, **kwargs) -> tuple[float, float, float]:
    """CI of mean(a - b) over items present in both (same prompt order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same prompts: {a.shape} vs {b.shape}")
    return bootstrap_ci(a - b, **kwargs)
