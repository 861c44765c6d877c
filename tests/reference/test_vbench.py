"""Med-VBench's six VBench dimensions equal VBench 0.1.5's own code (PyPI `vbench`, installed
--no-deps: its pins — transformers 4.33, numpy < 2 — do not fit this stack, and the modules
used here need none of them) on identical video files and identical seeded models.

VBench's side runs the functions of `vbench/<dimension>.py` on the mp4 files (its decord and
OpenCV readers, its transforms, its loops); ours runs the scoring stage's `process` on the same
files. Where VBench loads a network from its own code (RAFT, AMT-S) both sides load the same
seeded state dict through their own loaders; CLIP on VBench's side is OpenAI's `clip` package
(PyPI `openai-clip`) built from our open_clip model's state dict. DINO's network comes from
torch.hub in VBench (facebookresearch/dino, not on PyPI): both sides run our DINO encoder, so this
test checks the path around it (aspect-keeping resize, per-frame loop, similarity), not the
network. Per video |ours - VBench| <= 1e-4 on VBench's scale (imaging quality: on its /100 scale).
"""

import numpy as np
import pytest
import torch

from medgen_ray.config import load_config
from medgen_ray.core.encode import write_mp4
from medgen_ray.evaluate.models import (
    AMT_S_CONFIG,
    VBenchAesthetic,
    amt_s,
    load_dino,
    load_flow,
    load_interpolator,
    load_iqa,
    raft_things,
)
from medgen_ray.evaluate.score import VideoScoreStage
from medgen_ray.models.registry import load_model
from medgen_ray.models.weights import RANDOM

TOL = 1e-4
DIMS = ["subject_consistency", "background_consistency", "imaging_quality", "dynamic_degree",
        "motion_smoothness", "aesthetic"]


def _texture(h, w, seed):
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _pan(h, w, n, step, seed):
    base = _texture(h, w + step * n, seed)
    return np.stack([base[:, i * step: i * step + w] for i in range(n)])


