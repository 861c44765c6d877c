"""The curation job on a local Ray cluster bound to 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from medgen_ray.config import load_config
from medgen_ray.core.decode import probe_video
from medgen_ray.models.registry import TINY_CLIP_CFG
from medgen_ray.runner import run_curate
from tests.conftest import TINY_MODELS, tiny_overrides
from tests.unit.test_decode import EXPECTED


@pytest.fixture(scope="module")
def mixed_folder(corpus, bad_inputs, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed")
    for p in corpus[0].iterdir():
        if p.suffix in (".mp4", ".json"):
            shutil.copy(p, folder / p.name)
    for p in bad_inputs.values():
        shutil.copy(p, folder / p.name)
    return folder


def _overrides(out: Path, folder: Path, probe: Path, *extra: str) -> list[str]:
    return tiny_overrides(out, [str(folder)]) + [
        f"curate.classify.probe_path={probe}", "curate.segment.similarity_threshold=0.99", *extra]


def _table(out: Path, name: str) -> list[dict]:
    folder = out / name
    return pads.dataset(folder, format="parquet").to_table().to_pylist() if folder.exists() else []


def test_curate_end_to_end(ray_cluster, mixed_folder, corpus, bad_inputs, frame_probe, tmp_path):
    out = tmp_path / "ds"
    summary = run_curate(load_config(None, _overrides(out, mixed_folder, frame_probe)))
    truth = corpus[1]
    n_inputs = len(truth) + len(bad_inputs)
    assert summary["inputs"] == n_inputs and summary["accounted"]
    assert summary["videos_kept"] + summary["videos_rejected"] + summary["videos_errored"] == n_inputs
    assert json.loads((out / "summary.json").read_text())["clips_kept"] == summary["clips_kept"] > 0

    manifest, rejects = _table(out, "manifest"), _table(out, "rejects")
    by_video = {r["video_id"]: r for r in rejects if not r["clip_id"]}
    for kind, (what, text) in EXPECTED.items():
        row = by_video[Path(bad_inputs[kind]).stem]
        assert row["reject_stage"] == "probe" and text in (row["error"] if what == "error" else row["reject_reason"])
    for vid, t in truth.items():
        spec = t["spec"]
        if min(spec["width"], spec["height"]) < 480:
            assert by_video[vid]["reject_stage"] == "resolution"
        if not any(s["medical"] for s in t["seconds"]):
            assert by_video[vid]["reject_stage"] == "metadata"

    ids = [m["clip_id"] for m in manifest]
    assert len(ids) == len(set(ids))
    for m in manifest:
        assert 6 <= m["t_end"] - m["t_start"] <= 10
        info = probe_video(m["clip_uri"])
        assert info.duration == pytest.approx(m["t_end"] - m["t_start"], abs=0.1)
        secs = truth[m["video_id"]]["seconds"][int(m["t_start"]) : int(m["t_end"])]
        assert sum(s["medical"] for s in secs) >= 0.8 * len(secs)  # tiny model + probe: mostly right
        assert json.loads(m["provenance"])["license"].startswith("Creative Commons")
        n_frames = int(m["t_end"]) - int(m["t_start"]) + 1  # 1-fps samples inside the clip (dedup's signatures)
        assert abs(len(m["frame_hashes"]) - n_frames) <= 1 and len(m["clip_embedding"]) == TINY_CLIP_CFG["embed_dim"]
        assert abs(sum(x * x for x in m["clip_embedding"]) - 1.0) < 1e-3

    # The same inputs with every source classified window by window (8-s windows on 16-s videos):
    # through Ray, the same clips.
    windowed = tmp_path / "ds_windowed"
    again = run_curate(load_config(None, _overrides(windowed, mixed_folder, frame_probe, "curate.sample.window_s=8")))
    assert again["inputs"] == summary["inputs"] and again["accounted"]
    assert _rounded(_sorted_manifest(windowed)) == _rounded(_sorted_manifest(out))  # CLIP batch sizes differ by ULPs


def _rounded(rows: list[tuple]) -> list[tuple]:
    return [(*r[:-1], round(r[-1], 4)) for r in rows]


def _sorted_manifest(out: Path) -> list[tuple]:
    return sorted((m["clip_id"], m["t_start"], m["t_end"], m["width"], m["score_frame_medical"])
                  for m in _table(out, "manifest"))


@pytest.fixture(scope="module")
def resume_folder(mixed_folder, tmp_path_factory) -> Path:
    """The mixed folder plus longer videos: enough clips that a kill lands between them."""
    from medgen_ray.samples.generator import make_corpus

    folder = tmp_path_factory.mktemp("resume")
    for p in mixed_folder.iterdir():
        shutil.copy(p, folder / p.name)
    make_corpus(folder, n_videos=2, seconds=30, seed=11)
    return folder


# One part per row, and re-encoded cuts: broken inputs reach storage seconds before the
# clips do, so a kill at the first part leaves a partial dataset.
SLOW_WRITES = ("curate.write_batch_rows=1", "curate.cut.mode=reencode")


def test_resume_after_kill_equals_uninterrupted_run(ray_cluster, resume_folder, frame_probe, tmp_path):
    mixed_folder = resume_folder
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_curate(load_config(None, _overrides(full, mixed_folder, frame_probe, *SLOW_WRITES)))

    # Its own embedded Ray in its own session: killing the group kills the job's workers too,
    # as losing the driver's machine would.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "medgen_ray.cli", "curate",
           *_overrides(resumed, mixed_folder, frame_probe, *SLOW_WRITES)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if list(resumed.glob("*/part-*.parquet")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    rows = lambda o: len(_table(o, "manifest")) + len(_table(o, "rejects"))
    assert 0 < rows(resumed) < rows(full), "the kill should leave a partial dataset"

    summary = run_curate(load_config(None, _overrides(resumed, mixed_folder, frame_probe, *SLOW_WRITES)))
    assert summary["accounted"] and summary["this_run"]["skipped_finished_sources"] > 0
    assert _sorted_manifest(resumed) == _sorted_manifest(full)
    rej = lambda o: sorted((r["video_id"], r["clip_id"], r["reject_reason"], r["error"]) for r in _table(o, "rejects"))
    assert rej(resumed) == rej(full)


def test_ytdlp_source_on_ray(ray_cluster, one_video, frame_probe, tmp_path, monkeypatch):
    from tests.unit.test_ytdlp import _info

    info = _info(tmp_path, one_video)
    out = tmp_path / "ds"
    monkeypatch.chdir(tmp_path)  # a relative output (as the demo gives): the workers run elsewhere
    missing = (tmp_path / "gone.mp4").as_uri()  # a request that cannot be listed is an errored input
    cfg = load_config(None, ["curate.output=ds", "curate.source.kind=ytdlp", f"curate.source.ytdlp.urls=[{missing}]",
                             f"curate.source.ytdlp.info_json=[{info}]", "curate.source.ytdlp.enable_file_urls=true",
                             f"curate.classify.probe_path={frame_probe}",
                             "curate.segment.similarity_threshold=0.99", *TINY_MODELS])
    summary = run_curate(cfg)
    manifest = _table(out, "manifest")
    assert summary["videos_kept"] == 1 and len(manifest) == 1
    assert summary["inputs"] == 2 and summary["videos_errored"] == 1 and summary["accounted"]
    assert manifest[0]["video_id"] == "abc123XYZ_0" and "gallbladder" in manifest[0]["transcript"]
    assert manifest[0]["source_url"] == "https://m.youtube.com/watch?v=abc123XYZ_0"
    clip = Path(manifest[0]["clip_uri"])
    assert clip.is_absolute() and clip.is_file() and clip.parent.parent.parent == out
