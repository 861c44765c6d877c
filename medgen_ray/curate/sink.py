"""Dataset output: Parquet parts for kept clips and rejects, resume state, and the funnel.

Layout under the output folder (local or s3://):
  manifest/part-*.parquet   one row per kept clip (MANIFEST_SCHEMA)
  rejects/part-*.parquet    one row per rejected or errored source or clip (REJECTS_SCHEMA)
  clips/<video_id>/<clip_id>.mp4
  summary.json              funnel counts per stage

Every row carries `n_candidates`, the number of candidate clips its source produced (0 when
the source ended whole), so a source is finished exactly when its distinct clip rows across
both tables number max(n_candidates, 1). A killed run leaves some sources unfinished; on
resume their stray rows are removed from the parts (one part file at a time) and they are
processed again, which gives the same rows as an uninterrupted run and no duplicate clip ids.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter, defaultdict
from typing import Any, Iterator

import fsspec
import numpy as np
import pyarrow as pa

from medgen_ray.core.batch import Batch, batch_len
from medgen_ray.core.parts import list_parts, read_part, table_from_batch, write_table_atomic
from medgen_ray.schema import (
    CLIP_ID,
    CLIP_STAGES,
    ERROR,
    MANIFEST_SCHEMA,
    N_CANDIDATES,
    REJECT_REASON,
    REJECT_STAGE,
    REJECTS_SCHEMA,
    T_END,
    T_START,
    VIDEO_ID,
    VIDEO_STAGES,
)

PIPELINE_VERSION = "medgen_ray 0.1.0"


def _fs(output: str):
    return fsspec.core.url_to_fs(output)


def _provenance(batch: Batch, i: int) -> str:
    return json.dumps({
        "source_url": str(batch.get("source_url", [""] * (i + 1))[i]),
        "source_uri": str(batch["source_uri"][i]),
        "license": str(batch.get("license", [""] * (i + 1))[i]),
        "channel": str(batch.get("channel", [""] * (i + 1))[i]),
        "span": [float(batch[T_START][i]), float(batch[T_END][i])],
        "pipeline": PIPELINE_VERSION,
    }, sort_keys=True)


def split_batch(batch: Batch) -> tuple[pa.Table, pa.Table]:
    """(manifest table, rejects table) of a batch: kept clips versus rejected or errored rows."""
    n = batch_len(batch)
    reason, error = batch.get(REJECT_REASON), batch.get(ERROR)
    clip = batch.get(CLIP_ID, np.full(n, "", dtype=object))
    kept = np.array([not reason[i] and not error[i] and bool(clip[i]) for i in range(n)], dtype=bool)
    batch = dict(batch)
    if n:
        prov = np.empty(n, dtype=object)
        for i in np.flatnonzero(kept):
            prov[i] = _provenance(batch, i)
        batch["provenance"] = prov
        if "duration" in batch and T_START in batch:
            batch["duration"] = np.array(
                [float(batch[T_END][i]) - float(batch[T_START][i]) if kept[i] else float(batch["duration"][i])
                 for i in range(n)]
            )
    return table_from_batch(batch, np.flatnonzero(kept), MANIFEST_SCHEMA), table_from_batch(batch, np.flatnonzero(~kept), REJECTS_SCHEMA)


def write_batch(output: str, batch: Batch) -> dict[str, int]:
    """Write one batch's kept and rejected rows as parts; returns row counts."""
    fs, root = _fs(output)
    manifest, rejects = split_batch(batch)
    part = uuid.uuid4().hex[:16]
    for name, table in (("rejects", rejects), ("manifest", manifest)):
        if table.num_rows:
            fs.makedirs(f"{root}/{name}", exist_ok=True)
            write_table_atomic(fs, f"{root}/{name}/part-{part}.parquet", table)
    errors = [e for e in batch.get(ERROR, []) if e]
    videos = sorted({str(v) for v in batch.get(VIDEO_ID, []) if v})
    return {"kept": manifest.num_rows, "rejected": rejects.num_rows - len(errors), "errored": len(errors),
            "videos": "\n".join(videos)}


def _iter_tables(output: str, columns: list[str]) -> Iterator[tuple[str, str, pa.Table]]:
    fs, _ = _fs(output)
    for name in ("manifest", "rejects"):
        for path in list_parts(output, name):
            yield name, path, read_part(fs, path, columns)


def source_progress(output: str) -> tuple[set[str], set[str]]:
    """(finished video ids, unfinished video ids) from what the parts hold."""
    clips: dict[str, set[str]] = defaultdict(set)
    expected: dict[str, int] = {}
    for _, _, t in _iter_tables(output, [VIDEO_ID, CLIP_ID, N_CANDIDATES]):
        d = t.to_pydict()
        for vid, cid, n in zip(d[VIDEO_ID], d[CLIP_ID], d[N_CANDIDATES]):
            clips[vid].add(cid)
            expected[vid] = max(expected.get(vid, 0), int(n or 0))
    finished = {v for v, ids in clips.items() if len(ids - {""} if expected[v] else ids) >= max(expected[v], 1)}
    return finished, set(clips) - finished


def _filter_parts(output: str, keep_row) -> int:
    """Rewrite every part without the rows `keep_row(video_id, clip_id)` refuses, one file at a
    time (a part left empty is deleted). Returns rows removed."""
    fs, _ = _fs(output)
    removed = 0
    for name in ("manifest", "rejects"):
        for path in list_parts(output, name):
            t = read_part(fs, path)
            keep = np.array([keep_row(v, c) for v, c in zip(t.column(VIDEO_ID).to_pylist(),
                                                             t.column(CLIP_ID).to_pylist())], dtype=bool)
            if keep.all():
                continue
            removed += int((~keep).sum())
            if keep.any():
                write_table_atomic(fs, path, t.filter(pa.array(keep)))
            else:
                fs.rm(path)
    return removed


