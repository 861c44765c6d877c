"""Med-VBench report: the table (ours and any published reference rows), bar and radar charts
per dimension, and thumbnails of the generated videos; HTML and markdown."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

import fsspec
import numpy as np

from medgen_ray.config import EvaluateConfig
from medgen_ray.core.charts import png_bytes, pyplot
from medgen_ray.core.errors import DATA_ERRORS

COLUMNS = ["total", "imaging_quality", "subject_consistency", "background_consistency", "motion_smoothness",
           "warping_error", "dynamic_degree", "text_alignment", "aesthetic", "medical_frames", "warping_auto",
           "videoscore_visual_quality", "videoscore_temporal_consistency", "videoscore_dynamic_degree",
           "videoscore_text_alignment", "videoscore_factual_consistency", "videoscore_total"]
STRATA_TITLES = {"prompt": "By prompt category (prompt file)", "clip": "By clip category (text classifier)"}
RADAR = ["imaging_quality", "subject_consistency", "background_consistency", "motion_smoothness",
         "dynamic_degree", "text_alignment"]


def load_reference(path: str) -> list[dict[str, Any]]:
    """Published Med-VBench rows (Table 2 format) to show beside ours."""
    with fsspec.open(path, "r") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        item: dict[str, Any] = {"model": f"{r['model']} (published)"}
        for c in COLUMNS:
            if r.get(c) not in (None, ""):
                item[c] = float(r[c])
        out.append(item)
    return out


def _fmt(v: Any, row: dict[str, Any] | None = None, col: str = "") -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    lo, hi = (row or {}).get(f"{col}_lo"), (row or {}).get(f"{col}_hi")
    if lo is not None and hi is not None and not np.isnan(lo) and hi > lo:
        return f"{v:.2f} ± {(hi - lo) / 2:.2f}"
    return f"{v:.2f}"


def charts(rows: list[dict[str, Any]]) -> dict[str, bytes]:
    """Bar and radar charts of the per-model scores, as PNG bytes by file name."""
    plt = pyplot()
    dims = [d for d in COLUMNS if any(r.get(d) is not None for r in rows) and d != "warping_auto"
            and not d.startswith("videoscore_")]  # per cent only: VideoScore's 1-4 scale is in the table
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(dims)), 3.8))
    width = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        ax.bar(np.arange(len(dims)) + i * width, [r.get(d) or 0 for d in dims], width, label=r["model"])
    ax.set_xticks(np.arange(len(dims)) + 0.4 - width / 2, [d.replace("_", "\n") for d in dims], fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = {"bars.png": png_bytes(fig)}
    radar = [d for d in RADAR if any(r.get(d) is not None for r in rows)]
    if len(radar) >= 3:
        ang = np.linspace(0, 2 * np.pi, len(radar), endpoint=False).tolist()
        fig = plt.figure(figsize=(5, 5))
        ax = fig.add_subplot(polar=True)
        for r in rows:
            vals = [r.get(d) or 0 for d in radar]
            ax.plot(ang + ang[:1], vals + vals[:1], label=r["model"])
        ax.set_xticks(ang, [d.replace("_", "\n") for d in radar], fontsize=7)
        ax.legend(fontsize=6, loc="lower right")
        out["radar.png"] = png_bytes(fig)
    return out


def thumbnails(df, per_model: int = 6) -> tuple[dict[str, bytes], list[str]]:
    """JPEG thumbnails of the first videos of each model, and one line per video that could not
    be read (its scores row holds the error too)."""
    from PIL import Image

    from medgen_ray.core.decode import open_video

    out, failed = {}, []
    for _, g in df.groupby("model", sort=False):
        for _, r in g.head(per_model).iterrows():
            try:
                with open_video(str(r["video_uri"])) as c:
                    frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
            except (*DATA_ERRORS, OSError, StopIteration) as exc:
                failed.append(f"{r['video_id']}: {exc or type(exc).__name__}")
                continue
            buf = io.BytesIO()
            img = Image.fromarray(frame)
            img.thumbnail((200, 200))
            img.save(buf, format="JPEG", quality=85)
            out[f"thumbs/{str(r['video_id']).replace('/', '__')}.jpg"] = buf.getvalue()
    return out, failed


def write_eval_report(output: str, rows: list[dict[str, Any]], df, cfg: EvaluateConfig,
                      per_category: list[dict[str, Any]] | None = None, study: dict[str, Any] | None = None) -> str:
    """Write report.html, report.md, charts and thumbnails (and the doctors' study's Fig. 6 and
    kappa tables when `study` is given); returns the HTML path."""
    ref = load_reference(cfg.reference_csv) if cfg.reference_csv else []
    table = rows + ref
    thumbs_files, unreadable = thumbnails(df)
    files = {**charts(table), **thumbs_files}
    if study and study["fig6"]:
        from medgen_ray.evaluate.study_report import fig6_chart

        files["fig6.png"] = fig6_chart(study["fig6"])
    fs, root = fsspec.core.url_to_fs(output)
    root = root.rstrip("/")
    for name, data in files.items():
        fs.makedirs(f"{root}/{name.rsplit('/', 1)[0]}" if "/" in name else root, exist_ok=True)
        with fs.open(f"{root}/{name}", "wb") as fh:
            fh.write(data)
    cols = ["model", "videos", *[c for c in COLUMNS if any(r.get(c) is not None for r in table)]]
    md = ["# Med-VBench", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table:
        md.append("| " + " | ".join(str(r.get(c, "")) if c in ("model", "videos") else _fmt(r.get(c), r, c)
                                    for c in cols) + " |")
    note = ("Per cent (VBench's six dimensions as VBench 0.1.5 computes them) except warping_auto (ours: mean "
            "squared error x100 after "
            "flow warping; lower is better); ± is half the 95% bootstrap interval over prompts. "
            "warping_error is the raters' share of distorted videos; "
            "total = (IQ + SC + BC + MS + (100 - WE)) / 6, only with ratings. videoscore_* are VideoScore v1.1's "
            "aspects on its 1-4 scale; videoscore_total = (VQ + TC + T2VA + FC + (100 - WE) / 25) / 6, only "
            "with ratings (a fit to the paper's Table 8, not a formula the paper states).")
    md += ["", note, "",
           "![bars](bars.png)", "![radar](radar.png)" if "radar.png" in files else ""]
    strata = ""
    for by, title in STRATA_TITLES.items():
        group = [r for r in per_category or [] if r.get("by", "prompt") == by]
        if not group:
            continue
        dims = [d for d in COLUMNS if any(r.get(d) is not None for r in group)]
        md += ["", f"## {title}", "", "| model | category | videos | " + " | ".join(dims) + " |",
               "|" + "---|" * (3 + len(dims))]
        for r in group:
            md.append(f"| {r['model']} | {r['category']} | {r['videos']} | "
                      + " | ".join(_fmt(r.get(d), r, d) for d in dims) + " |")
        head2 = "".join(f"<th>{html.escape(c)}</th>" for c in ["model", "category", "videos", *dims])
        body2 = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in ("model", "category", "videos"))
                        + "".join(f"<td>{html.escape(_fmt(r.get(d), r, d))}</td>" for d in dims) + "</tr>"
                        for r in group)
        strata += f'<h2>{html.escape(title)}</h2><table id="strata-{by}" class="strata"><tr>{head2}</tr>{body2}</table>'
    if study:
        from medgen_ray.evaluate.study_report import study_markdown

        md += ["", study_markdown(study)]
    if unreadable:
        md += ["", "## Videos without a thumbnail (unreadable)", "", *(f"- {line}" for line in unreadable)]
    with fs.open(f"{root}/report.md", "w") as fh:
        fh.write("\n".join(md) + "\n")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(
        f"<td>{html.escape(str(r.get(c, '')) if c in ('model', 'videos') else _fmt(r.get(c), r, c))}</td>" for c in cols)
        + "</tr>" for r in table)
    thumbs = "".join(f'<figure><img src="{n}" alt=""><figcaption>{html.escape(n[7:-4].replace("__", "/"))}'
                     f"</figcaption></figure>" for n in files if n.startswith("thumbs/"))
    unreadable_html = ('<h2>Videos without a thumbnail (unreadable)</h2><ul id="unreadable">'
                       + "".join(f"<li>{html.escape(line)}</li>" for line in unreadable) + "</ul>") if unreadable else ""
    from medgen_ray.evaluate.study_report import study_html

    study_section = study_html(study) if study else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Med-VBench</title><style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
figure{{display:inline-block;margin:4px;font-size:11px}}</style></head><body>
<h1>Med-VBench</h1><table><tr>{head}</tr>{body}</table>
<p>{html.escape(note)}</p><img src="bars.png" alt="bars">{'<img src="radar.png" alt="radar">' if 'radar.png' in files else ''}
{strata}{study_section}{unreadable_html}
<h2>Generated videos</h2><div id="thumbs" data-count="{len([n for n in files if n.startswith('thumbs/')])}">{thumbs}</div>
</body></html>"""
    with fs.open(f"{root}/report.html", "w") as fh:
        fh.write(page)
    return f"{output.rstrip('/')}/report.html"
