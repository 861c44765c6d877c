"""Quality stages on generated clips whose defects are known."""

import numpy as np
import pytest

from medgen_ray.config import derive, load_config
from medgen_ray.core.batch import from_rows
from medgen_ray.curate.borders import BorderStage
from medgen_ray.curate.clipframes import ClipFramesStage
from medgen_ray.curate.filters import apply_filters
from medgen_ray.curate.motion import MotionStage
from medgen_ray.curate.ocr import OcrStage
from medgen_ray.samples.generator import Segment, VideoSpec, render_video


def _clip(tmp_path_factory, name, segs, **kw):
    path = tmp_path_factory.mktemp("q") / f"{name}.mp4"
    render_video(VideoSpec(name, segs, kw.pop("width", 640), kw.pop("height", 480), 25, seed=3, **kw), path)
    return str(path)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return {
        "letterbox": _clip(tmp_path_factory, "letterbox", [Segment("anatomy", 6)], letterbox=60),
        "subtitles": _clip(tmp_path_factory, "subtitles", [Segment("ultrasound", 6, text_words=30)]),
        "static": _clip(tmp_path_factory, "static", [Segment("endoscopy", 6, static=True)]),
        "pan": _clip(tmp_path_factory, "pan", [Segment("game", 6)]),
        "clean": _clip(tmp_path_factory, "clean", [Segment("endoscopy", 6)]),
    }


@pytest.fixture(scope="module")
def scored(clips):
    cfg = load_config(None, ["curate.quality.motion.reject_static=true"]).curate
    batch = from_rows([{"video_id": k, "clip_id": k, "clip_uri": v} for k, v in clips.items()])
    stages = [ClipFramesStage(cfg.quality.clipframes), MotionStage(cfg.quality.motion), BorderStage(cfg.quality.borders, cfg.cut), OcrStage(cfg.quality.ocr)]
    for stage, rule in zip(stages, (None, "motion", "borders", "ocr")):
        batch = stage(batch)
        if rule:
            batch = apply_filters(batch, cfg, rule)
    return {batch["clip_id"][i]: {k: batch[k][i] for k in batch} for i in range(len(batch["clip_id"]))}


def test_letterbox_is_rejected_by_borders(scored):
    row = scored["letterbox"]
    assert row["reject_stage"] == "borders" and "top 12%" in row["reject_reason"] and "bottom 12%" in row["reject_reason"]


def test_round_endoscope_vignette_is_not_a_bar(scored):
    assert scored["clean"]["reject_reason"] == ""
    assert max(scored["clean"][f"score_border_{s}"] for s in ("top", "bottom", "left", "right")) < 0.8


def test_thirty_burned_in_words_are_rejected(scored):
    row = scored["subtitles"]
    assert row["reject_stage"] == "ocr" and row["score_ocr_words"] >= 100  # 30 words in each of 5 frames
    assert row["score_text_area"] > 0.02
    assert scored["clean"]["score_ocr_words"] == 0


def test_motion_labels(scored):
    assert scored["static"]["label_camera_motion"] == "static" and scored["static"]["reject_stage"] == "motion"
    assert scored["pan"]["label_camera_motion"] == "pan" and scored["pan"]["score_motion"] > 0.2
    assert scored["clean"]["label_camera_motion"] != "static"


def test_heavy_columns_are_dropped(scored):
    assert "qframes" not in scored["clean"] and "mframes" not in scored["clean"]


def test_aesthetic_and_technical_scores(clips):
    from medgen_ray.curate.aesthetic import AestheticStage
    from medgen_ray.curate.technical import TechnicalStage

    cfg = load_config(None, ["curate.quality.aesthetic.model=aesthetic/tiny"]).curate
    batch = ClipFramesStage(cfg.quality.clipframes)(from_rows([{"video_id": "c", "clip_id": "c", "clip_uri": clips["clean"]}]))
    frames = batch["qframes"][0]
    batch = TechnicalStage(cfg.quality.technical)(AestheticStage(cfg.quality.aesthetic)(batch))
    assert 4.0 < batch["score_aesthetic"][0] < 6.0  # tiny head: centred on the 1-10 scale's middle
    sharp = batch["score_technical"][0]
    import cv2

    from medgen_ray.curate.technical import sharpness

    blurred = np.mean([sharpness(cv2.GaussianBlur(f, (0, 0), 3)) for f in frames])
    assert 0 < blurred < sharp < 1


