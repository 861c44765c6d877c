"""CLIP image/text embeddings through open_clip, for frame classification and similarity."""

from __future__ import annotations

import cv2
import numpy as np
import torch

# OpenAI CLIP normalisation, shared by every open_clip model we register.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def square_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """Short side to `size` (area filter), centre crop: CLIP's view of a frame of any size."""
    h, w = rgb.shape[:2]
    s = size / min(h, w)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return img[y0 : y0 + size, x0 : x0 + size]


def openai_half(model: torch.nn.Module) -> torch.nn.Module:
    """An open_clip CLIP in fp16 as OpenAI's `clip` package runs it on CUDA (and so VBench's
    CLIP): convolutions, linears, attention and projections in fp16 (`clip.model.convert_weights`),
    LayerNorms on fp32 weights computing in fp32 (`clip.model.LayerNorm`). `model.half()` would
    put the LayerNorms in fp16 too, another network's numbers."""
    import open_clip
    from open_clip.transformer import LayerNormFp32

    open_clip.convert_weights_to_lp(model, torch.float16)
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.__class__ = LayerNormFp32  # same parameters; casts its input to fp32 and back
    return model


class ClipEncoder:
    """Wraps an open_clip model: uint8 NHWC frames at `image_size` in, unit vectors out. In fp16
    (the default on CUDA) the model runs as OpenAI's `clip` runs it there (`openai_half`)."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, image_size: int, device: str = "cpu",
                 dtype: torch.dtype | None = None):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.image_size = image_size
        self.device = device
        self._mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
        self.dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        if self.dtype == torch.float16:
            self.model = openai_half(self.model)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"{self.name} expects uint8 frames (N, {self.image_size}, {self.image_size}, 3), "
                f"got {frames.shape}"
            )
        arr = np.ascontiguousarray(frames)
        if not arr.flags.writeable:  # Ray hands zero-copy read-only views; torch wants to own one
            arr = arr.copy()
        x = torch.from_numpy(arr).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        return ((x - self._mean) / self._std).to(self.dtype)

    @torch.inference_mode()
    def encode_images(self, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
        out = []
        for i in range(0, len(frames), batch_size):
            feats = self.model.encode_image(self.preprocess(frames[i : i + batch_size]))
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, int(self.model.visual.output_dim)), dtype=np.float32)
        return np.concatenate(out)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        feats = self.model.encode_text(tokens)
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()
