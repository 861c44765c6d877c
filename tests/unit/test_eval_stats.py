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


def test_weighted_total_is_vbench_s_sum_over_frames():
    """A 3-frame video (2 pairs) at 0.5 and a 101-frame one (100 pairs) at 1.0: VBench's
    subject-consistency total is (2 * 0.5 + 100 * 1.0) / 102, not the videos' mean 0.75."""
    m, lo, hi = bootstrap_ci([0.5, 1.0, float("nan")], weights=[2, 100, 50])
    assert m == (2 * 0.5 + 100 * 1.0) / 102
    assert lo <= m <= hi
    assert bootstrap_ci([0.5, 1.0])[0] == 0.75


def test_weights_must_match_the_values():
    import pytest

    with pytest.raises(ValueError, match="weights"):
        bootstrap_ci([1.0, 2.0], weights=[1.0])
