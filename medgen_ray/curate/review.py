"""`medgen review`: draw clips per stage for human QA, then score the verdicts.

`draw` samples N rows at random (seeded) from the kept clips (`--stage kept`) or from the rows
a stage rejected (`--stage ocr`, ...), and writes `review/<stage>.csv` (fill the `verdict`
column with clean / slightly noisy / noisy) beside an HTML page of thumbnails.
`score` reads the filled CSV and reports the clean rate and the acceptable rate (clean or
slightly noisy); the MedGen paper accepted a stage when >= 95% of 200 samples were "clean or
slightly noisy".
"""

from __future__ import annotations

import csv
import html
import random
from collections import Counter
from pathlib import Path

from medgen_ray.curate.dataset_report import contact_sheet, read_rows

VERDICTS = ("clean", "slightly noisy", "noisy")
ACCEPT_RATE = 0.95  # the paper: >= 95% of samples "clean or slightly noisy"


def draw_review(output: str, stage: str, sample: int, seed: int = 0) -> Path:
    """Write a review sheet (CSV + contact sheet) of a random sample of one stage's decisions; returns the CSV path."""
    cols = ["clip_id", "video_id", "clip_uri", "source_uri", "reject_stage", "reject_reason", "caption_brief"]
    if stage == "kept":
        pool = list(read_rows(output, "manifest", cols))
    else:
        pool = [r for r in read_rows(output, "rejects", cols) if r.get("reject_stage") == stage]
    if not pool:
        raise ValueError(f"review: no rows for stage {stage!r} in {output}")
    picked = random.Random(seed).sample(pool, min(sample, len(pool)))
    folder = Path(output) / "review"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stage}.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["n", "clip_id", "video_id", "uri", "reason", "verdict"])
        for k, r in enumerate(picked):
            w.writerow([k, r.get("clip_id", ""), r.get("video_id", ""), r.get("clip_uri") or r.get("source_uri", ""),
                        r.get("reject_reason", ""), ""])
    uris = [r.get("clip_uri") for r in picked if r.get("clip_uri")]
    sheet = folder / f"{stage}.jpg"
    n = contact_sheet(uris, sheet) if uris else 0
    rows = "".join(f"<tr><td>{k}</td><td>{html.escape(r.get('clip_id') or r.get('video_id', ''))}</td>"
                   f"<td>{html.escape(r.get('reject_reason', '') or r.get('caption_brief', '') or '')}</td></tr>"
                   for k, r in enumerate(picked))
    img = f'<img src="{sheet.name}" alt="thumbnails">' if n else ""
    (folder / f"{stage}.html").write_text(
        f"<!doctype html><meta charset='utf-8'><h1>Review: {html.escape(stage)}</h1><p>{len(picked)} samples; "
        f"thumbnails in order (first {n}). Record verdicts in {path.name}.</p>{img}<table>{rows}</table>")
    return path


def score_review(csv_path: str) -> dict[str, object]:
    """Agreement of a filled review sheet with the pipeline's decisions."""
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    verdicts = [(r.get("verdict") or "").strip().lower() for r in rows]
    bad = sorted({v for v in verdicts if v and v not in VERDICTS})
    if bad:
        raise ValueError(f"{csv_path}: verdicts {bad} are not one of {', '.join(VERDICTS)}")
    done = [v for v in verdicts if v]
    counts = Counter(done)
    rate = counts["clean"] / len(done) if done else 0.0
    acceptable = (counts["clean"] + counts["slightly noisy"]) / len(done) if done else 0.0
    return {"reviewed": len(done), "of": len(rows), "counts": dict(counts), "clean_rate": round(rate, 4),
            "acceptable_rate": round(acceptable, 4),
            "accepted": bool(done) and len(done) == len(rows) and acceptable >= ACCEPT_RATE}
