"""Med-VBench end to end on local Ray: prompts -> the Serve app (two adapters) -> scores ->
report; and the custom-input mode over a folder of mp4s."""

import csv
import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medgen_ray.config import derive, load_config
from tests.integration.test_serve import TOKEN, _free_port, _make_adapters, _wait_healthy

EVAL_TINY = ["evaluate.dino_model=dino/tiny", "evaluate.clip_model=clip/tiny", "evaluate.iqa_model=musiq/tiny",
             "evaluate.flow_model=farneback", "evaluate.aesthetic_model=aesthetic/vbench-tiny", "evaluate.interpolator_model=linear",
             "evaluate.pool.num_gpus=0", "evaluate.pool.num_cpus=0.5", "evaluate.flow_side=64"]
PROMPTS = ["An endoscopic view of the stomach lining.", "An ultrasound of the liver with a bright boundary.",
           "An anatomy diagram of the heart.", "A laparoscopic view of the gallbladder."]


def evaluate_through_service(app, port: int) -> dict:
    """Start the Serve app of `app`, run `medgen evaluate` through it, shut it down."""
    from ray import serve

    from medgen_ray.runner import run_evaluate
    from medgen_ray.serve.launch import start_serve

    start_serve(app)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}")
        return run_evaluate(app)
    finally:
        serve.shutdown()


def test_prompts_through_serve_to_report(tmp_path, ray_cluster, monkeypatch):

    from medgen_ray.runner import run_evaluate

    adapters = _make_adapters(tmp_path / "adapters")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"{'imaging' if i % 2 else 'endoscopy'}\t{p}" for i, p in enumerate(PROMPTS))
                       + "\n\n")
    port = _free_port()
    serve_args = [f"serve.port={port}", f"serve.store={tmp_path / 'store'}", f"serve.token={TOKEN}",
                  f"serve.adapters={json.dumps(adapters)}", "serve.generator.num_cpus=0.5",
                  "serve.generator.num_gpus=0", "serve.generator.threads=1",
                  # Med-VBench through a replica that owns two ranks (issue 23), adapters loaded on both
                  "serve.generator.parallel.ulysses=2", "serve.default_height=48",
                  "serve.default_width=64", "serve.default_frames=9", "serve.default_steps=3", "serve.max_queue=8"]
    app = load_config(None, ["ray.num_cpus=2", *serve_args, *EVAL_TINY, f"evaluate.prompts={prompts}",
                             f"evaluate.output={tmp_path / 'eval'}", f"evaluate.url=http://127.0.0.1:{port}",
                             "evaluate.models=[{name: HunyuanVideo, adapter: base}, {name: MedGen, adapter: medgen}]"])
    monkeypatch.setenv("MEDGEN_SERVE_TOKEN", TOKEN)
    # raters: 3 per video; MedGen's video 0 and 1 distorted (2 of 3 say moderate/severe)
    ratings = tmp_path / "ratings.csv"
    with ratings.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_id", "rater", "rating"])
        for model in ("HunyuanVideo", "MedGen"):
            for i in range(4):
                bad = model == "MedGen" and i < 2
                for rater, rating in enumerate(["severe", "moderate", "no"] if bad else ["minor", "no", "no"]):
                    w.writerow([f"{model}/{i:04d}", rater, rating])
    ref = Path(__file__).resolve().parents[1] / "data" / "medvbench_table2.csv"
    app = derive(app, {"evaluate.ratings": [str(ratings)], "evaluate.reference_csv": str(ref)})
    result = evaluate_through_service(app, port)
    out = tmp_path / "eval"
    per_video = pq.read_table(str(out / "per_video")).to_pandas()
    assert len(per_video) == 8 and (per_video["error"].fillna("") == "").all()
    assert sorted(p.name for p in (out / "videos" / "MedGen").glob("*.mp4")) == [f"{i:04d}.mp4" for i in range(4)]
    rows = {r["model"]: r for r in result["per_model"]}
    assert rows["MedGen"]["warping_error"] == 50.0 and rows["HunyuanVideo"]["warping_error"] == 0.0
    for r in rows.values():
        for d in ("subject_consistency", "background_consistency", "motion_smoothness"):
            assert 0 < r[d] <= 100
        expect = (r["imaging_quality"] + r["subject_consistency"] + r["background_consistency"] +
                  r["motion_smoothness"] + 100 - r["warping_error"]) / 6
        assert r["total"] == pytest.approx(expect)
    assert rows["MedGen"]["text_alignment"] != rows["HunyuanVideo"]["text_alignment"]  # adapters changed videos
    page = (out / "report.html").read_text()
    assert "MedGen" in page and "bars.png" in page and (out / "radar.png").stat().st_size > 1000
    assert re.search(r'data-count="(\d+)"', page).group(1) == "8"
    assert "MedGen (published)" in page and "70.93" in page
    assert (out / "report.md").read_text().startswith("# Med-VBench")
    strata = {(r["model"], r["category"]): r for r in result["per_category"]}
    assert set(strata) == {(m, c) for m in ("HunyuanVideo", "MedGen") for c in ("endoscopy", "imaging")}
    assert all(r["videos"] == 2 for r in strata.values()) and 'id="strata-prompt"' in page
    for r in rows.values():
        assert r["subject_consistency_lo"] <= r["subject_consistency"] <= r["subject_consistency_hi"]
    assert len(pq.read_table(str(out / "per_model.parquet"))) == 2
    # a rerun scores nothing again
    again = run_evaluate(app)
    assert again["videos"] == 8 and len(pq.read_table(str(out / "per_video")).to_pandas()) == 8


