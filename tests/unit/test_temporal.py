import numpy as np
import pytest

from medgen_ray.curate.temporal import find_segments, make_clip_id, medical_runs, split_run


def _run(scores, sims=None, tau=0.5, min_s=6, max_s=10):
    t = np.arange(len(scores), dtype=float)
    sims = np.ones(len(scores) - 1) if sims is None else np.asarray(sims, dtype=float)
    return find_segments(t, np.asarray(scores, dtype=float), sims, 0.5, tau, min_s, max_s)


def test_paper_rule_needs_j_minus_i_at_least_6():
    assert _run([1] * 6) == []  # frames 0..5: j - i = 5
    assert _run([1] * 7) == [(0, 6)]


def test_a_non_medical_frame_breaks_the_run():
    scores = [1] * 7 + [0] + [1] * 7
    assert _run(scores) == [(0, 6), (8, 14)]


def test_a_scene_cut_breaks_the_run():
    sims = np.ones(15)
    sims[6] = 0.2  # between frame 6 and 7
    assert _run([1] * 16, sims) == [(0, 6), (7, 15)]


def test_long_runs_split_into_fitting_pieces():
    t = np.arange(30, dtype=float)
    assert split_run(t, 0, 13, 6, 10) == [(0, 6), (6, 13)]  # 13 s -> 6.5 + 6.5, not 10 + 3
    assert split_run(t, 0, 11, 6, 10) == [(0, 10)]  # 11 s cannot give two 6 s pieces
    pieces = split_run(t, 0, 29, 6, 10)
    assert all(6 <= t[b] - t[a] <= 10 for a, b in pieces) and pieces[0][0] == 0 and pieces[-1][1] == 29


def test_runs_and_ids():
    assert medical_runs(np.array([0, 1, 1, 0, 1]), np.ones(4), 0.5) == [(1, 2), (4, 4)]
    assert make_clip_id("abc", 12.0, 20.0) == "abc_00012000_00020000"
    assert make_clip_id("abc", 12.0, 20.0) == make_clip_id("abc", 12.0000001, 20.0)


@pytest.mark.parametrize("min_s,max_s", [(6, 10), (4, 8), (6, 6)])
def test_every_clip_obeys_the_rule(min_s, max_s):
    rng = np.random.default_rng(0)
    scores = (rng.random(200) > 0.1).astype(float)
    sims = rng.uniform(0.3, 1.0, 199)
    t = np.arange(200, dtype=float)
    for i, j in find_segments(t, scores, sims, 0.5, 0.4, min_s, max_s):
        assert min_s <= j - i <= max_s
        assert scores[i : j + 1].min() >= 0.5
        assert (sims[i:j] > 0.4).all()


def test_snapping_moves_ends_inward_onto_keyframes():
    from medgen_ray.curate.temporal import snap_to_keyframes

    keys = np.arange(0, 30, 2.0)
    assert snap_to_keyframes(7.0, 14.0, keys, 30.0, 2.0, 6.0) == (8.0, 14.0)
    assert snap_to_keyframes(1.0, 9.0, keys, 30.0, 2.0, 6.0) == (2.0, 8.0)
    assert snap_to_keyframes(1.0, 8.0, keys, 30.0, 2.0, 6.0) == (2.0, 8.0)  # exactly min_seconds: fine
    assert snap_to_keyframes(3.0, 9.0, keys, 30.0, 2.0, 6.0) == (3.0, 9.0)  # 4..8 too short: unchanged
    assert snap_to_keyframes(21.0, 29.5, keys, 29.5, 2.0, 6.0) == (22.0, 29.5)  # video end is a cut point
    assert snap_to_keyframes(23.0, 29.5, keys, 29.5, 2.0, 6.0) == (23.0, 29.5)  # 24..29.5 too short
    assert snap_to_keyframes(7.0, 14.0, keys, 30.0, 0.0, 6.0) == (7.0, 14.0)
