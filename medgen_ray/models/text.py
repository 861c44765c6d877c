"""Sentence embeddings for the metadata relevance filter (title + description)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch


class TextEmbedder:
    """Transformer encoder + pooling + L2 normalisation; one class for real and tiny models."""

    def __init__(
        self,
        tokenizer,
        model: torch.nn.Module,
        name: str,
        pooling: Literal["mean", "cls"] = "mean",
        prefix: str = "",
        max_length: int = 256,
        device: str = "cpu",
    ):
        self.tokenizer = tokenizer
        self.model = model.to(device).eval()
        self.name = name
        self.pooling = pooling
        self.prefix = prefix
        self.max_length = max_length
        self.device = device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            chunk = [self.prefix + (t or "") for t in texts[i : i + batch_size]]
            enc = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**enc).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)
