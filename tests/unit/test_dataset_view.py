"""Dataset views re-apply the clip filters to stored scores: no model, same funnel as curation."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from medgen_ray.config import load_config
from medgen_ray.core.batch import from_rows
from medgen_ray.curate.filters import apply_filters
from medgen_ray.curate.sink import write_batch
from medgen_ray.curate.view import CLIP_FILTERS, write_view


def _clips(n=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        border = 0.9 if i % 7 == 0 else 0.0
        rows.append({
            "video_id": f"v{i // 4}", "clip_id": f"v{i // 4}_{i}", "clip_uri": f"/clips/{i}.mp4", "source_uri": "/s.mp4",
            "t_start": 0.0, "t_end": 6.0, "n_candidates": 4, "duration": 6.0,
            "score_aesthetic": float(rng.uniform(2.0, 6.5)), "score_technical": float(rng.uniform(0, 200)),
            "score_ocr_words": float(rng.choice([0, 5, 40])), "score_text_area": 0.01,
            "score_motion": 1.0, "label_camera_motion": "pan",
            **{f"score_border_{s}": border for s in ("top", "bottom", "left", "right")},
            **{f"border_{s}_frac": 0.1 for s in ("top", "bottom", "left", "right")},
        })
    return rows


def _curate(rows, cfg, out):
    batch = from_rows([dict(r) for r in rows])
    for stage in CLIP_FILTERS:
        batch = apply_filters(batch, cfg, stage)
    write_batch(str(out), batch)


def _kept(folder):
    return set(pq.read_table(str(folder / "manifest")).column("clip_id").to_pylist())


@pytest.fixture()
def no_models(monkeypatch):
    import medgen_ray.models.registry as registry

    monkeypatch.setattr(registry, "load_model", lambda *a, **k: pytest.fail("a view must not load a model"))


def test_view_reproduces_the_curated_funnel(tmp_path, no_models):
    rows = _clips()
    cfg = load_config(None, ["curate.quality.technical.min=100"]).curate
    _curate(rows, cfg, tmp_path / "normal")
    scored = load_config(None, ["curate.quality.technical.min=100", "curate.quality.score_only=true"]).curate
    _curate(rows, scored, tmp_path / "scored")
    assert len(_kept(tmp_path / "scored")) == len(rows)
    summary = write_view(str(tmp_path / "scored"), str(tmp_path / "view"), cfg)
    assert _kept(tmp_path / "view") == _kept(tmp_path / "normal")
    normal_rejects = pq.read_table(str(tmp_path / "normal" / "rejects")).to_pandas()
    view_rejects = pq.read_table(str(tmp_path / "view" / "rejects")).to_pandas()
    assert sorted(view_rejects["reject_reason"]) == sorted(normal_rejects["reject_reason"])
    assert summary["clips_kept"] == len(_kept(tmp_path / "normal"))
    assert json.loads((tmp_path / "view" / "view.json").read_text())["funnel_view"][0]["in"] == len(rows)


def test_thresholds_and_disabled_stages(tmp_path, no_models):
    rows = _clips()
    scored = load_config(None, ["curate.quality.score_only=true"]).curate
    _curate(rows, scored, tmp_path / "scored")
    strict = write_view(str(tmp_path / "scored"), str(tmp_path / "strict"),
                        load_config(None, ["curate.quality.aesthetic.min=4.0"]).curate)
    loose = write_view(str(tmp_path / "scored"), str(tmp_path / "loose"),
                       load_config(None, ["curate.quality.aesthetic.min=4.0"]).curate, disable=["ocr", "borders"])
    expect_strict = {r["clip_id"] for r in rows if r["score_aesthetic"] >= 4.0 and r["score_ocr_words"] <= 20
                     and r["score_border_top"] < 0.8}
    assert _kept(tmp_path / "strict") == expect_strict
    assert _kept(tmp_path / "loose") == {r["clip_id"] for r in rows if r["score_aesthetic"] >= 4.0}
    by_stage = {f["stage"]: f["rejected"] for f in loose["funnel_view"]}
    assert by_stage["ocr"] == 0 and by_stage["borders"] == 0 and strict["clips_kept"] < loose["clips_kept"]


def test_bad_view_requests_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        write_view(str(tmp_path / "nowhere"), str(tmp_path / "v"), load_config().curate)
    _curate(_clips(4), load_config().curate, tmp_path / "d")
    with pytest.raises(ValueError, match="captions"):
        write_view(str(tmp_path / "d"), str(tmp_path / "v"), load_config().curate, disable=["captions"])
