"""Prometheus metrics and structured logs.

Metrics go through `ray.util.metrics`, which every Ray node exports in Prometheus format on
its metrics port (`ray start --metrics-export-port`, or `ray.nodes()[i]["MetricsExportPort"]`):

  medgen_stage_rows_total{stage, outcome}      rows out of a stage: kept | rejected | errored
  medgen_stage_rows_in_total{stage}            rows into a stage
  medgen_stage_batch_seconds{stage}            time a stage spends on one batch (histogram)
  medgen_serve_queue_depth                     jobs queued or running in an ingress replica
  medgen_serve_jobs_total{outcome}             finished jobs: done | failed
  medgen_serve_job_seconds                     submit-to-finish latency (histogram)

`cluster/grafana/medgen.json` charts them. Outside Ray (unit tests, GPU scripts) recording is
a no-op. Row errors are logged as one JSON object naming the stage and the clip/video id.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger("medgen_ray.rows")
_METRICS: dict[str, Any] = {}
LATENCY_BOUNDS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800]


def _metric(name: str, kind: str, description: str, tags: tuple[str, ...] = ()):
    m = _METRICS.get(name)
    if m is None:
        import ray
        from ray.util import metrics

        if not ray.is_initialized():
            return None
        if kind == "counter":
            m = metrics.Counter(name, description=description, tag_keys=tags)
        elif kind == "gauge":
            m = metrics.Gauge(name, description=description, tag_keys=tags)
        else:
            m = metrics.Histogram(name, description=description, boundaries=LATENCY_BOUNDS, tag_keys=tags)
        _METRICS[name] = m
    return m


def record_stage(stage: str, rows_in: int, batch: dict[str, np.ndarray], seconds: float) -> None:
    """Count a stage's rows by outcome (from its status columns) and time its batch."""
    n = len(next(iter(batch.values()))) if batch else 0
    errors = batch.get("error")
    rejects = batch.get("reject_reason")
    errored = int(sum(bool(e) for e in errors)) if errors is not None else 0
    rejected = int(sum(bool(r) for r in rejects)) if rejects is not None else 0
    counts = {"kept": n - errored - rejected, "rejected": rejected, "errored": errored}
    rows = _metric("medgen_stage_rows_total", "counter", "rows out of a stage by outcome", ("stage", "outcome"))
    if rows is None:
        return
    for outcome, k in counts.items():
        if k:
            rows.inc(k, tags={"stage": stage, "outcome": outcome})
    _metric("medgen_stage_rows_in_total", "counter", "rows into a stage", ("stage",)).inc(
        max(rows_in, 0) or 0.0, tags={"stage": stage})
    _metric("medgen_stage_batch_seconds", "histogram", "seconds per batch", ("stage",)).observe(
        seconds, tags={"stage": stage})


def timed_stage(stage: str, fn, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a stage on a batch and record rows in/out and seconds as metrics."""
    n_in = len(next(iter(batch.values()))) if batch else 0
    t0 = time.perf_counter()
    out = fn(batch)
    if isinstance(out, dict):
        record_stage(stage, n_in, out, time.perf_counter() - t0)
    return out


def serve_queue(depth: int) -> None:
    """Report the ingress replica's queue depth as a gauge."""
    g = _metric("medgen_serve_queue_depth", "gauge", "jobs queued or running in an ingress replica")
    if g is not None:
        g.set(depth)


def serve_job_finished(outcome: str, seconds: float) -> None:
    """Count a finished generation job by outcome and record its seconds."""
    c = _metric("medgen_serve_jobs_total", "counter", "finished generation jobs", ("outcome",))
    if c is None:
        return
    c.inc(1, tags={"outcome": outcome})
    _metric("medgen_serve_job_seconds", "histogram", "submit-to-finish seconds").observe(seconds)


def log_row_error(stage: str, row: dict[str, Any], message: str) -> None:
    """Log a row's data error as one JSON line."""
    log.warning(json.dumps({"event": "row_error", "stage": stage, "clip_id": _s(row.get("clip_id")),
                            "video_id": _s(row.get("video_id")), "error": message}))


def _s(v: Any) -> str | None:
    return None if v is None else str(v)
