"""Stage contracts and the config's shape: a mis-ordered pipeline fails before Ray starts,
naming both stages; old flat quality keys still load (with a warning); a validated config is
never changed in place."""

from __future__ import annotations

import pydantic
import pytest

from medgen_ray.config import derive, load_config
from medgen_ray.core import dataflow
from medgen_ray.core.stage import StageOrderError, check_chain
from medgen_ray.curate import job as curate_job
from medgen_ray.curate.classify import FrameClassifierStage
from medgen_ray.curate.clipframes import ClipFramesStage
from medgen_ray.curate.cut import CutStage
from medgen_ray.curate.motion import MotionStage
from medgen_ray.curate.ocr import OcrStage
from medgen_ray.curate.temporal import SegmentStage

SOURCE_ROWS = [{"video_id": "a", "source_uri": "/videos/a.mp4"}]


def _cfg(*extra: str):
    return load_config(None, ["curate.classify.clip_model=clip/tiny", "curate.quality.aesthetic.model=aesthetic/tiny",
                              *extra]).curate


@pytest.mark.parametrize("extra", [[], ["curate.metadata.enabled=false", "curate.quality.enabled=false"],
                                   ["curate.captions.enabled=false"]])
def test_shipped_chains_pass_their_own_check(extra):
    curate_job.check_steps(curate_job.curate_steps(_cfg(*extra), set()), SOURCE_ROWS)


def test_ytdlp_chain_passes_from_request_rows():
    cfg = _cfg("curate.source.kind=ytdlp", "curate.source.ytdlp.queries=[endoscopy]")
    curate_job.check_steps(curate_job.curate_steps(cfg, set()), [{"request": "ytsearch1:endoscopy", "info_json": ""}])


def test_segment_before_classify_names_both_stages():
    chain = [("segment", SegmentStage), ("classify", FrameClassifierStage)]
    with pytest.raises(StageOrderError, match=r"stage 'segment'.*'frame_scores' is added by stage 'classify', "
                                              r"which comes after it"):
        check_chain(chain, ["video_id", "frames", "frame_times", "duration", "keyframes"])


def test_reader_after_the_dropping_stage_names_the_dropper():
    chain = [("clipframes", ClipFramesStage), ("motion", MotionStage), ("ocr", OcrStage), ("motion", MotionStage)]
    with pytest.raises(StageOrderError, match="'mframes' was dropped by stage 'motion' before it"):
        check_chain(chain, ["clip_uri"])


def test_column_nobody_adds_is_named():
    with pytest.raises(StageOrderError, match=r"stage 'cut'.*'clip_id' is added by no stage before it"):
        check_chain([("cut", CutStage)], ["video_id", "source_uri", "t_start", "t_end", "duration", "keyframes",
                                          "bitrate"])


def test_misordered_curation_fails_before_ray_starts(monkeypatch, tmp_path):
    """The curation's driver checks the chain it built before init_ray: a stage placed ahead of its
    producer fails in the driver, naming both, and no Ray process is started."""
    video = tmp_path / "a.mp4"
    video.write_bytes(b"\0")
    real = curate_job.curate_steps

    def swapped(cfg, skip):
        steps = real(cfg, skip)
        i = next(k for k, s in enumerate(steps) if s.stage is FrameClassifierStage)
        steps[i], steps[i + 1] = steps[i + 1], steps[i]  # segment before classify
        return steps

    monkeypatch.setattr(curate_job, "curate_steps", swapped)
    monkeypatch.setattr(dataflow, "init_ray", lambda *_: pytest.fail("Ray started before the chain was checked"))
    app = load_config(None, [f"curate.source.uris=[{tmp_path}]", f"curate.output={tmp_path / 'out'}",
                             "curate.classify.clip_model=clip/tiny"])
    with pytest.raises(StageOrderError, match="'segment'.*'classify'"):
        curate_job.run_curate(app)


def test_old_flat_quality_keys_load_with_a_warning():
    with pytest.warns(FutureWarning, match=r"curate.quality.ocr_max_words is deprecated.*curate.quality.ocr.max_words"):
        q = load_config(None, ["curate.quality.ocr_max_words=7", "curate.quality.border_action=flag"]).curate.quality
    assert q.ocr.max_words == 7 and q.borders.action == "flag"


def test_old_and_new_key_together_are_refused():
    with pytest.raises(ValueError, match="ocr_max_words and ocr.max_words both given"):
        load_config(None, ["curate.quality.ocr_max_words=7", "curate.quality.ocr.max_words=3"])


def test_validated_config_is_not_mutated_but_derived():
    app = load_config(None, [])
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        app.curate.output = "elsewhere"
    new = derive(app, {"curate.output": "elsewhere", "train.lora.rank": 8})
    assert (new.curate.output, new.train.lora.rank) == ("elsewhere", 8)
    assert (app.curate.output, app.train.lora.rank) == ("medgen_out", 32)
    with pytest.raises(ValueError, match="train.lora.rank"):
        derive(app, {"train.lora.rank": 0})


def test_container_checks_were_probe_and_still_load():
    """`curate.probe` named the container checks while four other keys name saved linear probes;
    it is `curate.container` now, and the old key loads with a warning for one release."""
    with pytest.warns(FutureWarning, match="curate.probe is deprecated.*curate.container"):
        cur = load_config(None, ["curate.probe.min_side=32"]).curate
    assert cur.container.min_side == 32
    assert load_config(None, ["curate.container.reject_vfr=true"]).curate.container.reject_vfr
