"""Each new model family's tiny twin through the whole path on a local Ray: precompute 8 clips,
two-worker DDP LoRA that overfits them, and the exported LoRA served by name beside the base model
(Ray Serve), both generating through the HTTP API. HunyuanVideo's twin goes the same path in
test_train.py and test_serve.py, and on through `medgen evaluate` in test_evaluate.py: the
evaluation's generation client and scoring read mp4s over HTTP and name no family, so running
them per family here repeated that test (~25 s of CI each) without proving more."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from medgen_ray.config import load_config
from medgen_ray.models.families import FAMILIES as FAMILY_SPECS
from medgen_ray.samples.clipset import make_clip_dataset
from tests.integration.test_serve import TOKEN, _free_port, _wait_healthy, call, frames_of
from tests.integration.test_train import _losses, _precompute_overrides, _train_overrides

# wan2.1-t2v-14b's twin is the 1.3B twin's architecture (same classes, same module tree, other
# shift and default shape): its whole path here would repeat the 1.3B run (~3 min of CI); its loading,
# inputs, exports and fine-tuned weights are tested in tests/reference/test_families.py
FAMILIES = ["hunyuan_video_1_5", "wan2.1-t2v-1.3b", "wan2.2-ti2v-5b"]
# beyond the shared attention projections: HunyuanVideo-1.5's text stream, Wan's MLP and output head
# (all mapped by the original-key export): the twins have 2 blocks, and attention alone moved a 2-block
# Wan too little (loss ratio 0.76 after 80 steps at 32x64 for Wan2.1, 0.82 for Wan2.2)
TARGETS = {"hunyuan_video_1_5": "[to_q, to_k, to_v, to_out.0, add_q_proj, add_k_proj, add_v_proj, to_add_out]"}
WAN_TARGETS = "[to_q, to_k, to_v, to_out.0, ffn.net.0.proj, ffn.net.2, proj_out]"
STEPS = 120


def _bucket(name: str) -> tuple[int, int]:
    """2 x 4 tokens of the family's pixels per side (32x64, Wan2.2: 64x128): the twin then sees
    24 latent tokens per 9-frame clip whatever its VAE (at 32x64 Wan2.2's twin had 6 and did not
    overfit 8 clips in 80 steps: loss 1.20 -> 0.98)."""
    spatial = FAMILY_SPECS[name].spatial
    return 2 * spatial, 4 * spatial


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_clip_dataset(tmp_path_factory.mktemp("families") / "dataset", n=8, seconds=1.0)


@pytest.mark.parametrize("name", FAMILIES)
def test_family_precompute_train_serve(name, dataset, tmp_path, ray_cluster, monkeypatch):
    from medgen_ray.runner import run_precompute, run_train
    from medgen_ray.train.precompute import check_shards

    model = f"{name}/tiny"
    out = tmp_path / "latents"
    h, w = _bucket(name)
    pre = load_config(None, [*_precompute_overrides(dataset, out), f"precompute.model={model}",
                             f"precompute.buckets=[{{frames: 9, height: {h}, width: {w}}}]"])
    assert run_precompute(pre)["encoded"] == 8
    assert check_shards(str(out), name).buckets == {f"9x{h}x{w}": 8}
    assert set(pq.read_table(str(out / "shards"), columns=["family"]).column("family").to_pylist()) == {name}

    runs = tmp_path / "runs"
    app = load_config(None, _train_overrides(out, runs, "lora", f"train.model={model}", f"train.max_steps={STEPS}", "train.lr=1e-2",
                                             f"train.checkpoint_every={STEPS}", f"train.validation.height={h}",
                                             f"train.validation.width={w}",
                                             f"train.lora.targets={TARGETS.get(name, WAN_TARGETS)}"))
    assert run_train(app)["steps"] == STEPS
    losses = _losses(runs / "lora")
    assert np.mean(losses[-15:]) < 0.6 * np.mean(losses[:15]), (np.mean(losses[:15]), np.mean(losses[-15:]))
    lora_dir = runs / "lora" / "lora"
    assert (lora_dir / "pytorch_lora_weights.safetensors").is_file() and (lora_dir / "medgen_lora_comfy.safetensors").is_file()

    from ray import serve

    from medgen_ray.serve.launch import start_serve

    port = _free_port()
    app = load_config(None, [
        "ray.num_cpus=2", f"serve.model={model}", f"serve.port={port}", f"serve.store={tmp_path / 'store'}",
        f"serve.token={TOKEN}", f"serve.adapters={json.dumps({'medgen': str(lora_dir)})}",
        "serve.generator.num_cpus=0.5", "serve.generator.num_gpus=0", "serve.generator.threads=1",
        f"serve.default_height={h}", f"serve.default_width={w}", "serve.default_frames=9", "serve.default_steps=3"])
    monkeypatch.setenv("MEDGEN_SERVE_TOKEN", TOKEN)
    url = start_serve(app)
    try:
        _wait_healthy(url)
        videos = {}
        for adapter in ("base", "medgen"):
            code, mp4, headers = call(url, "/v1/videos/sync", {"prompt": "An endoscopic view of the stomach lining.",
                                                                "model": adapter, "seed": 3})
            assert code == 200, mp4[:500]
            frames = frames_of(mp4)
            assert frames.shape == (9, h, w, 3)
            videos[adapter] = frames
            code, body, _ = call(url, f"/v1/videos/{headers['X-Job-Id']}")
            assert json.loads(body)["model"] == (model if adapter == "base" else adapter)
    finally:
        serve.shutdown()
    assert np.abs(videos["base"].astype(int) - videos["medgen"].astype(int)).max() > 0  # the adapter was served by name
