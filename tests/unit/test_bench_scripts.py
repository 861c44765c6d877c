"""The benchmark scripts run (correctness only; their timings are printed, never asserted)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    """A benchmark script as a module, as `python jobs/<name>.py` sees it (jobs/ on the path)."""
    if str(ROOT / "jobs") not in sys.path:
        sys.path.insert(0, str(ROOT / "jobs"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "jobs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # importable by name: spawned rank processes unpickle its functions
    spec.loader.exec_module(mod)
    return mod


def test_clip_stage_benchmark_runs_on_cpu():
    out = _load("gpu_bench_clip").bench("clip/tiny", "cpu", frames=64, per_video=16, batch=32, repeats=1)
    assert out["frames"] == 64 and out["bare_frames_per_s"] > 0 and out["stage_frames_per_s"] > 0


def test_train_benchmark_bare_loop_runs(tmp_path):
    """The bare side of jobs/bench_train.py on a hand-made shard (the Ray side is test_train's run_train)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from medgen_ray.config import load_config
    from medgen_ray.schema import SHARD_SCHEMA
    from medgen_ray.train.precompute import tensor_bytes

    (tmp_path / "shards").mkdir()
    rows = []
    for i in range(2):
        lat, ls = tensor_bytes(torch.randn(4, 3, 4, 6))
        txt, ts = tensor_bytes(torch.randn(7, 32))
        pooled, ps = tensor_bytes(torch.randn(16))
        rows.append({"clip_id": f"c{i}", "bucket": "9x32x48", "caption": "x", "latent": lat, "latent_shape": ls,
                     "text_embeds": txt, "text_shape": ts, "pooled": pooled, "pooled_shape": ps, "dtype": "float32"})
    pq.write_table(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA), tmp_path / "shards" / "part-0.parquet")
    mod = _load("bench_train")
    cfg = load_config(None, mod.train_overrides(tmp_path, tmp_path / "runs", 3)).train
    out = mod.bare_loop(tmp_path, cfg)
    assert out["median_step_s"] > 0 and out["wall_s"] > 0


def test_gpu_lora_benchmark_runs_on_tiny_twin():
    out = _load("gpu_bench_lora").main(["--tiny", "--height", "32", "--width", "48", "--frames", "5",
                                        "--text-len", "32", "--real-tokens", "9", "--rank", "4", "--steps", "2",
                                        "--warmup", "1"])
    plain, ours = out["results"]
    assert plain["text_tokens"] == 32 and ours["text_tokens"] == 9
    assert plain["video_tokens"] == ours["video_tokens"] == 2 * 4 * 6
    assert out["speedup"] > 0 and ours["forward_tflop"] < plain["forward_tflop"]


def test_gpu_generate_benchmark_runs_on_tiny_twin():
    out = _load("gpu_bench_generate").main(["--tiny", "--height", "32", "--width", "48", "--frames", "9",
                                            "--text-len", "32", "--real-tokens", "9", "--steps", "2"])
    plain, ours = out["results"]
    assert plain["text_tokens"] == 32 and ours["text_tokens"] == 9 and out["ratio"] > 0


def test_evaluate_benchmark_tiny_and_real_architectures():
    bench = _load("bench_evaluate")
    tiny = bench.main(["--videos", "1", "--frames", "4", "--size", "64"])
    real = bench.main(["--videos", "1", "--frames", "3", "--size", "128", "--real"])  # RAFT/AMT need >= 128 px
    for out in (tiny, real):
        assert set(out["videos_per_min"]) >= {"subject_consistency", "imaging_quality", "dynamic_degree"}
        assert all(v > 0 for v in out["videos_per_min"].values())


def test_gpu_curate_models_benchmark_runs_on_cpu_twins():
    out = _load("gpu_bench_curate_models").main(["--tiny", "--device", "cpu", "--clips", "2", "--frames-per-clip", "2",
                                                 "--classify-frames", "32", "--repeats", "1"])
    assert set(out["stages"]) == {"classify", "aesthetic", "technical", "ocr"}
    for name, r in out["stages"].items():
        assert r["stage_frames_per_s"] > 0 and r["bare_frames_per_s"] > 0, name
    assert "CPUExecutionProvider" in out["stages"]["ocr"]["onnxruntime_providers"]


def test_gpu_families_benchmark_runs_on_tiny_twins():
    out = _load("gpu_bench_families").main(["--tiny", "--model", "hunyuan_video_1_5", "wan2.2-ti2v-5b", "--height",
                                            "32", "--width", "64", "--frames", "9", "--steps", "1", "--warmup", "0"])
    assert set(out["families"]) == {"hunyuan_video_1_5", "wan2.2-ti2v-5b"}
    for r in out["families"].values():
        assert r["plain"]["lora_step_s"] > 0 and r["ours"]["denoise_step_s"] > 0 and r["lora_speedup"] > 0


def test_videoscore_benchmark_runs_on_tiny_twin():
    out = _load("gpu_bench_videoscore").main(["--tiny", "--device", "cpu", "--videos", "2", "--height", "64",
                                              "--width", "96", "--frames", "9"])
    assert out["videos"] == 2 and out["videos_per_min"] > 0
    assert set(out["last_scores"]) == {"visual_quality", "temporal_consistency", "dynamic_degree",
                                       "text_alignment", "factual_consistency"}


def test_parallel_benchmark_runs_on_two_cpu_ranks():
    out = _load("gpu_bench_parallel").main(["--tiny", "--model", "wan2.1-t2v-1.3b", "--height", "32", "--width", "64",
                                            "--frames", "9", "--steps", "3", "--degrees", "1", "2", "--caches",
                                            "none", "magcache", "faster"])
    fam = out["families"]["wan2.1-t2v-1.3b"]
    assert [d["world"] for d in fam["degrees"]] == [1, 2]
    assert fam["degrees"][1]["latents_rel_diff_vs_1"] < 1e-5  # two ranks denoise what one does
    assert fam["degrees"][1]["decode_split"] is False  # Wan's VAE decodes on rank 0
    kinds = {c["cache"]: c for c in fam["caches"]}
    assert kinds["none"]["latents_rel_diff"] == 0.0 and kinds["magcache"]["denoise_s"] > 0
    assert "fails on Wan2.1-T2V-1.3B" in kinds["faster"]["skipped"]
    assert 0 < fam["share_of_one_gpu_total"] < 1


def test_the_device_check_fits_its_lease(capsys):
    """jobs/gpu_check.py's plan: every gpu_bench_* script once, limits within 8 minutes."""
    mod = _load("gpu_check")
    assert mod.main(["--out", "/tmp/unused-gpu-check", "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    scripts = sorted(p.stem for p in (ROOT / "jobs").glob("gpu_bench_*.py"))
    assert sorted(name for name, _, _ in mod.PLAN) == scripts == sorted(mod.TINY)
    assert len(printed) == len(scripts) and sum(limit for _, _, limit in mod.PLAN) <= 480
