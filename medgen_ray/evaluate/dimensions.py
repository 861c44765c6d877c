"""Med-VBench's per-video dimensions, computed as VBench 0.1.5 computes them on the same frames.

VBench (PyPI `vbench` 0.1.5) scores a video file; we score the decoded frames (PyAV gives the
same pixels as VBench's decord and OpenCV readers on H.264 yuv420p). What each dimension takes
from VBench, and where ours differs only in batching:

- subject consistency (`subject_consistency.py`): every frame, short side to 224 (bilinear, no
  antialias, aspect kept), DINO ViT-B/16 with its position embeddings interpolated as DINO's
  `vision_transformer.py` does, CLS features. Here: the same, frames batched.
- background consistency (`background_consistency.py`): every frame, `clip_transform(224)`
  (bicubic short side, centre crop), CLIP ViT-B/32. Here: the same; n_px is the CLIP's input size.
- imaging quality (`imaging_quality.py`): every frame, long side > 512 resized to
  int(512 / long * side) (bilinear, no antialias), MUSIQ-SPAQ one frame at a time. Here: the same.
- dynamic degree (`dynamic_degree.py`): every round(fps / 8)-th frame, RAFT (raft-things) at full
  size, replicate-padded to /8, 20 iterations; moving when round(4 * frames / 16) pairs peak above
  6 * short side / 256 px. Here: the same, pairs batched.
- motion smoothness (`motion_smoothness.py`): even frames, AMT-S rebuilds each odd frame (padded
  to /16 at scale 1; on CUDA VBench downsizes large frames on small-memory GPUs: `amt_scale`,
  padded to /int(16 / scale)), uint8 truncation, (255 - mean abs diff) / 255. Here: the same,
  pairs batched.
- aesthetic (`aesthetic_quality.py`): every frame, `clip_transform(224)`, CLIP ViT-L/14, LAION's
  linear head, / 10. Here: the same.

Values are VBench's per-video numbers in per cent (x100); dynamic degree is 0 or 100.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from medgen_ray.evaluate import metrics
from medgen_ray.models.clip import CLIP_MEAN, CLIP_STD

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) in 0-255, as VBench's `load_video` returns them."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return TF.normalize(x / 255.0, mean, std)


def dino_input(frames: np.ndarray, side: int = 224) -> torch.Tensor:
    """Short side to `side` (bilinear, no antialias, aspect kept), ImageNet-normalised."""
    x = TF.resize(as_tensor(frames), side, interpolation=InterpolationMode.BILINEAR, antialias=False)
    return _normalise(x, IMAGENET_MEAN, IMAGENET_STD)


def clip_input(frames: np.ndarray, n_px: int) -> torch.Tensor:
    """VBench's `clip_transform(n_px)`: short side to n_px (bicubic, no antialias), centre crop,
    CLIP-normalised."""
    x = TF.resize(as_tensor(frames), n_px, interpolation=InterpolationMode.BICUBIC, antialias=False)
    return _normalise(TF.center_crop(x, n_px), CLIP_MEAN, CLIP_STD)


def iqa_input(frames: np.ndarray, longest: int = 512) -> torch.Tensor:
    """VBench's imaging-quality 'longer' mode: frames whose long side exceeds `longest` are
    resized to int(s * h) x int(s * w), s = longest / long side; values in [0, 1]."""
    x = as_tensor(frames)
    h, w = x.shape[-2:]
    if max(h, w) > longest:
        s = longest / max(h, w)
        x = TF.resize(x, [int(s * h), int(s * w)], interpolation=InterpolationMode.BILINEAR, antialias=False)
    return x / 255.0


def _batches(x: torch.Tensor, size: int):
    for i in range(0, len(x), size):
        yield x[i:i + size]


def features(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: str,
             batch_size: int = 32) -> np.ndarray:
    """Unit-normalised features of every frame of x, in batches."""
    out = []
    with torch.inference_mode():
        for b in _batches(x, batch_size):
            out.append(F.normalize(model(b.to(device)).float(), dim=-1, p=2).cpu().numpy())
    return np.concatenate(out)


def subject_consistency(dino: Callable[[torch.Tensor], torch.Tensor], frames: np.ndarray, device: str) -> float:
    """VBench subject consistency (per cent) from DINO CLS features."""
    return 100.0 * metrics.consistency(features(dino, dino_input(frames), device))


def background_consistency(clip_image, frames: np.ndarray, device: str) -> float:
    """VBench background consistency (per cent) from CLIP image features; `clip_image` maps
    normalised (N, 3, n_px, n_px) to features and says its `n_px`."""
    return 100.0 * metrics.consistency(features(clip_image, clip_input(frames, clip_image.n_px), device))


def imaging_quality(musiq: Callable[[torch.Tensor], torch.Tensor], frames: np.ndarray, device: str) -> float:
    """VBench imaging quality: mean MUSIQ score (0-100) of every frame, one frame at a time as
    VBench feeds it (MUSIQ crops multi-scale patches per image)."""
    x = iqa_input(frames)
    with torch.inference_mode():
        return float(np.mean([float(musiq(x[i:i + 1].to(device))) for i in range(len(x))]))


def aesthetic(clip_image, head: torch.nn.Module, frames: np.ndarray, device: str) -> float:
    """VBench aesthetic quality in per cent: the LAION linear head on unit CLIP features, / 10."""
    feats = torch.from_numpy(features(clip_image, clip_input(frames, clip_image.n_px), device)).to(device)
    with torch.inference_mode():
        scores = head(feats).squeeze(-1).float() / 10.0
    return 100.0 * float(scores.mean())


def dynamic_frames(frames: np.ndarray, fps: float) -> np.ndarray:
    """The frames VBench's dynamic degree looks at: every round(fps / 8)-th, from the first."""
    return frames[::max(1, round(fps / 8))]