def test_quality_rules_and_score_only():
    cfg = load_config(None, []).curate
    rows = [
        {"clip_id": "ugly", "score_aesthetic": 2.5, "score_technical": 0.9},
        {"clip_id": "blurry_plain", "score_aesthetic": 3.5, "score_technical": 0.1},
        {"clip_id": "blurry_pretty", "score_aesthetic": 4.5, "score_technical": 0.1},
        {"clip_id": "fine", "score_aesthetic": 5.0, "score_technical": 0.8},
    ]
    out = apply_filters(apply_filters(from_rows(rows), cfg, "aesthetic"), cfg, "technical")
    assert list(out["reject_stage"]) == ["aesthetic", "", "", ""]  # technical is score-only by default
    assert out["reject_reason"][0] == "aesthetic: aesthetic score 2.50 < 3"
    cfg = derive(cfg, {"quality.technical.min": 0.3})  # a threshold calibrated for the metric, set by the user
    out = apply_filters(apply_filters(from_rows(rows), cfg, "aesthetic"), cfg, "technical")
    assert list(out["reject_stage"]) == ["aesthetic", "technical", "", ""]
    cfg = derive(cfg, {"quality.score_only": True})
    out = apply_filters(apply_filters(from_rows(rows), cfg, "aesthetic"), cfg, "technical")
    assert list(out["reject_stage"]) == ["", "", "", ""]


def test_pyiqa_metric_path_and_direction(clips):
    from medgen_ray.curate.technical import TechnicalStage

    cfg = load_config(None, ["curate.quality.technical.metric=pyiqa:piqe", "curate.quality.technical.lower_better=true",
                             "curate.quality.technical.min=50"]).curate
    batch = ClipFramesStage(cfg.quality.clipframes)(from_rows([{"video_id": "c", "clip_id": "c", "clip_uri": clips["clean"]}]))
    out = TechnicalStage(cfg.quality.technical)(batch)
    assert 0 < out["score_technical"][0] < 100  # PIQE: 0 best .. 100 worst
    with pytest.raises(ValueError, match="technical.lower_better must be True"):
        TechnicalStage(derive(cfg, {"quality.technical.lower_better": False}).quality.technical).setup()
    row = {"clip_id": "x", "score_technical": 80.0, "score_aesthetic": 3.5}
    assert apply_filters(from_rows([row]), cfg, "technical")["reject_reason"][0].startswith(
        "technical: low technical quality 80.00 > 50")


def test_crop_action_removes_the_bars(clips, tmp_path):
    import shutil

    from medgen_ray.core.decode import probe_video

    clip = tmp_path / "lb.mp4"
    shutil.copy(clips["letterbox"], clip)
    cfg = load_config(None, ["curate.quality.borders.action=crop"]).curate
    batch = ClipFramesStage(cfg.quality.clipframes)(from_rows([{"video_id": "l", "clip_id": "l", "clip_uri": str(clip)}]))
    out = apply_filters(BorderStage(cfg.quality.borders, cfg.cut)(batch), cfg, "borders")
    assert out["reject_reason"][0] == "" and out["crop_box"][0] == "0,60,640,360"
    info = probe_video(str(clip))
    assert (info.width, info.height) == (640, 360) and info.duration == pytest.approx(6.0, abs=0.05)
    again = BorderStage(cfg.quality.borders, cfg.cut)(ClipFramesStage(cfg.quality.clipframes)(from_rows([{"video_id": "l", "clip_id": "l",
                                                                "clip_uri": str(clip)}])))
    assert again["crop_box"][0] == ""  # no bars left: nothing more to crop


def test_reading_only_near_the_threshold_keeps_every_decision(tmp_path_factory):
    """Detection first, recognition only when the box estimate is within [max_words/2,
    2 max_words]: the same verdict as reading every frame, on clips with 0, 3, 4, 5, 12 and 30
    subtitle words a frame (the threshold, 20 over 5 frames, sits between 4 and 5), and the
    recognised count exactly where it matters."""
    cfg = load_config(None).curate
    clips = {n: _clip(tmp_path_factory, f"words{n}", [Segment("anatomy", 6, text_words=n)]) for n in (0, 3, 4, 5, 12, 30)}
    batch = ClipFramesStage(cfg.quality.clipframes)(from_rows([{"video_id": k, "clip_id": str(k), "clip_uri": v}
                                                                for k, v in clips.items()]))
    frames = {k: batch[k] for k in ("clip_id", "qframes")}
    results = {}
    for mode in ("always", "near_threshold"):
        ocr_cfg = cfg.quality.ocr.model_copy(update={"recognize": mode})
        out = apply_filters(OcrStage(ocr_cfg)(from_rows([{"clip_id": c, "qframes": q} for c, q in
                                                         zip(frames["clip_id"], frames["qframes"])])), cfg, "ocr")
        results[mode] = {c: (s, w) for c, s, w in zip(out["clip_id"], out["reject_stage"], out["score_ocr_words"])}
    assert {c: s for c, (s, _) in results["always"].items()} == {c: s for c, (s, _) in results["near_threshold"].items()}
    assert results["always"]["30"][0] == "ocr" and results["always"]["0"][0] == ""
    for n in ("4", "5"):  # 20 and 25 words: in the band, so read exactly
        assert results["near_threshold"][n][1] == results["always"][n][1]
    assert results["near_threshold"]["0"][1] <= 2  # no text line found on a clean clip
