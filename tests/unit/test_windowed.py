"""Long sources are classified window by window: no row carries more than a window of frames,
and the clips are exactly those of the unwindowed job, runs across window edges included.
Real stages (probe, sampling, classifier with the tiny CLIP and its frame probe, segmentation)
on a generated 44-s source whose medical runs straddle the 10-s window edges."""

import numpy as np
import pytest

from medgen_ray.config import load_config
from medgen_ray.core.batch import from_rows, to_rows
from medgen_ray.curate.classify import FrameClassifierStage
from medgen_ray.curate.container import ProbeStage
from medgen_ray.curate.sampling import SampleStage
from medgen_ray.curate.temporal import SegmentStage
from medgen_ray.samples.generator import Segment, VideoSpec, render_video

# endoscopy 6-14 s, 16-25 s (edge at 10 s and 20 s), anatomy 27-35 s (edge at 30 s), ultrasound 37-44 s (edge at 40 s)
SEGMENTS = [("game", 6), ("endoscopy", 8), ("slide", 2), ("endoscopy", 9), ("talking_head", 2), ("anatomy", 8),
            ("game", 2), ("ultrasound", 7)]


@pytest.fixture(scope="module")
def long_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "lecture.mp4"
    render_video(VideoSpec("lecture", [Segment(s, d) for s, d in SEGMENTS], 320, 240, 12, seed=4), path)
    return path


def _run(path, frame_probe, window_s):
    cfg = load_config(None, ["curate.classify.clip_model=clip/tiny", f"curate.classify.probe_path={frame_probe}",
                             f"curate.sample.window_s={window_s}", "curate.segment.similarity_threshold=0.5",
                             "curate.cut.snap_to_keyframes_s=0"]).curate
    batch = ProbeStage(cfg)(from_rows([{"video_id": "lecture", "source_uri": str(path), "reject_stage": "",
                                        "reject_reason": "", "error": ""}]))
    sampled = SampleStage(cfg.sample, 64)(batch)
    classified = FrameClassifierStage(cfg, device="cpu")(sampled)
    clips = SegmentStage(cfg)(classified)
    return sampled, classified, [r for r in to_rows(clips) if r["clip_id"]]


def test_windowed_source_gives_the_unwindowed_clips(long_source, frame_probe):
    whole_sampled, whole, whole_clips = _run(long_source, frame_probe, 1000)
    win_sampled, win, win_clips = _run(long_source, frame_probe, 10)
    assert not whole_sampled["windowed"][0] and win_sampled["windowed"][0]
    assert len(win_sampled["frames"][0]) == 0  # the long source travels without frames
    for col in ("frame_times", "frame_scores", "frame_sims", "frame_hashes"):
        assert np.allclose(np.asarray(win[col][0], np.float64), np.asarray(whole[col][0], np.float64), atol=1e-5), col
    key = [(c["clip_id"], round(c["score_frame_medical"], 5)) for c in whole_clips]
    assert key and key == [(c["clip_id"], round(c["score_frame_medical"], 5)) for c in win_clips]
    edges = [10.0, 20.0, 30.0, 40.0]
    crossing = {e for c in win_clips for e in edges if c["t_start"] < e < c["t_end"]}
    assert len(crossing) >= 3, [(c["t_start"], c["t_end"]) for c in win_clips]  # runs across the window edges


def test_no_row_carries_more_than_a_window(long_source, frame_probe):
    sampled, classified, _ = _run(long_source, frame_probe, 10)
    window_bytes = 10 * 1 * 64 * 64 * 3  # window_s x fps x the classifier's input
    assert max(np.asarray(f).nbytes for f in sampled["frames"]) <= window_bytes
    assert "frames" not in classified
    assert sum(np.asarray(v[0]).nbytes for k, v in classified.items() if k.startswith("frame_")) < window_bytes


def test_windowed_rows_in_ray_shaped_batches(long_source, frame_probe):
    """Ray hands a batch whose rows all have empty frame times as one (n, 0) tensor and its text
    as fixed-width strings; the classifier still writes each long source's arrays and errors."""
    cfg = load_config(None, ["curate.classify.clip_model=clip/tiny", f"curate.classify.probe_path={frame_probe}",
                             "curate.sample.window_s=10"]).curate
    n = 2
    batch = {"video_id": np.array(["lecture", "gone"]), "source_uri": np.array([str(long_source), "/nope.mp4"]),
             "frames": np.zeros((n, 0, 64, 64, 3), np.uint8), "frame_times": np.zeros((n, 0)),
             "windowed": np.ones(n, bool), "damaged_spans": np.array(["", ""]), "reject_stage": np.array(["", ""]),
             "reject_reason": np.array(["", ""]), "error": np.array(["", ""])}
    out = FrameClassifierStage(cfg, device="cpu")(batch)
    assert len(out["frame_times"][0]) == 44 and len(out["frame_scores"][0]) == 44
    assert out["error"][1].startswith("classify: ") and out["reject_stage"][1] == "classify"
