"""Models of Med-VBench's dimensions, by name, each with a tiny or weight-free twin. Every
production model is the one VBench 0.1.5 runs, built the way VBench builds it
(`medgen_ray/evaluate/dimensions.py` computes the dimensions as VBench does).

| dimension | production (VBench's) | offline twin |
|---|---|---|
| subject consistency | `dino/vit-b-16` (DINO ViT-B/16, CLS; DINO's position-embedding interpolation) | `dino/tiny` (seeded ViT) |
| background consistency, text alignment | `clip/vit-b-32` (model registry, QuickGELU) | `clip/tiny` |
| imaging quality | `musiq/spaq` (pyiqa's MUSIQ architecture, SPAQ weights, 0-100) | `musiq/tiny`; `piqe` (weight-free, ours: 100 - PIQE) |
| dynamic degree, warping proxy | `raft/things` (the original RAFT code in the vbench wheel, raft-things weights) | `farneback` (OpenCV, weight-free) |
| motion smoothness | `amt/s` (AMT-S, code in the vbench wheel, amt-s.pth) | `linear` (midpoint; not VBench's quantity) |
| aesthetic | `aesthetic/vbench` (CLIP ViT-L/14 + LAION linear head) | `aesthetic/vbench-tiny` |
| VideoScore v1.1's five aspects | `videoscore/v1.1` (TIGER-Lab, Mantis-Idefics2-8B + regression head) | `videoscore/tiny` |
| medical-frame share (ours) | `clip/vit-b-32` + the curation's frame probe, or zero-shot prompts | `clip/tiny` + a probe trained on it |

Weights come from the `evaluate.*_weights` paths (`medgen weights pull NAME`) or hub caches
(HF_HUB_OFFLINE honoured); every loader also takes weights="random" (production shapes, seeded:
benchmarks and the reference tests). Tiny twins test plumbing; piqe and farneback give real
numbers offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from medgen_ray.models.weights import RANDOM, TINY_SEED, WeightsUnavailable, stage_weights


def _random(weights: str | None) -> bool:
    return weights == RANDOM


def _state(weights: str, what: str) -> dict:
    """A state dict from a file (or the single .pth/.pt/.bin of a pulled folder)."""
    try:
        path = _weights_path(weights)
    except WeightsUnavailable as exc:
        raise WeightsUnavailable(f"{what}: {exc}; `medgen weights pull {what} --dest DIR`") from exc
    return torch.load(path, map_location="cpu", weights_only=False)


def dino_pos_embed(embeddings_module, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINO's own position-embedding interpolation (facebookresearch/dino, vision_transformer.py,
    `VisionTransformer.interpolate_pos_encoding`): the square grid is resized bicubically by
    the scale factor (side // patch + 0.1) / grid, not to an exact size as transformers' ViT does;
    the two differ on non-square frames."""
    pos = embeddings_module.position_embeddings
    n_patches, n_pos = embeddings.shape[1] - 1, pos.shape[1] - 1
    if n_patches == n_pos and height == width:
        return pos
    patch = embeddings_module.patch_size
    grid = int(round(n_pos ** 0.5))
    dim = pos.shape[-1]
    gh, gw = height // patch + 0.1, width // patch + 0.1
    grid_pos = pos[:, 1:].reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
    grid_pos = torch.nn.functional.interpolate(grid_pos, scale_factor=(gh / grid, gw / grid), mode="bicubic")
    return torch.cat((pos[:, :1], grid_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)


class DinoEncoder:
    """DINO ViT CLS features of normalised frames at any size (position embeddings interpolated
    as DINO does), for subject consistency."""

    def __init__(self, model, device: str):
        self.model, self.device = model.to(device).eval(), device
        emb = self.model.embeddings
        emb.interpolate_pos_encoding = lambda e, h, w: dino_pos_embed(emb, e, h, w)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x.to(self.device), interpolate_pos_encoding=True)
        return out.last_hidden_state[:, 0]


