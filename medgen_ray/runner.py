"""The jobs by name: what `medgen <job>`, the demo and `ray job submit` entry points run.

Each job's driver lives in its own room and builds its pipeline through the one Ray Data
adapter (`core/dataflow.py`); this table only names them.
"""

from __future__ import annotations

from typing import Any, Callable

from medgen_ray.config import AppConfig
from medgen_ray.curate.job import run_curate, run_dedup
from medgen_ray.evaluate.job import run_evaluate
from medgen_ray.experiments.arms import run_experiment
from medgen_ray.train.precompute_job import run_precompute
from medgen_ray.train.train_job import run_train

JOBS: dict[str, Callable[[AppConfig], dict[str, Any]]] = {
    "curate": run_curate,
    "precompute": run_precompute,
    "train": run_train,
    "evaluate": run_evaluate,
    "experiment": run_experiment,
}

__all__ = ["JOBS", "run_curate", "run_dedup", "run_evaluate", "run_experiment", "run_precompute", "run_train"]
