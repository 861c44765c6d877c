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
# Seeded RAFT's flow is 17-31 px on any input, so every video would be "moving" on both sides;
# its flow head scaled by this brings the peaks to ~3 px, beside the thresholds (3-6.75 px).
FLOW_SCALE = 0.149
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
    state = raft_things().state_dict()
    for k in ("update_block.flow_head.conv2.weight", "update_block.flow_head.conv2.bias"):
        state[k] = state[k] * FLOW_SCALE
    torch.save({f"module.{k}": v for k, v in state.items()}, raft)  # as released
    amt = folder / "amt-s.pth"
    torch.save({"state_dict": amt_s().state_dict()}, amt)
    return {"raft": str(raft), "amt": str(amt)}


@pytest.fixture(scope="module")
def models(weights):
    clip = load_model("clip/vit-b-32", RANDOM, "cpu", kind="clip")
    torch.manual_seed(5)
    head = torch.nn.Linear(512, 1)
    with torch.no_grad():  # LAION's scale: 1-10, a unit feature moves the score by whole points
        torch.nn.init.normal_(head.weight, std=1.0)
        head.bias.fill_(5.0)
    return {"dino": load_dino("dino/tiny"), "clip": clip, "iqa": load_iqa("musiq/tiny"),
            "flow": load_flow("raft/things", weights["raft"]), "interpolator": load_interpolator("amt/s", weights["amt"]),
            "aesthetic": VBenchAesthetic(clip, head, "aesthetic/test")}


FLOW_PEAKS: dict[str, list[float]] = {}  # per video: the flow peaks our dynamic degree judged


@pytest.fixture(scope="module")
def ours(videos, models):
    """Our scores per video; the flow peaks the stage computed are recorded as it runs (RAFT at
    full size is this file's slowest model: the dynamic-degree check reads them, not a rerun)."""
    from medgen_ray.evaluate import metrics

    cfg = load_config(None, [f"evaluate.dimensions=[{','.join(DIMS)}]", "evaluate.pool.num_gpus=0"]).evaluate
    stage = VideoScoreStage(cfg, device="cpu")
    stage.models = models
    peaks: list[float] = []
    original = metrics.flow_peak_magnitude
    metrics.flow_peak_magnitude = lambda flow: (peaks.append(original(flow)), peaks[-1])[1]
    out = {}
    try:
        for name, p in videos.items():
            start = len(peaks)
            out[name] = stage.process({"video_id": name, "prompt": "", "video_uri": p})
            FLOW_PEAKS[name] = peaks[start:]
    finally:
        metrics.flow_peak_magnitude = original
    return out


def _by_name(results):
    from pathlib import Path

    return {Path(r["video_path"]).stem: r["video_results"] for r in results}


def _total(ours, dim):
    """Our model-level total of a dimension over the four videos (the evaluation job's aggregate)."""
    import pandas as pd

    from medgen_ray.evaluate.job import dimension_total

    return dimension_total(pd.DataFrame(list(ours.values())), dim, seed=0)[0]


def _openai_clip(encoder):
    """OpenAI's CLIP (the `clip` package VBench imports) with our model's weights."""
    from clip.model import build_model

    return build_model({k: v.clone() for k, v in encoder.model.state_dict().items()}).float().eval()


def test_subject_consistency_equals_vbench(videos, models, ours):
    from vbench.subject_consistency import subject_consistency

    total, results = subject_consistency(models["dino"], list(videos.values()), "cpu", read_frame=False)
    ref = _by_name(results)
    for name in videos:
        assert ours[name]["score_subject_consistency"] / 100 == pytest.approx(ref[name], abs=TOL), name
    assert _total(ours, "subject_consistency") / 100 == pytest.approx(total, abs=TOL)
    # VBench weighs each video by its frames (25, 9, 11, 7 here): the mean of the videos is not it
    assert abs(np.mean(list(ref.values())) - total) > TOL


def test_background_consistency_equals_vbench(videos, models, ours):
    from vbench.background_consistency import background_consistency

    with torch.no_grad():
        total, results = background_consistency(_openai_clip(models["clip"]), None, list(videos.values()), "cpu",
                                                False)
    ref = _by_name(results)
    for name in videos:
        assert ours[name]["score_background_consistency"] / 100 == pytest.approx(ref[name], abs=TOL), name
    assert _total(ours, "background_consistency") / 100 == pytest.approx(total, abs=TOL)
    assert abs(np.mean(list(ref.values())) - total) > TOL