def pad_to(x: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Replicate-pad (N, C, H, W) so H and W divide by `divisor`, split evenly with the extra
    pixel after (RAFT's 'sintel' padder and AMT's padder do the same)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return F.pad(x, pad, mode="replicate"), pad


def is_dynamic(peaks: list[float], height: int, width: int, n_frames: int) -> bool:
    """VBench's rule: moving when at least round(4 * n_frames / 16) pairs peak above
    6 * (short side / 256) px (with no pairs, not moving; a need of 0 is met by any pair)."""
    thres = 6.0 * (min(height, width) / 256.0)
    need = round(4 * (n_frames / 16.0))
    return bool(peaks) and sum(p > thres for p in peaks) >= need


def dynamic_degree(pair_flows: Callable[[np.ndarray], list[np.ndarray]], frames: np.ndarray, fps: float) -> float:
    """VBench dynamic degree of one video: 100 when moving, else 0. `pair_flows(frames)` gives
    the flow (H', W', 2) of each consecutive pair at the size the flow model saw (padded).
    Non-finite flow (RAFT on frames under ~128 px: its coarsest correlation level has one row)
    gives NaN, no score, where VBench would count the pair as still."""
    kept = dynamic_frames(frames, fps)
    peaks = [metrics.flow_peak_magnitude(f) for f in pair_flows(kept)] if len(kept) > 1 else []
    if not np.all(np.isfinite(peaks)):  # ours: VBench reads NaN flow as "static"; we give no score
        return float("nan")
    h, w = frames.shape[1:3]
    return 100.0 * is_dynamic(peaks, h, w, len(kept))


AMT_ANCHOR_RESOLUTION = 1024 * 512  # VBench's MotionSmoothness.initialization, CUDA branch
AMT_ANCHOR_MEMORY = 1500 * 1024 ** 2
AMT_ANCHOR_MEMORY_BIAS = 2500 * 1024 ** 2


def amt_scale(height: int, width: int, vram_bytes: int | None) -> float:
    """The scale VBench runs AMT-S at (`MotionSmoothness.motion_score`): 1 on CPU (vram None);
    on CUDA the frames' pixels against 1024 x 512 per 1500 MiB of the GPU's total memory above
    2500 MiB, capped at 1 and snapped to 16 / floor(16 / sqrt(s))."""
    if vram_bytes is None:
        return 1.0
    if vram_bytes <= AMT_ANCHOR_MEMORY_BIAS:
        raise ValueError(f"motion smoothness: AMT-S needs more than {AMT_ANCHOR_MEMORY_BIAS // 1024 ** 2} MiB "
                         f"of GPU memory, the GPU has {vram_bytes // 1024 ** 2} MiB")
    scale = AMT_ANCHOR_RESOLUTION / (height * width) * np.sqrt((vram_bytes - AMT_ANCHOR_MEMORY_BIAS)
                                                               / AMT_ANCHOR_MEMORY)
    scale = 1 if scale > 1 else scale
    return float(1 / np.floor(1 / np.sqrt(scale) * 16) * 16)


def motion_smoothness(interpolate: Callable[[np.ndarray, np.ndarray], np.ndarray], frames: np.ndarray) -> float:
    """VBench motion smoothness (per cent): keep the even frames, rebuild the odd ones between
    them with `interpolate(firsts, seconds)` (uint8 batches in, uint8 out), score
    (255 - mean |real - rebuilt|) / 255."""
    even = frames[0::2]
    if len(even) < 2:
        raise ValueError(f"{len(frames)} frame(s): motion smoothness needs at least 3")
    rebuilt = interpolate(even[:-1], even[1:])
    real = frames[1::2][:len(rebuilt)]
    err = np.mean([np.mean(np.abs(r.astype(np.int16) - b.astype(np.int16))) for r, b in zip(real, rebuilt)])
    return 100.0 * float((255.0 - err) / 255.0)
