"""The Ray Data adapter: the only module that calls Ray Data (the layout test holds it).

Stages are plain callables; here they become streaming operators: cheap CPU stages as tasks
(Ray fuses neighbours), model stages as actor pools sized from config (never from the
driver's hardware), and sinks as tasks that write Parquet parts and return small counts,
which the job's driver folds as they stream by. Nothing else is collected on the driver.
Each job's driver (curate/job.py, train/precompute_job.py, train/train_job.py,
evaluate/job.py) builds its pipeline from these functions.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import numpy as np

from medgen_ray.config import PoolConfig, RayConfig
from medgen_ray.core.cluster import init_ray

# Writers and the HTTP generation client: Ray's memory detector measured 115-540 MiB for them
# (precompute's shard writer the most); reserved with headroom, so the advice is acted on.
WRITER_MEMORY_MB = 768
# Input blocks of a job built from a row list: one row a block up to this many (streaming
# granularity), then rows share blocks.
MAX_INPUT_BLOCKS = 200


def start_ray(cfg: RayConfig, *, share_resources: bool = True, progress_bars: bool | None = None) -> None:
    """Ray for a job: connected or embedded (init_ray), Ray Data's console quiet unless -v
    (its progress bars off; its console handler at WARNING through its documented logging-config
    file, minus notices we expect; ray-data.log in the session folder keeps everything).

    share_resources: operators share the job's budget instead of per-operator reservations,
    which on a small cluster starve the downstream writer until the model stage drains (seen on
    2 CPUs). progress_bars: None = with -v only."""
    import ray.data

    from medgen_ray.core.console import drop_expected, ray_data_logging_config, verbose
    from medgen_ray.core.ray_compat import RAY_DATA_PROGRESS_LOGGER, configure_ray_data_logging

    loud = verbose()
    if not loud:
        os.environ["RAY_DATA_LOGGING_CONFIG"] = ray_data_logging_config()
        configure_ray_data_logging()
    drop_expected(RAY_DATA_PROGRESS_LOGGER)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = ctx.enable_operator_progress_bars = ctx.print_on_execution_start = loud
    if progress_bars is not None:
        ctx.enable_progress_bars = progress_bars
    if share_resources:
        ctx.op_resource_reservation_enabled = False
    init_ray(cfg)


def cluster_totals() -> tuple[float, float]:
    """(CPUs, GPUs) of the running cluster."""
    import ray

    resources = ray.cluster_resources()
    return float(resources.get("CPU", 0)), float(resources.get("GPU", 0))


def rows_dataset(rows: list[dict[str, Any]]):
    """A lazy dataset of the rows, one block a row up to MAX_INPUT_BLOCKS."""
    import ray.data

    return ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), MAX_INPUT_BLOCKS)))


def parquet_dataset(paths: list[str] | str, fs, columns: list[str] | None = None):
    """A lazy dataset over Parquet files of an fsspec filesystem (arrow's view of it)."""
    import ray.data

    from medgen_ray.core.storage import arrow_fs

    ds = ray.data.read_parquet(paths, filesystem=arrow_fs(fs))
    return ds.select_columns(columns) if columns else ds


def filter_rows(ds, keep: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]):
    """A light row filter (a batch in, the kept rows out) as its own small task."""
    return ds.map_batches(keep, batch_format="numpy", num_cpus=0.1, zero_copy_batch=False)


def _task_fn(name: str, factory: Callable[[], Callable], post: Callable | None = None) -> Callable:
    """A named task function that builds its stage lazily. Ray deserialises the function for
    each task, so the cache lives one task; task stages therefore keep setup cheap (models
    belong in actor pools)."""
    cache: dict[str, Any] = {}

    def fn(batch):
        from medgen_ray.core.observability import timed_stage

        stage = cache.get("s")
        if stage is None:
            stage = cache["s"] = factory()
        out = timed_stage(name, stage, batch)
        return post(out) if post is not None else out

    fn.__name__ = fn.__qualname__ = name
    return fn


