"""The only module that talks to Ray Data's map/write APIs.

Stages are plain callables; here they become streaming operators: cheap CPU stages as tasks
(Ray fuses neighbours), model stages as actor pools sized from config (never from the
driver's hardware), and the sink as tasks that write Parquet parts and return small counts,
which the driver folds as they stream by. Nothing else is collected on the driver.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from medgen_ray.config import AppConfig, CurateConfig, PoolConfig, derive
from medgen_ray.core.cluster import init_ray
from medgen_ray.core.console import JobProgress
from medgen_ray.core.stage import check_chain
from medgen_ray.core.storage import absolute_local, arrow_fs
from medgen_ray.models.requirements import require_weights

log = logging.getLogger("medgen_ray")
# Writers and the HTTP generation client: Ray's memory detector measured 115-540 MiB for them
# (precompute's shard writer the most); reserved with headroom, so the advice is acted on.
WRITER_MEMORY_MB = 768


def _start_ray(app: AppConfig) -> None:
    """Ray for a job: connected or embedded (init_ray), Ray Data's console quiet unless -v
    (its progress bars off; its console handler at WARNING through its documented logging-config
    file, minus notices we expect; ray-data.log in the session folder keeps everything)."""
    import ray.data

    from medgen_ray.core.console import drop_expected, ray_data_logging_config, verbose

    loud = verbose()
    if not loud:
        os.environ["RAY_DATA_LOGGING_CONFIG"] = ray_data_logging_config()
        from ray.data._internal.logging import configure_logging  # re-reads that variable

        configure_logging()
    drop_expected("ray.data._internal.progress")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = ctx.enable_operator_progress_bars = ctx.print_on_execution_start = loud
    init_ray(app.ray)


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


def _map(ds, name: str, factory: Callable[[], Callable], *, batch_size: int, num_cpus: float,
         pool: PoolConfig | None = None, post: Callable | None = None, memory_mb: int = 256):
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


def _curate_pools(cfg: CurateConfig) -> list[tuple[str, PoolConfig]]:
    pools = [("curate.classify.pool", cfg.classify.pool)]
    if cfg.metadata.enabled and cfg.metadata.classifier_path:
        pools.append(("curate.metadata.pool", cfg.metadata.pool))
    if cfg.quality.enabled:
        pools.append(("curate.quality.pool", cfg.quality.pool))
        if cfg.quality.technical.metric.startswith("pyiqa:"):
            pools.append(("curate.quality.pool (technical)", cfg.quality.pool))
    return pools


def check_gpu_budget(cfg: CurateConfig, total_gpus: float) -> None:
    """Model pools keep their minimum actors for the whole run: their GPUs (fractions: small
    models share a card) must fit the GPUs the cluster has, or the job waits for ever."""
    pools = [(name, p) for name, p in _curate_pools(cfg) if p.num_gpus > 0]
    held = sum(p.min_actors * p.num_gpus for _, p in pools)
    if held > total_gpus + 1e-9:
        detail = ", ".join(f"{name}: {p.min_actors} x {p.num_gpus:g} GPU" for name, p in pools)
        raise ValueError(f"actor pools need {held:g} GPUs at their minimum size ({detail}); the cluster has "
                         f"{total_gpus:g}. Lower the pools' num_gpus (fractions share a GPU) or min_actors.")


def check_cpu_budget(cfg: CurateConfig, total_cpus: float) -> None:
    """Actor pools hold their CPUs for the whole run; if they leave less than one task's worth,
    the decode tasks never start and the job hangs. Refuse that up front, naming the fields."""
    pools = _curate_pools(cfg)
    held = sum(p.min_actors * p.num_cpus for _, p in pools)
    need = cfg.task_num_cpus
    if held + need > total_cpus + 1e-9:
        detail = ", ".join(f"{name}: {p.min_actors} x {p.num_cpus:g} CPU" for name, p in pools)
        raise ValueError(
            f"actor pools hold {held:g} of the cluster's {total_cpus:g} CPUs ({detail}); the CPU tasks "
            f"need {need:g} more (curate.task_num_cpus). Lower the pools' num_cpus "
            f"or min_actors, or add CPUs."
        )


@dataclass(frozen=True)
class Step:
    """One operator of a pipeline: the stage class (whose reads/adds/drops are its contract),
    how to build the stage, and how it runs (a task, or an actor pool when `pool` is set)."""

    stage: type
    factory: Callable[[], Callable]
    batch_size: int = 1
    pool: PoolConfig | None = None
    post: Callable | None = None

    @property
    def name(self) -> str:
        """Operator name in Ray's progress and metrics: the stage's own name, capitalised."""
        return self.stage.name.capitalize()


def curate_steps(cfg: CurateConfig, skip: set[str]) -> list[Step]:
    """The curation pipeline's steps in order, built from config (no Ray)."""
    from medgen_ray.curate.aesthetic import AestheticStage
    from medgen_ray.curate.borders import BorderStage
    from medgen_ray.curate.captions import CaptionStage
    from medgen_ray.curate.classify import FrameClassifierStage
    from medgen_ray.curate.clipframes import ClipFramesStage
    from medgen_ray.curate.container import ProbeStage
    from medgen_ray.curate.cut import CutStage
    from medgen_ray.curate.filters import apply_filters
    from medgen_ray.curate.metadata import MetadataStage
    from medgen_ray.curate.motion import MotionStage
    from medgen_ray.curate.ocr import OcrStage
    from medgen_ray.curate.sampling import SampleStage
    from medgen_ray.curate.sink import write_listing
    from medgen_ray.curate.sources import FileSourceStage
    from medgen_ray.curate.technical import TechnicalStage, is_model_metric
    from medgen_ray.curate.temporal import SegmentStage
    from medgen_ray.curate.ytdlp import YtdlpDownloadStage, YtdlpSearchStage
    from medgen_ray.models.registry import get_spec
    from medgen_ray.schema import VIDEO_ID

    def filt(*stages: str) -> Callable:
        def post(batch):
            for stage in stages:
                batch = apply_filters(batch, cfg, stage)
            return batch
        return post

    def not_done(batch):
        keep = np.array([v not in skip for v in batch[VIDEO_ID]], dtype=bool)
        return {k: v[keep] for k, v in batch.items()}

    image_size = _image_size(cfg.classify.clip_model, get_spec)
    if cfg.source.kind == "files":
        steps = [Step(FileSourceStage, lambda: FileSourceStage(cfg.source), post=not_done)]
    else:
        output = cfg.output  # every listed video is an input: recorded before finished ones are skipped
        steps = [Step(YtdlpSearchStage, lambda: YtdlpSearchStage(cfg.source.ytdlp),
                      post=lambda b: not_done(write_listing(output, b)))]
    if cfg.metadata.enabled:
        # Fused task chains bundle max(batch_size) rows per task: keep task stages at one
        # video per task so work (and each sink part) streams instead of arriving in chunks.
        steps.append(Step(MetadataStage, lambda: MetadataStage(cfg), post=filt("metadata"),
                          pool=cfg.metadata.pool if cfg.metadata.classifier_path else None))
    if cfg.source.kind == "ytdlp":
        ddir = cfg.source.ytdlp.download_dir or f"{cfg.output.rstrip('/')}/downloads"
        steps.append(Step(YtdlpDownloadStage, lambda: YtdlpDownloadStage(cfg.source.ytdlp, ddir)))
    steps += [
        Step(ProbeStage, lambda: ProbeStage(cfg), post=filt("probe", "resolution")),
        Step(SampleStage, lambda: SampleStage(cfg.sample, image_size)),
        Step(FrameClassifierStage, lambda: FrameClassifierStage(cfg), batch_size=cfg.classify.pool.batch_size,
             pool=cfg.classify.pool),
        Step(SegmentStage, lambda: SegmentStage(cfg)),
        Step(CutStage, lambda: CutStage(cfg)),
    ]
    if cfg.quality.enabled:
        q = cfg.quality
        tech_pool = q.pool if is_model_metric(q.technical.metric) else None
        steps += [
            Step(ClipFramesStage, lambda: ClipFramesStage(q.clipframes)),
            Step(MotionStage, lambda: MotionStage(q.motion), post=filt("motion")),
            Step(BorderStage, lambda: BorderStage(q.borders, cfg.cut), post=filt("borders")),
            Step(AestheticStage, lambda: AestheticStage(q.aesthetic, q.pool.num_gpus), pool=q.pool,
                 post=filt("aesthetic")),
            Step(TechnicalStage, lambda: TechnicalStage(q.technical, q.pool.num_gpus if tech_pool else 0.0),
                 pool=tech_pool, post=filt("technical")),
            Step(OcrStage, lambda: OcrStage(q.ocr), post=filt("ocr")),
        ]
    if cfg.captions.enabled:
        steps.append(Step(CaptionStage, lambda: CaptionStage(cfg.captions, cfg.output),
                          batch_size=cfg.captions.concurrency))
    return steps


