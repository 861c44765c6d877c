"""The LoRA training job's driver: checks the shards before Ray starts, reads them as a Ray
Dataset through the core adapter, and trains on Ray Train (train/launch.py)."""

from __future__ import annotations

from typing import Any

from medgen_ray.config import AppConfig
from medgen_ray.core import dataflow
from medgen_ray.models.requirements import require_weights


def run_train(app: AppConfig) -> dict[str, Any]:
    """LoRA fine-tuning: check the shards, read them as a Ray Dataset, train on Ray Train."""
    import fsspec

    from medgen_ray.schema import SHARDS
    from medgen_ray.train.launch import check_train_inputs, fit_lora

    cfg, check = check_train_inputs(app.train)
    require_weights(app, "train")
    dataflow.start_ray(app.ray, share_resources=False, progress_bars=False)  # a bar per epoch per worker is noise
    fs, root = fsspec.core.url_to_fs(cfg.data)
    return fit_lora(cfg, check, dataflow.parquet_dataset(f"{root.rstrip('/')}/{SHARDS}", fs))
