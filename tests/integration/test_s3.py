"""Datasets, shards, checkpoints and generated videos on an S3-compatible server (moto on
127.0.0.1) through fsspec, end to end: curate -> precompute -> train -> serve."""

import json
import time

import fsspec

from medgen_ray.config import load_config
from tests.conftest import tiny_overrides
from tests.integration.test_serve import TOKEN, _free_port, _wait_healthy, call
from tests.integration.test_train import BUCKETS


def test_whole_chain_on_s3(s3, ray_cluster, corpus, frame_probe):
    from ray import serve

    from medgen_ray.runner import run_curate, run_precompute, run_train
    from medgen_ray.serve.launch import start_serve

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    base = f"{s3['bucket']}/chain-{int(time.time())}"
    videos = sorted(corpus[0].glob("*.mp4"))[:3]
    for v in videos:
        fs.put(str(v), f"{base}/corpus/{v.name}")
        side = v.with_suffix(".info.json")
        if side.exists():
            fs.put(str(side), f"{base}/corpus/{side.name}")
    uri = f"s3://{base}"

    # 1. curation: sources and dataset on S3
    app = load_config(None, tiny_overrides(f"{uri}/dataset", [f"{uri}/corpus"]) + [
        f"curate.classify.probe_path={frame_probe}", "curate.segment.similarity_threshold=0.99",
        "curate.quality.enabled=false"])
    summary = run_curate(app)
    assert summary["accounted"] and summary["inputs"] == 3
    manifest = fs.ls(f"{base}/dataset/manifest")
    assert manifest and summary["clips_kept"] >= 1
    clips = [p for p in fs.find(f"{base}/dataset/clips") if p.endswith(".mp4")]
    assert len(clips) == summary["clips_kept"]

    # 2. latents from the S3 dataset to S3 shards
    app = load_config(None, ["ray.num_cpus=2", f"precompute.dataset={uri}/dataset",
                             f"precompute.output={uri}/latents", BUCKETS.replace("32, width: 48", "48, width: 64"),
                             "precompute.fps=8", "precompute.dtype=fp32", "precompute.pool.num_gpus=0",
                             "precompute.pool.num_cpus=0.5", "precompute.max_sequence_length=128"])
    pre = run_precompute(app)
    assert pre["encoded"] == summary["clips_kept"]

    # 3. training: checkpoints and exports on S3
    app = load_config(None, ["ray.num_cpus=2", f"train.data={uri}/latents", f"train.storage_path={uri}/runs",
                             "train.name=s3run", "train.use_gpu=false", "train.num_workers=1",
                             "train.cpus_per_worker=1", "train.max_steps=6", "train.checkpoint_every=3",
                             "train.lr=1e-3", "train.warmup_steps=0", "train.lora.rank=4", "train.lora.alpha=4",
                             "train.gradient_checkpointing=false", "train.validation.prompts=[]"])
    result = run_train(app)
    assert result["steps"] == 6
    run = f"{base}/runs/s3run"
    assert fs.exists(f"{run}/step-00000006/optim_state.pt") and fs.exists(f"{run}/step-00000006/loop_state.json")
    assert fs.exists(f"{run}/lora/pytorch_lora_weights.safetensors") and fs.exists(f"{run}/loss.csv")

    # 4. serving the S3 LoRA, finished videos stored on S3
    port = _free_port()
    app = load_config(None, ["ray.num_cpus=2", f"serve.port={port}", f"serve.store={uri}/videos",
                             f"serve.token={TOKEN}", f"serve.adapters={json.dumps({'medgen': f'{uri}/runs/s3run/lora'})}",
                             "serve.generator.num_cpus=0.5", "serve.generator.num_gpus=0",
                             "serve.default_height=32", "serve.default_width=48", "serve.default_frames=5",
                             "serve.default_steps=2"])
    url = start_serve(app)
    try:
        _wait_healthy(url)
        code, body, headers = call(url, "/v1/videos/sync", {"prompt": "an endoscopy", "adapter": "medgen"})
        assert code == 200 and body[4:8] == b"ftyp"
        job_id = headers.get("X-Job-Id")
    finally:
        serve.shutdown()
    assert fs.cat(f"{base}/videos/videos/{job_id}.mp4") == body
    assert json.loads(fs.cat(f"{base}/videos/jobs/{job_id}.json"))["status"] == "done"
