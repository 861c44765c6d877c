"""Metadata relevance: medical keyword hits and a text classifier on sentence embeddings."""

from __future__ import annotations

import math
import re
from importlib import resources

import fsspec
import numpy as np

from medgen_ray.config import CurateConfig
from medgen_ray.core.batch import Batch, ensure_status, is_active
from medgen_ray.models.linear_probe import load_probe
from medgen_ray.models.registry import load_model
from medgen_ray.schema import DESCRIPTION, TITLE


def load_keywords(path: str | None = None) -> list[str]:
    """Medical keywords (lowercase) from a file, or the shipped list."""
    if path is None:
        text = resources.files("medgen_ray.resources").joinpath("medical_keywords.txt").read_text()
    else:
        with fsspec.open(path, "r") as fh:
            text = fh.read()
    words = [ln.strip().lower() for ln in text.splitlines()]
    return [w for w in words if w and not w.startswith("#")]


def keyword_pattern(keywords: list[str]) -> re.Pattern:
    """A case-insensitive whole-word regex for the keywords, longest first."""
    alts = sorted((re.escape(k) for k in keywords), key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(alts) + r")(?![\w-])", re.IGNORECASE)


def metadata_text(title: str, description: str) -> str:
    """Title and description as the text the classifier embeds."""
    return f"{title or ''}\n{description or ''}".strip()


class MetadataStage:
    """Keyword hits and P(medical) of each row's title + description (rows without text pass)."""

    name = "metadata"
    reads = (TITLE, DESCRIPTION)
    adds = ("score_text_keywords", "score_text_medical")

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg
        self.embedder = None

    def setup(self) -> None:
        m = self.cfg.metadata
        self.pattern = keyword_pattern(load_keywords(m.keywords_file))
        self.probe = None
        if m.classifier_path:
            self.embedder = load_model(m.embedder, kind="text")
            self.probe = load_probe(m.classifier_path, expect_embedder=m.embedder)
        self._ready = True

    def __call__(self, batch: Batch) -> Batch:
        if not getattr(self, "_ready", False):
            self.setup()
        batch = ensure_status(batch)
        n = len(batch[TITLE])
        texts = [metadata_text(batch[TITLE][i], batch[DESCRIPTION][i]) for i in range(n)]
        active = is_active(batch)
        hits = np.full(n, math.nan)
        probs = np.full(n, math.nan)
        judge = [i for i in range(n) if active[i] and texts[i]]
        for i in judge:
            hits[i] = len(self.pattern.findall(texts[i]))
        if self.probe is not None and judge:
            feats = self.embedder.embed([texts[i] for i in judge])
            probs[judge] = self.probe.predict_proba(feats.astype(np.float64))
        out = dict(batch)
        out["score_text_keywords"], out["score_text_medical"] = hits, probs
        return out
