"""Each registered CLIP equals open_clip's own build for its pretrained tag, on identical
(seeded random) weights: open_clip's `create_model(arch, pretrained=tag)` runs its own path
(pretrained cfg of the tag, its QuickGELU compatibility check, its checkpoint loader) with the
download replaced by a local file of our weights. open_clip 3.3, src/open_clip/factory.py
(create_model: "QuickGELU mismatch between final model config ... and pretrained tag")."""

import warnings

import numpy as np
import open_clip
import pytest
import torch

from medgen_ray.models.registry import OPEN_CLIP, REGISTRY, load_model
from medgen_ray.models.weights import RANDOM

NAMES = sorted(n for n, s in REGISTRY.items() if s.kind == "clip" and not s.tiny)


def _reference(arch: str, tag: str, state_file, monkeypatch):
    """open_clip's build for (arch, tag), its weights read from our file; a QuickGELU mismatch
    between the architecture and the tag's training setting is an error here."""
    import open_clip.factory

    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda cfg, cache_dir=None: str(state_file))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*QuickGELU mismatch.*")
        return open_clip.create_model(arch, pretrained=tag, device="cpu").eval()


@pytest.mark.parametrize("name", NAMES)
def test_registered_clip_equals_open_clip_reference(name, tmp_path, monkeypatch):
    assert set(NAMES) == set(OPEN_CLIP)
    arch, tag, size = OPEN_CLIP[name]
    torch.manual_seed(0)
    ours = load_model(name, RANDOM, "cpu", kind="clip")
    state_file = tmp_path / "weights.pt"
    torch.save(ours.model.state_dict(), state_file)
    ref = _reference(arch, tag, state_file, monkeypatch)
    quick = any(isinstance(m, open_clip.transformer.QuickGELU) for m in ours.model.modules())
    assert quick == open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False)  # as the weights were trained
    frames = np.random.default_rng(1).integers(0, 255, (2, size, size, 3)).astype(np.uint8)
    texts = ["an endoscopic view of the stomach", "a video game screenshot"]
    with torch.no_grad():
        want_img = torch.nn.functional.normalize(ref.encode_image(ours.preprocess(frames)), dim=-1).numpy()
        want_txt = torch.nn.functional.normalize(ref.encode_text(open_clip.get_tokenizer(arch)(texts)), dim=-1).numpy()
    np.testing.assert_allclose(ours.encode_images(frames), want_img, atol=1e-5)
    np.testing.assert_allclose(ours.encode_texts(texts), want_txt, atol=1e-5)
    del ours, ref


def test_plain_gelu_config_trips_open_clips_own_check(tmp_path, monkeypatch):
    """The check above can fail: the plain `ViT-B-32` config (GELU), which the registry used
    before, is refused by open_clip's check for the `openai` tag, and its embeddings differ."""
    torch.manual_seed(0)
    quick = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    state_file = tmp_path / "weights.pt"
    torch.save(quick.state_dict(), state_file)
    with pytest.raises(UserWarning, match="QuickGELU mismatch"):
        _reference("ViT-B-32", "openai", state_file, monkeypatch)
    plain = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    plain.load_state_dict(quick.state_dict())
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = quick.encode_image(x), plain.encode_image(x)
    assert not torch.allclose(a, b, atol=1e-5)
