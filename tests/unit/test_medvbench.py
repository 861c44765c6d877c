"""Med-VBench dimensions with known answers, on generated videos (weight-free flow, tiny models)."""

import numpy as np
import pytest

from medgen_ray.config import load_config
from medgen_ray.core.encode import write_mp4
from medgen_ray.evaluate import dimensions, metrics
from medgen_ray.evaluate.score import VideoScoreStage, read_frames

TINY = ["evaluate.dino_model=dino/tiny", "evaluate.clip_model=clip/tiny", "evaluate.iqa_model=musiq/tiny",
        "evaluate.flow_model=farneback", "evaluate.aesthetic_model=aesthetic/vbench-tiny", "evaluate.interpolator_model=linear", "evaluate.pool.num_gpus=0"]


def _texture(h=96, w=128, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8, w // 8, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def stage():
    s = VideoScoreStage(load_config(None, TINY).evaluate, device="cpu")
    s.setup()
    return s


def _score(stage, frames, tmp_path, name, prompt="an endoscopy"):
    path = tmp_path / f"{name}.mp4"
    write_mp4(frames, str(path), fps=8)
    row = {"video_id": name, "model": "m", "prompt": prompt, "video_uri": str(path)}
    return stage.process(dict(row))


def _moving(n=17, step=3, h=96, w=128):
    base = _texture(h, w + step * n)
    return np.stack([base[:, i * step: i * step + w] for i in range(n)])


def test_static_video_is_fully_consistent_and_not_dynamic(stage, tmp_path):
    frames = np.repeat(_texture()[None], 17, axis=0)
    row = _score(stage, frames, tmp_path, "static")
    assert row["score_subject_consistency"] == pytest.approx(100.0, abs=1e-4)
    assert row["score_background_consistency"] == pytest.approx(100.0, abs=1e-4)
    assert row["score_motion_smoothness"] == pytest.approx(100.0, abs=1e-6)
    assert row["score_dynamic_degree"] == 0.0
    assert row["score_warping_auto"] < 1e-3
    assert all(row[f"time_{d}"] >= 0 for d in stage.cfg.dimensions)


def test_shuffled_frames_score_lower(stage, tmp_path):
    frames = _moving(17, step=4)
    order = np.random.default_rng(1).permutation(17)
    ordered = _score(stage, frames, tmp_path, "ordered")
    shuffled = _score(stage, frames[order], tmp_path, "shuffled")
    assert shuffled["score_motion_smoothness"] < ordered["score_motion_smoothness"] - 1
    assert shuffled["score_subject_consistency"] < ordered["score_subject_consistency"]
    assert shuffled["score_background_consistency"] < ordered["score_background_consistency"]


def test_fast_motion_is_dynamic(stage, tmp_path):
    row = _score(stage, _moving(17, step=8), tmp_path, "fast")
    assert row["score_dynamic_degree"] == 100.0


def test_warping_error_zero_with_exact_flow():
    """Frames made by shifting an image by a known flow: warping with that flow rebuilds them."""
    d = 3
    frames = _moving(6, step=d)  # frame t+1 = frame t moved left by d px: f_{t+1}(x) = f_t(x + d)
    h, w = frames.shape[1:3]
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0] = -d  # pixel x of frame t is at x - d in frame t+1
    bwd = -fwd
    err = metrics.warping_error_auto(frames, [(fwd, bwd)] * 5)
    wrong = metrics.warping_error_auto(frames, [(np.zeros_like(fwd), np.zeros_like(bwd))] * 5)
    assert err < 1e-4 and wrong > 100 * max(err, 1e-6)


def test_occlusion_check_flags_inconsistent_flow():
    f = np.zeros((8, 8, 2), np.float32)
    f[..., 0] = 2
    assert metrics.occlusion_mask(f, -f)[:, :6].all()
    assert not metrics.occlusion_mask(f, f)[:, :6].any()  # backward does not undo forward
    assert not metrics.occlusion_mask(f, -f)[:, 7].any()  # target outside the frame


def test_dynamic_rule_thresholds():
    assert dimensions.is_dynamic([7.0] * 4 + [0.0] * 12, 256, 256, 17)
    assert not dimensions.is_dynamic([7.0] * 3 + [0.0] * 13, 256, 256, 17)
    assert not dimensions.is_dynamic([5.0] * 16, 256, 256, 17)
    assert dimensions.is_dynamic([5.0] * 16, 128, 128, 17)  # threshold scales with the short side
    assert dimensions.is_dynamic([0.0], 128, 128, 2)  # VBench: a need of round(0.5) = 0 is met by any pair
    assert not dimensions.is_dynamic([], 128, 128, 1)


def test_a_24fps_pan_of_2px_per_frame_is_dynamic_as_in_vbench(tmp_path):
    """VBench samples every round(24 / 8) = 3rd frame, so a 2 px/frame pan moves 6 px per
    sampled pair, above 6 * 144 / 256 = 3.375 px: dynamic. Scoring every pair (2 px each)
    called it static before."""
    cfg = load_config(None, [*TINY, "evaluate.dimensions=[dynamic_degree]"]).evaluate
    s = VideoScoreStage(cfg, device="cpu")
    s.setup()
    frames = _moving(48, step=2, h=144, w=256)
    path = tmp_path / "pan24.mp4"
    write_mp4(frames, str(path), fps=24)
    assert s.process({"video_id": "p", "model": "m", "prompt": "x", "video_uri": str(path)})["score_dynamic_degree"] == 100.0
    every_pair = [metrics.flow_peak_magnitude(f) for f in s.models["flow"].pairs(frames)]
    assert not dimensions.is_dynamic(every_pair, 144, 256, len(frames))  # the old reading


