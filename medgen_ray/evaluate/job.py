"""The Med-VBench job: the rows to generate, the generation stages (offline generator actors or
a running service over HTTP), the per-video sink, the per-model aggregate, and the driver
(`run_evaluate`) that streams them through the core Ray Data adapter.

Layout under evaluate.output (local or s3://):
  videos/<model>/<prompt index>.mp4    generated videos (a rerun skips those present)
  per_video/part-*.parquet             one row per video: scores, timings, error
  per_model.parquet                    means per model (+ warping error from raters, total)
  report.html, report.md, *.png        the report
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medgen_ray.config import AppConfig, EvaluateConfig
from medgen_ray.core import dataflow
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.models.requirements import require_weights
from medgen_ray.schema import PER_VIDEO_COLUMNS, PER_VIDEO_PREFIXES

PAPER_DIMS = ("imaging_quality", "subject_consistency", "background_consistency", "motion_smoothness")
# VBench's totals of these are sums over every frame of every video (`sim / cnt` in
# subject_consistency.py and background_consistency.py): a video weighs its frames - 1 pairs.
# Every other dimension's total is the mean of its videos' scores.
FRAME_WEIGHTED = ("subject_consistency", "background_consistency")


def dimension_total(g, dim: str, seed: int) -> tuple[float, float, float]:
    """A dimension's total over a group of per-video rows as VBench totals it, with its 95%
    bootstrap interval over the videos (NaN scores left out)."""
    from medgen_ray.evaluate.stats import bootstrap_ci

    col = f"score_{dim}"
    values = g[col].to_numpy(dtype=float) if col in g else np.zeros(0)
    weights = None
    if dim in FRAME_WEIGHTED:
        if "frames" not in g:
            raise ValueError(f"{dim}: per-video rows have no `frames` column (scored before it was kept); "
                             "rescore with evaluate.resume=false to total as VBench does")
        weights = g["frames"].to_numpy(dtype=float) - 1.0
    return bootstrap_ci(values, seed=seed, weights=weights)


def read_prompts(path: str, limit: int | None) -> list[tuple[str, str]]:
    """(category, prompt) per non-empty line; a line `category<TAB>prompt` names its category
    (used for per-category scores), a plain line has category ''."""
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        raise FileNotFoundError(f"evaluate.prompts {path!r}: not found")
    with fs.open(p, "r") as fh:
        lines = [line.strip() for line in fh if line.strip()]
    if not lines:
        raise ValueError(f"evaluate.prompts {path!r}: no prompts (one per line)")
    pairs = [tuple(x.strip() for x in line.split("\t", 1)) if "\t" in line else ("", line) for line in lines]
    return pairs[:limit] if limit else pairs


def generation_rows(cfg: EvaluateConfig) -> list[dict[str, Any]]:
    """One row per (model, prompt) to generate and score."""
    prompts = read_prompts(cfg.prompts, cfg.max_prompts) if cfg.prompts else []
    out = cfg.output.rstrip("/")
    return [{"video_id": f"{m.name}/{i:04d}", "model": m.name, "adapter": m.adapter, "prompt_index": i,
             "prompt": p, "category": c, "seed": cfg.seed + i, "video_uri": f"{out}/videos/{m.name}/{i:04d}.mp4"}
            for m in cfg.models for i, (c, p) in enumerate(prompts)]


def folder_rows(folder: str) -> list[dict[str, Any]]:
    """VBench's custom-input mode: every mp4 in a folder; the prompt is a sidecar <name>.txt,
    else the file name with _ and - read as spaces. The model is the parent folder's name."""
    fs, root = fsspec.core.url_to_fs(folder)
    if not fs.exists(root):
        raise FileNotFoundError(f"evaluate.videos {folder!r}: not found")
    paths = sorted(p for p in fs.find(root) if p.lower().endswith(".mp4"))
    if not paths:
        raise FileNotFoundError(f"evaluate.videos {folder!r}: no .mp4 files")
    proto = "" if fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol else f"{fs.protocol[0]}://"
    rows = []
    for p in paths:
        side = p[:-4] + ".txt"
        prompt = fs.cat(side).decode().strip() if fs.exists(side) else \
            Path(p).stem.replace("_", " ").replace("-", " ")
        rel = p[len(root.rstrip("/")) + 1:]
        model = rel.split("/")[0] if "/" in rel else Path(root).name
        rows.append({"video_id": rel, "model": model, "prompt": prompt, "video_uri": proto + p})
    return rows


