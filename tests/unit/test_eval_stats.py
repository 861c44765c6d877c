import numpy as np

from medgen_ray.evaluate.stats import bootstrap_ci, paired_difference_ci


def test_interval_contains_mean_and_shrinks_with_more_prompts():
    rng = np.random.default_rng(0)
    small = rng.normal(70, 5, 20)
    big = rng.normal(70, 5, 800)
    m, lo, hi = bootstrap_ci(small)
    M, LO, HI = bootstrap_ci(big)
    assert lo < m < hi and LO < M < HI
    assert (HI - LO) < (hi - lo) / 3
    assert LO < 70 < HI


def test_constant_scores_have_zero_width_and_nans_are_dropped():
    assert bootstrap_ci([3.0, 3.0, float("nan")]) == (3.0, 3.0, 3.0)
    assert np.isnan(bootstrap_ci([float("nan")])[0])


def test_paired_difference_sees_a_small_consistent_gain():
    rng = np.random.default_rng(1)
    base = rng.normal(60, 10, 200)  # large prompt-to-prompt spread
    better = base + 1.0 + rng.normal(0, 0.2, 200)
    _, lo, hi = paired_difference_ci(better, base)
    assert lo > 0.8 and hi < 1.2
    _, ulo, uhi = bootstrap_ci(better)
    _, blo, bhi = bootstrap_ci(base)
    assert ulo < bhi  # unpaired intervals overlap: only the paired view resolves the gain