def check_steps(steps: list[Step], rows: list[dict]) -> None:
    """The pipeline's stage contracts against the input rows' columns, before Ray starts."""
    check_chain([(s.stage.name, s.stage) for s in steps], rows[0].keys() if rows else ())


def build_curate_dataset(cfg: CurateConfig, rows: list[dict], skip: set[str]):
    """The curation pipeline as a lazy Ray Dataset of sink counts."""
    import ray

    from medgen_ray.curate.sink import write_batch

    steps = curate_steps(cfg, skip)
    check_steps(steps, rows)
    resources = ray.cluster_resources()
    check_cpu_budget(cfg, float(resources.get("CPU", 0)))
    check_gpu_budget(cfg, float(resources.get("GPU", 0)))
    # Per-operator reservations split a small cluster so finely that the downstream writer is
    # starved until the model stage drains (seen on 2 CPUs): let operators share the budget.
    ray.data.DataContext.get_current().op_resource_reservation_enabled = False
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 200)))
    for step in steps:
        ds = _map(ds, step.name, step.factory, batch_size=step.batch_size, pool=step.pool, post=step.post,
                  num_cpus=cfg.task_num_cpus, memory_mb=cfg.task_memory_mb)
    output = cfg.output
    # Its own operator with no CPU request: it is I/O, it must not wait for a CPU held by the
    # stages above (2-CPU machines), and unfused it writes each block as soon as it exists.
    return _map(ds, "Write", lambda: (lambda b: _counts(write_batch(output, b))), batch_size=cfg.write_batch_rows,
                num_cpus=0, memory_mb=cfg.task_memory_mb)


