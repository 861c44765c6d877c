"""The curation job's driver: the step list built from config, its checks before Ray starts
(stage contracts, the cluster's CPU/GPU budget, weights), the streaming pipeline through the
core Ray Data adapter, and the summary; plus the dedup job's signature pass."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from medgen_ray.config import AppConfig, CurateConfig, PoolConfig, derive
from medgen_ray.core import dataflow
from medgen_ray.core.console import JobProgress
from medgen_ray.core.stage import check_chain
from medgen_ray.core.storage import absolute_local
from medgen_ray.models.requirements import require_weights

log = logging.getLogger("medgen_ray")


def curate_pools(cfg: CurateConfig) -> list[tuple[str, PoolConfig]]:
    """The curation's model actor pools, named by their config fields."""
    pools = [("curate.classify.pool", cfg.classify.pool)]
    if cfg.metadata.enabled and cfg.metadata.classifier_path:
        pools.append(("curate.metadata.pool", cfg.metadata.pool))
    if cfg.quality.enabled:
        pools.append(("curate.quality.pool", cfg.quality.pool))
        if cfg.quality.technical.metric.startswith("pyiqa:"):
            pools.append(("curate.quality.pool (technical)", cfg.quality.pool))
    return pools


def check_gpu_budget(cfg: CurateConfig, total_gpus: float) -> None:
    """The curation's model pools at their minimum size must fit the cluster's GPUs."""
    dataflow.check_gpu_budget(curate_pools(cfg), total_gpus)


def check_cpu_budget(cfg: CurateConfig, total_cpus: float) -> None:
    """The curation's model pools must leave one CPU task's worth (curate.task_num_cpus)."""
    dataflow.check_cpu_budget(curate_pools(cfg), cfg.task_num_cpus, "curate.task_num_cpus", total_cpus)


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
    from medgen_ray.curate.sink import write_batch

    steps = curate_steps(cfg, skip)
    check_steps(steps, rows)
    total_cpus, total_gpus = dataflow.cluster_totals()
    check_cpu_budget(cfg, total_cpus)
    check_gpu_budget(cfg, total_gpus)
    ds = dataflow.rows_dataset(rows)
    for step in steps:
        ds = dataflow.map_stage(ds, step.name, step.factory, batch_size=step.batch_size, pool=step.pool,
                                post=step.post, num_cpus=cfg.task_num_cpus, memory_mb=cfg.task_memory_mb)
    output = cfg.output
    return dataflow.map_sink(ds, "Write", lambda b: write_batch(output, b), batch_size=cfg.write_batch_rows,
                             memory_mb=cfg.task_memory_mb)


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
    dataflow.start_ray(app.ray)
    ds = build_curate_dataset(cfg, rows, finished)
    totals = {"kept": 0, "rejected": 0, "errored": 0}
    progress = JobProgress("curate", len(rows) if cfg.source.kind == "files" else None)
    progress.sources.update(finished)
    for batch in dataflow.stream(ds):
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


def run_dedup(app: AppConfig, dataset: str, out: str) -> dict[str, Any]:
    """Near-duplicate removal over `dataset` into `out`. Clips whose manifest rows carry no
    signatures (curated before they were stored) get them from a Ray Data pass first, written
    to <out>/signatures in parts: a rerun after a kill computes only the rest. Then the view."""
    import fsspec
    import pyarrow as pa

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
        dataflow.start_ray(app.ray, share_resources=False)
        fs, root = fsspec.core.url_to_fs(out)
        fs.makedirs(f"{root}/{SIGNATURES}", exist_ok=True)
        start = len(list_parts(out, SIGNATURES))
        ds = dataflow.map_stage(dataflow.rows_dataset(todo), "Signature", lambda: ClipSignatureStage(cfg),
                                batch_size=cfg.dedup.pool.batch_size, pool=cfg.dedup.pool,
                                num_cpus=cfg.dedup.pool.num_cpus)
        errors = []
        for i, batch in enumerate(dataflow.stream(ds, batch_size=cfg.write_batch_rows)):
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
