"""An experiment's comparison: paired statistics of every arm against the reference (overall
and per prompt category, held-in and held-out categories told apart), the data-mix trade-off,
and the report (experiment.md + experiment.html with the loss, category and mix charts).

All intervals are 95% bootstrap intervals over prompts; differences are paired (the same
prompts, the same seeds), so prompt difficulty cancels.
"""

from __future__ import annotations

import html
import json
import sys
from typing import Any

import fsspec
import numpy as np

from medgen_ray.core.charts import png_bytes, pyplot
from medgen_ray.evaluate.stats import paired_difference_ci

MIX_DIMS = ("subject_consistency", "background_consistency", "motion_smoothness", "medical_frames")
Interval = list  # [mean, low, high]


def _ok(df):
    return df[df["error"].fillna("") == ""] if "error" in df else df


def _paired(df, arm: str, ref: str, dims: list[str], seed: int, prompts: set | None = None) -> dict[str, Interval]:
    a = df[df["model"] == arm].set_index("prompt_index")
    b = df[df["model"] == ref].set_index("prompt_index")
    common = sorted((set(a.index) & set(b.index)) & (prompts if prompts is not None else set(a.index)))
    out: dict[str, Interval] = {}
    for d in dims:
        col = f"score_{d}"
        if common and col in df:
            out[d] = list(paired_difference_ci(a.loc[common, col].to_numpy(float), b.loc[common, col].to_numpy(float),
                                               seed=seed))
    return out


def category_column(df) -> str | None:
    """The text classifier's clip categories when the prompts have them, else the prompt file's."""
    for col in ("clip_category", "category"):
        if col in df and (df[col].fillna("") != "").any():
            return col
    return None


def compare_arms(df, arms: dict[str, dict[str, Any]], reference: str, dims: list[str],
                 seed: int) -> dict[str, Any]:
    """vs_reference (arm -> dim -> interval), by_category rows, and mix rows (when any arm mixes;
    from each arm's `medvbench` row)."""
    ok = _ok(df)
    others = [a for a in arms if a != reference]
    vs = {a: _paired(ok, a, reference, dims, seed) for a in others}
    col = category_column(ok)
    by_category: list[dict[str, Any]] = []
    if col is not None and "prompt_index" in ok:
        ref_rows = ok[ok["model"] == reference]
        cat_of = dict(zip(ref_rows["prompt_index"], ref_rows[col].fillna("")))
        cats = sorted({c for c in cat_of.values() if c})
        for a in others:
            held_in = set(arms[a].get("categories") or [])
            groups = [(c, {p for p, k in cat_of.items() if k == c},
                       ("in" if c in held_in else "out") if held_in else "") for c in cats]
            if held_in:
                groups += [("all held-in", {p for p, k in cat_of.items() if k in held_in}, "in"),
                           ("all held-out", {p for p, k in cat_of.items() if k and k not in held_in}, "out")]
            for c, prompts, held in groups:
                diffs = _paired(ok, a, reference, dims, seed, prompts)
                by_category.append({"arm": a, "category": c, "held": held, "prompts": len(prompts), "diffs": diffs})
    mix: list[dict[str, Any]] = []
    if any((info.get("share") or 0) > 0 for info in arms.values()):
        for a, info in sorted(arms.items(), key=lambda kv: kv[1].get("share") or 0):
            mv = info.get("medvbench") or {}  # the evaluation's own means and intervals
            own, mixed = info.get("clips") or 0, info.get("mixed_in") or 0
            mix.append({"arm": a, "share": info.get("share") or 0.0,
                        "actual_share": mixed / (own + mixed) if own + mixed else 0.0,
                        "dims": {d: [mv[d], *(mv[d] if mv.get(f"{d}_{e}") is None else mv[f"{d}_{e}"]
                                              for e in ("lo", "hi"))]
                                 for d in MIX_DIMS if d in dims and mv.get(d) is not None}})
    return {"vs_reference": vs, "category_column": col, "by_category": by_category, "mix": mix}


def _iv(v: Interval | None, signed: bool = False) -> str:
    if not v or v[0] is None or np.isnan(v[0]):
        return "—"
    f = "{:+.2f}" if signed else "{:.2f}"
    if len(v) < 3 or v[1] is None or v[2] is None or np.isnan(v[1]):
        return f.format(v[0])
    return f"{f.format(v[0])} [{f.format(v[1])}, {f.format(v[2])}]"


