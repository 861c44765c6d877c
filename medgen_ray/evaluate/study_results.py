"""Results of the doctors' study: raters' answers in (Label Studio's JSON export, or a CSV of
study,rater,task_id,aspect,choice), unblinded with the study's key, out: the paper's Fig. 6
(wins / both lose / losses of the focus model against each other model, per aspect), Cohen's
kappa per rater pair and task kind (Table 9; scikit-learn), Fleiss' kappa across all raters
(statsmodels), and the warping error per model from the distortion ratings.

Every answer is accounted for: an answer from another study, an unknown rater or a task that is
not in the key is an error naming the file; a task a rater skipped (no answer, or a cancelled
one) and a task a rater answered twice (kept out: which answer counts is not ours to pick) are
gaps, counted per rater and reported.

Fig. 6 counts one verdict per task: the answer most raters gave (ours: the paper does not say how
the three doctors' answers were combined); a task without a majority is counted as `split`.
Intervals are Wilson 95% intervals of each share (statsmodels `proportion_confint`).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import Counter, defaultdict
from typing import Any

import fsspec
import numpy as np

from medgen_ray.evaluate.study import ASPECTS, CSV_COLUMNS, DISTORTION_LEVELS, PAIR_CHOICES, read_study
from medgen_ray.evaluate.study_report import fig6_chart, study_markdown


def _answers_from_label_studio(path: str, tasks: list[dict[str, Any]]) -> tuple[list[tuple], list[dict]]:
    """(rater, task_id, aspect, choice) answers and gaps of one Label Studio JSON export."""
    answers, gaps = [], []
    for t in tasks:
        data = t.get("data") or {}
        rater, task_id = data.get("rater"), data.get("task_id")
        if rater is None or task_id is None:
            raise ValueError(f"{path}: task {t.get('id')} has no rater/task_id in its data: not a study export")
        done = [a for a in t.get("annotations") or [] if not a.get("was_cancelled")]
        if not done:
            gaps.append({"rater": rater, "task_id": task_id, "gap": "skipped", "file": path})
            continue
        if len(done) > 1:
            gaps.append({"rater": rater, "task_id": task_id, "gap": "answered twice", "file": path})
            continue
        for r in done[0].get("result") or []:
            if r.get("type") == "choices" and r.get("value", {}).get("choices"):
                answers.append((data.get("study"), rater, task_id, r["from_name"], r["value"]["choices"][0], path))
    return answers, gaps


def _answers_from_csv(path: str, text: str) -> list[tuple]:
    reader = csv.DictReader(io.StringIO(text))
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)} (expected {', '.join(CSV_COLUMNS)})")
    return [(r["study"], r["rater"], r["task_id"], r["aspect"], r["choice"].strip().lower(), path) for r in reader]


def read_answers(paths: list[str], study: dict[str, Any], key: dict[str, Any]) -> tuple[dict, list[dict]]:
    """{(rater, task_id, aspect): choice} from every file, and the gaps; errors name the file."""
    raw, gaps = [], []
    for path in paths:
        with fsspec.open(path, "r") as fh:
            text = fh.read()
        if path.endswith(".csv"):
            raw += _answers_from_csv(path, text)
        else:
            try:
                tasks = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not JSON ({exc}); give Label Studio's JSON export or a .csv") from exc
            if not isinstance(tasks, list):
                raise ValueError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
            got, gap = _answers_from_label_studio(path, tasks)
            raw += got
            gaps += gap
    raters = set(study["raters"])
    known = set(key["pairs"]) | set(key["videos"])
    seen: dict[tuple, list[str]] = defaultdict(list)
    for sid, rater, task_id, aspect, choice, path in raw:
        if sid != study["study_id"]:
            raise ValueError(f"{path}: answers of study {sid!r}, not of this study ({study['study_id']})")
        if rater not in raters:
            raise ValueError(f"{path}: unknown rater {rater!r}; this study's raters: {sorted(raters)}")
        if task_id not in known:
            raise ValueError(f"{path}: task {task_id!r} is not in the study's key")
        pair = task_id in key["pairs"]
        allowed = ASPECTS if pair else ("distortion",)
        if aspect not in allowed:
            raise ValueError(f"{path}: task {task_id} has no aspect {aspect!r}; choices: {', '.join(allowed)}")
        valid = PAIR_CHOICES if pair else DISTORTION_LEVELS
        if choice not in valid:
            raise ValueError(f"{path}: {rater} {task_id} {aspect}: {choice!r} is not one of {', '.join(valid)}")
        seen[(rater, task_id, aspect)].append(choice)
    answers = {}
    twice = set()
    for k, v in seen.items():
        if len(v) > 1:
            twice.add((k[0], k[1]))
        else:
            answers[k] = v[0]
    for rater, task_id in sorted(twice):  # answered in two files (or twice in one CSV): kept out
        gaps.append({"rater": rater, "task_id": task_id, "gap": "answered twice", "file": ""})
        for aspect in (*ASPECTS, "distortion"):
            answers.pop((rater, task_id, aspect), None)
    for rater in study["raters"]:  # tasks no file mentions for a rater
        answered = {t for (r, t, _) in answers if r == rater} | {g["task_id"] for g in gaps if g["rater"] == rater}
        for task_id in sorted(known - answered):
            gaps.append({"rater": rater, "task_id": task_id, "gap": "not in any file", "file": ""})
    return answers, gaps


def _wilson(k: int, n: int) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return float("nan"), float("nan")
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def fig6_table(answers: dict, key: dict[str, Any], raters: list[str]) -> list[dict[str, Any]]:
    """Per other model and aspect: the focus model's wins, both lose, losses and splits (one
    verdict per task, the majority of raters), with Wilson 95% intervals of the shares."""
    focus = key["focus"]
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for task_id, k in key["pairs"].items():
        other = k["right"] if k["left"] == focus else k["left"]
        for aspect in ASPECTS:
            votes = [answers[(r, task_id, aspect)] for r in raters if (r, task_id, aspect) in answers]
            if not votes:
                continue
            (top, n), *rest = Counter(votes).most_common() + [(None, 0)]
            if n * 2 <= len(votes):
                verdict = "split"
            elif top == "both lose":
                verdict = "both_lose"
            else:
                verdict = "win" if k[top] == focus else "loss"
            counts[(other, aspect)][verdict] += 1
    rows = []
    for (other, aspect), c in sorted(counts.items()):
        n = sum(c.values())
        row: dict[str, Any] = {"focus": focus, "other": other, "aspect": aspect, "tasks": n}
        for v in ("win", "both_lose", "loss", "split"):
            row[v] = c[v]
            row[f"{v}_lo"], row[f"{v}_hi"] = _wilson(c[v], n)
        rows.append(row)
    return rows


def kappas(answers: dict, key: dict[str, Any], raters: list[str]) -> list[dict[str, Any]]:
    """Cohen's kappa of every rater pair on the items both answered, per task kind (pairs: one
    item per task and aspect; distortion: one per video), and Fleiss' kappa on the items every
    rater answered."""
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    kinds = {"pairs": ([(t, a) for t in key["pairs"] for a in ASPECTS], PAIR_CHOICES),
             "distortion": ([(t, "distortion") for t in key["videos"]], DISTORTION_LEVELS)}
    rows = []
    for kind, (items, labels) in kinds.items():
        for a, b in itertools.combinations(raters, 2):
            both = [(answers[(a, *i)], answers[(b, *i)]) for i in items if (a, *i) in answers and (b, *i) in answers]
            kappa = float(cohen_kappa_score([x for x, _ in both], [y for _, y in both], labels=list(labels))) \
                if len(both) >= 2 else float("nan")
            rows.append({"task": kind, "raters": f"{a}-{b}", "kind": "cohen", "items": len(both), "kappa": kappa})
        full = [[labels.index(answers[(r, *i)]) for r in raters] for i in items
                if all((r, *i) in answers for r in raters)]
        kappa = float(fleiss_kappa(aggregate_raters(np.array(full))[0])) if len(full) >= 2 else float("nan")
        rows.append({"task": kind, "raters": "all", "kind": "fleiss", "items": len(full), "kappa": kappa})
    return rows


def warping_ratings(answers: dict, key: dict[str, Any]) -> list[dict[str, str]]:
    """The distortion answers as Med-VBench's ratings rows (video_id, rater, rating)."""
    return [{"video_id": key["videos"][t]["video_id"], "rater": r, "rating": c}
            for (r, t, aspect), c in sorted(answers.items()) if aspect == "distortion"]


