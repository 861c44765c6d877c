"""`medgen report DATASET`: one HTML page describing a curated dataset.

The funnel (like the paper's Fig. 4), score histograms with the configured thresholds marked,
category shares, the clip-duration histogram, and contact sheets (thumbnail grids) of kept
clips and of rejected clips per reason. Images are files beside `report.html`, so the page
opens from any static file server or the local disk. Reads the dataset part by part.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import cv2
import fsspec
import numpy as np

from medgen_ray.config import CurateConfig
from medgen_ray.core.parts import list_parts, read_part

# score column -> (threshold attribute path in CurateConfig, label); None: no threshold
SCORES = {
    "score_text_medical": ("metadata.threshold", "metadata classifier P(medical)"),
    "score_frame_medical": ("classify.threshold", "frame classifier P(medical), clip mean"),
    "score_min_similarity": ("segment.similarity_threshold", "min adjacent CLIP similarity"),
    "score_aesthetic": ("quality.aesthetic.min", "aesthetic (LAION scale)"),
    "score_technical": ("quality.technical.min", "technical quality"),
    "score_ocr_words": ("quality.ocr.max_words", "OCR words over sampled frames"),
    "score_motion": ("quality.motion.static_px", "motion (px/frame)"),
}
SHEET_COLS, SHEET_MAX = 6, 24


def _attr(cfg: CurateConfig, dotted: str) -> float | None:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return None if node is None else float(node)


def read_rows(output: str, name: str, columns: list[str]):
    """Rows (dicts of the given columns that exist) of every part of `<output>/<name>`, streamed."""
    fs, _ = fsspec.core.url_to_fs(output)
    for path in list_parts(output, name):
        table = read_part(fs, path)
        cols = [c for c in columns if c in table.column_names]
        yield from table.select(cols).to_pylist()


def _thumb(uri: str, width: int = 192) -> np.ndarray | None:
    import av

    from medgen_ray.core.decode import open_video
    from medgen_ray.core.errors import DataError

    try:
        with open_video(uri) as c:
            stream = c.streams.video[0]
            frames = stream.frames or 0
            target = max(0, frames // 2)
            for i, frame in enumerate(c.decode(stream)):
                if i >= target:
                    h = round(frame.height * width / frame.width) // 2 * 2
                    return frame.reformat(width=width, height=h, format="rgb24").to_ndarray()
    except (DataError, av.FFmpegError, OSError):  # decoration: an unreadable clip gets a grey tile
        return None
    return None


def contact_sheet(uris: list[str], path: Path, width: int = 192) -> int:
    """Write a JPEG grid of first frames of the given clips; returns how many were drawn."""
    tiles = [t for t in (_thumb(u, width) for u in uris[:SHEET_MAX])]
    h = max((t.shape[0] for t in tiles if t is not None), default=108)
    tiles = [cv2.resize(t, (width, h)) if t is not None else np.full((h, width, 3), 90, np.uint8) for t in tiles]
    if not tiles:
        return 0
    rows = math.ceil(len(tiles) / SHEET_COLS)
    sheet = np.full((rows * (h + 4), SHEET_COLS * (width + 4), 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, SHEET_COLS)
        sheet[r * (h + 4) : r * (h + 4) + h, c * (width + 4) : c * (width + 4) + width] = t
    cv2.imwrite(str(path), sheet[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    return len(tiles)


def _plots(folder: Path, summary: dict, scores: dict[str, list[float]], kept_scores: dict[str, list[float]],
           categories: Counter, durations: list[float], cfg: CurateConfig) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    funnel = summary.get("funnel", [])
    if funnel:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        labels = [f"{f['stage']}\n({f['level']})" for f in funnel]
        ax.bar(labels, [f["out"] for f in funnel], color=["#3b7dd8" if f["level"] == "video" else "#d8843b"
                                                          for f in funnel])
        for i, f in enumerate(funnel):
            ax.text(i, f["out"], str(f["out"]), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("remaining after stage")
        ax.set_title("Funnel: videos (blue) and clips (orange)")
        ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        fig.savefig(folder / "funnel.png", dpi=110)
        plt.close(fig)
        out.append(("funnel.png", "Curation funnel"))
    for col, values in scores.items():
        vals = [v for v in values if v is not None and not math.isnan(v)]
        if not vals:
            continue
        fig, ax = plt.subplots(figsize=(4.5, 3))
        kept = [v for v in kept_scores.get(col, []) if v is not None and not math.isnan(v)]
        thr = _attr(cfg, SCORES[col][0])  # None: score only (no threshold set)
        # One set of bins spanning the data and the threshold, so narrow spreads stay visible.
        lo, hi = min(min(vals), thr if thr is not None else min(vals)), max(max(vals), thr if thr is not None else max(vals))
        pad = max((hi - lo) * 0.05, 1e-3)
        bins = np.linspace(lo - pad, hi + pad, 31)
        ax.hist(vals, bins=bins, color="#bbbbbb", label="all scored")
        if kept:
            ax.hist(kept, bins=bins, color="#3b7dd8", alpha=0.8, label="kept")
        if thr is not None:
            ax.axvline(thr, color="#c62828", linestyle="--", label=f"threshold {thr:g}")
        ax.set_title(SCORES[col][1], fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"hist_{col}.png"
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        out.append((name, SCORES[col][1]))
    if categories:
        fig, ax = plt.subplots(figsize=(4.5, 3))
        ax.pie(list(categories.values()), labels=list(categories.keys()), autopct="%1.0f%%", textprops={"fontsize": 7})
        ax.set_title("Categories of kept clips", fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / "categories.png", dpi=100)
        plt.close(fig)
        out.append(("categories.png", "Category shares"))
    if durations:
        fig, ax = plt.subplots(figsize=(4.5, 3))
        ax.hist(durations, bins=np.arange(math.floor(min(durations)), math.ceil(max(durations)) + 1.5, 0.5),
                color="#3b7dd8")
        ax.set_xlabel("seconds")
        ax.set_title("Kept clip durations", fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / "durations.png", dpi=100)
        plt.close(fig)
        out.append(("durations.png", "Clip durations"))
    return out


def write_dataset_report(output: str, cfg: CurateConfig, dest: str | None = None) -> Path:
    """Write `<dest or output/report>/report.html` and its images; returns the page's path."""
    folder = Path(dest or f"{output.rstrip('/')}/report")
    folder.mkdir(parents=True, exist_ok=True)
    fs, root = fsspec.core.url_to_fs(output)
    summary = json.loads(fs.cat(f"{root}/summary.json")) if fs.exists(f"{root}/summary.json") else {}
    score_cols = list(SCORES)
    scores: dict[str, list[float]] = defaultdict(list)
    kept_scores: dict[str, list[float]] = defaultdict(list)
    categories: Counter = Counter()
    durations: list[float] = []
    kept_uris: list[str] = []
    for r in read_rows(output, "manifest", score_cols + ["category", "duration", "clip_uri"]):
        for c in score_cols:
            scores[c].append(r.get(c))
            kept_scores[c].append(r.get(c))
        if r.get("category"):
            categories[r["category"]] += 1
        durations.append(r.get("duration") or 0.0)
        if len(kept_uris) < SHEET_MAX:
            kept_uris.append(r["clip_uri"])
    rejected_by_reason: dict[str, list[str]] = defaultdict(list)
    reason_counts: Counter = Counter()
    for r in read_rows(output, "rejects", score_cols + ["clip_uri", "clip_id", "reject_stage", "reject_reason", "error"]):
        for c in score_cols:
            if r.get(c) is not None:
                scores[c].append(r.get(c))
        key = f"{r['reject_stage']}: {'error' if r.get('error') else 'rejected'}"
        reason_counts[key] += 1
        if r.get("clip_uri") and len(rejected_by_reason[key]) < SHEET_MAX:
            rejected_by_reason[key].append(r["clip_uri"])
    plots = _plots(folder, summary, scores, kept_scores, categories, durations, cfg)
    sheets = []
    if contact_sheet(kept_uris, folder / "sheet_kept.jpg"):
        sheets.append(("sheet_kept.jpg", f"Kept clips (first {min(len(kept_uris), SHEET_MAX)})"))
    for k, (reason, uris) in enumerate(sorted(rejected_by_reason.items())):
        name = f"sheet_rejected_{k}.jpg"
        if contact_sheet(uris, folder / name):
            sheets.append((name, f"Rejected — {reason} ({reason_counts[reason]} in all)"))
    page = folder / "report.html"
    page.write_text(_html(output, summary, plots, sheets, reason_counts))
    return page


