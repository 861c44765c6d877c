"""`medgen train`: check the shards, then run the LoRA loop on Ray Train over a dataset the
driver reads (train/train_job.py).

Re-running with the same storage_path and name resumes that run from its newest checkpoint
(Ray Train keeps the run's state beside the checkpoints); a lost worker inside one run is
survived up to `train.max_failures` times.
"""

from __future__ import annotations

import sys
from typing import Any

from medgen_ray.config import TrainConfig, derive, settings
from medgen_ray.core.storage import absolute_local, storage_for


def check_train_inputs(cfg: TrainConfig) -> tuple[TrainConfig, Any]:
    """Validate model name, shards and batch size before any worker starts; returns the config
    with a local storage path made absolute, and the shard check."""
    from medgen_ray.models.families import family_of
    from medgen_ray.models.registry import get_spec
    from medgen_ray.train.precompute import check_shards

    get_spec(cfg.model, "video")
    # bad paths, bad shards and another family's latents fail here, before any worker starts
    check = check_shards(cfg.data, family_of(cfg.model).name)
    if cfg.micro_batch > 1 and max(check.buckets.values()) < cfg.micro_batch:
        raise ValueError(f"train.micro_batch={cfg.micro_batch}: no bucket has that many clips ({check.buckets})")
    if "://" not in cfg.storage_path:
        cfg = derive(cfg, {"storage_path": absolute_local(cfg.storage_path)})
    return cfg, check


def fit_lora(cfg: TrainConfig, check: Any, train_ds: Any) -> dict[str, Any]:
    """Run the LoRA loop on Ray Train over `train_ds` (a Ray Dataset of shard rows); returns
    the run's summary."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from medgen_ray.train.loop import train_loop_per_worker
    from medgen_ray.train.outputs import export_dir, train_run_dir

    storage_path, storage_fs = storage_for(cfg.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": settings(cfg)},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker,
                                                           **({"GPU": 1} if cfg.use_gpu else {})}),
        run_config=RunConfig(name=cfg.name, storage_path=storage_path, storage_filesystem=storage_fs,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=cfg.max_failures)),
        datasets={"train": train_ds},
        # context parallelism: every worker sees all rows; each group's first rank picks its data-parallel share
        dataset_config=DataConfig(datasets_to_split=[] if cfg.context_parallel.ulysses > 1 else "all"),
    )
    result = trainer.fit()
    summary = {
        "steps": int(result.metrics.get("step", 0)) if result.metrics else 0,
        "final_loss": result.metrics.get("loss") if result.metrics else None,
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "lora": export_dir(cfg),
        "run_dir": train_run_dir(cfg),
        "shards": {"files": check.files, "rows": check.rows, "buckets": check.buckets},
    }
    print(f"train: {summary}", file=sys.stdout)
    return summary
