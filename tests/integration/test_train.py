"""LoRA training end to end on a local Ray: precompute shards, DDP and DeepSpeed ZeRO-2 with two
workers, a killed worker resumed from its checkpoint, and the exported LoRA in a tiny pipeline."""

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from medgen_ray.config import load_config
from medgen_ray.samples.clipset import make_clip_dataset

BUCKETS = "precompute.buckets=[{frames: 9, height: 32, width: 48}, {frames: 9, height: 48, width: 32}, " \
          "{frames: 33, height: 32, width: 48}]"


def _precompute_overrides(dataset: Path, out: Path) -> list[str]:
    return ["ray.num_cpus=2", f"precompute.dataset={dataset}", f"precompute.output={out}", BUCKETS,
            "precompute.dtype=fp32", "precompute.pool.num_gpus=0", "precompute.pool.num_cpus=0.5",
            "precompute.max_sequence_length=128"]


def _train_overrides(data: Path, runs: Path, name: str, *extra: str) -> list[str]:
    return ["ray.num_cpus=2", f"train.data={data}", f"train.storage_path={runs}", f"train.name={name}",
            "train.use_gpu=false", "train.num_workers=2", "train.cpus_per_worker=0.5", "train.lr=5e-3",
            "train.warmup_steps=0", "train.lora.rank=8", "train.lora.alpha=8", "train.shift=1.0",
            "train.gradient_checkpointing=false", "train.log_every=10", "train.shuffle_buffer=4",
            "train.validation.height=32", "train.validation.width=48", "train.validation.num_frames=9",
            "train.validation.steps=2", *extra]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_cluster):
    from medgen_ray.runner import run_precompute

    root = tmp_path_factory.mktemp("train")
    dataset = make_clip_dataset(root / "dataset", n=8, seconds=1.0)
    # one clip too short for every bucket (0.25 s = 6 frames < 9): must end as a reject with the reason
    short = make_clip_dataset(root / "short", n=1, seconds=0.25, seed=9)
    table = pq.read_table(short / "manifest" / "part-0000.parquet")
    table = table.set_column(0, "clip_id", pa.array(["short0"]))
    pq.write_table(table, dataset / "manifest" / "part-0001.parquet")
    out = root / "latents"
    app = load_config(None, _precompute_overrides(dataset, out))
    first = run_precompute(app)
    again = run_precompute(app)
    return {"root": root, "dataset": dataset, "out": out, "first": first, "again": again}


def test_precompute_writes_bucketed_shards_and_resumes(shards):
    from medgen_ray.train.precompute import check_shards, decode_row

    first, again = shards["first"], shards["again"]
    assert first["encoded"] == 8 and first["rejected"] == 1
    assert again["encoded"] == 0 and again["skipped_done"] == 9  # nothing encoded twice
    check = check_shards(str(shards["out"]))
    assert check.rows == 8 and check.buckets == {"9x32x48": 8}
    rejects = pq.read_table(str(shards["out"] / "rejects")).to_pylist()
    assert rejects[0]["clip_id"] == "short0" and "too short" in rejects[0]["reject_reason"]
    row = pq.read_table(str(shards["out"] / "shards")).slice(0, 1).to_pylist()[0]
    t = decode_row(row)
    assert t["latent"].shape == (4, 3, 4, 6)  # 9 frames -> 3 latent frames, 32x48 / 8
    assert t["text_embeds"].shape[0] < 128  # trimmed to the caption's real tokens
    assert torch.isfinite(t["latent"]).all() and t["latent"].std() > 0


def _losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader((run / "loss.csv").open())]


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_two_workers_overfit_tiny_set(shards, strategy):
    """DDP over two data-parallel workers; DeepSpeed ZeRO-2 over two workers that hold each clip's
    tokens half each (dp 1 x Ulysses 2: DeepSpeed averages gradients over all ranks as DDP does,
    and the loop's loss scaling must cover both). One DeepSpeed run, since its start-up is ~80 s of
    CI; DDP with context parallelism is test_context_parallel_run_overfits_and_survives_a_killed_rank.

    The DDP run is also the kill drill: rank 1 SIGKILLed at step 5, the last checkpoint step 3
    (mid-epoch: 8 clips, 2 per step). It must finish with steps 1..60 once each, no clip trained
    twice in any epoch, and the interrupted epoch keeping the clips consumed before the checkpoint.
    (A separate 12-step drill run before: merged to save a Ray Train start-up.)"""
    from medgen_ray.runner import run_train

    runs = shards["root"] / "runs"
    extra = ["train.context_parallel.ulysses=2", "train.checkpoint_every=30"] if strategy == "deepspeed" else \
        ["train.checkpoint_every=3", "train.kill_rank_at_step=5", "train.max_failures=2", "train.keep_checkpoints=25"]
    app = load_config(None, _train_overrides(shards["out"], runs, strategy, f"train.strategy={strategy}",
                                             "train.max_steps=60", *extra))
    summary = run_train(app)
    assert summary["steps"] == 60
    losses = _losses(runs / strategy)
    assert len(losses) == 60
    assert np.mean(losses[-15:]) < 0.6 * np.mean(losses[:15]), (np.mean(losses[:15]), np.mean(losses[-15:]))
    lora_dir = runs / strategy / "lora"
    assert (lora_dir / "pytorch_lora_weights.safetensors").is_file()
    assert (lora_dir / "medgen_lora_comfy.safetensors").is_file()
    assert (runs / strategy / "loss.png").stat().st_size > 1000
    # a context-parallel transformer runs only with its whole group: no validation videos there
    assert bool(list((runs / strategy / "validation").glob("step-*/0.mp4"))) == (strategy == "ddp")
    if strategy == "ddp":
        run = runs / strategy
        final, by_epoch = _survived_drill(run, summary, 60)
        for epoch, clips in by_epoch.items():
            assert len(clips) == len(set(clips)), f"epoch {epoch} trained a clip twice: {clips}"
        ckpt3 = json.loads((run / "step-00000003" / "loop_state.json").read_text())
        assert ckpt3["epoch"] == 0 and len(ckpt3["consumed"]) == 6
        assert by_epoch[0][:6] == ckpt3["consumed"]


