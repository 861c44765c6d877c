"""Prompt categories from the text classifier: each Med-VBench prompt gets one of the clip
categories (the captioner's taxonomy: teaching, clinical practice, ...), so scores can be
stratified by the same categories the training clips carry, and a hold-out arm's held-in and
held-out categories can be told apart.

Three sources, in order: a category probe (`medgen classifier train-categories`), a probe fitted
when the job starts on a curated dataset's captions (`train_on`), or zero-shot by cosine
similarity to the mean embedding of each category's descriptions. Runs on the driver: a prompt
set is a few hundred lines.
"""

from __future__ import annotations

import csv
import io
import sys
from typing import Any

import fsspec
import numpy as np

from medgen_ray.config import PromptClassifierConfig
from medgen_ray.models.linear_probe import CategoryProbe, load_category_probe, prototypes, softmax
from medgen_ray.models.registry import load_model

ZERO_SHOT_TEMPERATURE = 0.05  # cosine gaps between categories are small; sharpen them into probabilities


class PromptCategorizer:
    """Puts prompts into clip categories: a category probe, or zero-shot by phrase similarity."""

    def __init__(self, embedder, probe: CategoryProbe | None = None,
                 descriptions: dict[str, list[str]] | None = None):
        if probe is None and not descriptions:
            raise ValueError("prompt classifier: give a category probe or zero-shot descriptions")
        self.embedder, self.probe = embedder, probe
        if probe is not None:
            self.classes = list(probe.classes)
        else:
            self.classes = list(descriptions)
            self.prototypes = prototypes(embedder.embed, [descriptions[c] for c in self.classes])

    def proba(self, texts: list[str]) -> np.ndarray:
        """(N, K) probabilities over `classes`."""
        feats = self.embedder.embed(texts)
        if self.probe is not None:
            return self.probe.predict_proba(feats)
        return softmax(feats @ self.prototypes.T / ZERO_SHOT_TEMPERATURE)

    def classify(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """The category of each text and its probability."""
        if not texts:
            return [], np.zeros(0)
        p = self.proba(texts)
        idx = p.argmax(axis=1)
        return [self.classes[i] for i in idx], p[np.arange(len(texts)), idx]


def load_prompt_classifier(cfg: PromptClassifierConfig, output: str | None = None) -> tuple[PromptCategorizer, str]:
    """The categorizer and where its categories come from (for the report)."""
    embedder = load_model(cfg.embedder, cfg.weights, kind="text")
    if cfg.probe:
        return PromptCategorizer(embedder, load_category_probe(cfg.probe, expect_embedder=cfg.embedder)), \
            f"category probe {cfg.probe}"
    if cfg.train_on:
        from medgen_ray.curate.classifiers import dataset_captions, train_category_classifier

        texts, labels = dataset_captions(cfg.train_on, cfg.text_column, cfg.max_train_texts)
        path = f"{(output or '.').rstrip('/')}/prompt_categories.probe.npz"
        rep = train_category_classifier(texts, labels, cfg.embedder, path, model=embedder)
        print(f"evaluate: category probe on {len(texts)} captions of {cfg.train_on} "
              f"(held-out accuracy {rep.test_accuracy:.3f}) -> {path}", file=sys.stdout)
        return PromptCategorizer(embedder, load_category_probe(path)), \
            f"probe fitted on {len(texts)} captions of {cfg.train_on} (held-out accuracy {rep.test_accuracy:.3f})"
    return PromptCategorizer(embedder, descriptions=cfg.descriptions), "zero-shot (category descriptions)"


def assign_prompt_categories(rows: list[dict[str, Any]], cfg: PromptClassifierConfig,
                             output: str) -> list[dict[str, Any]]:
    """Add `clip_category` and `clip_category_p` to every row (rows sharing a prompt share its
    category) and write <output>/prompt_categories.csv for review."""
    prompts = sorted({str(r["prompt"]) for r in rows})
    categorizer, source = load_prompt_classifier(cfg, output)
    cats, probs = categorizer.classify(prompts)
    by_prompt = {p: (c, float(q)) for p, c, q in zip(prompts, cats, probs)}
    for r in rows:
        r["clip_category"], r["clip_category_p"] = by_prompt[str(r["prompt"])]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["prompt", "clip_category", "probability"])
    for p in prompts:
        w.writerow([p, by_prompt[p][0], f"{by_prompt[p][1]:.3f}"])
    fs, root = fsspec.core.url_to_fs(output)
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root.rstrip('/')}/prompt_categories.csv", "w") as fh:
        fh.write(buf.getvalue())
    counts = {c: cats.count(c) for c in categorizer.classes}
    print(f"evaluate: prompt categories ({source}): {counts}", file=sys.stdout)
    return rows