class GenerateStage(RowStage):
    """Offline generation (actor pool): one generator per actor, adapters by name."""

    name = "generate"
    reads = ("prompt", "seed", "adapter", "video_uri")

    def __init__(self, app: AppConfig):
        super().__init__(app.evaluate)
        self.serve_cfg = app.serve

    def setup(self) -> None:
        from medgen_ray.serve.generator import VideoGenerator

        self.gen = VideoGenerator(self.serve_cfg)
        self.gen.setup()

    def process(self, row: Row) -> Row:
        from medgen_ray.core.encode import float_mp4_bytes
        from medgen_ray.serve.schema import VideoRequest, resolved

        if _exists(row["video_uri"]):  # generated by an earlier run
            return row
        s = self.serve_cfg
        request = resolved(VideoRequest(prompt=row["prompt"], seed=int(row["seed"]), adapter=row["adapter"]), s)
        data = float_mp4_bytes(self.gen.generate(request), s.fps)
        with fsspec.open(row["video_uri"], "wb") as fh:
            fh.write(data)
        return row


class RemoteGenerateStage(RowStage):
    """Generation through a running service (task stage: it only waits on HTTP)."""

    name = "generate"
    reads = ("prompt", "seed", "adapter", "video_uri")

    def __init__(self, cfg: EvaluateConfig, token: str | None):
        super().__init__(cfg)
        self.token = token

    def process(self, row: Row) -> Row:
        import tempfile

        from medgen_ray.serve.client import ServiceError, generate

        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "v.mp4")
            try:
                if _exists(row["video_uri"]):
                    return row
                generate(self.cfg.url, {"prompt": row["prompt"], "seed": int(row["seed"]), "adapter": row["adapter"]},
                         local, token=self.token, poll_s=0.5, log=open(os.devnull, "w"))
            except ServiceError as exc:
                from medgen_ray.core.errors import DataError

                raise DataError(str(exc)) from exc
            fs, path = fsspec.core.url_to_fs(row["video_uri"])
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            fs.put(local, path)
        return row