def study_results(folder: str, paths: list[str]) -> dict[str, Any]:
    """Everything `medgen study results` reports, from a study folder and the raters' files."""
    from medgen_ray.evaluate.metrics import warping_error_from_ratings

    if not paths:
        raise ValueError("study results: give the raters' files (Label Studio JSON exports or CSVs)")
    study, key = read_study(folder)
    answers, gaps = read_answers(paths, study, key)
    ratings = warping_ratings(answers, key)
    by_model: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in ratings:
        by_model[r["video_id"].split("/")[0]].append((r["video_id"], r["rating"]))
    warping = {m: warping_error_from_ratings(v) for m, v in sorted(by_model.items())}
    gap_counts = Counter((g["rater"], g["gap"]) for g in gaps)
    return {"study_id": study["study_id"], "focus": key["focus"], "raters": study["raters"],
            "answers": len(answers), "fig6": fig6_table(answers, key, study["raters"]),
            "kappa": kappas(answers, key, study["raters"]), "warping_error": warping, "ratings": ratings,
            "gaps": gaps, "gap_counts": [{"rater": r, "gap": g, "tasks": n} for (r, g), n in sorted(gap_counts.items())]}


def write_study_results(folder: str, result: dict[str, Any], out: str | None = None) -> str:
    """results.json, fig6.csv, kappa.csv, gaps.csv, ratings.csv (Med-VBench's `evaluate.ratings`
    format), fig6.png and study_report.md under `out` (default <study>/results); returns out."""
    out = out or f"{folder.rstrip('/')}/results"
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(root, exist_ok=True)

    def write(name: str, data: str | bytes) -> None:
        with fs.open(f"{root}/{name}", "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)

    def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    write("results.json", json.dumps({k: v for k, v in result.items() if k != "ratings"}, indent=1))
    fig6_cols = ["focus", "other", "aspect", "tasks", "win", "win_lo", "win_hi", "both_lose", "both_lose_lo",
                 "both_lose_hi", "loss", "loss_lo", "loss_hi", "split"]
    write("fig6.csv", table(result["fig6"], fig6_cols))
    write("kappa.csv", table(result["kappa"], ["task", "raters", "kind", "items", "kappa"]))
    write("gaps.csv", table(result["gaps"], ["rater", "task_id", "gap", "file"]))
    write("ratings.csv", table(result["ratings"], ["video_id", "rater", "rating"]))
    if result["fig6"]:
        write("fig6.png", fig6_chart(result["fig6"]))
    write("study_report.md", study_markdown(result))
    return out
