"""`medgen train`: validate the shards, then run the LoRA loop on Ray Train.

Re-running with the same storage_path and name resumes that run from its newest checkpoint
(Ray Train keeps the run's state beside the checkpoints); a lost worker inside one run is
survived up to `train.max_failures` times.
"""

from __future__ import annotations

import sys
from typing import Any

from medgen_ray.config import AppConfig, absolute_local


def storage_for(path: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for RunConfig: remote URIs go through fsspec, so
    credentials and endpoints (AWS_ENDPOINT_URL, ...) work as for every other path we read."""
    if "://" not in path or path.startswith("file://"):
        return absolute_local(path.removeprefix("file://")), None
    import fsspec
    import pyarrow.fs as pafs

    fs, root = fsspec.core.url_to_fs(path)
    return root, pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def run_train(app: AppConfig) -> dict[str, Any]:
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from medgen_ray.models.registry import get_spec
    from medgen_ray.runner import _arrow_fs, init_ray
    from medgen_ray.train.loop import train_loop_per_worker
    from medgen_ray.train.outputs import export_dir, run_dir
    from medgen_ray.train.precompute import SHARDS, check_shards

    cfg = app.train
    get_spec(cfg.model, "video")
    check = check_shards(cfg.data)  # bad paths and shards fail here, before any worker starts
    if cfg.micro_batch > 1 and max(check.buckets.values()) < cfg.micro_batch:
        raise ValueError(f"train.micro_batch={cfg.micro_batch}: no bucket has that many clips ({check.buckets})")
    if "://" not in cfg.storage_path:
        cfg = cfg.model_copy(update={"storage_path": absolute_local(cfg.storage_path)})
    storage_path, storage_fs = storage_for(cfg.storage_path)
    init_ray(app.ray)
    import fsspec

    ray.data.DataContext.get_current().enable_progress_bars = False  # one bar per epoch per worker is noise

    fs, root = fsspec.core.url_to_fs(cfg.data)
    ds = ray.data.read_parquet(f"{root.rstrip('/')}/{SHARDS}", filesystem=_arrow_fs(fs))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": cfg.model_dump()},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker,
                                                           **({"GPU": 1} if cfg.use_gpu else {})}),
        run_config=RunConfig(name=cfg.name, storage_path=storage_path, storage_filesystem=storage_fs,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=cfg.max_failures)),
        datasets={"train": ds},
    )
    result = trainer.fit()
    summary = {
        "steps": int(result.metrics.get("step", 0)) if result.metrics else 0,
        "final_loss": result.metrics.get("loss") if result.metrics else None,
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "lora": export_dir(cfg),
        "run_dir": run_dir(cfg),
        "shards": {"files": check.files, "rows": check.rows, "buckets": check.buckets},
    }
    print(f"train: {summary}", file=sys.stdout)
    return summary
