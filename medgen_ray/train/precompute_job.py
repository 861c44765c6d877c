"""The latent precompute job's driver: every kept clip of a curated dataset through the VAE and
text encoders into Parquet shards, streamed by the core Ray Data adapter (resumable)."""

from __future__ import annotations

import sys

import numpy as np

from medgen_ray.config import AppConfig
from medgen_ray.core import dataflow
from medgen_ray.models.requirements import require_weights


def run_precompute(app: AppConfig) -> dict[str, int]:
    """Encode every kept clip of a curated dataset into latent/text shards. With
    `precompute.resume` a rerun skips clips already written (encoded or rejected); without it,
    an output that holds shards is refused before anything runs (a second run would write every
    clip again beside the first)."""
    import fsspec

    from medgen_ray.core.parts import list_parts
    from medgen_ray.models.registry import get_spec
    from medgen_ray.schema import PRECOMPUTE_INPUT
    from medgen_ray.train.precompute import PrecomputeStage, check_shards, done_clip_ids, write_shard_batch

    cfg = app.precompute
    get_spec(cfg.model, "video")
    parts = list_parts(cfg.dataset, "manifest")
    if not parts:
        raise FileNotFoundError(f"precompute.dataset {cfg.dataset!r}: no manifest/part-*.parquet; run `medgen curate`")
    done = done_clip_ids(cfg.output)
    if done and not cfg.resume:
        raise FileExistsError(f"precompute.output {cfg.output!r} holds shards of {len(done)} clips and "
                              "precompute.resume is false: set precompute.resume=true to add only the clips "
                              "not encoded yet, or choose an empty precompute.output")
    skip = done
    require_weights(app, "precompute")
    dataflow.start_ray(app.ray)
    fs, _ = fsspec.core.url_to_fs(cfg.dataset)
    captions = [c for c in (cfg.caption_field, cfg.fallback_caption_field) if c]
    ds = dataflow.parquet_dataset(parts, fs, PRECOMPUTE_INPUT + captions)

    def not_done(batch):
        keep = np.array([c not in skip for c in batch["clip_id"]], dtype=bool)
        return {k: v[keep] for k, v in batch.items()}

    ds = dataflow.filter_rows(ds, not_done)
    root = cfg.dataset
    ds = dataflow.map_stage(ds, "Precompute", lambda: PrecomputeStage(cfg, None, root), batch_size=cfg.pool.batch_size,
                            pool=cfg.pool, num_cpus=cfg.pool.num_cpus)
    ds = dataflow.map_sink(ds, "WriteShards", lambda b: write_shard_batch(cfg.output, b), batch_size=cfg.write_batch_rows)
    totals = {"shards": 0, "rejects": 0}
    for batch in dataflow.stream(ds):
        for k in totals:
            totals[k] += int(batch[k].sum())
    result = {"encoded": totals["shards"], "rejected": totals["rejects"], "skipped_done": len(skip)}
    if result["encoded"] or skip:
        check = check_shards(cfg.output)
        result["total_rows"], result["buckets"] = check.rows, check.buckets
    print(f"precompute: {result}", file=sys.stdout)
    return result
