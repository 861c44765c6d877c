"""Each stage on generated videos, without Ray: s = Stage(cfg); s.setup(); out = s(batch)."""


import numpy as np
import pytest

from medgen_ray.config import load_config
from medgen_ray.core.batch import from_rows
from medgen_ray.core.decode import probe_video
from medgen_ray.curate.classify import FrameClassifierStage
from medgen_ray.curate.container import ProbeStage
from medgen_ray.curate.cut import CutStage, choose_mode
from medgen_ray.curate.filters import apply_filters
from medgen_ray.curate.metadata import MetadataStage, keyword_pattern, load_keywords
from medgen_ray.curate.sampling import SampleStage
from medgen_ray.curate.sources import FileSourceStage, list_file_sources
from medgen_ray.curate.temporal import SegmentStage
from medgen_ray.models.linear_probe import fit_probe
from medgen_ray.models.registry import load_model


def _cfg(tmp_path, *extra):
    return load_config(None, [f"curate.output={tmp_path / 'out'}", "curate.classify.clip_model=clip/tiny", *extra]).curate


def test_file_listing_and_sidecar_metadata(corpus):
    folder, truth = corpus
    cfg = load_config(None, [f"curate.source.uris=[{folder}]"]).curate
    rows = list_file_sources(cfg.source)
    assert [r["video_id"] for r in rows] == sorted(truth)
    out = FileSourceStage(cfg.source)(from_rows(rows))
    vid = rows[0]["video_id"]
    assert out["title"][0] == truth[vid]["spec"]["title"]
    assert out["source_url"][0].endswith(vid)


def test_broken_sidecar_is_a_row_error(tmp_path, one_video):
    v = tmp_path / "x.mp4"
    v.write_bytes(one_video.read_bytes())
    (tmp_path / "x.info.json").write_text("{not json")
    cfg = load_config(None, [f"curate.source.uris=[{tmp_path}]"]).curate
    out = FileSourceStage(cfg.source)(from_rows(list_file_sources(cfg.source)))
    assert "x.info.json is not valid JSON" in out["error"][0]


def test_keywords_match_words_not_substrings():
    pat = keyword_pattern(load_keywords())
    assert pat.findall("Laparoscopic surgery, live") and not pat.findall("Gigantic doctorate drama")


def test_metadata_stage_scores_and_filter_rejects(tmp_path):
    emb = load_model("minilm", kind="text")
    med = ["Knee arthroscopy explained", "Ultrasound of the liver for residents", "Hernia repair technique"]
    oth = ["Minecraft speedrun any%", "Pasta carbonara at home", "Football highlights week 3"]
    probe = fit_probe(emb.embed(med + oth), np.array([1, 1, 1, 0, 0, 0]), "minilm")
    probe.save(str(tmp_path / "t.npz"))
    cfg = _cfg(tmp_path, f"curate.metadata.classifier_path={tmp_path / 't.npz'}", "curate.metadata.rule=classifier")
    rows = [{"video_id": "a", "title": "Appendectomy: step by step", "description": "surgical tutorial"},
            {"video_id": "b", "title": "Best street food tour", "description": "like and subscribe"},
            {"video_id": "c", "title": "", "description": ""}]
    out = apply_filters(MetadataStage(cfg)(from_rows(rows)), cfg, "metadata")
    assert out["score_text_medical"][0] > 0.5 > out["score_text_medical"][1]
    assert out["reject_reason"][0] == "" and out["reject_reason"][2] == ""  # no text: frames decide
    assert out["reject_reason"][1].startswith("metadata: title/description not medical")


def test_sample_classify_segment_cut_chain(tmp_path, one_video, frame_probe):
    cfg = _cfg(tmp_path, f"curate.classify.probe_path={frame_probe}", "curate.segment.similarity_threshold=0.0")
    batch = from_rows([{"video_id": "endo_game", "source_uri": str(one_video), "title": "", "description": ""}])
    batch = apply_filters(ProbeStage(cfg)(batch), cfg, "probe")
    batch = SampleStage(cfg.sample, 64)(batch)
    assert batch["frames"][0].shape == (20, 64, 64, 3)
    clf = FrameClassifierStage(cfg)
    clf.setup()
    batch = clf(batch)
    assert "frames" not in batch
    scores = batch["frame_scores"][0]
    assert scores[:10].mean() > 0.8 and scores[10:].mean() < 0.2  # endoscopy vs game
    assert len(batch["frame_sims"][0]) == 19
    clips = SegmentStage(cfg)(batch)
    assert list(clips["t_start"]) == [0.0] and list(clips["t_end"]) == [9.0]
    assert clips["clip_id"][0] == "endo_game_00000000_00009000" and clips["n_candidates"][0] == 1
    out = CutStage(cfg)(clips)
    assert out["cut_mode"][0] == "copy" and out["error"][0] == ""
    info = probe_video(out["clip_uri"][0])
    assert info.duration == pytest.approx(9.0, abs=0.05)
    again = CutStage(cfg)(clips)  # idempotent: the finished clip is reused
    assert again["clip_bytes"][0] == out["clip_bytes"][0]


