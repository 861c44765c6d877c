"""Feature extractors of Med-VBench's dimensions, by name, each with a tiny or weight-free twin.

| dimension | production | offline twin |
|---|---|---|
| subject consistency | `dino/vit-b-16` (facebook/dino-vitb16, CLS token) | `dino/tiny` (seeded ViT) |
| background consistency, text alignment | `clip/vit-b-32` (model registry) | `clip/tiny` |
| imaging quality | `musiq/spaq` (pyiqa MUSIQ, SPAQ weights, 0-100) | `musiq/tiny` (seeded small MUSIQ), `piqe` (weight-free: 100 - PIQE) |
| dynamic degree, warping proxy | `raft/large` (torchvision RAFT, C+T+S+K+H weights) | `farneback` (OpenCV, weight-free, real flow) |
| aesthetic | `aesthetic/laion` (model registry) | `aesthetic/tiny` |
| medical-frame share | `clip/vit-b-32` + the curation's frame probe, or zero-shot prompts | `clip/tiny` + a probe trained on it |

Production weights load from `weights` paths or hub/torchvision caches (HF_HUB_OFFLINE
honoured); tiny twins are random but fixed, so they test plumbing, and the weight-free ones
(piqe, farneback) give real numbers offline.
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np
import torch

from medgen_ray.models.weights import TINY_SEED, WeightsUnavailable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _resize_batch(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, size, size) normalised for ImageNet models."""
    x = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (t - mean) / std


class DinoEncoder:
    """DINO ViT features (CLS token) of frames, for subject consistency."""

    def __init__(self, model, size: int, device: str):
        self.model, self.size, self.device = model.to(device).eval(), size, device

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        out = self.model(pixel_values=_resize_batch(frames, self.size).to(self.device))
        return out.last_hidden_state[:, 0].float().cpu().numpy()


def load_dino(name: str, weights: str | None = None, device: str = "cpu") -> DinoEncoder:
    """The DINO encoder: the seeded tiny ViT or the real one."""
    from transformers import ViTConfig, ViTModel

    if name == "dino/tiny":
        torch.manual_seed(TINY_SEED + 10)
        cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=64, patch_size=16)
        return DinoEncoder(ViTModel(cfg, add_pooling_layer=False), 64, device)
    if name == "dino/vit-b-16":
        path = weights or "facebook/dino-vitb16"
        try:
            return DinoEncoder(ViTModel.from_pretrained(path, add_pooling_layer=False), 224, device)
        except OSError as exc:
            raise WeightsUnavailable(f"dino/vit-b-16: weights {path!r} unavailable ({exc}); pre-stage them "
                                     "and pass evaluate.dino_weights, or use dino/tiny") from exc
    raise KeyError(f"unknown DINO model {name!r}; choices: dino/vit-b-16, dino/tiny")