def test_custom_folder_mode(tmp_path, ray_cluster):
    from medgen_ray.runner import run_evaluate
    from medgen_ray.samples.clipset import make_clip_dataset

    ds = make_clip_dataset(tmp_path / "ds", n=3, seconds=1.0)
    folder = tmp_path / "videos" / "mymodel"
    folder.mkdir(parents=True)
    for i, p in enumerate(sorted((ds / "clips").glob("*.mp4"))):
        shutil.copy(p, folder / f"an_endoscopy_video_{i}.mp4")
    (folder / "an_endoscopy_video_0.txt").write_text("A custom prompt from a sidecar.")
    (folder / "broken.mp4").write_bytes(b"not a video")
    app = load_config(None, ["ray.num_cpus=2", *EVAL_TINY, f"evaluate.videos={tmp_path / 'videos'}",
                             f"evaluate.output={tmp_path / 'eval'}"])
    result = run_evaluate(app)
    df = pq.read_table(str(tmp_path / "eval" / "per_video")).to_pandas().set_index("video_id")
    assert len(df) == 4
    assert df.loc["mymodel/an_endoscopy_video_0.mp4", "prompt"] == "A custom prompt from a sidecar."
    assert df.loc["mymodel/an_endoscopy_video_1.mp4", "prompt"] == "an endoscopy video 1"
    assert "score" in df.loc["mymodel/broken.mp4", "error"]
    (row,) = result["per_model"]
    assert row["model"] == "mymodel" and row["videos"] == 4 and row["errors"] == 1 and row["total"] is None


def test_missing_inputs_are_named(tmp_path):
    from medgen_ray.runner import run_evaluate

    with pytest.raises(ValueError, match="evaluate.prompts"):
        run_evaluate(load_config(None, [f"evaluate.output={tmp_path}"]))
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        run_evaluate(load_config(None, [f"evaluate.prompts={tmp_path / 'nowhere.txt'}"]))
    (tmp_path / "p.txt").write_text("a prompt\n")
    with pytest.raises(ValueError, match="medgen"):
        run_evaluate(load_config(None, [f"evaluate.prompts={tmp_path / 'p.txt'}"]))
