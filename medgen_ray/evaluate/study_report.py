"""The doctors' study's report pieces: Fig. 6's stacked bars, its table and the kappa table as
markdown and HTML (the study's own report and the Med-VBench report's study section)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np


def fig6_chart(rows: list[dict[str, Any]]) -> bytes:
    """Fig. 6's stacked bars: per model pair and aspect, wins / both lose / losses / splits."""
    from medgen_ray.core.charts import png_bytes, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(3, len(rows)) + 1))
    labels = [f"{r['focus']} vs {r['other']} · {r['aspect'].replace('_', ' ')}" for r in rows]
    left = np.zeros(len(rows))
    for v, colour in (("win", "#2e7d32"), ("both_lose", "#9e9e9e"), ("loss", "#c62828"), ("split", "#ffca28")):
        vals = np.array([r[v] for r in rows], dtype=float)
        ax.barh(labels, vals, left=left, color=colour, label=v.replace("_", " "))
        left += vals
    ax.invert_yaxis()
    ax.set_xlabel("tasks")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    return png_bytes(fig)


def study_html(study: dict[str, Any]) -> str:
    """The doctors' study section of the report: Fig. 6's table and bars, the kappa table."""
    def cell(r: dict[str, Any], v: str) -> str:
        return f"{r[v]} ({100 * r[v] / max(1, r['tasks']):.0f}%)"

    fig6 = "".join(f"<tr><td>{html.escape(r['focus'])} vs {html.escape(r['other'])}</td><td>{html.escape(r['aspect'])}"
                   f"</td><td>{r['tasks']}</td><td>{cell(r, 'win')}</td><td>{cell(r, 'both_lose')}</td>"
                   f"<td>{cell(r, 'loss')}</td><td>{r['split']}</td></tr>" for r in study["fig6"])
    kappa = "".join(f"<tr><td>{html.escape(k['task'])}</td><td>{html.escape(k['raters'])} ({k['kind']})</td>"
                    f"<td>{k['kappa']:.3f}</td><td>{k['items']}</td></tr>" for k in study["kappa"])
    return (f"<h2>Doctors' study {html.escape(study['study_id'])}</h2><table id=\"fig6\"><tr><th>pair</th>"
            "<th>aspect</th><th>tasks</th><th>wins</th><th>both lose</th><th>losses</th><th>split</th></tr>"
            f"{fig6}</table><img src=\"fig6.png\" alt=\"Fig. 6\"><table id=\"kappa\"><tr><th>task</th>"
            f"<th>raters</th><th>kappa</th><th>items</th></tr>{kappa}</table>")


def study_markdown(result: dict[str, Any]) -> str:
    """The study's tables as markdown (the eval report embeds the same)."""
    lines = [f"## Doctors' study {result['study_id']} (focus: {result['focus']})", "",
             "| pair | aspect | tasks | wins | both lose | losses | split |", "|---|---|---|---|---|---|---|"]
    def share(r: dict[str, Any], v: str) -> str:
        return f"{r[v]} ({100 * r[v] / r['tasks']:.0f}%, {100 * r[v + '_lo']:.0f}–{100 * r[v + '_hi']:.0f})"

    for r in result["fig6"]:
        lines.append(f"| {r['focus']} vs {r['other']} | {r['aspect']} | {r['tasks']} | {share(r, 'win')} | "
                     f"{share(r, 'both_lose')} | {share(r, 'loss')} | {r['split']} |")
    lines += ["", "![Fig. 6](fig6.png)", "", "| task | raters | kappa | items |", "|---|---|---|---|"]
    for k in result["kappa"]:
        lines.append(f"| {k['task']} | {k['raters']} ({k['kind']}) | {k['kappa']:.3f} | {k['items']} |")
    lines += ["", "| model | warping error (% of videos with >= 2 moderate/severe) |", "|---|---|"]
    lines += [f"| {m} | {v:.2f} |" for m, v in result["warping_error"].items()]
    if result["gap_counts"]:
        lines += ["", "Gaps (kept out of every count above):", ""]
        lines += [f"- {g['rater']}: {g['tasks']} task(s) {g['gap']}" for g in result["gap_counts"]]
    return "\n".join(lines) + "\n"
