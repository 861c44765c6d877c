"""LoRA on a video transformer of any family (peft), and its two export formats.

- diffusers format: `pytorch_lora_weights.safetensors` with `transformer.<module>.lora_A/B.weight`
  keys, loadable by the pipeline's `load_lora_weights` (HunyuanVideo, Wan) or the transformer's
  `load_lora_adapter` (every family; HunyuanVideo-1.5's pipeline has no LoRA mixin in diffusers 0.42).
- original-key format (what ComfyUI loads): `diffusion_model.<original module>.lora_A/B.weight`,
  with the family's original names (`original_groups` of its module). Where the original
  checkpoint fuses q/k/v (HunyuanVideo everywhere, HunyuanVideo-1.5's token refiner), separate
  q, k, v adapters of rank r become one adapter of rank 3r on the fused weight:
  A = [A_q; A_k; A_v], B = blockdiag(B_q, B_k, B_v). The product is exactly the fused update.

Both formats fold the peft scale alpha/r into B and carry no alpha, so every loader applies
scale 1 and gets the trained update whatever its alpha convention.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
COMFY_FILE = "medgen_lora_comfy.safetensors"
ADAPTER = "default"
PREFIX = "transformer."


def add_lora(transformer: torch.nn.Module, rank: int, alpha: float, targets: list[str],
             dropout: float = 0.0, adapter: str = ADAPTER) -> torch.nn.Module:
    """Freeze the base weights and attach a LoRA adapter; returns the same module."""
    from peft import LoraConfig

    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n, _ in transformer.named_modules())]
    if missing:
        raise ValueError(f"lora.targets: no module named {missing} in the transformer")
    transformer.requires_grad_(False)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights=True, target_modules=targets)
    transformer.add_adapter(cfg, adapter_name=adapter)
    return transformer


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters that require gradients (the LoRA weights)."""
    return [p for p in module.parameters() if p.requires_grad]


def lora_state(transformer: torch.nn.Module, adapter: str = ADAPTER) -> dict[str, torch.Tensor]:
    """Raw peft weights (module keys without prefix), for checkpoints."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(transformer, adapter_name=adapter).items()}


def load_lora_state(transformer: torch.nn.Module, state: dict[str, torch.Tensor], adapter: str = ADAPTER) -> None:
    """Load a LoRA state dict into the model's adapter; raises on unexpected keys."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(transformer, state, adapter_name=adapter)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ValueError(f"LoRA checkpoint has keys the model lacks: {unexpected[:3]}")


