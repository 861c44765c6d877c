import numpy as np
import pytest

from medgen_ray.models.registry import REGISTRY, WeightsUnavailable, get_spec, load_model, pull_weights


def test_every_model_has_a_tiny_twin():
    families = {n.split("/")[0] for n in REGISTRY}
    for fam in families:
        assert f"{fam}/tiny" in REGISTRY or fam == "minilm" and "minilm/tiny" in REGISTRY


def test_unknown_name_lists_choices():
    with pytest.raises(KeyError, match="choices: .*clip/tiny"):
        get_spec("clip/nope", "clip")
    with pytest.raises(KeyError, match="unknown text"):
        get_spec("clip/tiny", "text")


def test_tiny_clip_is_deterministic_and_loads_from_pulled_weights(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    a = load_model("clip/tiny").encode_images(frames)
    b = load_model("clip/tiny").encode_images(frames)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    uri = pull_weights("clip/tiny", str(tmp_path / "w"))
    c = load_model("clip/tiny", weights=uri).encode_images(frames)
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_real_minilm_ships_offline_and_separates_topics():
    emb = load_model("minilm", kind="text")
    v = emb.embed(["laparoscopic gallbladder surgery", "keyhole surgery removing the gallbladder",
                   "minecraft speedrun world record"])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_hub_model_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailable, match="medgen weights pull"):
        load_model("arctic-embed-m", kind="text")
    with pytest.raises(WeightsUnavailable, match="not found"):
        load_model("clip/tiny", weights=str(tmp_path / "missing"))


def test_random_clip_is_seeded_and_holds_fp16_values():
    """weights=random (benchmarks, reference tests): the same network whatever RNG state the
    caller left, in fp16 values as OpenAI released its CLIP (its `clip` package rounds to fp16)."""
    import torch

    from medgen_ray.models.weights import RANDOM

    torch.manual_seed(1)
    a = load_model("clip/vit-b-32", RANDOM, "cpu", kind="clip").model.state_dict()
    torch.manual_seed(2)
    torch.rand(10)
    b = load_model("clip/vit-b-32", RANDOM, "cpu", kind="clip").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(v, v.half().float()) for v in a.values() if v.is_floating_point())
