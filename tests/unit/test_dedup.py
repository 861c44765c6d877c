"""Near-duplicate removal on generated footage: re-encoded, rescaled and 1-s-trimmed copies
among distinct clips (two of the same scene kind), signatures computed the curation's way."""

import json

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medgen_ray.config import DedupConfig, load_config
from medgen_ray.core.encode import write_mp4
from medgen_ray.curate.dedup import ClipSignatureStage, frame_hashes, near_duplicates, sequences_match, write_dedup
from medgen_ray.samples.generator import Segment, VideoSpec, render_video
from medgen_ray.schema import CLIP_EMBEDDING, CLIP_ID, CLIP_URI, FRAME_HASHES, MANIFEST_SCHEMA

DISTINCT = {"e1": "endoscopy", "u1": "ultrasound", "a1": "anatomy", "e2": "endoscopy", "u2": "ultrasound", "g1": "game"}
DUPS = {"e1_reencoded": "e1", "u1_half_size": "u1", "a1_trimmed_1s": "a1"}


def _frames(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("dedup_clips")
    paths = {}
    for i, (name, scene) in enumerate(DISTINCT.items()):
        paths[name] = d / f"{name}.mp4"
        render_video(VideoSpec(name, [Segment(scene, 8)], 320, 240, 24, seed=100 + i), paths[name])
    for name, src in DUPS.items():
        frames = _frames(paths[src])
        if "half" in name:
            frames = np.stack([cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in frames])
        if "trimmed" in name:
            frames = frames[24:]
        paths[name] = d / f"{name}.mp4"
        write_mp4(frames, str(paths[name]), fps=24)  # every copy goes through a second encode
    return paths


@pytest.fixture(scope="module")
def signed(clips):
    cfg = load_config(None, ["curate.classify.clip_model=clip/tiny"]).curate
    stage = ClipSignatureStage(cfg, device="cpu")
    stage.setup()
    rows = []
    for name, path in clips.items():
        row = stage.process({CLIP_ID: name, CLIP_URI: str(path)})
        row.update(score_aesthetic=5.0 if name in DISTINCT else 4.0, duration=8.0)
        rows.append(row)
    return rows


def test_every_duplicate_found_and_no_distinct_clip_removed(signed):
    dups = near_duplicates(signed, DedupConfig())
    assert {d: k for d, (k, _) in dups.items()} == DUPS
    assert all("near-duplicate of" in why for _, why in dups.values())


def test_the_embedding_alone_would_remove_distinct_clips(signed):
    """Why the frame hashes: on the tiny CLIP two different endoscopy clips are one embedding."""
    by = {r[CLIP_ID]: np.asarray(r[CLIP_EMBEDDING]) for r in signed}
    assert float(by["e1"] @ by["e2"]) >= DedupConfig().embedding_threshold
    hashes = {r[CLIP_ID]: r[FRAME_HASHES] for r in signed}
    assert not sequences_match(hashes["e1"], hashes["e2"], DedupConfig())[0]
    loose = DedupConfig(max_hamming=64)
    assert "e2" in near_duplicates(signed, loose) or "e1" in near_duplicates(signed, loose)


def test_the_best_scored_clip_of_a_cluster_stays(signed):
    rows = [dict(r) for r in signed]
    for r in rows:
        if r[CLIP_ID] == "e1_reencoded":
            r["score_aesthetic"] = 9.0
    dups = near_duplicates(rows, DedupConfig())
    assert dups["e1"][0] == "e1_reencoded" and "e1_reencoded" not in dups


def test_frame_hashes_survive_reencode_not_other_footage(clips):
    a, b, c = (frame_hashes(_frames(clips[n])[::24]) for n in ("e1", "e1_reencoded", "e2"))
    assert sequences_match(a, b, DedupConfig())[1] < 2 < 10 < sequences_match(a, c, DedupConfig())[1]


def _manifest(tmp_path, rows, with_signatures=True):
    base = tmp_path / "ds"
    (base / "manifest").mkdir(parents=True)
    items = []
    for r in rows:
        item = {f.name: None for f in MANIFEST_SCHEMA}
        item.update({CLIP_ID: r[CLIP_ID], CLIP_URI: r[CLIP_URI], "score_aesthetic": r["score_aesthetic"],
                     "duration": r["duration"]})
        if with_signatures:
            item[CLIP_EMBEDDING] = [float(x) for x in r[CLIP_EMBEDDING]]
            item[FRAME_HASHES] = [int(x) for x in r[FRAME_HASHES]]
        items.append(item)
    pq.write_table(pa.Table.from_pylist(items, schema=MANIFEST_SCHEMA), base / "manifest" / "part-00000.parquet")
    return base


def test_view_writes_kept_clips_and_rejects_naming_the_kept_one(signed, tmp_path):
    base = _manifest(tmp_path, signed)
    summary = write_dedup(str(base), str(tmp_path / "out"), DedupConfig())
    assert summary["kept"] == len(DISTINCT) and summary["duplicates"] == len(DUPS)
    kept = pq.read_table(tmp_path / "out" / "manifest").column(CLIP_ID).to_pylist()
    rejects = pq.read_table(tmp_path / "out" / "rejects").to_pylist()
    assert sorted(kept) == sorted(DISTINCT)
    assert {r[CLIP_ID]: r["reject_stage"] for r in rejects} == {d: "dedup" for d in DUPS}
    assert all(f"near-duplicate of {DUPS[r[CLIP_ID]]}" in r["reject_reason"] for r in rejects)
    assert json.loads((tmp_path / "out" / "dedup.json").read_text())["removed"] == DUPS
    with pytest.raises(FileExistsError):
        write_dedup(str(base), str(tmp_path / "out"), DedupConfig())


def test_view_without_signatures_says_to_run_the_pass(signed, tmp_path):
    base = _manifest(tmp_path, signed, with_signatures=False)
    with pytest.raises(ValueError, match="no signature.*medgen dataset dedup"):
        write_dedup(str(base), str(tmp_path / "out"), DedupConfig())


def test_segment_stores_each_clips_signatures():
    from medgen_ray.curate.temporal import SegmentStage

    cfg = load_config(None, ["curate.segment.min_seconds=3", "curate.cut.snap_to_keyframes_s=0"]).curate
    t = np.arange(10, dtype=np.float64)
    feats = np.eye(10, 8, dtype=np.float16)[:, :8] + 1.0
    hashes = np.arange(10, dtype=np.uint64) * np.uint64(1 << 40)
    row = {"video_id": "v", "frame_times": t, "frame_scores": np.r_[np.zeros(3), np.ones(7)].astype(np.float32),
           "frame_sims": np.ones(9, np.float32), "frame_feats": feats, "frame_hashes": hashes, "duration": 10.0,
           "keyframes": np.zeros(0), "reject_stage": "", "reject_reason": "", "error": ""}
    (clip,) = SegmentStage(cfg).process(row)
    a = int(clip["t_start"])
    b = int(round(clip["t_end"]))
    assert list(clip[FRAME_HASHES]) == list(hashes[a:b + 1])
    mean = feats[a:b + 1].astype(np.float32).mean(0)
    assert np.allclose(clip[CLIP_EMBEDDING], mean / np.linalg.norm(mean), atol=1e-6)