def load_dino(name: str, weights: str | None = None, device: str = "cpu") -> DinoEncoder:
    """The DINO encoder: the seeded tiny ViT, or ViT-B/16 (hub weights, a pulled folder, or random)."""
    from transformers import ViTConfig, ViTModel

    if name == "dino/tiny":
        torch.manual_seed(TINY_SEED + 10)
        cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=64, patch_size=16)
        return DinoEncoder(ViTModel(cfg, add_pooling_layer=False), device)
    if name == "dino/vit-b-16":
        if _random(weights):  # DINO ViT-B/16's shape (layer-norm eps as DINO's own code)
            torch.manual_seed(TINY_SEED + 10)
            return DinoEncoder(ViTModel(ViTConfig(layer_norm_eps=1e-6), add_pooling_layer=False), device)
        path = stage_weights(weights) if weights else "facebook/dino-vitb16"
        try:
            return DinoEncoder(ViTModel.from_pretrained(path, add_pooling_layer=False), device)
        except OSError as exc:
            raise WeightsUnavailable(f"dino/vit-b-16: weights {path!r} unavailable ({exc}); `medgen weights pull "
                                     "dino/vit-b-16 --dest DIR` and set evaluate.dino_weights, or use dino/tiny") from exc
    raise KeyError(f"unknown DINO model {name!r}; choices: dino/vit-b-16, dino/tiny")


