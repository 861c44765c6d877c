"""Dataset views: a new dataset derived from a scored one by re-applying the clip filters with
other thresholds or with stages disabled. No model runs: every rule reads the `score_*`
columns the curation stored, so a view costs a pass over the manifest.

A view can always tighten. To loosen a threshold or drop a filter, curate once with
`curate.quality.score_only=true` (every clip scored, none rejected by the quality stages);
its views then reproduce any setting, the shipped one included.

Layout: <view>/manifest/part-*.parquet (clip_uri still points at the base dataset's clips),
<view>/rejects/part-*.parquet (the view's own rejections, with reasons), <view>/view.json
(base, overrides, disabled stages, funnel of both).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import fsspec

from medgen_ray.config import CurateConfig
from medgen_ray.core.batch import from_rows
from medgen_ray.core.parts import list_parts, read_part, write_table_atomic
from medgen_ray.curate.filters import apply_filters
from medgen_ray.curate.sink import split_batch
from medgen_ray.schema import REJECT_REASON, REJECT_STAGE

CLIP_FILTERS = ("motion", "borders", "aesthetic", "technical", "ocr")  # pipeline order


def _funnel(stages: list[str], n: int) -> list[dict[str, Any]]:
    counts = Counter(stages)
    out, left = [], n
    for stage in CLIP_FILTERS:
        rejected = counts.get(stage, 0)
        out.append({"stage": stage, "in": left, "rejected": rejected, "out": left - rejected})
        left -= rejected
    return out


def write_view(base: str, out: str, cfg: CurateConfig, disable: list[str] | None = None) -> dict[str, Any]:
    """Write the view of `base` under `out`; returns the summary also written to view.json."""
    disable = list(disable or [])
    unknown = [d for d in disable if d not in CLIP_FILTERS]
    if unknown:
        raise ValueError(f"dataset view: cannot disable {unknown}; clip filters are {', '.join(CLIP_FILTERS)}")
    if not list_parts(base, "manifest"):
        raise FileNotFoundError(f"dataset {base!r}: no manifest/part-*.parquet")
    fs, root = fsspec.core.url_to_fs(out)
    if fs.exists(f"{root}/manifest"):
        raise FileExistsError(f"view output {out!r} already holds a dataset")
    bfs, _ = fsspec.core.url_to_fs(base)
    base_stages: list[str] = []
    view_stages: list[str] = []
    n = kept = 0
    for i, path in enumerate(list_parts(base, "manifest")):
        table = read_part(bfs, path)
        rows = table.to_pylist()
        n += len(rows)
        for row in rows:
            row[REJECT_STAGE] = row[REJECT_REASON] = ""
            row["error"] = ""
        batch = from_rows(rows, table.column_names + [REJECT_STAGE, REJECT_REASON, "error"])
        for stage in CLIP_FILTERS:
            if stage not in disable:
                batch = apply_filters(batch, cfg, stage)
        view_stages += [s for s in batch[REJECT_STAGE] if s]
        manifest, rejects = split_batch(batch)
        kept += manifest.num_rows
        for name, t in (("manifest", manifest), ("rejects", rejects)):
            if t.num_rows:
                fs.makedirs(f"{root}/{name}", exist_ok=True)
                write_table_atomic(fs, f"{root}/{name}/part-{i:05d}.parquet", t)
    for path in list_parts(base, "rejects"):
        t = read_part(bfs, path, [REJECT_STAGE])
        base_stages += [s for s in t.column(REJECT_STAGE).to_pylist() if s in CLIP_FILTERS]
    base_total = n + len(base_stages)
    summary = {
        "base": base, "disabled": disable, "clips_scored": n, "clips_kept": kept,
        "funnel_base": _funnel(base_stages, base_total), "funnel_view": _funnel(view_stages, n),
        "filters": cfg.quality.model_dump(),
    }
    with fs.open(f"{root}/view.json", "w") as fh:
        fh.write(json.dumps(summary, indent=1))
    return summary


def print_view(summary: dict[str, Any], out) -> None:
    """Print a view's funnel: clips kept of those scored, and per filter."""
    print(f"view of {summary['base']}: {summary['clips_kept']} of {summary['clips_scored']} scored clips kept"
          + (f" (disabled: {', '.join(summary['disabled'])})" if summary["disabled"] else ""), file=out)
    print(f"  {'stage':10s} {'base rejected':>14s} {'view rejected':>14s}", file=out)
    for b, v in zip(summary["funnel_base"], summary["funnel_view"]):
        print(f"  {b['stage']:10s} {b['rejected']:14d} {v['rejected']:14d}", file=out)
