"""The one filter step: thresholds from config applied to scores the stages added.

Pure functions of a batch and the config; a failing row gets `reject_stage` and a
`reject_reason` that names the value and the threshold, and keeps flowing to the sink.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from medgen_ray.config import CurateConfig
from medgen_ray.core.batch import Batch, ensure_status, is_active
from medgen_ray.schema import REJECT_REASON, REJECT_STAGE

Rule = Callable[[dict, CurateConfig], str | None]


def _metadata(row: dict, cfg: CurateConfig) -> str | None:
    m = cfg.metadata
    hits = row.get("score_text_keywords", math.nan)
    prob = row.get("score_text_medical", math.nan)
    if math.isnan(hits) and math.isnan(prob):
        return None  # no title or description to judge: let the frames decide
    by_kw = hits >= 1
    by_clf = None if math.isnan(prob) else prob >= m.threshold
    if m.rule == "keywords" or by_clf is None:
        ok = by_kw
    elif m.rule == "classifier":
        ok = by_clf
    elif m.rule == "all":
        ok = by_kw and by_clf
    else:
        ok = by_kw or by_clf
    if ok:
        return None
    p = "n/a" if math.isnan(prob) else f"{prob:.2f}"
    return f"title/description not medical (keyword hits {int(hits)}, classifier p={p} < {m.threshold:g}, rule {m.rule})"


def _probe(row: dict, cfg: CurateConfig) -> str | None:
    p = cfg.container
    if min(row["width"], row["height"]) < p.min_side:
        return f"frame size {row['width']}x{row['height']} below {p.min_side} px"
    if row["codec"] not in p.allowed_codecs:
        return f"unsupported codec {row['codec']!r} (allowed: {', '.join(p.allowed_codecs)})"
    if p.reject_rotated and row.get("rotation", 0):
        return f"rotated {row['rotation']} degrees by its display matrix; rotated sources are not supported"
    if p.reject_vfr and row.get("interval_spread", 0.0) > p.vfr_tolerance:
        return (f"variable frame rate (frame-interval spread {row['interval_spread']:.2f} "
                f"> {p.vfr_tolerance:g})")
    if row["duration"] > p.max_duration_s:
        return f"duration {row['duration']:.0f} s above {p.max_duration_s:g} s"
    return None


def _resolution(row: dict, cfg: CurateConfig) -> str | None:
    short = min(row["width"], row["height"])
    if short < cfg.resolution.min_short_side:
        return f"short side {short} px < {cfg.resolution.min_short_side} ({row['width']}x{row['height']})"
    return None


def _borders(row: dict, cfg: CurateConfig) -> str | None:
    q = cfg.quality
    if q.borders.action != "reject" or q.score_only:
        return None
    sides = [s for s in ("top", "bottom", "left", "right") if row.get(f"score_border_{s}", 0.0) >= q.borders.persistence]
    if not sides:
        return None
    sizes = ", ".join(f"{s} {row[f'border_{s}_frac'] * 100:.0f}%" for s in sides)
    return f"black bars ({sizes}) in >= {q.borders.persistence:.0%} of frames"


def _ocr(row: dict, cfg: CurateConfig) -> str | None:
    words = row.get("score_ocr_words", 0.0)
    if words > cfg.quality.ocr.max_words and not cfg.quality.score_only:
        return (f"burned-in text: {int(words)} words over {cfg.quality.clipframes.frames} frames > {cfg.quality.ocr.max_words} "
                f"(text area {row.get('score_text_area', 0.0):.1%})")
    return None


def _motion(row: dict, cfg: CurateConfig) -> str | None:
    if cfg.quality.motion.reject_static and not cfg.quality.score_only and row.get("label_camera_motion") == "static":
        return f"static clip (mean flow {row['score_motion']:.3f} px/frame < {cfg.quality.motion.static_px:g})"
    return None


def _aesthetic(row: dict, cfg: CurateConfig) -> str | None:
    q, a = cfg.quality, row.get("score_aesthetic", math.nan)
    if q.score_only or math.isnan(a) or a >= q.aesthetic.min:
        return None
    return f"aesthetic score {a:.2f} < {q.aesthetic.min:g}"


def _technical(row: dict, cfg: CurateConfig) -> str | None:
    q = cfg.quality
    t, a = row.get("score_technical", math.nan), row.get("score_aesthetic", math.nan)
    if q.technical.min is None:  # score only until a threshold is calibrated for this metric
        return None
    worse = t > q.technical.min if q.technical.lower_better else t < q.technical.min
    if q.score_only or math.isnan(t) or not worse:
        return None
    if not math.isnan(a) and a >= q.technical.joint_aesthetic_max:
        return None
    op = ">" if q.technical.lower_better else "<"
    return (f"low technical quality {t:.2f} {op} {q.technical.min:g} ({q.technical.metric}) with aesthetic "
            f"{a:.2f} < {q.technical.joint_aesthetic_max:g}")


RULES: dict[str, Rule] = {"aesthetic": _aesthetic, "technical": _technical, "metadata": _metadata, "probe": _probe, "resolution": _resolution,
                          "borders": _borders, "ocr": _ocr, "motion": _motion}


def apply_filters(batch: Batch, cfg: CurateConfig, stage: str) -> Batch:
    """The batch with the config's rule for `stage` applied: failing rows get reject_stage and reason."""
    if stage not in RULES:
        raise KeyError(f"no filter rule for stage {stage!r}; choices: {', '.join(RULES)}")
    rule = RULES[stage]
    batch = ensure_status(batch)
    active = is_active(batch)
    stages = np.array(batch[REJECT_STAGE], dtype=object)
    reasons = np.array(batch[REJECT_REASON], dtype=object)
    keys = list(batch)
    for i in np.flatnonzero(active):
        row = {k: _item(batch[k][i]) for k in keys}
        why = rule(row, cfg)
        if why:
            stages[i], reasons[i] = stage, f"{stage}: {why}"
    out = dict(batch)
    out[REJECT_STAGE], out[REJECT_REASON] = stages, reasons
    return out


def _item(v):
    return v.item() if isinstance(v, np.generic) else v
