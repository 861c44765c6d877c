"""A source damaged in the middle keeps what decodes: the damaged stretch is skipped and listed
(`damaged_spans`), no clip crosses it, and the clips cut on either side decode cleanly; a source
where nothing decodes is an error. Real stages (container, sampling, segmentation, cut) on a
generated 16-s video whose packets from 8 s to 8.5 s are overwritten."""

import json

import av
import numpy as np
import pytest

from medgen_ray.config import load_config
from medgen_ray.core.batch import from_rows
from medgen_ray.core.decode import open_video, sample_frames
from medgen_ray.curate.container import ProbeStage
from medgen_ray.curate.cut import CutStage
from medgen_ray.curate.sampling import SampleStage
from medgen_ray.curate.temporal import SegmentStage
from medgen_ray.samples.bad import make_bad_input


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    d = tmp_path_factory.mktemp("damaged")
    return {k: make_bad_input(k, d) for k in ("damaged_middle", "damaged_everywhere")}


def _row(path):
    return {"video_id": path.stem, "source_uri": str(path), "reject_stage": "", "reject_reason": "", "error": ""}


def test_strict_decode_of_the_damaged_file_fails_as_it_did(damaged):
    with pytest.raises(Exception, match="decode failed"):
        sample_frames(str(damaged["damaged_middle"]), 1.0, 64)


def test_damaged_middle_is_skipped_recorded_and_never_crossed(damaged, tmp_path):
    cfg = load_config(None, [f"curate.output={tmp_path / 'ds'}", "curate.cut.snap_to_keyframes_s=0"]).curate
    rows = ProbeStage(cfg)(from_rows([_row(damaged["damaged_middle"])]))
    rows = SampleStage(cfg.sample, 64)(rows)
    assert rows["error"][0] == "" and rows["reject_stage"][0] == ""
    spans = json.loads(rows["damaged_spans"][0])
    assert len(spans) == 1 and spans[0][0] <= 8.0 and 8.5 <= spans[0][1] <= 9.05  # to the next keyframe (1-s GOP)
    times = rows["frame_times"][0]
    assert not any(spans[0][0] <= t < spans[0][1] for t in times)
    assert times.min() == 0.0 and times.max() >= 15.0  # both sides kept
    n = len(times)
    row = {k: v[0] for k, v in rows.items() if k != "frames"}
    row.update(frame_scores=np.ones(n, np.float32), frame_sims=np.ones(n - 1, np.float32),
               frame_feats=np.ones((n, 4), np.float16), frame_hashes=np.zeros(n, np.uint64))
    clips = SegmentStage(cfg).process(row)
    assert len(clips) == 2  # 0-7 s and 9-15 s: one steady medical run cut in two by the damage
    for c in clips:
        assert c["t_end"] <= spans[0][0] or c["t_start"] >= spans[0][1], (c["t_start"], c["t_end"], spans)
    cut = CutStage(cfg)
    cut.setup()
    for c in clips:
        out = cut.process(dict(c))
        with open_video(out["clip_uri"]) as container:  # strict: any bad packet raises
            n_frames = sum(1 for _ in container.decode(video=0))
        assert n_frames >= 24 * (c["t_end"] - c["t_start"]) - 2


def test_nothing_decodes_is_an_error_naming_the_damage(damaged):
    rows = SampleStage(load_config(None).curate.sample, 64)(from_rows([_row(damaged["damaged_everywhere"])]))
    assert rows["error"][0].startswith("sample:") and "no frame decoded (damaged from 0 s)" in rows["error"][0]


def test_overwritten_packets_are_really_damaged(damaged):
    """The generated file is broken where it says: packets after 8.5 s decode untouched."""
    with av.open(str(damaged["damaged_middle"])) as c:
        s = c.streams.video[0]
        errors = []
        for pkt in c.demux(s):
            try:
                pkt.decode()
            except av.FFmpegError:
                errors.append(float(pkt.pts * s.time_base))
    assert errors and 7.9 < min(errors) and max(errors) < 9.0