def scaled_state(state: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """Fold alpha/r into every lora_B so the update is B·A with scale 1."""
    scale = alpha / rank
    return {k: (v * scale if ".lora_B." in k else v).contiguous() for k, v in state.items()}


def save_diffusers_lora(state: dict[str, torch.Tensor], rank: int, alpha: float, out_dir: str) -> str:
    """Write the diffusers-format LoRA file; returns its path."""
    from safetensors.torch import save_file

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path = Path(out_dir) / DIFFUSERS_FILE
    tensors = {PREFIX + k: v for k, v in scaled_state(state, rank, alpha).items()}
    save_file(tensors, str(path), metadata={"format": "pt", "medgen_rank": str(rank), "medgen_alpha": str(alpha)})
    return str(path)


# --- original-key (ComfyUI) format -------------------------------------------------------------

def _groups(transformer_cfg: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """(diffusers block regex, original name template, [(diffusers suffix, output rows)]) of the
    family whose transformer wrote this config (`_class_name`; the default family's when absent,
    as in configs written before families)."""
    from medgen_ray.models.families import DEFAULT_FAMILY, FAMILIES
    from medgen_ray.models.video import original_groups

    return original_groups(transformer_cfg.get("_class_name") or FAMILIES[DEFAULT_FAMILY].transformer, transformer_cfg)


def _module_names(state: dict[str, torch.Tensor]) -> set[str]:
    return {k.split(".lora_")[0] for k in state}


def to_original_keys(state: dict[str, torch.Tensor], transformer_cfg: dict[str, Any], rank: int,
                     alpha: float) -> dict[str, torch.Tensor]:
    """diffusers-named peft weights -> fused original-key LoRA (scale folded into B)."""
    state = scaled_state(state, rank, alpha)
    modules = _module_names(state)
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    for block_re, orig, parts in _groups(transformer_cfg):
        if block_re:  # per block: the indices some targeted module has
            blocks = sorted({m.group(1) for name in modules if (m := re.match(block_re + "(.+)$", name))
                             and name[m.end(1) + 1:] in {p for p, _ in parts}}, key=int)
        else:  # a top-level module (Wan's proj_out <-> head.head)
            blocks = [""] if any(p in modules for p, _ in parts) else []
        for idx in blocks:
            prefix = re.sub(r"\(\\d\+\)", idx, block_re).replace("\\.", ".")
            names = [prefix + p for p, _ in parts]
            present = [n for n in names if n in modules]
            if not present:
                continue
            r = state[present[0] + ".lora_A.weight"].shape[0]
            in_dim = state[present[0] + ".lora_A.weight"].shape[1]
            a_rows, b_blocks = [], []
            for (_part, rows), name in zip(parts, names):
                if name in modules:
                    a_rows.append(state[name + ".lora_A.weight"])
                    b_blocks.append(state[name + ".lora_B.weight"])
                    used.add(name)
                else:  # an untargeted slice of the fused weight: no update there
                    a_rows.append(torch.zeros(r, in_dim))
                    b_blocks.append(torch.zeros(rows, r))
            key = "diffusion_model." + orig.format(idx)
            out[key + ".lora_A.weight"] = torch.cat(a_rows, 0).contiguous()
            out[key + ".lora_B.weight"] = torch.block_diag(*b_blocks).contiguous()
    left = sorted(modules - used)
    if left:
        raise ValueError(f"original-key export: no fused mapping for LoRA modules {left[:3]}; "
                         "supported targets are the family's attention projections and MLP/output layers")
    return out


def from_original_keys(state: dict[str, torch.Tensor], transformer_cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Inverse of `to_original_keys` for a LoRA it wrote: per-module A and B (rank 3r, exact)."""
    out: dict[str, torch.Tensor] = {}
    for key in sorted(k for k in state if k.endswith(".lora_A.weight")):
        orig = key.removeprefix("diffusion_model.").removesuffix(".lora_A.weight")
        a, b = state[key], state[key.replace(".lora_A.", ".lora_B.")]
        for block_re, template, parts in _groups(transformer_cfg):
            m = re.fullmatch(re.escape(template).replace(r"\{\}", r"(\d+)"), orig)
            if not m:
                continue
            prefix = re.sub(r"\(\\d\+\)", m.group(1) if m.re.groups else "", block_re).replace("\\.", ".")
            start = 0
            for part, rows in parts:
                b_part = b[start:start + rows]
                start += rows
                if b_part.abs().sum() > 0:
                    out[prefix + part + ".lora_A.weight"] = a
                    out[prefix + part + ".lora_B.weight"] = b_part.contiguous()
            break
        else:
            raise ValueError(f"original-key LoRA: unknown module {orig!r}")
    return out


def save_original_lora(state: dict[str, torch.Tensor], transformer_cfg: dict[str, Any], rank: int, alpha: float,
                       out_dir: str) -> str:
    """Write the LoRA with the original (ComfyUI) key names; returns its path."""
    from safetensors.torch import save_file

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path = Path(out_dir) / COMFY_FILE
    save_file(to_original_keys(state, transformer_cfg, rank, alpha), str(path), metadata={"format": "pt"})
    return str(path)


def load_lora_file(path: str, transformer: Any = None) -> dict[str, torch.Tensor]:
    """Either export format (a file, or a folder holding one; local or remote) -> diffusers-keyed
    tensors with the `transformer.` prefix. `transformer` (a model or its config dict) names the
    family whose original keys an original-key file is read with."""
    transformer_cfg = transformer_config(transformer)
    from safetensors.torch import load_file

    if "://" in path and not path.startswith("file://"):
        path = _fetch(path)
    p = Path(path.removeprefix("file://"))
    if p.is_dir():
        candidates = [p / DIFFUSERS_FILE, p / COMFY_FILE]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(f"LoRA folder {path!r}: has neither {DIFFUSERS_FILE} nor {COMFY_FILE}")
        p = found[0]
    if not p.is_file():
        raise FileNotFoundError(f"LoRA file {path!r}: not found")
    state = load_file(str(p))
    if any(k.startswith("diffusion_model.") for k in state):
        if transformer_cfg is None:
            raise ValueError(f"{path}: original-key LoRA needs the transformer config to unfuse")
        state = {PREFIX + k: v for k, v in from_original_keys(state, transformer_cfg).items()}
    return state


def transformer_config(transformer: Any) -> dict[str, Any] | None:
    """A transformer's config with its class name (a config dict passes through)."""
    if transformer is None or isinstance(transformer, dict):
        return transformer
    return {**dict(transformer.config), "_class_name": type(transformer).__name__}


def _fetch(uri: str) -> str:
    """A remote LoRA file or folder copied to a fresh temporary folder (small files; never
    cached, so a retrained adapter at the same URI is picked up)."""
    import tempfile

    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"LoRA {uri!r}: not found")
    dest = Path(tempfile.mkdtemp(prefix="medgen_lora_"))
    if fs.isdir(path):
        for name in (DIFFUSERS_FILE, COMFY_FILE):
            if fs.exists(f"{path.rstrip('/')}/{name}"):
                fs.get(f"{path.rstrip('/')}/{name}", str(dest / name))
        return str(dest)
    fs.get(path, str(dest / Path(path).name))
    return str(dest / Path(path).name)


def merge_lora_into_pipeline(pipe, lora_path: str, adapter: str = "medgen", scale: float = 1.0):
    """Fuse a LoRA into the pipeline's transformer weights and drop the adapter layers."""
    transformer = pipe.transformer
    transformer.load_lora_adapter(load_lora_file(lora_path, transformer), adapter_name=adapter, prefix="transformer")
    transformer.fuse_lora(lora_scale=scale, adapter_names=[adapter])
    transformer.unload_lora()
    return pipe