def test_exported_lora_changes_tiny_pipeline_deterministically(shards):
    from medgen_ray.models.hunyuan import build_pipeline, build_tiny_components, prompt_template_for

    lora_dir = shards["root"] / "runs" / "ddp" / "lora"
    if not lora_dir.exists():
        pytest.fail("the DDP run did not export a LoRA")

    def generate(pipe):
        return pipe(prompt="an endoscopic view", height=32, width=48, num_frames=9, num_inference_steps=3,
                    prompt_template=prompt_template_for(pipe), max_sequence_length=64,
                    generator=torch.Generator().manual_seed(0), output_type="pt").frames

    base = generate(build_pipeline(build_tiny_components()))
    outs = []
    for _ in range(2):
        pipe = build_pipeline(build_tiny_components())
        pipe.load_lora_weights(str(lora_dir / "pytorch_lora_weights.safetensors"), adapter_name="medgen")
        outs.append(generate(pipe))
    assert (outs[0] - base).abs().max() > 1e-3
    assert torch.equal(outs[0], outs[1])


def _survived_drill(run: Path, summary: dict, steps: int) -> tuple[dict, dict[int, list[str]]]:
    """A run that the kill drill hit finished every step once: its final loop state and the clips
    trained per epoch."""
    assert (run / ".kill_drill_done").exists(), "the drill did not kill a worker"
    assert summary["steps"] == steps
    final = json.loads((Path(summary["checkpoint"]) / "loop_state.json").read_text())
    assert [h["step"] for h in final["history"]] == list(range(1, steps + 1))
    by_epoch: dict[int, list[str]] = {}
    for h in final["history"]:
        by_epoch.setdefault(h["epoch"], []).extend(h["clips"])
    return final, by_epoch


def test_stage_metrics_exported(shards):
    """The precompute run above counted its rows per stage and outcome on the Prometheus port."""
    from tests.conftest import scrape_metrics

    kept = scrape_metrics(r'^ray_medgen_stage_rows_total\{.*outcome="kept".*stage="Precompute"')
    rejected = scrape_metrics(r'^ray_medgen_stage_rows_total\{.*outcome="rejected".*stage="Precompute"')
    assert kept and rejected, "no per-stage row counters exported"
    assert sum(float(line.rsplit(" ", 1)[1]) for line in rejected) >= 1  # the too-short clip
    assert scrape_metrics(r'^ray_medgen_stage_batch_seconds_count\{.*stage="Precompute"')


def test_context_parallel_run_overfits_and_survives_a_killed_rank(shards):
    """dp 1 x Ulysses 2 on Ray Train: both workers hold every clip's tokens half each; the loss
    falls as in the DDP run, and rank 1 SIGKILLed at step 5 resumes from the step-3 checkpoint with
    every step once and no clip twice in an epoch (each clip is counted once, not once per rank)."""
    from medgen_ray.runner import run_train

    runs = shards["root"] / "runs"
    app = load_config(None, _train_overrides(shards["out"], runs, "cp", "train.context_parallel.ulysses=2",
                                             "train.max_steps=40", "train.checkpoint_every=3",
                                             "train.kill_rank_at_step=5", "train.max_failures=2",
                                             "train.keep_checkpoints=20"))
    summary = run_train(app)
    run = runs / "cp"
    final, by_epoch = _survived_drill(run, summary, 40)
    assert all(len(h["clips"]) == 1 for h in final["history"])  # one clip per step: dp 1, micro_batch 1
    assert [len(c) for c in by_epoch.values()] == [8] * 5
    assert all(len(set(c)) == 8 for c in by_epoch.values())
    ckpt3 = json.loads((run / "step-00000003" / "loop_state.json").read_text())
    assert by_epoch[0][:3] == ckpt3["consumed"]
    losses = _losses(run)
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:8]), (np.mean(losses[:8]), np.mean(losses[-8:]))
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert not (run / "validation").exists()  # no videos from a context-parallel transformer