class ImagingQuality:
    """A frame-quality model on VBench's 0-100 scale: one (1, 3, H, W) frame in [0, 1] -> score."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor | float], name: str,
                 net: torch.nn.Module | None = None):
        self.fn, self.name, self.net = fn, name, net

    def __call__(self, x: torch.Tensor) -> float:
        return float(self.fn(x))


def load_iqa(name: str, weights: str | None = None, device: str = "cpu") -> ImagingQuality:
    """The imaging-quality model: MUSIQ-SPAQ as VBench builds it (pyiqa's MUSIQ architecture),
    its seeded small twin, or weight-free PIQE (ours, flipped onto higher-is-better)."""
    from pyiqa.archs.musiq_arch import MUSIQ

    if name == "musiq/tiny":
        torch.manual_seed(TINY_SEED + 11)
        net = MUSIQ(pretrained=False, hidden_size=32, mlp_dim=64, num_heads=2, num_layers=1,
                    longer_side_lengths=[64]).to(device).eval()
        with torch.no_grad():
            net.head.bias.fill_(50.0)  # the middle of MUSIQ-SPAQ's 0-100 scale
        return ImagingQuality(lambda x: net(x.to(device)), name, net)
    if name == "musiq/spaq":
        try:
            if _random(weights):
                torch.manual_seed(TINY_SEED + 11)
                net = MUSIQ(pretrained=False)
            elif weights:
                net = MUSIQ(pretrained_model_path=str(_weights_path(weights)))
            else:
                net = MUSIQ(pretrained="spaq")  # pyiqa's own download/cache of musiq_spaq_ckpt
        except WeightsUnavailable:
            raise
        except Exception as exc:  # pyiqa raises several types when weights cannot be fetched
            raise WeightsUnavailable(f"musiq/spaq: weights unavailable ({exc}); `medgen weights pull musiq/spaq "
                                     "--dest DIR` and set evaluate.iqa_weights") from exc
        net = net.to(device).eval()
        return ImagingQuality(lambda x: net(x.to(device)), name, net)
    if name == "piqe":
        import pyiqa

        metric = pyiqa.create_metric("piqe", device=device)
        return ImagingQuality(lambda x: 100.0 - float(metric(x.to(device))), name)
    raise KeyError(f"unknown imaging-quality model {name!r}; choices: musiq/spaq, musiq/tiny, piqe")


def _weights_path(weights: str) -> Path:
    """The local weights file of a path, a pulled folder or a remote URI (copied once)."""
    path = Path(stage_weights(weights))
    if path.is_dir():
        found = sorted(p for ext in ("*.pth", "*.pt", "*.bin") for p in path.glob(ext))
        if len(found) != 1:
            raise WeightsUnavailable(f"expected one weights file in {path}, found {[p.name for p in found]}")
        return found[0]
    if not path.exists():
        raise WeightsUnavailable(f"weights {str(path)!r} not found")
    return path


class Flow:
    """Optical flow of each consecutive pair of frames, batched: `pairs(frames)` at the size the
    model saw (RAFT: replicate-padded to /8, as VBench's dynamic degree reads it), or with
    `unpad=True` at the frames' size (the warping proxy)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None, divisor: int,
                 device: str, batch_size: int = 8, net: torch.nn.Module | None = None):
        self.fn, self.divisor, self.device, self.batch_size, self.net = fn, divisor, device, batch_size, net

    def _run(self, a: np.ndarray, b: np.ndarray, unpad: bool) -> list[np.ndarray]:
        from medgen_ray.evaluate.dimensions import as_tensor, pad_to

        if self.fn is None:  # Farneback: OpenCV on grey frames, no padding
            return [farneback_flow(x, y) for x, y in zip(a, b)]
        out = []
        with torch.inference_mode():
            for i in range(0, len(a), self.batch_size):
                x, pad = pad_to(as_tensor(a[i:i + self.batch_size]).to(self.device), self.divisor)
                y, _ = pad_to(as_tensor(b[i:i + self.batch_size]).to(self.device), self.divisor)
                flow = self.fn(x, y)
                if unpad:
                    h, w = flow.shape[-2:]
                    flow = flow[..., pad[2]:h - pad[3], pad[0]:w - pad[1]]
                out += list(flow.permute(0, 2, 3, 1).float().cpu().numpy())
        return out

    def pairs(self, frames: np.ndarray, unpad: bool = False) -> list[np.ndarray]:
        """Flow t -> t+1 for every t."""
        return self._run(frames[:-1], frames[1:], unpad)


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow a -> b (H, W, 2) in pixels, OpenCV Farneback on grey frames."""
    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def raft_things(state: dict | None = None) -> torch.nn.Module:
    """The RAFT network VBench's dynamic degree runs (vbench.third_party.RAFT, the original RAFT
    code), with a raft-things state dict (`module.` prefixes stripped) or seeded random weights."""
    from easydict import EasyDict
    from vbench.third_party.RAFT.core.raft import RAFT

    torch.manual_seed(TINY_SEED + 12)
    net = RAFT(EasyDict({"small": False, "mixed_precision": False, "alternate_corr": False}))
    if state is not None:
        net.load_state_dict({k.replace("module.", ""): v for k, v in state.items()})
    return net.eval()


def load_flow(name: str, weights: str | None = None, device: str = "cpu") -> Flow:
    """The optical-flow model: RAFT with raft-things weights as VBench runs it (20 iterations,
    inputs 0-255), or OpenCV Farneback (weight-free twin)."""
    if name == "farneback":
        return Flow(None, 1, device)
    if name == "raft/things":
        if not weights:
            raise WeightsUnavailable("raft/things: set evaluate.flow_weights to raft-things.pth "
                                     "(`medgen weights pull raft/things --dest DIR`), or use farneback")
        net = raft_things(None if _random(weights) else _state(weights, "raft/things")).to(device)
        return Flow(lambda a, b: net(a, b, iters=20, test_mode=True)[1], 8, device, net=net)
    raise KeyError(f"unknown flow model {name!r}; choices: raft/things, farneback")


AMT_S_CONFIG = "vbench/third_party/amt/cfgs/AMT-S.yaml"


def amt_s(state: dict | None = None) -> torch.nn.Module:
    """AMT-S as VBench builds it (its network config from the vbench wheel), with the released
    amt-s.pth state dict or seeded random weights."""
    import importlib.util

    from omegaconf import OmegaConf
    from vbench.third_party.amt.utils.build_utils import build_from_cfg

    root = Path(importlib.util.find_spec("vbench").origin).parents[1]
    torch.manual_seed(TINY_SEED + 13)
    net = build_from_cfg(OmegaConf.load(root / AMT_S_CONFIG).network)
    if state is not None:
        net.load_state_dict(state.get("state_dict", state))
    return net.eval()


class Interpolator:
    """Middle frames of uint8 pairs (N, H, W, 3) -> uint8 (N, H, W, 3). On CUDA `vram` is the
    GPU's total memory: VBench then runs AMT-S downsized on large frames (`amt_scale`)."""

    def __init__(self, net: torch.nn.Module | None, device: str, batch_size: int = 4, vram: int | None = None):
        self.net, self.device, self.batch_size, self.vram = net, device, batch_size, vram

    def __call__(self, firsts: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        from medgen_ray.evaluate.dimensions import amt_scale, as_tensor, pad_to

        if self.net is None:  # linear midpoint, truncated to uint8 as AMT's output is
            return ((firsts.astype(np.float32) + seconds) / 2.0).astype(np.uint8)
        scale = amt_scale(*firsts.shape[1:3], self.vram)
        divisor = int(16 / scale)  # VBench's padding for the scale
        out = []
        with torch.inference_mode():
            for i in range(0, len(firsts), self.batch_size):
                a, pad = pad_to(as_tensor(firsts[i:i + self.batch_size]).to(self.device) / 255.0, divisor)
                b, _ = pad_to(as_tensor(seconds[i:i + self.batch_size]).to(self.device) / 255.0, divisor)
                embt = torch.full((len(a), 1, 1, 1), 0.5, device=self.device)
                mid = self.net(a, b, embt, scale_factor=scale, eval=True)["imgt_pred"]
                h, w = mid.shape[-2:]
                mid = mid[..., pad[2]:h - pad[3], pad[0]:w - pad[1]]
                out.append((mid * 255.0).permute(0, 2, 3, 1).cpu().numpy().clip(0, 255).astype(np.uint8))
        return np.concatenate(out)


def load_interpolator(name: str, weights: str | None = None, device: str = "cpu") -> Interpolator:
    """The frame interpolator of motion smoothness: AMT-S (VBench's) or the linear midpoint (a
    weight-free twin; not VBench's quantity)."""
    if name == "linear":
        return Interpolator(None, device)
    if name == "amt/s":
        if not weights:
            raise WeightsUnavailable("amt/s: set evaluate.interpolator_weights to amt-s.pth "
                                     "(`medgen weights pull amt/s --dest DIR`), or use linear")
        vram = torch.cuda.get_device_properties(device).total_memory if device.startswith("cuda") else None
        return Interpolator(amt_s(None if _random(weights) else _state(weights, "amt/s")).to(device), device,
                            vram=vram)
    raise KeyError(f"unknown interpolator {name!r}; choices: amt/s, linear")


class ClipImages:
    """A CLIP image tower as VBench feeds it: normalised (N, 3, n_px, n_px) -> features."""

    def __init__(self, encoder):
        self.encoder, self.n_px = encoder, encoder.image_size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.model.encode_image(x.to(self.encoder.device, self.encoder.dtype))


class VBenchAesthetic:
    """VBench's aesthetic model: CLIP ViT-L/14 image features and LAION's linear head (one
    nn.Linear(768, 1), `sa_0_4_vit_l_14_linear.pth`), not the improved MLP the curation uses."""

    def __init__(self, encoder, head: torch.nn.Linear, name: str):
        self.images, self.head, self.name = ClipImages(encoder), head.to(encoder.device).eval(), name


def load_aesthetic(name: str, weights: str | None = None, device: str = "cpu") -> VBenchAesthetic:
    """aesthetic/vbench (ViT-L/14 + LAION linear head; weights: the head file or a pulled
    folder holding it and clip/) or aesthetic/vbench-tiny (tiny CLIP + seeded linear head)."""
    from medgen_ray.models.registry import load_model

    if name == "aesthetic/vbench-tiny":
        encoder = load_model("clip/tiny", None, device, kind="clip")
        torch.manual_seed(TINY_SEED + 14)
        head = torch.nn.Linear(int(encoder.model.visual.output_dim), 1)
        with torch.no_grad():
            head.bias.fill_(5.0)  # the middle of the 1-10 scale
        return VBenchAesthetic(encoder, head, name)
    if name == "aesthetic/vbench":
        clip_weights = RANDOM if _random(weights) else None
        torch.manual_seed(TINY_SEED + 14)
        head = torch.nn.Linear(768, 1)
        if weights and not _random(weights):
            root = Path(stage_weights(weights))
            if root.is_dir() and (root / "clip").is_dir():
                clip_weights = str(root / "clip")
            head.load_state_dict(_state(str(root / LAION_LINEAR_HEAD) if root.is_dir() else weights,
                                        "aesthetic/vbench"))
        elif not weights:
            raise WeightsUnavailable("aesthetic/vbench: set evaluate.aesthetic_weights to LAION's "
                                     f"{LAION_LINEAR_HEAD} (`medgen weights pull aesthetic/vbench --dest DIR`)")
        encoder = load_model("clip/vit-l-14", clip_weights, device, kind="clip")
        return VBenchAesthetic(encoder, head, name)
    raise KeyError(f"unknown aesthetic model {name!r}; choices: aesthetic/vbench, aesthetic/vbench-tiny")


LAION_LINEAR_HEAD = "sa_0_4_vit_l_14_linear.pth"


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
        out["iqa"] = load_iqa(cfg.iqa_model, cfg.iqa_weights, device)
    if dims & {"dynamic_degree", "warping_auto"}:
        out["flow"] = load_flow(cfg.flow_model, cfg.flow_weights, device)
    if "motion_smoothness" in dims:
        out["interpolator"] = load_interpolator(cfg.interpolator_model, cfg.interpolator_weights, device)
    if "aesthetic" in dims:
        out["aesthetic"] = load_aesthetic(cfg.aesthetic_model, cfg.aesthetic_weights, device)
    if any(d.startswith("videoscore_") for d in dims):
        from medgen_ray.evaluate.videoscore import load_videoscore

        out["videoscore"] = load_videoscore(cfg.videoscore_model, cfg.videoscore_weights, device,
                                            cfg.videoscore_max_frames)
    return out
