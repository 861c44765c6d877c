import numpy as np
import pytest

from medgen_ray.models.linear_probe import fit_probe, load_probe, probe_accuracy


def test_probe_learns_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    y = (x[:, 3] + 0.5 * x[:, 7] > 0).astype(int)
    p = fit_probe(x, y, "emb/x")
    assert probe_accuracy(p, x, y) > 0.95
    p.save(str(tmp_path / "p.npz"))
    q = load_probe(str(tmp_path / "p.npz"), expect_embedder="emb/x")
    np.testing.assert_allclose(p.predict_proba(x), q.predict_proba(x))


def test_probe_refuses_wrong_features(tmp_path):
    p = fit_probe(np.eye(4).repeat(3, 0), np.array([0, 1, 0, 1]).repeat(3), "clip/tiny")
    p.save(str(tmp_path / "p.npz"))
    with pytest.raises(ValueError, match="trained on 'clip/tiny'"):
        load_probe(str(tmp_path / "p.npz"), expect_embedder="clip/vit-b-32")
    with pytest.raises(ValueError, match="width 4"):
        p.predict_proba(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="both 0 and 1"):
        fit_probe(np.zeros((4, 2)), np.ones(4), "e")
