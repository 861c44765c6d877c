"""Training the text and frame classifiers from labelled data.

- text: CSV with `text,label` (or `title,description,label`); label 1/0 or medical/other.
- frames: CSV with `path,label`; path is an image file (relative paths are resolved against
  the CSV's folder).
- categories: a curated dataset's captions with the category its captioner gave each clip
  (or a CSV `text,category`); the probe then puts Med-VBench prompts into the same categories.
Each fits a probe on frozen embeddings, reports held-out accuracy, and ships the probe fitted
on every row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medgen_ray.curate.metadata import metadata_text
from medgen_ray.models.clip import square_crop
from medgen_ray.models.linear_probe import fit_category_probe, fit_probe, probe_accuracy
from medgen_ray.models.registry import load_model

_LABELS = {"1": 1, "0": 0, "medical": 1, "other": 0, "non-medical": 0, "nonmedical": 0, "true": 1, "false": 0}


@dataclass
class TrainReport:
    """Sizes and held-out accuracy of a trained classifier, and where it was saved."""

    n_train: int
    n_test: int
    test_accuracy: float
    output: str


def _label(value: str, where: str) -> int:
    key = (value or "").strip().lower()
    if key not in _LABELS:
        raise ValueError(f"{where}: label {value!r} is not one of {sorted(_LABELS)}")
    return _LABELS[key]


def _read_csv(path: str, required: list[list[str]]) -> list[dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"labelled CSV {path!r}: not found")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not any(set(option) <= cols for option in required):
            options = " or ".join(",".join(o) for o in required)
            raise ValueError(f"labelled CSV {path!r}: needs columns {options}; has {sorted(cols)}")
        rows = list(reader)
    if len(rows) < 4:
        raise ValueError(f"labelled CSV {path!r}: {len(rows)} rows, need at least 4")
    return rows


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * test_fraction)))
    return idx[k:], idx[:k]


def _fit_and_save(feats: np.ndarray, labels: np.ndarray, embedder: str, output: str,
                  test_fraction: float, seed: int, fit=None, accuracy=None) -> TrainReport:
    fit = fit or (lambda x, y: fit_probe(x, y, embedder, seed=seed))
    accuracy = accuracy or probe_accuracy
    tr, te = _split(len(labels), test_fraction, seed)
    held_out = fit(feats[tr], labels[tr])
    acc = accuracy(held_out, feats[te], labels[te])
    final = fit(feats, labels)  # ship the probe fitted on every row
    if "://" not in output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    final.save(output)
    return TrainReport(len(tr), len(te), acc, output)


def train_text_classifier(csv_path: str, embedder: str, output: str, test_fraction: float = 0.2,
                          seed: int = 0) -> TrainReport:
    """Fit and save the metadata relevance probe on sentence embeddings of a labelled CSV; returns its report."""
    rows = _read_csv(csv_path, [["text", "label"], ["title", "description", "label"]])
    texts = [r["text"] if "text" in r else metadata_text(r["title"], r["description"]) for r in rows]
    labels = np.array([_label(r["label"], f"{csv_path} row {i + 2}") for i, r in enumerate(rows)])
    feats = load_model(embedder, kind="text").embed(texts)
    return _fit_and_save(feats, labels, embedder, output, test_fraction, seed)


def load_frame(path: Path, size: int) -> np.ndarray:
    """An image file as CLIP sees it (the same crop the aesthetic scorer uses)."""
    with Image.open(path) as im:
        return square_crop(np.asarray(im.convert("RGB")), size)


def train_frame_probe(csv_path: str, clip_model: str, output: str, weights: str | None = None,
                      test_fraction: float = 0.2, seed: int = 0) -> TrainReport:
    """Fit and save the frame linear probe on CLIP features of labelled frames; returns its report."""
    rows = _read_csv(csv_path, [["path", "label"]])
    base = Path(csv_path).parent
    encoder = load_model(clip_model, weights, kind="clip")
    frames, labels = [], []
    for i, r in enumerate(rows):
        p = Path(r["path"]) if Path(r["path"]).is_absolute() else base / r["path"]
        if not p.is_file():
            raise FileNotFoundError(f"{csv_path} row {i + 2}: image {str(p)!r} not found")
        frames.append(load_frame(p, encoder.image_size))
        labels.append(_label(r["label"], f"{csv_path} row {i + 2}"))
    feats = encoder.encode_images(np.stack(frames))
    return _fit_and_save(feats, np.array(labels), clip_model, output, test_fraction, seed)


def dataset_captions(dataset: str, text_column: str = "caption_detailed", limit: int | None = 5000,
                     seed: int = 0) -> tuple[list[str], list[str]]:
    """(caption, category) of a curated dataset's kept clips; a random `limit` of them."""
    import fsspec
    import pyarrow.parquet as pq

    from medgen_ray.core.parts import list_parts

    parts = list_parts(dataset, "manifest")
    if not parts:
        raise FileNotFoundError(f"dataset {dataset!r}: no manifest/part-*.parquet")
    fs, _ = fsspec.core.url_to_fs(dataset)
    texts, labels = [], []
    for path in parts:
        with fs.open(path, "rb") as fh:  # only the two columns: manifests carry transcripts and more
            part = pq.ParquetFile(fh)
            missing = [c for c in (text_column, "category") if c not in part.schema_arrow.names]
            if missing:
                raise ValueError(f"dataset {dataset!r}: manifest part {path} has no column(s) {missing} "
                                 "(caption the clips first)")
            t = part.read(columns=[text_column, "category"])
        for text, cat in zip(t.column(text_column).to_pylist(), t.column("category").to_pylist()):
            if text and cat:
                texts.append(str(text))
                labels.append(str(cat))
    if limit and len(texts) > limit:
        keep = np.sort(np.random.default_rng(seed).permutation(len(texts))[:limit])
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return texts, labels


def train_category_classifier(texts: list[str], labels: list[str], embedder: str, output: str,
                              weights: str | None = None, test_fraction: float = 0.2,
                              seed: int = 0, model=None) -> TrainReport:
    """Softmax probe over sentence embeddings: text -> category (`model`: the embedder, loaded)."""
    if len(set(labels)) < 2 or len(texts) < 4:
        raise ValueError(f"category classifier: need >= 4 captions in >= 2 categories, got {len(texts)} in "
                         f"{sorted(set(labels))}")
    feats = (model or load_model(embedder, weights, kind="text")).embed(texts)
    y = np.array(labels, dtype=object)

    def accuracy(probe, x, truth) -> float:
        return float(np.mean(np.array(probe.predict(x), dtype=object) == truth))

    return _fit_and_save(feats, y, embedder, output, test_fraction, seed,
                         fit=lambda x, lab: fit_category_probe(x, list(lab), embedder), accuracy=accuracy)


def read_category_csv(path: str) -> tuple[list[str], list[str]]:
    """(texts, categories) from a text,category CSV."""
    rows = _read_csv(path, [["text", "category"]])
    return [r["text"] for r in rows], [r["category"].strip() for r in rows]