def _counts(c: dict[str, int]) -> dict[str, np.ndarray]:
    return {k: np.array([v]) for k, v in c.items()}


def _image_size(name: str, get_spec) -> int:
    from medgen_ray.models.registry import TINY_CLIP_CFG

    get_spec(name, "clip")  # unknown names fail here, before any work
    return TINY_CLIP_CFG["vision_cfg"]["image_size"] if name.endswith("/tiny") else 224


def run_curate(app: AppConfig) -> dict[str, Any]:
    """Run the curation job end to end; returns the summary (also written to summary.json)."""
    from medgen_ray.curate.sink import (
        build_summary,
        count_listed,
        drop_duplicates,
        drop_unfinished,
        source_progress,
        write_summary,
    )
    from medgen_ray.curate.sources import list_file_sources
    from medgen_ray.curate.ytdlp import build_requests
    from medgen_ray.schema import VIDEO_STAGES

    cfg = derive(app.curate, {"output": absolute_local(app.curate.output)})  # clip_uri is built from it: a
    # manifest reads the same from any folder
    if cfg.source.kind == "files":
        rows = list_file_sources(cfg.source)
        if not rows:
            raise FileNotFoundError(f"curate.source.uris: no video files in {cfg.source.uris}")
    else:
        rows = build_requests(cfg.source.ytdlp)
        if not rows:
            raise ValueError("curate.source.ytdlp: no queries, channels, urls or info_json given")
    finished: set[str] = set()
    if cfg.resume:
        finished, unfinished = source_progress(cfg.output)
        removed = drop_unfinished(cfg.output, unfinished)
        if finished or removed:
            log.info("resume: %d sources finished, %d stray rows of %d unfinished sources removed",
                     len(finished), removed, len(unfinished))
    elif source_progress(cfg.output)[0]:
        raise FileExistsError(f"curate.output {cfg.output!r} holds a dataset and curate.resume is false")
    check_steps(curate_steps(cfg, finished), rows)  # a mis-ordered pipeline fails here, before Ray starts
    require_weights(app, "curate")  # and a missing weight, in seconds, naming the pull command
    _start_ray(app)
    ds = build_curate_dataset(cfg, rows, finished)
    totals = {"kept": 0, "rejected": 0, "errored": 0}
    progress = JobProgress("curate", len(rows) if cfg.source.kind == "files" else None)
    progress.sources.update(finished)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        got = {k: int(batch[k].sum()) for k in totals}
        for k in totals:
            totals[k] += got[k]
        progress.update(**got, sources=[v for s in batch["videos"] for v in str(s).split("\n")])
    progress.finish()
    duplicates = drop_duplicates(cfg.output)
    if duplicates:
        log.warning("removed %d rows written twice (tasks re-executed after a lost node)", duplicates)
    files = cfg.source.kind == "files"
    stages = tuple(s for s in VIDEO_STAGES if not (files and s == "download"))
    summary = build_summary(cfg.output, n_inputs=len(rows) if files else count_listed(cfg.output), stages=stages)
    summary["this_run"] = {"rows_written": totals, "skipped_finished_sources": len(finished),
                           "duplicate_rows_removed": duplicates}
    write_summary(cfg.output, summary)
    print_summary(summary, sys.stdout)
    return summary