FP16_FEATURE_TOL = 1e-3  # two fp16 networks, same weights: other kernels' rounding (measured 1.8e-4)
FP16_SCORE_TOL = 1e-3  # VBench takes each pair's cosine in fp16 (steps of 4.9e-4 near 1); ours in fp32


def test_clip_in_fp16_is_vbench_s_cuda_clip(videos, models):
    """On CUDA VBench runs OpenAI's CLIP in fp16: fp16 weights, LayerNorm in fp32. Ours runs the
    same (`openai_half`): every parameter in the dtype OpenAI's build gives it (`model.half()`,
    what ours did, has fp16 LayerNorms), and CPU's fp16 arithmetic gives the same features.
    On these frames fp16 LayerNorm moved the features by only 2.6e-4 (ours: 1.8e-4)."""
    import copy

    from clip.model import build_model
    from vbench.background_consistency import background_consistency

    from medgen_ray.evaluate import dimensions
    from medgen_ray.evaluate.models import ClipImages
    from medgen_ray.evaluate.score import read_frames
    from medgen_ray.models.clip import ClipEncoder

    clip = models["clip"]
    ref_model = build_model({k: v.clone() for k, v in clip.model.state_dict().items()}).eval()
    assert ref_model.visual.conv1.weight.dtype == torch.float16  # OpenAI's build: fp16 weights
    half = ClipEncoder(copy.deepcopy(clip.model), None, clip.name, clip.image_size, "cpu", dtype=torch.float16)
    all_half = copy.deepcopy(clip)
    all_half.model, all_half.dtype = all_half.model.half(), torch.float16

    frames, _ = read_frames(videos["fast_pan"])
    x = dimensions.clip_input(frames, clip.image_size)
    with torch.no_grad():
        ref_feats = torch.nn.functional.normalize(ref_model.encode_image(x).float(), dim=-1).numpy()
    ours = dimensions.features(ClipImages(half), x, "cpu")
    assert np.abs(ours - ref_feats).max() <= FP16_FEATURE_TOL
    dtypes = {k: v.dtype for k, v in ref_model.state_dict().items()}
    assert {k: v.dtype for k, v in half.model.state_dict().items()} == dtypes
    assert {k: v.dtype for k, v in all_half.model.state_dict().items()} != dtypes

    with torch.no_grad():
        _, results = background_consistency(ref_model, None, [videos["fast_pan"]], "cpu", False)
    score = dimensions.background_consistency(ClipImages(half), frames, "cpu") / 100
    assert score == pytest.approx(_by_name(results)["fast_pan"], abs=FP16_SCORE_TOL)


def test_imaging_quality_equals_vbench(videos, ours):
    from vbench.imaging_quality import technical_quality

    net = load_iqa("musiq/tiny").net  # a second seeded build: the same weights
    net.training = False  # as VBench's compute_imaging_quality sets it
    total, results = technical_quality(net, list(videos.values()), "cpu")
    ref = _by_name(results)
    for name in videos:
        assert ours[name]["score_imaging_quality"] / 100 == pytest.approx(ref[name] / 100, abs=TOL), name
    assert _total(ours, "imaging_quality") / 100 == pytest.approx(total, abs=TOL)