def drop_unfinished(output: str, unfinished: set[str]) -> int:
    """Remove rows of unfinished sources from the parts. Returns rows removed."""
    if not unfinished:
        return 0
    return _filter_parts(output, lambda vid, _: vid not in unfinished)


def drop_duplicates(output: str) -> int:
    """Keep one row per (video_id, clip_id) across all parts. A write task re-executed after a
    node loss (Ray rebuilds lost blocks from lineage) writes its rows again into a new part;
    this pass removes the repeats. Returns rows removed."""
    seen: set[tuple[str, str]] = set()

    def first(vid: str, cid: str) -> bool:
        if (vid, cid) in seen:
            return False
        seen.add((vid, cid))
        return True

    return _filter_parts(output, first)


def build_summary(output: str, n_inputs: int | None = None,
                  stages: tuple[str, ...] = VIDEO_STAGES) -> dict[str, Any]:
    """Funnel and outcome counts, streamed part by part from disk (nothing held but counters)."""
    video_outcome: dict[str, str] = {}
    video_stage: dict[str, str] = {}
    clip_rejects: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    candidates = kept = 0
    kept_seconds = 0.0
    rank = {"kept": 3, "errored": 2, "rejected": 1}
    fs, _ = _fs(output)
    for path in list_parts(output, "manifest"):
        d = read_part(fs, path, [VIDEO_ID, T_START, T_END]).to_pydict()
        for vid, a, b in zip(d[VIDEO_ID], d[T_START], d[T_END]):
            kept += 1
            candidates += 1
            kept_seconds += b - a
            video_outcome[vid] = "kept"
    for path in list_parts(output, "rejects"):
        d = read_part(fs, path, [VIDEO_ID, CLIP_ID, REJECT_STAGE, REJECT_REASON, ERROR]).to_pydict()
        for vid, cid, stage, reason, err in zip(d[VIDEO_ID], d[CLIP_ID], d[REJECT_STAGE], d[REJECT_REASON], d[ERROR]):
            outcome = "errored" if err else "rejected"
            reasons[_reason_key(err or reason)] += 1
            if cid:
                candidates += 1
                clip_rejects[stage] += 1
                outcome = "rejected" if not err else "errored"
            else:
                video_stage[vid] = stage
            if rank[outcome] > rank.get(video_outcome.get(vid, ""), 0):
                video_outcome[vid] = outcome
    outcomes = Counter(video_outcome.values())
    funnel, remaining = [], len(video_outcome)
    stage_counts = Counter(video_stage.values())
    for stage in stages:
        out_n = remaining - stage_counts.get(stage, 0)
        funnel.append({"stage": stage, "level": "video", "in": remaining, "out": out_n})
        remaining = out_n
    clip_in = candidates
    for stage in [s for s in CLIP_STAGES if s in clip_rejects] + sorted(set(clip_rejects) - set(CLIP_STAGES)):
        funnel.append({"stage": stage, "level": "clip", "in": clip_in, "out": clip_in - clip_rejects[stage]})
        clip_in -= clip_rejects[stage]
    summary = {
        "inputs": n_inputs if n_inputs is not None else len(video_outcome),
        "videos_seen": len(video_outcome),
        "videos_kept": outcomes.get("kept", 0),
        "videos_rejected": outcomes.get("rejected", 0),
        "videos_errored": outcomes.get("errored", 0),
        "candidate_clips": candidates,
        "clips_kept": kept,
        "kept_seconds": round(kept_seconds, 3),
        "funnel": funnel,
        "reasons": dict(reasons.most_common()),
    }
    summary["accounted"] = (
        summary["videos_kept"] + summary["videos_rejected"] + summary["videos_errored"] == summary["inputs"]
    )
    return summary


def _reason_key(text: str) -> str:
    """Group reasons by their wording, not by their numbers or names."""
    head = text.split(" (", 1)[0]
    return re.sub(r"(?<![\w.])\d+(\.\d+)?(?![\w.])", "#", head)[:120]


LISTING = "listing"  # <output>/listing/part-*.parquet: every video a yt-dlp request listed


def write_listing(output: str, batch: Batch) -> Batch:
    """Record the video ids a listing step produced (the curation's inputs when the source is a
    search); returns the batch unchanged."""
    if not batch_len(batch):
        return batch
    fs, root = _fs(output)
    fs.makedirs(f"{root}/{LISTING}", exist_ok=True)
    table = pa.table({VIDEO_ID: [str(v) for v in batch[VIDEO_ID]]})
    write_table_atomic(fs, f"{root}/{LISTING}/part-{uuid.uuid4().hex[:16]}.parquet", table)
    return batch


def count_listed(output: str) -> int:
    """Distinct video ids ever listed into this dataset (reruns list again: counted once)."""
    fs, _ = _fs(output)
    ids: set[str] = set()
    for path in list_parts(output, LISTING):
        ids.update(read_part(fs, path, [VIDEO_ID]).column(VIDEO_ID).to_pylist())
    return len(ids)


def write_summary(output: str, summary: dict[str, Any]) -> None:
    """Write summary.json into the dataset folder."""
    fs, root = _fs(output)
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/summary.json", "w") as fh:
        json.dump(summary, fh, indent=1)