def _actor_cls(name: str, factory: Callable[[], Callable], post: Callable | None = None) -> type:
    def __init__(self):
        self.stage = factory()
        setup = getattr(self.stage, "setup", None)
        if setup is not None:
            setup()

    def __call__(self, batch):
        from medgen_ray.core.observability import timed_stage

        out = timed_stage(name, self.stage, batch)
        return post(out) if post is not None else out

    return type(name, (), {"__init__": __init__, "__call__": __call__})


def map_stage(ds, name: str, factory: Callable[[], Callable], *, batch_size: int, num_cpus: float,
              pool: PoolConfig | None = None, post: Callable | None = None, memory_mb: int = 256):
    """One streaming operator: a task stage (no pool) or an actor pool of `pool`'s size whose
    actors build the stage once and call its `setup()`; `post` runs on each output batch."""
    from ray.data import ActorPoolStrategy

    if pool is None:
        # CPU tasks carry a memory request that model actors do not; Ray fuses only operators
        # with equal remote args, so decoding stays in tasks that run beside the model actors
        # instead of being folded into them.
        return ds.map_batches(_task_fn(name, factory, post), batch_size=batch_size, batch_format="numpy",
                              num_cpus=num_cpus, memory=memory_mb * 2**20, zero_copy_batch=False)
    return ds.map_batches(
        _actor_cls(name, factory, post), batch_size=pool.batch_size, batch_format="numpy",
        compute=ActorPoolStrategy(min_size=pool.min_actors, max_size=pool.max_actors),
        num_gpus=pool.num_gpus, num_cpus=pool.num_cpus, memory=pool.memory_mb * 2**20, zero_copy_batch=False,
    )


def map_sink(ds, name: str, write: Callable[[dict[str, np.ndarray]], dict[str, int]], *, batch_size: int,
             memory_mb: int = WRITER_MEMORY_MB):
    """A writer as its own operator with no CPU request: it is I/O, it must not wait for a CPU
    held by the stages above (2-CPU machines), and unfused it writes each block as soon as it
    exists. `write` returns counts, which come back as one-row batches."""
    return map_stage(ds, name, lambda: (lambda b: counts(write(b))), batch_size=batch_size, num_cpus=0,
                     memory_mb=memory_mb)


def counts(c: dict[str, int]) -> dict[str, np.ndarray]:
    """Counts as a one-row batch."""
    return {k: np.array([v]) for k, v in c.items()}


def stream(ds, batch_size: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Run the pipeline, handing its output batches to the driver as they stream by."""
    yield from ds.iter_batches(batch_size=batch_size, batch_format="numpy")


def check_gpu_budget(pools: list[tuple[str, PoolConfig]], total_gpus: float) -> None:
    """Model pools keep their minimum actors for the whole run: their GPUs (fractions: small
    models share a card) must fit the GPUs the cluster has, or the job waits for ever."""
    pools = [(name, p) for name, p in pools if p.num_gpus > 0]
    held = sum(p.min_actors * p.num_gpus for _, p in pools)
    if held > total_gpus + 1e-9:
        detail = ", ".join(f"{name}: {p.min_actors} x {p.num_gpus:g} GPU" for name, p in pools)
        raise ValueError(f"actor pools need {held:g} GPUs at their minimum size ({detail}); the cluster has "
                         f"{total_gpus:g}. Lower the pools' num_gpus (fractions share a GPU) or min_actors.")


def check_cpu_budget(pools: list[tuple[str, PoolConfig]], task_cpus: float, task_field: str, total_cpus: float) -> None:
    """Actor pools hold their CPUs for the whole run; if they leave less than one task's worth
    (`task_cpus`, set by `task_field`), the CPU tasks never start and the job hangs. Refuse that
    up front, naming the fields."""
    held = sum(p.min_actors * p.num_cpus for _, p in pools)
    if held + task_cpus > total_cpus + 1e-9:
        detail = ", ".join(f"{name}: {p.min_actors} x {p.num_cpus:g} CPU" for name, p in pools)
        raise ValueError(
            f"actor pools hold {held:g} of the cluster's {total_cpus:g} CPUs ({detail}); the CPU tasks "
            f"need {task_cpus:g} more ({task_field}). Lower the pools' num_cpus "
            f"or min_actors, or add CPUs."
        )
