"""LAION improved aesthetic predictor: an MLP head on L2-normalised CLIP image embeddings.

The head's layer sizes follow the released predictor (embedding -> 1024 -> 128 -> 64 -> 16 -> 1,
dropout between the first layers; its scores live on the AVA 1-10 scale). The tiny twin uses
the tiny CLIP and a seeded head whose output bias sits at 5, the middle of that scale.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medgen_ray.models.clip import square_crop


class AestheticHead(nn.Module):
    """The LAION improved aesthetic predictor's MLP over CLIP image embeddings."""

    def __init__(self, dim: int, widths: tuple[int, ...] = (1024, 128, 64, 16)):
        super().__init__()
        layers: list[nn.Module] = []
        prev = dim
        for i, w in enumerate(widths):
            layers.append(nn.Linear(prev, w))
            if i < 3:
                layers.append(nn.Dropout(0.2 if i < 2 else 0.1))
            prev = w
        layers.append(nn.Linear(prev, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


class AestheticScorer:
    """Aesthetic scores (1-10 scale) of uint8 frames: CLIP embedding, then the head."""

    def __init__(self, encoder, head: AestheticHead, name: str):
        self.encoder = encoder
        self.head = head.to(encoder.device).eval()
        self.name = name

    @torch.inference_mode()
    def score(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame aesthetic score for uint8 RGB frames of any size."""
        if len(frames) == 0:
            return np.zeros(0, np.float32)
        crops = np.stack([square_crop(f, self.encoder.image_size) for f in frames])
        feats = torch.from_numpy(self.encoder.encode_images(crops)).to(self.encoder.device)
        return self.head(feats.float()).cpu().numpy().astype(np.float32)