def loss_plot(result: dict[str, Any]) -> bytes:
    """All trained arms' loss curves in one chart."""
    import csv

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, info in result["arms"].items():
        if not info.get("loss_csv"):
            continue
        with fsspec.open(info["loss_csv"], "r") as fh:
            rows = list(csv.DictReader(fh))
        ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], lw=1, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def category_plot(result: dict[str, Any], dims: list[str]) -> bytes:
    """Arm minus reference per category and dimension; held-out categories hatched."""
    plt = pyplot()
    rows = [r for r in result["by_category"] if not r["category"].startswith("all ")]
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    cats = list(dict.fromkeys(r["category"] for r in rows))
    dims = [d for d in dims if d != "warping_auto"]
    ncol = min(3, len(dims))
    nrow = -(-len(dims) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.8 * nrow), squeeze=False)
    width = 0.8 / max(1, len(arms))
    for ax, d in zip(axes.flat, dims):
        for i, a in enumerate(arms):
            for j, c in enumerate(cats):
                r = next((r for r in rows if r["arm"] == a and r["category"] == c), None)
                v = (r or {}).get("diffs", {}).get(d)
                if not v or np.isnan(v[0]):
                    continue
                ax.bar(j + i * width, v[0], width, yerr=[[v[0] - v[1]], [v[2] - v[0]]], capsize=2,
                       color=f"C{i}", hatch="//" if r["held"] == "out" else None,
                       label=a if j == 0 else None)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(d.replace("_", " "), fontsize=8)
        ax.set_xticks(np.arange(len(cats)) + 0.4 - width / 2, cats, fontsize=6, rotation=20)
    for ax in list(axes.flat)[len(dims):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"arm minus {result['reference']} per category (hatched: held out)", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)


