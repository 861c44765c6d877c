"""Linear probes (logistic regression) on frozen embeddings.

`LinearProbe` (binary) is shared by the metadata text classifier (sentence embeddings of title
+ description) and the medical frame classifier (CLIP image embeddings), as the paper trained
both on annotations. `CategoryProbe` (softmax over named classes) assigns texts to the clip
categories: Med-VBench prompts get their category from it. Each is saved as one `.npz` that
records which embedder produced its inputs, so a probe cannot be paired with the wrong
feature space by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import torch


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits do not overflow."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def prototypes(embed, phrase_groups: list[list[str]]) -> np.ndarray:
    """One unit vector per class: the mean embedding of its phrases (prompt ensembles), the
    zero-shot classifiers' class vectors."""
    protos = np.stack([np.asarray(embed(g)).mean(0) for g in phrase_groups])
    return protos / np.linalg.norm(protos, axis=1, keepdims=True)


def _logits(probe, features: np.ndarray) -> np.ndarray:
    """Standardised features times the weights, after checking the feature width."""
    if features.ndim != 2 or features.shape[1] != probe.weight.shape[0]:
        raise ValueError(
            f"{type(probe).__name__} for {probe.embedder!r} expects features of width {probe.weight.shape[0]}, "
            f"got shape {features.shape}"
        )
    return ((np.asarray(features, np.float64) - probe.mean) / probe.scale) @ probe.weight + probe.bias


@dataclass
class LinearProbe:
    """A logistic-regression probe on standardised features, saved as .npz with its embedder's name."""

    weight: np.ndarray  # (D,)
    bias: float
    mean: np.ndarray  # (D,) feature standardisation learned at fit time
    scale: np.ndarray  # (D,)
    embedder: str

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-_logits(self, features)))

    def save(self, path: str) -> None:
        with fsspec.open(path, "wb") as fh:
            np.savez(
                fh, weight=self.weight, bias=np.float64(self.bias), mean=self.mean,
                scale=self.scale, embedder=np.array(self.embedder),
            )


def load_probe(path: str, expect_embedder: str | None = None) -> LinearProbe:
    """Read a probe; with `expect_embedder`, refuse one trained on another feature space."""
    try:
        with fsspec.open(path, "rb") as fh:
            data = np.load(fh, allow_pickle=False)
            probe = LinearProbe(
                weight=data["weight"], bias=float(data["bias"]), mean=data["mean"],
                scale=data["scale"], embedder=str(data["embedder"]),
            )
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"linear probe {path!r}: file not found") from exc
    if expect_embedder is not None and probe.embedder != expect_embedder:
        raise ValueError(
            f"linear probe {path!r} was trained on {probe.embedder!r} features, "
            f"but this stage uses {expect_embedder!r}"
        )
    return probe


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    return mean, scale, torch.from_numpy((x - mean) / scale)


def _lbfgs(params: list[torch.Tensor], loss_fn, steps: int) -> None:
    opt = torch.optim.LBFGS(params, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    embedder: str,
    l2: float = 1e-3,
    steps: int = 200,
    seed: int = 0,
) -> LinearProbe:
    """L2-regularised logistic regression, full-batch L-BFGS on standardised features."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features {x.shape} and labels {y.shape} do not line up")
    classes = set(np.unique(y).tolist())
    if not classes <= {0.0, 1.0} or len(classes) < 2:
        raise ValueError(f"labels must contain both 0 and 1, got {sorted(classes)}")
    mean, scale, xs = _standardise(x)
    yt = torch.from_numpy(y)
    torch.manual_seed(seed)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    _lbfgs([w, b], lambda: torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, yt) + l2 * (w @ w),
           steps)
    return LinearProbe(
        weight=w.detach().numpy(), bias=float(b.detach()), mean=mean, scale=scale, embedder=embedder
    )


@dataclass
class CategoryProbe:
    """Multinomial logistic regression over named classes."""

    weight: np.ndarray  # (D, K)
    bias: np.ndarray  # (K,)
    mean: np.ndarray
    scale: np.ndarray
    classes: list[str]
    embedder: str

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities, columns in `classes` order."""
        return softmax(_logits(self, features))

    def predict(self, features: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(features).argmax(axis=1)]

    def save(self, path: str) -> None:
        with fsspec.open(path, "wb") as fh:
            np.savez(fh, weight=self.weight, bias=self.bias, mean=self.mean, scale=self.scale,
                     classes=np.array(self.classes), embedder=np.array(self.embedder))


def load_category_probe(path: str, expect_embedder: str | None = None) -> CategoryProbe:
    """A saved category probe; refuses one trained on another embedder."""
    try:
        with fsspec.open(path, "rb") as fh:
            data = np.load(fh, allow_pickle=False)
            if "classes" not in data:
                raise ValueError(f"{path!r} is a binary probe, not a category probe "
                                 "(train one with `medgen classifier train-categories`)")
            probe = CategoryProbe(weight=data["weight"], bias=data["bias"], mean=data["mean"], scale=data["scale"],
                                  classes=[str(c) for c in data["classes"]], embedder=str(data["embedder"]))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"category probe {path!r}: file not found") from exc
    if expect_embedder is not None and probe.embedder != expect_embedder:
        raise ValueError(f"category probe {path!r} was trained on {probe.embedder!r} features, "
                         f"but this classifier uses {expect_embedder!r}")
    return probe


def fit_category_probe(features: np.ndarray, labels: list[str], embedder: str, l2: float = 1e-3,
                       steps: int = 200) -> CategoryProbe:
    """Softmax regression, full-batch L-BFGS on standardised features; classes sorted by name."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"features {x.shape} and {len(labels)} labels do not line up")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"a category probe needs at least 2 categories, got {classes}")
    mean, scale, xs = _standardise(x)
    y = torch.tensor([classes.index(c) for c in labels])
    w = torch.zeros(x.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    _lbfgs([w, b], lambda: torch.nn.functional.cross_entropy(xs @ w + b, y) + l2 * (w * w).sum(), steps)
    return CategoryProbe(weight=w.detach().numpy(), bias=b.detach().numpy(), mean=mean, scale=scale,
                         classes=classes, embedder=embedder)


def probe_accuracy(probe: LinearProbe, features: np.ndarray, labels: np.ndarray) -> float:
    """Share of labels the probe gets right at threshold 0.5."""
    pred = probe.predict_proba(np.asarray(features, dtype=np.float64)) >= 0.5
    return float(np.mean(pred == (np.asarray(labels) > 0.5)))


def default_probe_path(folder: str | Path, name: str) -> str:
    """Default file name of a probe in a folder."""
    return str(Path(folder) / f"{name}.probe.npz")