def _html(output: str, summary: dict, plots: list[tuple[str, str]], sheets: list[tuple[str, str]],
          reasons: Counter) -> str:
    e = html.escape
    head = (f"<h1>Dataset report</h1><p><code>{e(output)}</code></p><p>inputs {summary.get('inputs', '?')}: "
            f"kept {summary.get('videos_kept', '?')}, rejected {summary.get('videos_rejected', '?')}, "
            f"errored {summary.get('videos_errored', '?')} &middot; clips kept {summary.get('clips_kept', '?')} of "
            f"{summary.get('candidate_clips', '?')} candidates, {summary.get('kept_seconds', 0):.0f} s</p>")
    table = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in reasons.most_common())
    figs = "".join(f'<figure><img src="{e(n)}" alt="{e(t)}"><figcaption>{e(t)}</figcaption></figure>' for n, t in plots)
    sh = "".join(f'<figure class="sheet"><img src="{e(n)}" alt="{e(t)}"><figcaption>{e(t)}</figcaption></figure>'
                 for n, t in sheets)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>medgen dataset report</title><style>"
            "body{font-family:sans-serif;margin:24px;max-width:1400px}figure{display:inline-block;margin:8px;"
            "vertical-align:top}figure.sheet{display:block}img{border:1px solid #ddd}table{border-collapse:collapse}"
            "td{border:1px solid #ddd;padding:2px 8px}img.broken{outline:3px solid red}</style>"
            # Broken images are outlined, and <body data-images> says how many loaded (k/n).
            "<script>addEventListener('load',()=>{const im=[...document.images];im.forEach(i=>{if(!i.complete||"
            "!i.naturalWidth)i.classList.add('broken')});document.body.dataset.images="
            "im.filter(i=>i.complete&&i.naturalWidth).length+'/'+im.length})</script></head><body>" + head + "<h2>Charts</h2>" + figs +
            "<h2>Rejections by stage</h2><table>" + table + "</table><h2>Contact sheets</h2>" + sh +
            "</body></html>")