def mix_plot(result: dict[str, Any]) -> bytes:
    """Scores against the general-data share, and consistency/smoothness against medical-frame share."""
    plt = pyplot()
    rows = result["mix"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    shares = [r["share"] for r in rows]
    for k, d in enumerate(MIX_DIMS):
        vals = [r["dims"].get(d) for r in rows]
        if not all(vals):
            continue
        m = np.array([v[0] for v in vals])
        err = np.array([[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]])
        a1.errorbar(shares, m, yerr=err, marker="o", capsize=3, label=d.replace("_", " "), color=f"C{k}")
        if d != "medical_frames" and all(r["dims"].get("medical_frames") for r in rows):
            x = [r["dims"]["medical_frames"][0] for r in rows]
            a2.plot(x, m, marker="o", label=d.replace("_", " "), color=f"C{k}")
            for xi, yi, s in zip(x, m, shares):
                a2.annotate(f"{s:.0%}", (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
    a1.set_xlabel("share of general clips")
    a1.set_ylabel("score")
    a1.legend(fontsize=6)
    a2.set_xlabel("medical-frame share (mean P(medical) of frames, %)")
    a2.set_ylabel("consistency / smoothness")
    a2.legend(fontsize=6)
    fig.tight_layout()
    return png_bytes(fig)


Section = tuple[str, list[str], list[list[str]], str]  # title, header, rows, note


def sections(result: dict[str, Any], dims: list[str]) -> list[Section]:
    """The experiment report's tables: (title, header, rows, note) per section."""
    ref = result["reference"]
    out: list[Section] = []
    arm_rows = ([("base", {"clips": "", "rank": "", "final_loss": None, "medvbench": result["base"]})]
                if result["base"] else []) + list(result["arms"].items())
    has_share = any((i.get("share") or 0) > 0 for _, i in arm_rows)
    head = ["arm", "clips", *(["general share"] if has_share else []), "rank", "final loss", *dims]
    rows = []
    for name, info in arm_rows:
        mv = info.get("medvbench") or {}
        rows.append([name, "" if info.get("clips") is None else str(info["clips"]),
                     *([("" if name == "base" else f"{info.get('share') or 0:.0%}")] if has_share else []),
                     "" if info.get("rank") is None else str(info["rank"]),
                     "" if info.get("final_loss") is None else f"{info['final_loss']:.4f}",
                     *[_iv([mv.get(d), mv.get(f"{d}_lo"), mv.get(f"{d}_hi")]) if mv.get(d) is not None else "—"
                       for d in dims]])
    out.append(("Arms", head, rows, "Scores: mean [95% bootstrap interval over prompts]."))
    vs = result["vs_reference"]
    if vs:
        out.append((f"Arm minus {ref}, paired over prompts", ["arm", *dims],
                    [[a, *[_iv(v.get(d), True) for d in dims]] for a, v in vs.items()],
                    "A difference whose interval excludes 0 is larger than the prompt-to-prompt noise."))
    if result["by_category"]:
        col = "clip categories from the text classifier" if result["category_column"] == "clip_category" \
            else "prompt categories from the prompt file"
        out.append((f"By category: arm minus {ref} ({col})", ["arm", "category", "held", "prompts", *dims],
                    [[r["arm"], r["category"], r["held"], str(r["prompts"]), *[_iv(r["diffs"].get(d), True)
                                                                             for d in dims]]
                     for r in result["by_category"]],
                    "held: in = the arm trained on clips of this category, out = held out of its training "
                    "(the drop of a hold-out arm is its 'out' rows)."))
    strata = [r for r in result.get("per_category") or []
              if r.get("by") == ("clip" if result["category_column"] == "clip_category" else "prompt")]
    if strata:
        out.append(("Scores per category", ["model", "category", "videos", *dims],
                    [[r["model"], r["category"], str(r["videos"]),
                      *[_iv([r.get(d), r.get(f"{d}_lo"), r.get(f"{d}_hi")]) if r.get(d) is not None else "—"
                        for d in dims]] for r in strata], ""))
    if result["mix"]:
        mdims = [d for d in MIX_DIMS if any(d in r["dims"] for r in result["mix"])]
        out.append(("Medical / general data mix", ["arm", "share", "actual share", *mdims],
                    [[r["arm"], f"{r['share']:.0%}", f"{r['actual_share']:.0%}", *[_iv(r["dims"].get(d)) for d in mdims]]
                     for r in result["mix"]],
                    "medical_frames: mean P(medical) of the generated frames by the curation's frame classifier."))
    return out


def _md(sec: Section) -> list[str]:
    title, head, rows, note = sec
    lines = ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + (["", note] if note else [])


def _html(sec: Section) -> str:
    title, head, rows, note = sec
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<h2>{html.escape(title)}</h2><table><tr>{th}</tr>{body}</table>" + \
        (f"<p>{html.escape(note)}</p>" if note else "")


def write_experiment_report(root: str, result: dict[str, Any], dims: list[str]) -> str:
    """experiment.json, experiment.md, experiment.html and the charts under root; returns the page."""
    fs, path = fsspec.core.url_to_fs(root)
    fs.makedirs(path, exist_ok=True)
    images = {}
    if any(i.get("loss_csv") for i in result["arms"].values()):
        images["loss_curves.png"] = loss_plot(result)
    if result["by_category"]:
        images["category_diff.png"] = category_plot(result, dims)
    if result["mix"]:
        images["mix.png"] = mix_plot(result)
    for name, data in images.items():
        with fs.open(f"{path}/{name}", "wb") as fh:
            fh.write(data)
    with fs.open(f"{path}/experiment.json", "w") as fh:
        fh.write(json.dumps(result, indent=1, default=str))
    secs = sections(result, dims)
    md = [f"# Experiment {result['name']}"]
    for s in secs:
        md += _md(s)
    md += [""] + [f"![{n[:-4]}]({n})" for n in images] + \
        ["", f"Med-VBench report (every model, both category strata, charts, thumbnails): {result['report']}"]
    with fs.open(f"{path}/experiment.md", "w") as fh:
        fh.write("\n".join(md) + "\n")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Experiment {html.escape(result['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right;font-size:13px}} td:first-child{{text-align:left}}</style>
</head><body><h1>Experiment {html.escape(result['name'])}</h1>{''.join(_html(s) for s in secs)}
{''.join(f'<p><img src="{n}" alt="{n[:-4]}"></p>' for n in images)}
<p>Med-VBench report: <a href="eval/report.html">eval/report.html</a></p></body></html>"""
    with fs.open(f"{path}/experiment.html", "w") as fh:
        fh.write(page)
    print("\n".join(md), file=sys.stdout)
    return f"{root.rstrip('/')}/experiment.html"