def run_precompute(app: AppConfig) -> dict[str, int]:
    """Encode every kept clip of a curated dataset into latent/text shards (resumable)."""
    import ray

    from medgen_ray.core.parts import list_parts
    from medgen_ray.models.registry import get_spec
    from medgen_ray.schema import PRECOMPUTE_INPUT
    from medgen_ray.train.precompute import PrecomputeStage, check_shards, done_clip_ids, write_shard_batch

    cfg = app.precompute
    get_spec(cfg.model, "video")
    parts = list_parts(cfg.dataset, "manifest")
    if not parts:
        raise FileNotFoundError(f"precompute.dataset {cfg.dataset!r}: no manifest/part-*.parquet; run `medgen curate`")
    skip = done_clip_ids(cfg.output) if cfg.resume else set()
    if skip and not cfg.resume:
        raise FileExistsError(f"precompute.output {cfg.output!r} holds shards and precompute.resume is false")
    require_weights(app, "precompute")
    _start_ray(app)
    ray.data.DataContext.get_current().op_resource_reservation_enabled = False
    fs, _ = __import__("fsspec").core.url_to_fs(cfg.dataset)
    captions = [c for c in (cfg.caption_field, cfg.fallback_caption_field) if c]
    ds = ray.data.read_parquet(parts, filesystem=arrow_fs(fs)).select_columns(PRECOMPUTE_INPUT + captions)

    def not_done(batch):
        keep = np.array([c not in skip for c in batch["clip_id"]], dtype=bool)
        return {k: v[keep] for k, v in batch.items()}

    ds = ds.map_batches(not_done, batch_format="numpy", num_cpus=0.1, zero_copy_batch=False)
    root = cfg.dataset
    ds = _map(ds, "Precompute", lambda: PrecomputeStage(cfg, None, root), batch_size=cfg.pool.batch_size,
              pool=cfg.pool, num_cpus=cfg.pool.num_cpus)
    ds = _map(ds, "WriteShards", lambda: (lambda b: _counts(write_shard_batch(cfg.output, b))),
              batch_size=cfg.write_batch_rows, num_cpus=0, memory_mb=WRITER_MEMORY_MB)
    totals = {"shards": 0, "rejects": 0}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for k in totals:
            totals[k] += int(batch[k].sum())
    result = {"encoded": totals["shards"], "rejected": totals["rejects"], "skipped_done": len(skip)}
    if result["encoded"] or skip:
        check = check_shards(cfg.output)
        result["total_rows"], result["buckets"] = check.rows, check.buckets
    print(f"precompute: {result}", file=sys.stdout)
    return result


