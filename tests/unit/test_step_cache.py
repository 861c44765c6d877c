"""Step caching (diffusers' cache hooks) on each family's tiny twin: off is bit-identical to a
transformer that never had a cache, also after a cached video; on calls fewer transformer
blocks (counted with forward hooks) and stays near the uncached video."""

import numpy as np
import pytest
import torch

from medgen_ray.models.registry import load_model
from medgen_ray.models.video import generate_video
from medgen_ray.serve.generator import transformer_blocks

FAMILIES = ["hunyuan_video", "hunyuan_video_1_5", "wan2.1-t2v-1.3b"]
SHAPE = {"height": 32, "width": 32, "num_frames": 5, "steps": 8}
# The twins' random blocks barely move between steps, so a first-block threshold this loose skips
# most of them; the point is the mechanism (fewer calls, close output), not a quality figure.
PARAMS = {"first_block": {"threshold": 0.5}, "taylorseer": {"cache_interval": 3, "disable_before": 2},
          "pab": {"skip_range": 2, "timestep_range": (0, 1000)}}
TOL = 0.03  # mean |cached - uncached| in [0, 1] pixels on the twins (measured 0.001-0.008 at threshold 0.5)


def _run(pipe, cache=None, params=None):
    """The video and the number of Linear calls inside the transformer's blocks: a skipped block
    runs none (a block's own forward hook would still fire: diffusers' cache replaces its forward)."""
    calls = [0]
    handles = [m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
               for b in transformer_blocks(pipe.transformer) for m in b.modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.no_grad():
            frames = generate_video(pipe, "an endoscopic view of the stomach", seed=3, cache=cache,
                                    cache_params=params, **SHAPE)
    finally:
        for h in handles:
            h.remove()
    return np.asarray(frames), calls[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_off_is_identical_and_on_skips_blocks(family):
    pipe = load_model(f"{family}/tiny", None, "cpu", kind="video")
    base, base_calls = _run(pipe)
    cached, cached_calls = _run(pipe, "first_block", PARAMS["first_block"])
    assert cached_calls < base_calls, (cached_calls, base_calls)
    assert np.abs(cached - base).mean() <= TOL
    again, again_calls = _run(pipe, "none")
    assert again_calls == base_calls and np.array_equal(again, base)  # the hooks are gone


@pytest.mark.parametrize("kind", ["taylorseer", "pab"])
def test_other_cache_kinds_run_and_stay_close(kind):
    pipe = load_model("wan2.1-t2v-1.3b/tiny", None, "cpu", kind="video")
    base, _ = _run(pipe)
    cached, _ = _run(pipe, kind, PARAMS[kind])
    assert np.abs(cached - base).mean() <= TOL
    assert np.array_equal(_run(pipe)[0], base)


def test_the_request_field_and_the_config():
    from typing import get_args

    from medgen_ray.config import CacheKind, ConfigError, load_config
    from medgen_ray.models.video import CACHE_KINDS
    from medgen_ray.serve.schema import VideoRequest, request_schema, resolved

    assert get_args(CacheKind) == CACHE_KINDS

    cfg = load_config(None, ["serve.cache.kind=first_block"]).serve
    assert resolved(VideoRequest(prompt="x"), cfg)["cache"] == "first_block"
    assert resolved(VideoRequest(prompt="x", cache="none"), cfg)["cache"] == "none"
    # what the deployment can run: magcache only with calibrated ratios
    assert request_schema(cfg, [])["properties"]["cache"]["enum"] == [k for k in CACHE_KINDS if k != "magcache"]
    with pytest.raises(ValueError, match="cache"):
        VideoRequest(prompt="x", cache="magic")
    with pytest.raises(ConfigError, match="serve.cache.kind"):
        load_config(None, ["serve.cache.kind=magic"])


def test_magcache_is_calibrated_per_family_then_skips_blocks(tmp_path):
    """`medgen cache calibrate` (diffusers' own calibration run) writes each family's ratios into
    one file; magcache with them calls fewer blocks and stays near the uncached video."""
    import json

    from medgen_ray.cli import main

    ratios = tmp_path / "magcache.json"
    for family in ("hunyuan_video", "wan2.1-t2v-1.3b"):
        assert main(["cache", "calibrate", "--out", str(ratios), "--steps", str(SHAPE["steps"]),
                     f"serve.model={family}/tiny", "serve.default_height=32", "serve.default_width=32",
                     "serve.default_frames=5", "serve.generator.num_gpus=0"]) == 0
    table = json.loads(ratios.read_text())
    assert set(table) == {"hunyuan_video", "wan2.1-t2v-1.3b"}
    assert len(table["hunyuan_video"]["cond"]) == SHAPE["steps"] and "uncond" not in table["hunyuan_video"]
    assert len(table["wan2.1-t2v-1.3b"]["uncond"]) == SHAPE["steps"]  # Wan's guidance is a second call
    for family in ("hunyuan_video", "wan2.1-t2v-1.3b"):
        pipe = load_model(f"{family}/tiny", None, "cpu", kind="video")
        base, base_calls = _run(pipe)
        cached, cached_calls = _run(pipe, "magcache", {"mag_ratios": str(ratios), "mag_threshold": 0.5})
        assert cached_calls < base_calls and np.abs(cached - base).mean() <= TOL, (family, cached_calls)
        assert np.array_equal(_run(pipe)[0], base)
    with pytest.raises(ValueError, match="holds ratios for hunyuan_video, wan2.1-t2v-1.3b, not hunyuan_video_1_5"):
        _run(load_model("hunyuan_video_1_5/tiny", None, "cpu", kind="video"), "magcache",
             {"mag_ratios": str(ratios)})


@pytest.mark.parametrize("family", ["hunyuan_video", "hunyuan_video_1_5"])
def test_faster_cache_reuses_attention(family):
    pipe = load_model(f"{family}/tiny", None, "cpu", kind="video")
    base, base_calls = _run(pipe)
    cached, cached_calls = _run(pipe, "faster", {"faster_skip_range": 2, "faster_timestep_range": (-1, 1000)})
    assert cached_calls < base_calls and np.abs(cached - base).mean() <= TOL, (cached_calls, base_calls)
    assert np.array_equal(_run(pipe)[0], base)


def test_kinds_a_family_or_deployment_cannot_run_are_refused():
    from medgen_ray.config import ConfigError, load_config
    from medgen_ray.serve.schema import VideoRequest, resolve

    with pytest.raises(ConfigError, match="cache.kind=faster: fails on Wan2.1-T2V-1.3B"):
        load_config(None, ["serve.model=wan2.1-t2v-1.3b/tiny", "serve.cache.kind=faster"])
    with pytest.raises(ConfigError, match="cache.kind=magcache needs cache.mag_ratios"):
        load_config(None, ["serve.cache.kind=magcache"])
    cfg = load_config(None, ["serve.model=wan2.1-t2v-1.3b/tiny"]).serve
    errors = resolve(VideoRequest(prompt="x", cache="faster"), cfg, [])[1]
    assert [e["loc"] for e in errors] == [["body", "cache"]] and "fails on Wan2.1-T2V-1.3B" in errors[0]["msg"]
    errors = resolve(VideoRequest(prompt="x", cache="magcache"), cfg, [])[1]
    assert "serve.cache.mag_ratios" in errors[0]["msg"]
    from medgen_ray.serve.schema import request_schema

    assert request_schema(cfg, [])["properties"]["cache"]["enum"] == ["none", "first_block", "taylorseer", "pab"]
