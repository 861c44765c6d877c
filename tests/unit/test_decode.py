import numpy as np
import pytest

from medgen_ray.config import CurateConfig
from medgen_ray.core.batch import from_rows
from medgen_ray.core.decode import ProbeError, probe_video, sample_frames
from medgen_ray.curate.container import ProbeStage
from medgen_ray.curate.filters import apply_filters
from medgen_ray.samples.bad import BAD_KINDS
from medgen_ray.samples.generator import Segment, VideoSpec, render_video


@pytest.mark.parametrize("fps", [24, 25, 30])
def test_sampling_is_one_frame_per_second_at_any_rate(tmp_path, fps):
    p = tmp_path / f"v{fps}.mp4"
    render_video(VideoSpec("v", [Segment("anatomy", 7)], 320, 240, fps), p)
    info = probe_video(str(p))
    assert (info.width, info.height, info.codec) == (320, 240, "h264")
    assert info.fps == pytest.approx(fps)
    assert info.duration == pytest.approx(7.0, abs=0.05)
    frames, times = sample_frames(str(p), 1.0, 64)
    assert frames.shape == (7, 64, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(times, np.arange(7.0))


def test_sampled_frames_follow_the_content(one_video):
    frames, _ = sample_frames(str(one_video), 1.0, 32)
    red = frames[..., 0].astype(float).mean(axis=(1, 2)) - frames[..., 2].astype(float).mean(axis=(1, 2))
    assert red[:10].mean() > red[10:].mean() + 30  # endoscopy is red, the game is not


def test_keyframes_are_reported(one_video):
    info = probe_video(str(one_video))
    np.testing.assert_allclose(info.keyframes, np.arange(0, 20, 1.0), atol=1e-6)


EXPECTED = {
    "zero_byte": ("error", "empty file (0 bytes)"),
    "truncated": ("error", "moov atom"),
    "non_video": ("error", "not a readable video container"),
    "audio_only": ("error", "audio-only"),
    "unsupported_codec": ("reject", "unsupported codec 'mjpeg'"),
    "one_pixel": ("reject", "frame size 1x1"),
    "rotated": ("reject", "rotated"),
}


def test_variable_frame_rate_is_kept_and_timed(bad_inputs):
    """Phone-style variable frame rate passes the probe (it used to be rejected), with its
    interval spread and average rate recorded; rejecting it stays an option."""
    cfg = CurateConfig()
    batch = from_rows([{"video_id": "vfr", "source_uri": str(bad_inputs["vfr"])}])
    out = apply_filters(ProbeStage(cfg)(batch), cfg, "probe")
    assert out["reject_reason"][0] == "" and out["error"][0] == ""
    assert out["interval_spread"][0] > cfg.container.vfr_tolerance and out["fps"][0] > 0
    strict = CurateConfig(container={"reject_vfr": True})
    assert "variable frame rate" in apply_filters(ProbeStage(strict)(batch), strict, "probe")["reject_reason"][0]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_every_bad_input_ends_with_a_clear_reason(bad_inputs, kind):
    cfg = CurateConfig()
    batch = from_rows([{"video_id": kind, "source_uri": str(bad_inputs[kind])}])
    out = apply_filters(ProbeStage(cfg)(batch), cfg, "probe")
    what, text = EXPECTED[kind]
    column = "error" if what == "error" else "reject_reason"
    assert text in out[column][0], (out["error"][0], out["reject_reason"][0])
    assert out["reject_stage"][0] == "probe"
    other = "reject_reason" if what == "error" else "error"
    assert out[other][0] == ""


def test_one_bad_row_does_not_spoil_the_batch(bad_inputs, one_video):
    cfg = CurateConfig()
    rows = [{"video_id": "bad", "source_uri": str(bad_inputs["non_video"])},
            {"video_id": "good", "source_uri": str(one_video)},
            {"video_id": "missing", "source_uri": "/nonexistent/x.mp4"}]
    out = ProbeStage(cfg)(from_rows(rows))
    assert out["error"][0] and not out["error"][1] and "not found" in out["error"][2]
    assert out["width"][1] == 640


def test_probe_error_is_a_data_error():
    with pytest.raises(ProbeError):
        probe_video("/nonexistent.mp4")