def test_cut_reencodes_off_keyframe_exactly(tmp_path, one_video):
    cfg = _cfg(tmp_path, "curate.cut.mode=auto")
    info = probe_video(str(one_video))
    assert choose_mode("auto", info.keyframes, 2.5, 9.0, info.duration, 0.05) == "reencode"
    row = {"video_id": "endo_game", "clip_id": "c1", "source_uri": str(one_video), "t_start": 2.5, "t_end": 9.0,
           "keyframes": info.keyframes, "duration": info.duration}
    out = CutStage(cfg)(from_rows([row]))
    assert out["cut_mode"][0] == "reencode"
    clip = probe_video(out["clip_uri"][0])
    assert clip.duration == pytest.approx(6.5, abs=0.05) and clip.n_frames == round(6.5 * 25)


def test_segment_rejects_videos_without_a_clip(tmp_path):
    cfg = _cfg(tmp_path)
    row = {"video_id": "v", "frame_times": np.arange(10.0), "frame_scores": np.array([1, 0] * 5, np.float32),
           "frame_sims": np.ones(9, np.float32)}
    out = SegmentStage(cfg)(from_rows([row]))
    assert out["reject_stage"][0] == "segment" and "medical frames 5/10" in out["reject_reason"][0]
    assert "frame_scores" not in out


def test_resolution_filter(tmp_path):
    cfg = _cfg(tmp_path)
    rows = [{"video_id": "lo", "width": 320, "height": 240}, {"video_id": "hi", "width": 854, "height": 480}]
    out = apply_filters(from_rows(rows), cfg, "resolution")
    assert out["reject_reason"][0] == "resolution: short side 240 px < 480 (320x240)"
    assert out["reject_reason"][1] == ""


def test_every_file_under_a_folder_is_an_input(tmp_path, one_video):
    """A non-video file (an .m4a, a stray note) is an input, rejected at the source with the
    reason; a video's companions (its yt-dlp sidecar, subtitles, thumbnail) are not inputs."""
    (tmp_path / "talk.mp4").write_bytes(one_video.read_bytes())
    (tmp_path / "talk.info.json").write_text("{}")
    (tmp_path / "talk.en.vtt").write_text("WEBVTT\n")
    (tmp_path / "talk.webp").write_bytes(b"RIFF")
    (tmp_path / "talk.m4a").write_bytes(b"\0" * 64)
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / ".DS_Store").write_bytes(b"")
    cfg = load_config(None, [f"curate.source.uris=[{tmp_path}]"]).curate
    rows = {r["source_uri"].rsplit("/", 1)[-1]: r for r in list_file_sources(cfg.source)}
    assert set(rows) == {"talk.mp4", "talk.m4a", "notes.txt"}
    assert rows["talk.mp4"]["reject_reason"] == "" and len({r["video_id"] for r in rows.values()}) == 3
    assert rows["talk.m4a"]["reject_reason"].startswith("source: not a video file (.m4a;")
    out = FileSourceStage(cfg.source)(from_rows(list(rows.values())))
    assert sorted(out["reject_stage"]) == ["", "source", "source"]


def test_variable_frame_rate_clip_is_cut_at_a_constant_rate(bad_inputs, tmp_path):
    """A stream copy would keep the source's irregular timing: the clip is re-encoded onto a
    constant grid at the source's average rate, covering exactly its span."""
    from medgen_ray.core.decode import probe_video

    cfg = _cfg(tmp_path)
    probed = ProbeStage(cfg)(from_rows([{"video_id": "vfr", "source_uri": str(bad_inputs["vfr"])}]))
    assert probed["interval_spread"][0] > cfg.container.vfr_tolerance
    row = {k: v[0] for k, v in probed.items()}
    row.update(clip_id="vfr_0", t_start=1.0, t_end=4.0, keyframes=np.array([0.0, 1.0, 4.0]))  # keyframe-aligned
    out = CutStage(cfg)(from_rows([row]))
    assert out["error"][0] == "" and out["cut_mode"][0] == "reencode"
    clip = probe_video(out["clip_uri"][0])
    assert clip.interval_spread < 0.05, clip.interval_spread
    assert abs(clip.n_frames - round(3.0 * float(row["fps"]))) <= 1 and abs(clip.duration - 3.0) < 0.1
