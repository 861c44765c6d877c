"""The original-key (ComfyUI) LoRA export against code and mappings nobody here wrote.

1. diffusers 0.42.1 reads original-key HunyuanVideo LoRAs itself (loaders/lora_pipeline.py,
   `HunyuanVideoLoraLoaderMixin.lora_state_dict` -> lora_conversion_utils.py,
   `_convert_hunyuan_video_lora_to_diffusers`): our full-size export through that converter must
   give back every trained module's update exactly — so its module names are HunyuanVideo's
   real checkpoint names and the fused q/k/v (+ MLP) packing is the one the checkpoint uses.
2. ComfyUI is not on PyPI, so its mapping is cited, not run: Comfy-Org/ComfyUI at commit
   17358c8f73b581a0d22facc3c385822f09b8bfb1, comfy/lora.py `model_lora_keys_unet`, the
   `comfy.model_base.HunyuanVideo` branch (for each model weight `diffusion_model.<m>.weight`:
   `_mod.lin.`->`_mod.linear.`, `_attn.qkv.`->`_attn_qkv.`, `_attn.proj.`->`_attn_proj.`,
   `mlp.0.`->`mlp.fc1.`, `mlp.2.`->`mlp.fc2.`, `.modulation.lin.`->`.modulation.linear.`, then keys
   `transformer.<m'>` and `diffusion_model.<m'>`), and comfy/weight_adapter/lora.py
   `LoRAAdapter.load` (a module x is read from `x.lora_B.weight` + `x.lora_A.weight`, among
   other spellings). ComfyUI's own module names for HunyuanVideo's linears (comfy/ldm/
   hunyuan_video/model.py, same commit) are listed in COMFY_LINEARS. A full-size export (the
   13B transformer's config, built on the meta device) must have every key recognised.
"""

import functools

import torch

from medgen_ray.train import lora

# ComfyUI's HunyuanVideo module names of the linears a LoRA may target (model.py, cited above).
COMFY_LINEARS = {
    "double": ["img_mod.lin", "img_attn.qkv", "img_attn.proj", "img_mlp.0", "img_mlp.2",
               "txt_mod.lin", "txt_attn.qkv", "txt_attn.proj", "txt_mlp.0", "txt_mlp.2"],
    "single": ["linear1", "linear2", "modulation.lin"],
    "refiner": ["self_attn.qkv", "self_attn.proj", "mlp.0", "mlp.2", "adaLN_modulation.1"],
}
# comfy/lora.py, HunyuanVideo branch: model key -> LoRA key spelling (order as written there).
COMFY_LORA_RENAMES = [("_mod.lin.", "_mod.linear."), ("_attn.qkv.", "_attn_qkv."), ("_attn.proj.", "_attn_proj."),
                      ("mlp.0.", "mlp.fc1."), ("mlp.2.", "mlp.fc2."), (".modulation.lin.", ".modulation.linear.")]
