"""Experiments end to end on tiny twins: ablation, rank, hold-out and mix arms in one experiment,
a rank sweep on Ray Tune, a stratified comparison of a given LoRA; one LoRA per trained arm, one
Med-VBench run, one report each; views reuse stored scores."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medgen_ray.config import load_config
from medgen_ray.samples.clipset import make_clip_dataset
from tests.integration.test_evaluate import EVAL_TINY
from tests.integration.test_train import BUCKETS

PROMPTS = "endoscopy\tAn endoscopic view of the stomach.\nultrasound\tAn ultrasound of the liver.\n"
PLAIN = "An endoscopic view of the stomach.\nAn ultrasound scan with speckled tissue.\nAn anatomy diagram of the heart.\n"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """6 clips with stored quality scores (as a score_only curation leaves them), plus a
    second dataset of 'general' clips for the mix arm."""
    root = tmp_path_factory.mktemp("exp")
    ds = make_clip_dataset(root / "scored", n=6, seconds=1.0)
    part = ds / "manifest" / "part-0000.parquet"
    t = pq.read_table(part)
    n = t.num_rows
    extra = {"score_aesthetic": [5.0] * n, "score_technical": [150.0] * n,
             "score_ocr_words": [40.0 if i % 3 == 0 else 0.0 for i in range(n)], "score_text_area": [0.05] * n,
             "score_motion": [1.0] * n, "label_camera_motion": ["pan"] * n,
             **{f"score_border_{s}": [0.0] * n for s in ("top", "bottom", "left", "right")},
             **{f"border_{s}_frac": [0.0] * n for s in ("top", "bottom", "left", "right")},
             "t_start": [0.0] * n, "t_end": [1.0] * n, "source_uri": t.column("clip_uri").to_pylist(),
             "n_candidates": [1] * n}
    for k, v in extra.items():
        t = t.append_column(k, pa.array(v))
    pq.write_table(t, part)
    make_clip_dataset(root / "general", n=4, seconds=1.0, seed=50)
    (root / "prompts.tsv").write_text(PROMPTS)
    (root / "plain.txt").write_text(PLAIN)
    return root


def _app(root, name, arms, *extra):
    return load_config(None, [
        "ray.num_cpus=2", f"experiment.name={name}", f"experiment.dataset={root / 'scored'}",
        f"experiment.output={root / 'out'}", f"experiment.arms={json.dumps(arms)}",
        BUCKETS, "precompute.dtype=fp32", "precompute.pool.num_gpus=0", "precompute.pool.num_cpus=0.5",
        "precompute.max_sequence_length=128",
        "train.use_gpu=false", "train.num_workers=1", "train.cpus_per_worker=1", "train.max_steps=4",
        "train.checkpoint_every=4", "train.lr=1e-3", "train.warmup_steps=0", "train.lora.rank=4", "train.lora.alpha=4",
        "train.gradient_checkpointing=false", "train.validation.prompts=[]",
        "serve.model=hunyuan_video/tiny", "serve.generator.num_gpus=0", "serve.generator.num_cpus=0.5",
        "serve.default_height=32", "serve.default_width=48", "serve.default_frames=5", "serve.default_steps=2",
        f"evaluate.prompts={root / 'prompts.tsv'}", "evaluate.generator_pool.num_gpus=0",
        "evaluate.generator_pool.num_cpus=0.5", *EVAL_TINY, *extra])


def test_ablation_rank_holdout_and_mix_arms_per_classified_category(scored, ray_cluster, frame_probe):
    """One experiment, four arms against `all` (OCR filter disabled, LoRA rank 8): an ablation arm
    with the OCR filter on at rank 4 (`full`), a hold-out arm trained on endoscopy clips only and a
    mix arm with 25% general clips. Prompts carry no category: the text classifier (a probe fitted
    on the dataset's captions, real MiniLM) assigns clip categories; the hold-out arm's held-out rows
    are its drop, and the mix rows trade medical frames against the share. (Three experiments
    before, one per arm kind: merged to save training runs and evaluations; the base model's row
    is tested in the stratified comparison.)"""
    from medgen_ray.runner import run_experiment

    general = str(scored / "general")
    arms = [{"name": "all", "disable": ["ocr"], "overrides": ["train.lora.rank=8"]}, {"name": "full"},
            {"name": "endo-only", "categories": ["endoscopy"], "disable": ["ocr"]},
            {"name": "mix-25", "disable": ["ocr"], "mix": {"dataset": general, "share": 0.25}}]
    result = run_experiment(_app(scored, "holdout", arms, "experiment.include_base=false",
                                 f"evaluate.prompts={scored / 'plain.txt'}", f"evaluate.medical_probe={frame_probe}"))
    out = scored / "out" / "holdout"
    # the ablation and rank arms
    full, every = result["arms"]["full"], result["arms"]["all"]
    assert full["clips"] == 4 and every["clips"] == 6  # 2 of 6 clips carry 40 subtitle words
    assert full["rank"] == 4 and every["rank"] == 8
    assert full["medvbench"] and every["medvbench"]
    md = (out / "experiment.md").read_text()
    assert "| all | 6 | 0% | 8 |" in md and "| full | 4 | 0% | 4 |" in md
    assert (out / "loss_curves.png").stat().st_size > 1000
    mean, lo, hi = result["vs_reference"]["full"]["motion_smoothness"]
    assert lo <= mean <= hi and "Arm minus all, paired over prompts" in md
    # the hold-out arm
    assert result["arms"]["endo-only"]["clips"] == 2
    view = pq.read_table(str(out / "arms" / "endo-only" / "view" / "manifest"))
    assert set(view.column("category").to_pylist()) == {"endoscopy"}
    assert result["base"] is None and result["reference"] == "all"
    with open(out / "eval" / "prompt_categories.csv") as fh:
        assigned = {r["prompt"]: r["clip_category"] for r in csv.DictReader(fh)}
    assert assigned == {"An endoscopic view of the stomach.": "endoscopy", "An ultrasound scan with speckled tissue.": "ultrasound",
                        "An anatomy diagram of the heart.": "anatomy"}
    assert result["category_column"] == "clip_category"
    rows = {r["category"]: r for r in result["by_category"] if r["arm"] == "endo-only"}
    assert [rows[c]["held"] for c in ("endoscopy", "ultrasound", "anatomy")] == ["in", "out", "out"]
    assert rows["all held-out"]["prompts"] == 2 and rows["all held-in"]["prompts"] == 1
    m, lo, hi = rows["all held-out"]["diffs"]["subject_consistency"]
    assert lo <= m <= hi
    assert "## By category: arm minus all (clip categories from the text classifier)" in md
    assert "| endo-only | all held-out | out | 2 |" in md
    assert (out / "category_diff.png").stat().st_size > 5000 and (out / "experiment.html").exists()
    assert {r["category"] for r in result["per_category"] if r["by"] == "clip"} == {"endoscopy", "ultrasound",
                                                                                   "anatomy"}
    # the mix arm
    ids = lambda folder: sorted(pq.read_table(str(folder), columns=["clip_id"]).column("clip_id").to_pylist())
    assert result["arms"]["mix-25"]["mixed_in"] == 2  # 2 of 8 = 25%
    mixed = ids(out / "arms" / "mix-25" / "view" / "manifest")  # both datasets number their clips clip0000...
    assert len(set(mixed)) == 8 and sum(c.startswith("general:clip") for c in mixed) == 2
    mix = {r["arm"]: r for r in result["mix"]}
    assert [r["arm"] for r in result["mix"]] == ["all", "full", "endo-only", "mix-25"]  # by share
    assert mix["mix-25"]["actual_share"] == pytest.approx(0.25) and mix["all"]["share"] == 0
    for r in result["mix"]:
        m, lo, hi = r["dims"]["medical_frames"]
        assert 0 <= lo <= m <= hi <= 100
        assert set(r["dims"]) == {"subject_consistency", "background_consistency", "motion_smoothness",
                                  "medical_frames"}
    assert "## Medical / general data mix" in md and "| mix-25 | 25% | 25% |" in md
    assert (out / "mix.png").stat().st_size > 5000
    # every clip encoded once: one precompute job over the union of the four views (6 + 2 general)
    assert len(ids(out / "latents" / "0" / "all" / "shards")) == 8 and not (out / "latents" / "1").exists()
    for arm in ("all", "full", "endo-only", "mix-25"):
        assert ids(out / "arms" / arm / "latents" / "shards") == ids(out / "arms" / arm / "view" / "manifest")


def test_stratified_comparison_of_a_given_lora(scored, ray_cluster, tmp_path):
    """Experiment 5: base vs a LoRA trained elsewhere, no training; scores per prompt-file category
    and per classifier category, differences paired over prompts with intervals."""
    from medgen_ray.runner import run_experiment
    from tests.integration.test_serve import _make_adapters

    lora = _make_adapters(tmp_path / "adapters")["medgen"]
    result = run_experiment(_app(scored, "strata", [{"name": "tuned", "lora": str(lora)}],
                                 "evaluate.prompt_classifier={}"))
    out = scored / "out" / "strata"
    assert not (out / "runs").exists() and not (out / "arms").exists()  # nothing trained
    assert result["arms"]["tuned"]["medvbench"] and result["base"] and result["reference"] == "base"
    by = {(r["by"], r["model"], r["category"]) for r in result["per_category"]}
    assert {("prompt", m, c) for m in ("base", "tuned") for c in ("endoscopy", "ultrasound")} <= by
    clip_cats = {c for b, _, c in by if b == "clip"}
    assert clip_cats and clip_cats <= {"medical teaching", "clinical practice", "medical popular science",
                                       "medical animation", "medical imaging"}
    for r in result["by_category"]:
        for m, lo, hi in r["diffs"].values():
            assert lo <= m <= hi
    page = (out / "eval" / "report.html").read_text()
    assert 'id="strata-prompt"' in page and 'id="strata-clip"' in page
    md = (out / "experiment.md").read_text()
    assert "## Scores per category" in md and "## Arm minus base, paired over prompts" in md


def test_rank_sweep_on_ray_tune(scored, ray_cluster):
    from medgen_ray.runner import run_experiment

    app = _app(scored, "sweep", [], "experiment.sweep={key: train.lora.rank, values: [2, 4]}",
               "experiment.include_base=false", "curate.quality.score_only=true",
               "train.cpus_per_worker=0.5")  # 2 CPUs: trial + worker + the shard reader
    result = run_experiment(app)
    assert set(result["arms"]) == {"rank-2", "rank-4"}
    assert [result["arms"][n]["rank"] for n in ("rank-2", "rank-4")] == [2, 4]
    from safetensors.torch import load_file

    for n, r in (("rank-2", 2), ("rank-4", 4)):
        state = load_file(f"{result['arms'][n]['lora']}/pytorch_lora_weights.safetensors")
        assert next(v.shape[0] for k, v in state.items() if ".lora_A." in k) == r
        assert result["arms"][n]["medvbench"]
    md = (scored / "out" / "sweep" / "experiment.md").read_text()
    arms_table = md.split("## Arms", 1)[1].split("\n## ", 1)[0]
    assert arms_table.count("| rank-") == 2 and "| rank-4 | 6 | 4 |" in arms_table
    assert result["reference"] == "rank-2" and set(result["vs_reference"]) == {"rank-4"}