def test_dynamic_degree_equals_vbench(videos, weights, ours):
    """With the flow head scaled by FLOW_SCALE both verdicts occur (static_square's random flow
    peaks 1.4% above its threshold: moving; the others below theirs: still) and fast_pan's top
    peak sits within 1% below its threshold, so the rule is checked where it decides."""
    from easydict import EasyDict
    from vbench.dynamic_degree import DynamicDegree, dynamic_degree

    from medgen_ray.evaluate.score import read_frames

    ref = DynamicDegree(EasyDict({"model": weights["raft"], "small": False, "mixed_precision": False,
                                  "alternate_corr": False}), "cpu")
    seen: list[list[float]] = []
    check = ref.check_move
    ref.check_move = lambda scores: (seen.append(list(scores)), check(scores))[1]
    total, results = dynamic_degree(ref, list(videos.values()))
    by_name = _by_name(results)
    margins = []
    for (name, path), vbench_peaks in zip(videos.items(), seen):
        assert ours[name]["score_dynamic_degree"] == 100.0 * by_name[name], name
        frames, _ = read_frames(path)
        peaks = FLOW_PEAKS[name]
        assert len(peaks) == len(vbench_peaks), name
        assert np.allclose(peaks, vbench_peaks, rtol=1e-4, atol=1e-4), (name, peaks, vbench_peaks)
        threshold = 6.0 * min(frames.shape[1:3]) / 256.0
        margins += [abs(p / threshold - 1.0) for p in peaks]
    assert _total(ours, "dynamic_degree") / 100 == pytest.approx(total, abs=TOL)
    assert set(by_name.values()) == {True, False}, by_name  # both verdicts occur
    assert min(margins) < 0.01  # a peak within 1% of its threshold


def test_motion_smoothness_equals_vbench(videos, weights, ours):
    import importlib.util
    from pathlib import Path

    from vbench.motion_smoothness import MotionSmoothness, motion_smoothness

    config = Path(importlib.util.find_spec("vbench").origin).parents[1] / AMT_S_CONFIG
    ref = MotionSmoothness(str(config), weights["amt"], "cpu")
    total, results = motion_smoothness(ref, list(videos.values()))
    by_name = _by_name(results)
    for name in videos:
        assert ours[name]["score_motion_smoothness"] / 100 == pytest.approx(by_name[name], abs=TOL), name
    assert _total(ours, "motion_smoothness") / 100 == pytest.approx(total, abs=TOL)


def test_motion_smoothness_on_a_small_gpu_equals_vbench(videos, weights):
    """On CUDA VBench runs AMT-S downsized when the GPU's memory is small for the frames. Its own
    `initialization` (CUDA branch, the GPU's memory faked at 2501 MiB) sets the anchors; the
    interpolation then runs on CPU on both sides, ours told the same memory."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace
    from unittest import mock

    from vbench.motion_smoothness import MotionSmoothness

    from medgen_ray.evaluate import dimensions
    from medgen_ray.evaluate.models import Interpolator, amt_s
    from medgen_ray.evaluate.score import read_frames

    vram = 2501 * 1024 ** 2
    config = Path(importlib.util.find_spec("vbench").origin).parents[1] / AMT_S_CONFIG
    ref = MotionSmoothness(str(config), weights["amt"], "cpu")
    ref.device = "cuda"
    with mock.patch("torch.cuda.get_device_properties", return_value=SimpleNamespace(total_memory=vram)):
        with pytest.raises((AssertionError, RuntimeError)):  # its last step moves a tensor to CUDA
            ref.initialization()
    ref.device, ref.embt = "cpu", torch.tensor(0.5).float().view(1, 1, 1, 1)
    assert ref.vram_avail == vram
    net = amt_s(torch.load(weights["amt"])["state_dict"])
    small_gpu, cpu = Interpolator(net, "cpu", vram=vram), Interpolator(net, "cpu")
    for name in ("wide_24fps_pan", "fast_pan"):
        frames, _ = read_frames(videos[name])
        scale = dimensions.amt_scale(*frames.shape[1:3], vram)
        assert scale < 1, (name, scale)
        ours = dimensions.motion_smoothness(small_gpu, frames) / 100
        assert ours == pytest.approx(ref.motion_score(videos[name]), abs=TOL), name
        assert abs(ours - dimensions.motion_smoothness(cpu, frames) / 100) > TOL, name  # the scale matters


def test_aesthetic_equals_vbench(videos, models, ours):
    from vbench.aesthetic_quality import laion_aesthetic

    head = models["aesthetic"].head
    total, results = laion_aesthetic(head, _openai_clip(models["clip"]), list(videos.values()), "cpu")
    ref = _by_name(results)
    for name in videos:
        assert ours[name]["score_aesthetic"] / 100 == pytest.approx(ref[name], abs=TOL), name
    assert _total(ours, "aesthetic") / 100 == pytest.approx(total, abs=TOL)


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