# comfy/weight_adapter/lora.py, LoRAAdapter.load: the (up, down) spellings it reads.
COMFY_ADAPTER_SUFFIXES = [(".lora_up.weight", ".lora_down.weight"), ("_lora.up.weight", "_lora.down.weight"),
                          (".lora_B.weight", ".lora_A.weight"), (".lora.up.weight", ".lora.down.weight"),
                          (".lora_B", ".lora_A"), (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight")]


def comfy_key_map(n_double: int, n_single: int, n_refiner: int) -> dict[str, str]:
    """The LoRA module keys ComfyUI maps for a HunyuanVideo model of this size."""
    model_keys = [f"diffusion_model.double_blocks.{i}.{m}.weight" for i in range(n_double) for m in COMFY_LINEARS["double"]]
    model_keys += [f"diffusion_model.single_blocks.{i}.{m}.weight" for i in range(n_single) for m in COMFY_LINEARS["single"]]
    model_keys += [f"diffusion_model.txt_in.individual_token_refiner.blocks.{i}.{m}.weight"
                   for i in range(n_refiner) for m in COMFY_LINEARS["refiner"]]
    out = {}
    for k in model_keys:
        key_lora = k
        for a, b in COMFY_LORA_RENAMES:
            key_lora = key_lora.replace(a, b)
        key_lora = key_lora[len("diffusion_model."):-len(".weight")]
        out[f"transformer.{key_lora}"] = k
        out[f"diffusion_model.{key_lora}"] = k
    return out


def comfy_unread(keys: set[str], key_map: dict[str, str]) -> set[str]:
    """Keys ComfyUI's loader would leave unread ("lora key not loaded")."""
    read = set()
    for x in key_map:
        for up, down in COMFY_ADAPTER_SUFFIXES:
            if x + up in keys:
                read |= {x + up, x + down}
                break
    return keys - read


@functools.lru_cache(maxsize=1)
def _full_size_export() -> tuple[dict[str, torch.Tensor], dict]:
    """Original-key export of a rank-1 LoRA on the full-size transformer (default targets)."""
    from diffusers import HunyuanVideoTransformer3DModel
    from peft.utils import get_peft_model_state_dict

    from medgen_ray.config import load_config

    with torch.device("meta"):
        tr = HunyuanVideoTransformer3DModel()  # diffusers' defaults are the released 13B config
    lora.add_lora(tr, 1, 1.0, load_config(None).train.lora.targets)
    shapes = {k: v.shape for k, v in get_peft_model_state_dict(tr, adapter_name=lora.ADAPTER).items()}
    state = {k: torch.ones(s) for k, s in shapes.items()}
    return lora.to_original_keys(state, dict(tr.config), 1, 1.0), dict(tr.config)


def test_full_size_export_keys_are_all_read_by_comfyui():
    out, cfg = _full_size_export()
    key_map = comfy_key_map(cfg["num_layers"], cfg["num_single_layers"], cfg["num_refiner_layers"])
    assert len(out) == 168  # 20 double blocks x (img qkv, img proj), 40 single linear1, 2 refiners x 2; A and B
    assert not comfy_unread(set(out), key_map)


def test_the_comfyui_check_can_fail():
    out, cfg = _full_size_export()
    key_map = comfy_key_map(cfg["num_layers"], cfg["num_single_layers"], cfg["num_refiner_layers"])
    renamed = {k.replace("img_attn_qkv", "img_attn.qkv") for k in out}  # ComfyUI's own spelling: not a LoRA key
    assert comfy_unread(renamed, key_map)


def test_full_size_export_reads_back_exactly_through_diffusers_conversion():
    """diffusers' converter hard-codes the released model's widths (3072, MLP 12288), so it runs
    on the full-size export (rank 1, random values): every trained module comes back under its
    diffusers name with the same update B @ A, and nothing else comes back."""
    from diffusers.loaders.lora_conversion_utils import _convert_hunyuan_video_lora_to_diffusers

    out, cfg = _full_size_export()
    torch.manual_seed(0)
    out = {k: torch.randn(v.shape) * (v != 0) for k, v in out.items()}  # keep the zero (untargeted) slices
    ours = lora.from_original_keys(out, cfg)
    theirs = _convert_hunyuan_video_lora_to_diffusers(dict(out))
    theirs = {k.removeprefix("transformer."): v for k, v in theirs.items()}
    modules = {k.split(".lora_")[0] for k in ours}
    assert {k.split(".lora_")[0] for k in theirs} >= modules
    # diffusers chunks the refiner's fused qkv lora_A into three like a weight (remap_txt_in_), so
    # no LoRA on it converts there whatever its rank; theirs, not ours: those modules are left out
    # here (the ComfyUI key check above covers their names).
    refiner = {m for m in modules if m.startswith("context_embedder.token_refiner.") and ".attn.to_" in m
               and not m.endswith("to_out.0")}
    assert all(theirs[m + ".lora_A.weight"].shape[0] * 3 == ours[m + ".lora_A.weight"].shape[0] for m in refiner)
    modules -= refiner
    assert len(modules) == 40 * 3 + 20 * 4 + 2  # single q/k/v, double q/k/v/out, refiner out
    # the updates B @ A compared through 4 random directions V: (B @ A) @ V without forming the
    # 3072 x 12288 products (most of this test's minute before); a difference D != 0 gives D @ V = 0
    # with probability 0 for Gaussian V
    probe = torch.Generator().manual_seed(1)
    v = {n: torch.randn(n, 4, generator=probe, dtype=torch.float64) for n in {t.shape[1] for t in ours.values()}}
    update = lambda sd, m: sd[m + ".lora_B.weight"].double() @ (sd[m + ".lora_A.weight"].double() @ v[sd[m + ".lora_A.weight"].shape[1]])
    for m in modules:
        assert torch.allclose(update(theirs, m), update(ours, m), atol=1e-5), m
    extra = {k.split(".lora_")[0] for k in theirs} - modules - refiner  # untargeted slices (proj_mlp): zero update
    assert extra == {f"single_transformer_blocks.{i}.proj_mlp" for i in range(40)}
    assert all(not update(theirs, m).any() for m in extra)