def run_train(app: AppConfig) -> dict[str, Any]:
    """LoRA fine-tuning: check the shards, read them as a Ray Dataset, train on Ray Train."""
    import fsspec
    import ray

    from medgen_ray.schema import SHARDS
    from medgen_ray.train.launch import check_train_inputs, fit_lora

    cfg, check = check_train_inputs(app.train)
    require_weights(app, "train")
    _start_ray(app)
    ray.data.DataContext.get_current().enable_progress_bars = False  # one bar per epoch per worker is noise
    fs, root = fsspec.core.url_to_fs(cfg.data)
    ds = ray.data.read_parquet(f"{root.rstrip('/')}/{SHARDS}", filesystem=arrow_fs(fs))
    return fit_lora(cfg, check, ds)


def run_experiment(app: AppConfig) -> dict[str, Any]:
    """An experiment (arms or a sweep) with this module's precompute, training and evaluation."""
    from medgen_ray.experiments.arms import Jobs
    from medgen_ray.experiments.arms import run_experiment as run_arms

    return run_arms(app, Jobs(precompute=run_precompute, train=run_train, evaluate=run_evaluate, init_ray=init_ray))


def run_evaluate(app: AppConfig) -> dict[str, Any]:
    """Med-VBench: generate (unless scoring a folder), score every video, aggregate, report."""
    import ray

    from medgen_ray.evaluate.job import (
        GenerateStage,
        RemoteGenerateStage,
        aggregate,
        aggregate_by_category,
        folder_rows,
        generation_rows,
        read_per_video,
        write_scores,
    )
    from medgen_ray.evaluate.medvbench_report import write_eval_report
    from medgen_ray.evaluate.score import VideoScoreStage

    cfg = app.evaluate
    if cfg.videos:
        rows = folder_rows(cfg.videos)
    elif cfg.prompts:
        rows = generation_rows(cfg)
    else:
        raise ValueError("evaluate: give evaluate.prompts (a prompt file) or evaluate.videos (a folder of mp4s)")
    if not cfg.videos and not cfg.url:
        unknown = [m.adapter for m in cfg.models if m.adapter != "base" and m.adapter not in app.serve.adapters]
        if unknown:
            raise ValueError(f"evaluate.models: adapters {unknown} are not in serve.adapters "
                             f"({sorted(app.serve.adapters)})")
    if cfg.ratings:
        from medgen_ray.evaluate.job import ratings_by_model

        ratings_by_model(cfg.ratings)  # a bad ratings file fails now, not after hours of scoring
    if cfg.prompt_classifier is not None:
        from medgen_ray.evaluate.categories import assign_prompt_categories

        rows = assign_prompt_categories(rows, cfg.prompt_classifier, cfg.output)
    import fsspec

    fs, root = fsspec.core.url_to_fs(cfg.output)
    done = set()
    if cfg.resume:
        prev = read_per_video(cfg.output)
        if len(prev):
            done = set(prev["video_id"])
    elif fs.exists(f"{root.rstrip('/')}/per_video"):
        raise FileExistsError(f"evaluate.output {cfg.output!r} holds scores and evaluate.resume is false")
    todo = [r for r in rows if r["video_id"] not in done]
    require_weights(app, "evaluate")
    _start_ray(app)
    ray.data.DataContext.get_current().op_resource_reservation_enabled = False
    if todo:
        # one pipeline: a generation failure reaches the sink as that video's error
        ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), 200)))
        if not cfg.videos and cfg.url:
            token = cfg.token or os.environ.get("MEDGEN_SERVE_TOKEN")
            ds = _map(ds, "GenerateRemote", lambda: RemoteGenerateStage(cfg, token), batch_size=1,
                      num_cpus=0.1, memory_mb=WRITER_MEMORY_MB)
        elif not cfg.videos:
            ds = _map(ds, "Generate", lambda: GenerateStage(app), batch_size=1, pool=cfg.generator_pool,
                      num_cpus=cfg.generator_pool.num_cpus)
        ds = _map(ds, "Score", lambda: VideoScoreStage(cfg), batch_size=1, pool=cfg.pool, num_cpus=cfg.pool.num_cpus)
        ds = _map(ds, "WriteScores", lambda: (lambda b: write_scores(cfg.output, b)), batch_size=16,
                  num_cpus=0, memory_mb=WRITER_MEMORY_MB)
        for _ in ds.iter_batches(batch_size=None, batch_format="numpy"):
            pass
    df = read_per_video(cfg.output)
    per_model = aggregate(df, cfg)
    import pyarrow as pa
    import pyarrow.parquet as pq

    with fs.open(f"{root.rstrip('/')}/per_model.parquet", "wb") as fh:
        pq.write_table(pa.Table.from_pylist(per_model), fh)
    per_category = aggregate_by_category(df, cfg)
    if per_category:
        with fs.open(f"{root.rstrip('/')}/per_category.parquet", "wb") as fh:
            pq.write_table(pa.Table.from_pylist(per_category), fh)
    page = write_eval_report(cfg.output, per_model, df, cfg, per_category)
    for r in per_model:
        print("evaluate: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in r.items() if v is not None), file=sys.stdout)
    print(f"evaluate: report {page}", file=sys.stdout)
    return {"per_model": per_model, "per_category": per_category, "videos": int(len(df)), "report": page,
            "per_video": df}


def run_dedup(app: AppConfig, dataset: str, out: str) -> dict[str, Any]:
    """Near-duplicate removal over `dataset` into `out`. Clips whose manifest rows carry no
    signatures (curated before they were stored) get them from a Ray Data pass first, written
    to <out>/signatures in parts: a rerun after a kill computes only the rest. Then the view."""
    import fsspec
    import pyarrow as pa
    import ray

    from medgen_ray.core.batch import to_rows
    from medgen_ray.core.parts import list_parts, write_table_atomic
    from medgen_ray.curate.dedup import (
        SIGNATURE_SCHEMA,
        SIGNATURES,
        ClipSignatureStage,
        has_signature,
        read_manifest,
        read_signatures,
        write_dedup,
    )
    from medgen_ray.schema import CLIP_ID, CLIP_URI

    cfg = app.curate
    rows = read_manifest(dataset)
    done = read_signatures(out)
    todo = [{CLIP_ID: r[CLIP_ID], CLIP_URI: r[CLIP_URI]} for r in rows if not has_signature(r) and r[CLIP_ID] not in done]
    if todo:
        require_weights(derive(app, {"curate.quality.enabled": False, "curate.metadata.enabled": False}), "curate")
        _start_ray(app)
        fs, root = fsspec.core.url_to_fs(out)
        fs.makedirs(f"{root}/{SIGNATURES}", exist_ok=True)
        start = len(list_parts(out, SIGNATURES))
        ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), 200)))
        ds = _map(ds, "Signature", lambda: ClipSignatureStage(cfg), batch_size=cfg.dedup.pool.batch_size,
                  pool=cfg.dedup.pool, num_cpus=cfg.dedup.pool.num_cpus)
        errors = []
        for i, batch in enumerate(ds.iter_batches(batch_size=cfg.write_batch_rows, batch_format="numpy")):
            signed = to_rows(batch)
            good = [r for r in signed if not r.get("error")]
            errors += [f"{r[CLIP_ID]}: {r['error']}" for r in signed if r.get("error")]
            if good:
                table = pa.Table.from_pylist([{f.name: r[f.name] for f in SIGNATURE_SCHEMA} for r in good],
                                             schema=SIGNATURE_SCHEMA)
                write_table_atomic(fs, f"{root}/{SIGNATURES}/part-{start + i:05d}.parquet", table)
        if errors:
            raise ValueError(f"dedup: {len(errors)} clip(s) could not be read, nothing removed yet: {errors[:3]}")
    summary = write_dedup(dataset, out, cfg.dedup, rows)
    print(f"dedup: {summary['kept']} of {summary['clips']} clips kept, {summary['duplicates']} near-duplicates "
          f"rejected (rejects name the clip kept) -> {out}", file=sys.stdout)
    return summary


def print_summary(summary: dict[str, Any], out) -> None:
    """Print the curation funnel and outcome counts."""
    print(f"inputs {summary['inputs']}: kept {summary['videos_kept']}, rejected {summary['videos_rejected']}, "
          f"errored {summary['videos_errored']} (accounted: {summary['accounted']})", file=out)
    for f in summary["funnel"]:
        print(f"  {f['level']:5s} {f['stage']:11s} {f['in']:6d} -> {f['out']:6d}", file=out)
    print(f"clips kept {summary['clips_kept']} of {summary['candidate_clips']} candidates, "
          f"{summary['kept_seconds']:.0f} s", file=out)