VIDEOS = {  # name: (frames, fps); short sides >= 128: RAFT's and AMT's coarsest levels need it
    "wide_24fps_pan": (_pan(144, 256, 25, 2, 1), 24),  # 16:9, 24 fps, slow pan
    "static_square": (np.repeat(_texture(128, 128, 2)[None], 9, axis=0), 8),
    "fast_pan": (_pan(128, 176, 11, 12, 3), 8),
    "large_24fps": (_pan(288, 544, 7, 5, 4), 24),  # long side > 512: imaging quality resizes
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vbench_videos")
    paths = {}
    for name, (frames, fps) in VIDEOS.items():
        paths[name] = str(folder / f"{name}.mp4")
        write_mp4(frames, paths[name], fps=fps)
    return paths


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Seeded state dicts, saved where each side's own loader reads them."""
    folder = tmp_path_factory.mktemp("vbench_weights")
    raft = folder / "raft-things.pth"
    torch.save({f"module.{k}": v for k, v in raft_things().state_dict().items()}, raft)  # as released
    amt = folder / "amt-s.pth"
    torch.save({"state_dict": amt_s().state_dict()}, amt)
    return {"raft": str(raft), "amt": str(amt)}


@pytest.fixture(scope="module")
def models(weights):
    clip = load_model("clip/vit-b-32", RANDOM, "cpu", kind="clip")
    torch.manual_seed(5)
    head = torch.nn.Linear(512, 1)
    return {"dino": load_dino("dino/tiny"), "clip": clip, "iqa": load_iqa("musiq/tiny"),
            "flow": load_flow("raft/things", weights["raft"]), "interpolator": load_interpolator("amt/s", weights["amt"]),
            "aesthetic": VBenchAesthetic(clip, head, "aesthetic/test")}


@pytest.fixture(scope="module")
def ours(videos, models):
    cfg = load_config(None, [f"evaluate.dimensions=[{','.join(DIMS)}]", "evaluate.pool.num_gpus=0"]).evaluate
    stage = VideoScoreStage(cfg, device="cpu")
    stage.models = models
    return {name: stage.process({"video_id": name, "prompt": "", "video_uri": p}) for name, p in videos.items()}


def _by_name(results):
    from pathlib import Path

    return {Path(r["video_path"]).stem: r["video_results"] for r in results}


def _openai_clip(encoder):
    """OpenAI's CLIP (the `clip` package VBench imports) with our model's weights."""
    from clip.model import build_model

    return build_model({k: v.clone() for k, v in encoder.model.state_dict().items()}).float().eval()


def test_subject_consistency_equals_vbench(videos, models, ours):
    from vbench.subject_consistency import subject_consistency

    _, results = subject_consistency(models["dino"], list(videos.values()), "cpu", read_frame=False)
    ref = _by_name(results)
    for name in videos:
        assert ours[name]["score_subject_consistency"] / 100 == pytest.approx(ref[name], abs=TOL), name


def test_background_consistency_equals_vbench(videos, models, ours):
    from vbench.background_consistency import background_consistency

    with torch.no_grad():
        _, results = background_consistency(_openai_clip(models["clip"]), None, list(videos.values()), "cpu", False)
    ref = _by_name(results)
    for name in videos:
        assert ours[name]["score_background_consistency"] / 100 == pytest.approx(ref[name], abs=TOL), name


def test_imaging_quality_equals_vbench(videos, ours):
    from vbench.imaging_quality import technical_quality

    net = load_iqa("musiq/tiny").net  # a second seeded build: the same weights
    net.training = False  # as VBench's compute_imaging_quality sets it
    _, results = technical_quality(net, list(videos.values()), "cpu")
    ref = _by_name(results)
    for name in videos:
        assert ours[name]["score_imaging_quality"] / 100 == pytest.approx(ref[name] / 100, abs=TOL), name


def test_dynamic_degree_equals_vbench(videos, weights, models, ours):
    from easydict import EasyDict
    from vbench.dynamic_degree import DynamicDegree

    from medgen_ray.evaluate import dimensions, metrics
    from medgen_ray.evaluate.score import read_frames

    ref = DynamicDegree(EasyDict({"model": weights["raft"], "small": False, "mixed_precision": False,
                                  "alternate_corr": False}), "cpu")
    seen: list[list[float]] = []
    check = ref.check_move
    ref.check_move = lambda scores: (seen.append(list(scores)), check(scores))[1]
    for name, path in videos.items():
        moving = ref.infer(path)
        assert ours[name]["score_dynamic_degree"] == 100.0 * moving, name
        frames, fps = read_frames(path)
        peaks = [metrics.flow_peak_magnitude(f) for f in models["flow"].pairs(dimensions.dynamic_frames(frames, fps))]
        assert len(peaks) == len(seen[-1]), name
        assert np.allclose(peaks, seen[-1], rtol=1e-4, atol=1e-4), (name, peaks, seen[-1])


def test_motion_smoothness_equals_vbench(videos, weights, ours):
    import importlib.util
    from pathlib import Path

    from vbench.motion_smoothness import MotionSmoothness

    config = Path(importlib.util.find_spec("vbench").origin).parents[1] / AMT_S_CONFIG
    ref = MotionSmoothness(str(config), weights["amt"], "cpu")
    for name, path in videos.items():
        assert ours[name]["score_motion_smoothness"] / 100 == pytest.approx(ref.motion_score(path), abs=TOL), name


def test_aesthetic_equals_vbench(videos, models, ours):
    from vbench.aesthetic_quality import laion_aesthetic

    head = models["aesthetic"].head
    _, results = laion_aesthetic(head, _openai_clip(models["clip"]), list(videos.values()), "cpu")
    ref = _by_name(results)
    for name in videos:
        assert ours[name]["score_aesthetic"] / 100 == pytest.approx(ref[name], abs=TOL), name


def test_the_reference_can_tell(videos, models):
    """The comparison is sharp enough to see the old path: frames squashed to 224 x 224 for
    DINO (what Med-VBench did) differ from VBench's aspect-kept input on the 16:9 video."""
    import cv2

    from medgen_ray.evaluate import dimensions, metrics
    from medgen_ray.evaluate.score import read_frames

    frames, _ = read_frames(videos["fast_pan"])
    squashed = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA) for f in frames])
    kept = dimensions.subject_consistency(models["dino"], frames, "cpu") / 100
    old = metrics.consistency(dimensions.features(models["dino"], dimensions.dino_input(squashed), "cpu"))
    assert abs(kept - old) > TOL
