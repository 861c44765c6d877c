"""Runs only where CUDA exists (a lent GPU machine); CPU CI covers the same code on the CPU."""

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_classify_stage_on_gpu_matches_cpu():
    import numpy as np

    from medgen_ray.config import load_config
    from medgen_ray.core.batch import from_rows
    from medgen_ray.curate.classify import FrameClassifierStage

    cfg = load_config(None, ["curate.classify.clip_model=clip/tiny"]).curate
    frames = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    outs = []
    for device in ("cpu", "cuda"):
        stage = FrameClassifierStage(cfg, device=device)
        stage.setup()
        outs.append(stage(from_rows([{"video_id": "v", "frames": frames}]))["frame_scores"][0])
    np.testing.assert_allclose(outs[0], outs[1], atol=2e-2)