def test_unreadable_video_is_an_error_row(stage, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    from medgen_ray.core.batch import from_rows

    out = stage(from_rows([{"video_id": "b", "model": "m", "prompt": "x", "video_uri": str(bad)}]))
    assert out["error"][0].startswith("score:") and np.isnan(out["score_motion_smoothness"][0])


def test_read_frames_needs_three(tmp_path):
    write_mp4(np.repeat(_texture()[None], 2, axis=0), str(tmp_path / "two.mp4"))
    with pytest.raises(Exception, match="at least 3"):
        read_frames(str(tmp_path / "two.mp4"), 10)


def test_medical_frames_follows_the_frame_classifier(frame_probe, tmp_path):
    """medical_frames = mean P(medical) of the frames by the curation's frame probe: a
    generated endoscopy clip scores high, a game clip low; zero-shot runs without a probe."""
    from medgen_ray.samples.generator import Segment, VideoSpec, render_video

    cfg = load_config(None, [*TINY, "evaluate.dimensions=[medical_frames, background_consistency]",
                             f"evaluate.medical_probe={frame_probe}"]).evaluate
    s = VideoScoreStage(cfg, device="cpu")
    s.setup()
    scores = {}
    # (slides are left out: on tiny-CLIP features a white slide sits near an anatomy diagram)
    for scene in ("endoscopy", "ultrasound", "anatomy", "game", "talking_head"):
        path = tmp_path / f"{scene}.mp4"
        render_video(VideoSpec(scene, [Segment(scene, 2)], 640, 480, 6, seed=1), path)  # as the probe saw
        row = s.process({"video_id": scene, "model": "m", "prompt": "x", "video_uri": str(path)})
        scores[scene] = row["score_medical_frames"]
    assert min(scores["endoscopy"], scores["ultrasound"], scores["anatomy"]) > 80, scores
    assert max(scores["game"], scores["talking_head"]) < 20, scores
    zero_shot = VideoScoreStage(load_config(None, [*TINY, "evaluate.dimensions=[medical_frames]"]).evaluate, "cpu")
    zero_shot.setup()
    row = zero_shot.process({"video_id": "g", "model": "m", "prompt": "x", "video_uri": str(tmp_path / "game.mp4")})
    assert 0.0 <= row["score_medical_frames"] <= 100.0


def test_medical_probe_of_another_embedder_is_refused(frame_probe):
    cfg = load_config(None, [*TINY, "evaluate.clip_model=clip/vit-b-32", "evaluate.clip_weights=random",
                             "evaluate.dimensions=[medical_frames]", f"evaluate.medical_probe={frame_probe}"]).evaluate
    with pytest.raises(ValueError, match="clip/tiny"):
        VideoScoreStage(cfg, device="cpu").setup()


def test_amt_scale_needs_more_than_vbench_s_memory_bias():
    from medgen_ray.evaluate.dimensions import amt_scale

    assert amt_scale(720, 1280, None) == 1.0  # CPU: never downsized
    assert amt_scale(720, 1280, 80 * 1024 ** 3) == 1.0  # an H100 at 720p: not downsized
    assert amt_scale(1080, 1920, 8 * 1024 ** 3) < 1.0  # 1080p on an 8 GB card: downsized
    with pytest.raises(ValueError, match="2500 MiB"):
        amt_scale(720, 1280, 2000 * 1024 ** 2)


def test_videoscore_dimensions_in_the_stage_and_the_total(tmp_path):
    """The five videoscore_* dimensions come from one VideoScore call per video; the per-model
    aggregate gains videoscore_total with raters' warping error. VideoScore is off by default."""
    import pandas as pd

    from medgen_ray.config import VIDEOSCORE_DIMENSIONS
    from medgen_ray.evaluate.job import aggregate
    from medgen_ray.evaluate.videoscore import ASPECTS, load_videoscore, videoscore_total

    assert not set(VIDEOSCORE_DIMENSIONS) & set(load_config(None, []).evaluate.dimensions)
    assert VIDEOSCORE_DIMENSIONS == tuple(f"videoscore_{a}" for a in ASPECTS)
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("video_id,rater,rating\nm/a,r1,severe\nm/a,r2,moderate\nm/b,r1,no\nm/b,r2,minor\n")
    cfg = load_config(None, [*TINY, "evaluate.videoscore_model=videoscore/tiny",
                             f"evaluate.dimensions=[{','.join(VIDEOSCORE_DIMENSIONS)}]",
                             f"evaluate.ratings=[{ratings}]"]).evaluate
    s = VideoScoreStage(cfg, device="cpu")
    s.setup()
    rows = []
    for name, frames in (("a", _moving(9)), ("b", np.repeat(_texture()[None], 9, axis=0))):
        path = tmp_path / f"{name}.mp4"
        write_mp4(frames, str(path), fps=8)
        rows.append(s.process({"video_id": f"m/{name}", "model": "m", "prompt": "a suture", "video_uri": str(path)}))
        direct = load_videoscore("videoscore/tiny", max_frames=16).score(str(path), "a suture")
        assert [rows[-1][f"score_videoscore_{a}"] for a in ASPECTS] == [direct[a] for a in ASPECTS]
    assert rows[0]["score_videoscore_visual_quality"] != rows[1]["score_videoscore_visual_quality"]
    (model,) = aggregate(pd.DataFrame(rows), cfg)
    assert model["warping_error"] == 50.0
    means = {a: np.mean([r[f"score_videoscore_{a}"] for r in rows]) for a in ASPECTS}
    assert model["videoscore_visual_quality"] == pytest.approx(means["visual_quality"])
    assert model["videoscore_total"] == pytest.approx(videoscore_total(
        means["visual_quality"], means["temporal_consistency"], means["text_alignment"],
        means["factual_consistency"], 50.0))