def _exists(uri: str) -> bool:
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.exists(path)


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def write_scores(output: str, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One Parquet part of per-video rows; returns the row count."""
    from medgen_ray.core.parts import write_table_atomic

    keep = [k for k in batch if k in PER_VIDEO_COLUMNS or k.startswith(PER_VIDEO_PREFIXES)]
    n = len(batch["video_id"])
    cols = {k: [_py(batch[k][i]) for i in range(n)] for k in keep}
    fs, root = fsspec.core.url_to_fs(output)
    fs.makedirs(f"{root.rstrip('/')}/per_video", exist_ok=True)
    write_table_atomic(fs, f"{root.rstrip('/')}/per_video/part-{uuid.uuid4().hex[:16]}.parquet",
                       pa.Table.from_pydict(cols))
    return {"rows": np.array([n])}


def read_per_video(output: str):
    """Every per-video score row written so far, as a DataFrame (empty when none)."""
    import pandas as pd

    fs, root = fsspec.core.url_to_fs(output)
    folder = f"{root.rstrip('/')}/per_video"
    parts = sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".parquet")) if fs.exists(folder) else []
    if not parts:
        return pd.DataFrame()
    tables = []
    for p in parts:
        with fs.open(p, "rb") as fh:
            tables.append(pq.read_table(fh).to_pandas())
    return pd.concat(tables, ignore_index=True)


def ratings_by_model(paths: list[str]) -> dict[str, float]:
    """Warping error per model from raters' CSVs (video_id,rater,rating; video ids are
    <model>/<index> as this job names them)."""
    import csv

    from medgen_ray.evaluate.metrics import warping_error_from_ratings

    per_model: dict[str, list[tuple[str, str]]] = {}
    for path in paths:
        with fsspec.open(path, "r") as fh:
            reader = csv.DictReader(fh)
            missing = {"video_id", "rating"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"ratings CSV {path!r}: missing columns {sorted(missing)}")
            for r in reader:
                model = r["video_id"].split("/")[0]
                per_model.setdefault(model, []).append((r["video_id"], r["rating"]))
    return {m: warping_error_from_ratings(v) for m, v in per_model.items()}


STRATA = (("prompt", "category"), ("clip", "clip_category"))  # (by, column): prompt file, text classifier


def aggregate_by_category(df, cfg: EvaluateConfig) -> list[dict[str, Any]]:
    """Per (model, category) means with bootstrap intervals: stratified results, once for the
    prompt file's categories (`by` = prompt) and once for the classifier's clip categories
    (`by` = clip), whichever the rows carry."""
    rows = []
    ok = df[df["error"].fillna("") == ""] if "error" in df else df
    for by, col in STRATA:
        if col not in ok or not (ok[col].fillna("") != "").any():
            continue
        for (model, category), g in ok[ok[col].fillna("") != ""].groupby(["model", col], sort=True):
            row: dict[str, Any] = {"by": by, "model": model, "category": category, "videos": int(len(g))}
            for d in cfg.dimensions:
                row[d], row[f"{d}_lo"], row[f"{d}_hi"] = dimension_total(g, d, cfg.seed)
            rows.append(row)
    return rows


def aggregate(df, cfg: EvaluateConfig) -> list[dict[str, Any]]:
    """Totals per model as VBench totals each dimension (`dimension_total`), with 95% bootstrap
    intervals over prompts (`<dim>_lo`, `<dim>_hi`); the paper's Total when raters' warping
    error is there."""
    from medgen_ray.evaluate.metrics import total_score
    from medgen_ray.evaluate.videoscore import videoscore_total

    we = ratings_by_model(cfg.ratings) if cfg.ratings else {}
    rows = []
    for model, g in df.groupby("model", sort=False):
        ok = g[g["error"].fillna("") == ""] if "error" in g else g
        row: dict[str, Any] = {"model": model, "videos": int(len(g)), "errors": int(len(g) - len(ok))}
        for d in cfg.dimensions:
            col = f"score_{d}"
            values = ok[col].to_numpy(dtype=float) if col in ok else np.zeros(0)
            row[f"{d}_unscored"] = int(np.isnan(values).sum())  # videos the dimension gave no score
            if np.isfinite(values).any():
                row[d], row[f"{d}_lo"], row[f"{d}_hi"] = dimension_total(ok, d, cfg.seed)
            else:
                row[d] = row[f"{d}_lo"] = row[f"{d}_hi"] = None
        row["warping_error"] = we.get(model)
        if row["warping_error"] is not None and all(row.get(d) is not None for d in PAPER_DIMS):
            row["total"] = total_score(row["imaging_quality"], row["subject_consistency"],
                                       row["background_consistency"], row["motion_smoothness"],
                                       row["warping_error"])
        else:
            row["total"] = None
        vs = [row.get(f"videoscore_{a}") for a in ("visual_quality", "temporal_consistency", "text_alignment",
                                                    "factual_consistency")]
        row["videoscore_total"] = (videoscore_total(*vs, row["warping_error"])
                                   if row["warping_error"] is not None and None not in vs else None)
        rows.append(row)
    return rows


def write_totals(output: str, df, cfg: EvaluateConfig, study: dict[str, Any] | None = None) -> dict[str, Any]:
    """per_model.parquet, per_category.parquet (when the rows carry categories) and the report
    from the per-video rows; returns the rows and the report's path."""
    from medgen_ray.evaluate.medvbench_report import write_eval_report

    fs, root = fsspec.core.url_to_fs(output)
    per_model = aggregate(df, cfg)
    with fs.open(f"{root.rstrip('/')}/per_model.parquet", "wb") as fh:
        pq.write_table(pa.Table.from_pylist(per_model), fh)
    per_category = aggregate_by_category(df, cfg)
    if per_category:
        with fs.open(f"{root.rstrip('/')}/per_category.parquet", "wb") as fh:
            pq.write_table(pa.Table.from_pylist(per_category), fh)
    report = write_eval_report(output, per_model, df, cfg, per_category, study=study)
    return {"per_model": per_model, "per_category": per_category, "report": report}


