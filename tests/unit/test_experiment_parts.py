"""The experiment comparison on known per-video scores: paired differences overall and per
category (held-in / held-out), the mix table, the report files; arm config checks."""

import numpy as np
import pandas as pd
import pytest

from medgen_ray.config import ConfigError, load_config
from medgen_ray.experiments.comparison import compare_arms, write_experiment_report

DIMS = ["subject_consistency", "medical_frames"]


def _df():
    """base, a hold-out arm 'teach' (+1 SC on teaching prompts, -3 on imaging ones) and a mixed
    arm 'mix' (-2 medical-frame share everywhere); 10 prompts, 5 per clip category."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        cat = "medical teaching" if i < 5 else "medical imaging"
        sc, ma = rng.uniform(80, 95), rng.uniform(40, 90)
        for model, dsc, dma in (("base", 0, 0), ("teach", 1.0 if i < 5 else -3.0, 0), ("mix", 0, -2.0)):
            rows.append({"model": model, "prompt_index": i, "clip_category": cat, "category": "",
                         "score_subject_consistency": sc + dsc, "score_medical_frames": ma + dma, "error": ""})
    rows.append({"model": "mix", "prompt_index": 99, "clip_category": "medical imaging", "category": "",
                 "score_subject_consistency": np.nan, "score_medical_frames": np.nan, "error": "decode failed"})
    return pd.DataFrame(rows)


ARMS = {"teach": {"clips": 10, "mixed_in": 0, "share": 0.0, "categories": ["medical teaching"], "rank": 4,
                  "final_loss": 0.5, "loss_csv": None, "medvbench": {"subject_consistency": 88.0}},
        "mix": {"clips": 9, "mixed_in": 3, "share": 0.25, "categories": [], "rank": 4, "final_loss": 0.6,
                "loss_csv": None, "medvbench": {"subject_consistency": 87.0}}}


def test_paired_differences_overall_and_per_category():
    out = compare_arms(_df(), ARMS, "base", DIMS, seed=0)
    assert out["category_column"] == "clip_category"
    assert out["vs_reference"]["mix"]["medical_frames"] == pytest.approx([-2.0, -2.0, -2.0])
    mean, lo, hi = out["vs_reference"]["teach"]["subject_consistency"]
    assert mean == pytest.approx(-1.0) and lo < mean < hi  # (5 * 1 - 5 * 3) / 10
    rows = {(r["arm"], r["category"]): r for r in out["by_category"]}
    t_in, t_out = rows[("teach", "medical teaching")], rows[("teach", "medical imaging")]
    assert t_in["held"] == "in" and t_out["held"] == "out" and t_in["prompts"] == 5
    assert t_in["diffs"]["subject_consistency"][0] == pytest.approx(1.0)
    assert t_out["diffs"]["subject_consistency"][0] == pytest.approx(-3.0)
    assert rows[("teach", "all held-out")]["diffs"]["subject_consistency"][0] == pytest.approx(-3.0)
    assert rows[("mix", "medical imaging")]["held"] == ""
    assert ("mix", "all held-out") not in rows  # no categories: nothing held out
    assert [r["arm"] for r in out["mix"]] == ["teach", "mix"]  # sorted by share
    assert out["mix"][1]["actual_share"] == pytest.approx(0.25)


def test_report_files(tmp_path):
    df = _df()
    result = {"name": "t", "arms": ARMS, "base": {"model": "base", "subject_consistency": 87.5},
              "report": "eval/report.html", "per_category": [], "reference": "base",
              **compare_arms(df, ARMS, "base", DIMS, seed=0)}
    page = write_experiment_report(str(tmp_path), result, DIMS)
    md = (tmp_path / "experiment.md").read_text()
    assert "## By category: arm minus base (clip categories from the text classifier)" in md
    assert "| teach | medical imaging | out | 5 | -3.00 [-3.00, -3.00] |" in md
    assert "## Medical / general data mix" in md and "| mix | 25% | 25% |" in md
    assert page.endswith("experiment.html") and "<table>" in (tmp_path / "experiment.html").read_text()
    for png in ("category_diff.png", "mix.png"):
        assert (tmp_path / png).stat().st_size > 5000
    assert not (tmp_path / "loss_curves.png").exists()  # no arm trained here


def test_arm_settings_are_checked():
    with pytest.raises(ConfigError, match="evaluated as given"):
        load_config(None, ['experiment.arms=[{name: a, lora: /x, disable: [ocr]}]'])
    with pytest.raises(ConfigError, match="not an arm"):
        load_config(None, ['experiment.arms=[{name: a}]', "experiment.reference=b"])
    with pytest.raises(ConfigError, match="include_base is false"):
        load_config(None, ['experiment.arms=[{name: a}, {name: b}]', "experiment.reference=base",
                           "experiment.include_base=false"])
    with pytest.raises(ConfigError, match="names the base model"):
        load_config(None, ['experiment.arms=[{name: base}]'])


def test_unknown_sweep_reference_fails_before_training(tmp_path):
    from medgen_ray.runner import run_experiment

    app = load_config(None, ["experiment.sweep={values: [8, 16]}", "experiment.reference=rank-32",
                             f"experiment.output={tmp_path}"])
    with pytest.raises(ValueError, match=r"'rank-32' is not an arm \(\['rank-8', 'rank-16'\]\)"):
        run_experiment(app)
    assert not any(tmp_path.iterdir())


def _view(folder, ids, uri="/data/{}.mp4"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "manifest").mkdir(parents=True)
    pq.write_table(pa.table({"clip_id": ids, "clip_uri": [uri.format(i) for i in ids], "width": [64] * len(ids),
                             "height": [32] * len(ids), "duration": [1.0] * len(ids), "fps": [24.0] * len(ids),
                             "caption_detailed": [f"a caption of {i}" for i in ids]}),
                   folder / "manifest" / "part-00000.parquet")
    return str(folder)


def test_arms_share_one_precompute_per_setting(tmp_path, monkeypatch):
    """Each clip is encoded once per experiment: arms with the same precompute settings share one
    precompute job over the union of their views, and each arm's latents hold exactly its own
    clips' rows (encoded and rejected). Another bucket setting, or a clip id that names another
    file, gets a job of its own. (The precompute job itself stands in as a recorder here; the
    integration test runs the real one.)"""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medgen_ray.experiments import arms as arms_mod

    jobs = []

    def fake_precompute(app):
        ids = pq.read_table(f"{app.precompute.dataset}/manifest", columns=["clip_id"]).column("clip_id").to_pylist()
        jobs.append((sorted(ids), app.precompute.resume))
        out = tmp_path / app.precompute.output
        for name, keep in (("shards", [i for i in ids if i != "bad"]), ("rejects", [i for i in ids if i == "bad"])):
            (out / name).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"clip_id": keep, "bucket": ["9x32x64"] * len(keep)}), out / name / "part-x.parquet")
        return {}

    monkeypatch.setattr(arms_mod, "run_precompute", fake_precompute)
    app = load_config(None, ["precompute.model=hunyuan_video/tiny"])
    wide = load_config(None, ["precompute.model=hunyuan_video/tiny", "precompute.buckets=[{frames: 9, height: 32, width: 48}]"])
    plans = [("a", app, _view(tmp_path / "va", ["c1", "c2", "bad"])),
             ("b", app, _view(tmp_path / "vb", ["c2", "c3"])),
             ("c", wide, _view(tmp_path / "vc", ["c1"])),
             ("d", app, _view(tmp_path / "vd", ["c3", "c4"], uri="/other/{}.mp4"))]  # c3: another file
    latents = arms_mod.shared_latents(plans, str(tmp_path / "exp"))
    assert jobs == [(["bad", "c1", "c2", "c3"], True), (["c1"], True), (["c3", "c4"], True)]
    rows = lambda arm, name: sorted(pq.read_table(f"{latents[arm]}/{name}").column("clip_id").to_pylist())
    assert rows("a", "shards") == ["c1", "c2"] and rows("a", "rejects") == ["bad"]
    assert rows("b", "shards") == ["c2", "c3"] and rows("c", "shards") == ["c1"] and rows("d", "shards") == ["c3", "c4"]
    assert not (tmp_path / "exp" / "arms" / "b" / "latents" / "rejects").exists()