class ImagingQuality:
    """Frame quality on VBench's 0-100 scale; frames resized so the longer side is <= 512."""

    def __init__(self, fn: Callable[[torch.Tensor], float], name: str):
        self.fn, self.name = fn, name

    def score(self, frames: np.ndarray) -> float:
        vals = []
        for f in frames:
            h, w = f.shape[:2]
            if max(h, w) > 512:
                s = 512 / max(h, w)
                f = cv2.resize(f, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            vals.append(self.fn(torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float() / 255.0))
        return float(np.mean(vals))


def load_iqa(name: str, device: str = "cpu") -> ImagingQuality:
    """The imaging-quality scorer: MUSIQ (tiny or real) or weight-free PIQE."""
    if name == "musiq/tiny":
        from pyiqa.archs.musiq_arch import MUSIQ

        torch.manual_seed(TINY_SEED + 11)
        net = MUSIQ(pretrained=False, hidden_size=32, mlp_dim=64, num_heads=2, num_layers=1,
                    longer_side_lengths=[64]).eval()
        with torch.no_grad():
            net.head.bias.fill_(50.0)  # the middle of MUSIQ-SPAQ's 0-100 scale

        def tiny(x: torch.Tensor) -> float:
            with torch.no_grad():
                return float(net(x).clamp(0, 100).mean())

        return ImagingQuality(tiny, name)
    if name in ("musiq/spaq", "piqe"):
        import pyiqa

        try:
            metric = pyiqa.create_metric("musiq-spaq" if name == "musiq/spaq" else "piqe", device=device)
        except Exception as exc:  # pyiqa raises several types when weights cannot be fetched
            raise WeightsUnavailable(f"{name}: pyiqa could not load it ({exc})") from exc
        if name == "piqe":  # lower is better, 0-100: flip onto the higher-is-better scale
            return ImagingQuality(lambda x: 100.0 - float(metric(x.to(device))), name)
        return ImagingQuality(lambda x: float(metric(x.to(device))), name)
    raise KeyError(f"unknown imaging-quality model {name!r}; choices: musiq/spaq, musiq/tiny, piqe")


FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow a -> b (H, W, 2) in pixels, OpenCV Farneback on grey frames."""
    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def raft_flow_fn(model: torch.nn.Module, device: str) -> FlowFn:
    """A torchvision RAFT as a flow function. RAFT needs sides >= 128 divisible by 8: smaller
    frames are upscaled and the flow scaled back."""
    model = model.to(device).eval()

    @torch.inference_mode()
    def raft(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        s = max(1.0, 128.0 / min(h, w))
        th, tw = int(np.ceil(h * s / 8) * 8), int(np.ceil(w * s / 8) * 8)

        def prep(x):
            t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
            return torch.nn.functional.interpolate(t, size=(th, tw), mode="bilinear", align_corners=False).to(device)

        flow = model(prep(a), prep(b), num_flow_updates=20)[-1]
        flow = torch.nn.functional.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)[0]
        flow[0] *= w / tw
        flow[1] *= h / th
        return flow.permute(1, 2, 0).float().cpu().numpy()

    return raft


def load_flow(name: str, weights: str | None = None, device: str = "cpu") -> FlowFn:
    """The optical-flow function: RAFT (torchvision) or OpenCV Farneback."""
    if name == "farneback":
        return farneback_flow
    if name == "raft/large":
        from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

        try:
            if weights:
                model = raft_large(weights=None)
                model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            else:
                model = raft_large(weights=Raft_Large_Weights.C_T_SKHT_V2)
        except (OSError, RuntimeError) as exc:
            raise WeightsUnavailable(f"raft/large: weights unavailable ({exc}); pass evaluate.flow_weights "
                                     "or use farneback") from exc
        return raft_flow_fn(model, device)
    raise KeyError(f"unknown flow model {name!r}; choices: raft/large, farneback")


def load_all(cfg: Any, device: str = "cpu") -> dict[str, Any]:
    """Every model the enabled dimensions need, loaded once (an actor's setup)."""
    from medgen_ray.models.registry import load_model

    dims = set(cfg.dimensions)
    out: dict[str, Any] = {}
    if "subject_consistency" in dims:
        out["dino"] = load_dino(cfg.dino_model, cfg.dino_weights, device)
    if dims & {"background_consistency", "text_alignment", "medical_frames"}:
        out["clip"] = load_model(cfg.clip_model, cfg.clip_weights, device, kind="clip")
    if "medical_frames" in dims:
        from medgen_ray.curate.classify import MedicalFrameScorer

        out["medical"] = MedicalFrameScorer(out["clip"], cfg.clip_model, cfg.medical_probe, cfg.medical_prompts,
                                            cfg.other_prompts)
    if "imaging_quality" in dims:
        out["iqa"] = load_iqa(cfg.iqa_model, device)
    if dims & {"dynamic_degree", "warping_auto"}:
        out["flow"] = load_flow(cfg.flow_model, cfg.flow_weights, device)
    if "aesthetic" in dims:
        out["aesthetic"] = load_model(cfg.aesthetic_model, None, device, kind="aesthetic")
    return out