def retotal_with_study(output: str, ratings_csv: str, study: dict[str, Any]) -> str:
    """An evaluation's per-model table and report again, with the study's warping error (so the
    Total), Fig. 6 and the kappa table; no video is rescored. Returns the report's path."""
    from medgen_ray.config import DIMENSIONS, load_config

    df = read_per_video(output)
    if not len(df):
        raise FileNotFoundError(f"evaluate output {output!r} has no per-video scores")
    dims = [d for d in DIMENSIONS if f"score_{d}" in df]
    cfg = load_config(None, [f"evaluate.output={output}", f"evaluate.dimensions=[{','.join(dims)}]",
                             f"evaluate.ratings=[{ratings_csv}]"]).evaluate
    return write_totals(output, df, cfg, study)["report"]


def run_evaluate(app: AppConfig) -> dict[str, Any]:
    """Med-VBench: generate (unless scoring a folder), score every video, aggregate, report."""
    from medgen_ray.evaluate.score import VideoScoreStage

    cfg = app.evaluate
    if cfg.videos:
        rows = folder_rows(cfg.videos)
    elif cfg.prompts:
        rows = generation_rows(cfg)
    else:
        raise ValueError("evaluate: give evaluate.prompts (a prompt file) or evaluate.videos (a folder of mp4s)")
    if not cfg.videos and not cfg.url and app.serve.generator.parallel.ranks > 1:
        raise ValueError(f"evaluate: offline generation runs one device per actor; serve.generator.parallel asks "
                         f"for {app.serve.generator.parallel.ranks} ranks: deploy the service with it "
                         "(`medgen serve`) and set evaluate.url")
    if not cfg.videos and not cfg.url:
        unknown = [m.adapter for m in cfg.models if m.adapter != "base" and m.adapter not in app.serve.adapters]
        if unknown:
            raise ValueError(f"evaluate.models: adapters {unknown} are not in serve.adapters "
                             f"({sorted(app.serve.adapters)})")
    if cfg.ratings:
        ratings_by_model(cfg.ratings)  # a bad ratings file fails now, not after hours of scoring
    if cfg.prompt_classifier is not None:
        from medgen_ray.evaluate.categories import assign_prompt_categories

        rows = assign_prompt_categories(rows, cfg.prompt_classifier, cfg.output)
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
    dataflow.start_ray(app.ray)
    if todo:
        # one pipeline: a generation failure reaches the sink as that video's error
        ds = dataflow.rows_dataset(todo)
        if not cfg.videos and cfg.url:
            token = cfg.token or os.environ.get("MEDGEN_SERVE_TOKEN")
            ds = dataflow.map_stage(ds, "GenerateRemote", lambda: RemoteGenerateStage(cfg, token), batch_size=1,
                                    num_cpus=0.1, memory_mb=dataflow.WRITER_MEMORY_MB)
        elif not cfg.videos:
            ds = dataflow.map_stage(ds, "Generate", lambda: GenerateStage(app), batch_size=1, pool=cfg.generator_pool,
                                    num_cpus=cfg.generator_pool.num_cpus)
        ds = dataflow.map_stage(ds, "Score", lambda: VideoScoreStage(cfg), batch_size=1, pool=cfg.pool,
                                num_cpus=cfg.pool.num_cpus)
        ds = dataflow.map_stage(ds, "WriteScores", lambda: (lambda b: write_scores(cfg.output, b)), batch_size=16,
                                num_cpus=0, memory_mb=dataflow.WRITER_MEMORY_MB)
        for _ in dataflow.stream(ds):
            pass
    df = read_per_video(cfg.output)
    totals = write_totals(cfg.output, df, cfg)
    per_model, per_category, page = totals["per_model"], totals["per_category"], totals["report"]
    for r in per_model:
        print("evaluate: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in r.items() if v is not None), file=sys.stdout)
    print(f"evaluate: report {page}", file=sys.stdout)
    return {"per_model": per_model, "per_category": per_category, "videos": int(len(df)), "report": page,
            "per_video": df}
