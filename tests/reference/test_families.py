"""Every model family's tiny twin against diffusers' own code for that family.

- The twin is built from the family's diffusers classes and keeps its shape rules.
- Training inputs: a clip and caption through our precompute path (`encode_text`, shards'
  trimming, `collate`) and the family's `model_inputs` give the transformer's output that the
  diffusers pipeline's own call gives on the same latents and timestep (the pipeline's encode,
  padding and masks are the reference; captured with a forward hook during `pipe(...)`).
- The diffusers-format export loads with the pipeline's own `load_lora_weights` (HunyuanVideo, Wan;
  diffusers 0.42 gives HunyuanVideo-1.5's pipeline no LoRA mixin: the transformer's own
  `load_lora_adapter`) and reproduces the trained update exactly.
- The original-key (ComfyUI) export: Wan's goes through diffusers' own converter
  (`_convert_non_diffusers_wan_lora_to_diffusers`) back to the same update; HunyuanVideo-1.5's keys
  are the original checkpoint's names as diffusers' conversion script maps them (cited below).
- A fine-tuned transformer folder (a full fine-tune such as MedGen-1.3B) loads in place of the base.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from medgen_ray.models.families import FAMILIES
from medgen_ray.models.registry import load_model, load_transformer
from medgen_ray.models.video import encode_latent, encode_text, generate_video, model_inputs
from medgen_ray.train import lora
from medgen_ray.train.precompute import collate

NAMES = list(FAMILIES)
PROMPT = 'An endoscopic view of the stomach lining, the label "GI" in the corner.'


VAE_SPATIAL = {"hunyuan_video": 8, "hunyuan_video_1_5": 16, "wan2.1-t2v-1.3b": 8, "wan2.1-t2v-14b": 8,
               "wan2.2-ti2v-5b": 16}


def _pipe(name):
    return load_model(f"{name}/tiny", None, "cpu", kind="video")


@pytest.mark.parametrize("name", NAMES)
def test_tiny_twin_is_built_from_the_family_classes_with_its_rules(name):
    fam = FAMILIES[name]
    pipe = _pipe(name)
    assert type(pipe).__name__ == fam.pipeline and type(pipe.transformer).__name__ == fam.transformer
    video = torch.rand(1, 3, 9, 2 * fam.spatial, 4 * fam.spatial) * 2 - 1
    with torch.no_grad():
        latent = encode_latent(pipe, fam, video)
    ratio = VAE_SPATIAL[name]  # the released VAE's; `spatial` adds the released transformer's patch
    assert pipe.vae_scale_factor_spatial == ratio
    assert latent.shape[1:] == (3, 2 * fam.spatial // ratio, 4 * fam.spatial // ratio)  # 9 = 4*2+1 frames -> 3
    assert fam.check_frames(10) and fam.check_side(fam.spatial + 8) and not fam.check_side(fam.spatial * 3)


def _captured_call(pipe, guidance: float):
    """The pipeline's first transformer call (the conditional one) of a 1-step generation."""
    seen = {}

    def hook(module, args, kwargs):
        if not seen:
            seen.update({k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})

    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        generate_video(pipe, PROMPT, height=32, width=64, num_frames=9, steps=1, guidance=guidance, seed=1)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("name", NAMES)
def test_training_inputs_give_what_the_pipeline_gives_its_transformer(name):
    fam = FAMILIES[name]
    pipe = _pipe(name)
    seen = _captured_call(pipe, guidance=3.0)
    channels = pipe.transformer.config.out_channels
    noisy = seen["hidden_states"][:, :channels]  # HunyuanVideo-1.5 appends condition latents and a mask
    t = seen["timestep"].reshape(noisy.shape[0], -1)[:, 0]  # Wan2.2 hands one copy per token, all equal
    with torch.no_grad():
        theirs = pipe.transformer(**{**seen, "return_dict": False})[0]
        batch = collate([{"latent": noisy[0], **encode_text(pipe, fam, PROMPT, 256, "cpu")}])
        ours_in = model_inputs(fam, pipe.transformer, noisy, t, batch, 3.0, torch.device("cpu"), torch.float32)
        ours = pipe.transformer(**ours_in, return_dict=False)[0]
    assert theirs.shape == ours.shape
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    # and the check can fail: another caption gives another output
    with torch.no_grad():
        other = collate([{"latent": noisy[0], **encode_text(pipe, fam, "A chest X-ray.", 256, "cpu")}])
        moved = pipe.transformer(**model_inputs(fam, pipe.transformer, noisy, t, other, 3.0, torch.device("cpu"),
                                                torch.float32), return_dict=False)[0]
    assert (moved - theirs).abs().max() > 1e-4


def _trained(name, seed=7, targets=None):
    fam = FAMILIES[name]
    tr = load_transformer(f"{name}/tiny", None)
    lora.add_lora(tr, 4, 8.0, targets or list(fam.lora_targets))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in tr.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return tr


def _forward(transformer, pipe, name):
    fam = FAMILIES[name]
    torch.manual_seed(3)
    latent = torch.randn(1, transformer.config.out_channels, 3, 4, 8)
    batch = collate([{"latent": latent[0], **encode_text(pipe, fam, PROMPT, 256, "cpu")}])
    with torch.no_grad():
        return transformer(**model_inputs(fam, transformer, latent, torch.tensor([500.0]), batch, 1.0,
                                          torch.device("cpu"), torch.float32), return_dict=False)[0]


@pytest.mark.parametrize("name", NAMES)
def test_diffusers_export_loads_with_the_family_loader_and_is_the_trained_update(name, tmp_path):
    pipe = _pipe(name)
    base = _forward(pipe.transformer, pipe, name)
    trained = _trained(name)
    want = _forward(trained, pipe, name)
    path = lora.save_diffusers_lora(lora.lora_state(trained), 4, 8.0, str(tmp_path))
    if hasattr(pipe, "load_lora_weights"):  # the pipeline's own loader where diffusers has one
        pipe.load_lora_weights(path, adapter_name="medgen")
    else:
        pipe.transformer.load_lora_adapter(path, adapter_name="medgen", prefix="transformer")
    got = _forward(pipe.transformer, pipe, name)
    assert (got - base).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# HunyuanVideo-1.5's original checkpoint names, as diffusers maps them in
# scripts/convert_hunyuan_video1_5_to_diffusers.py (huggingface/diffusers 38c42b4,
# convert_hyvideo15_transformer_to_diffusers): double_blocks.N.{img,txt}_attn_{q,k,v,proj} are
# separate linears; txt_in.individual_token_refiner.blocks.N.self_attn_qkv is fused, self_attn_proj not.
HV15_ORIGINAL = {"double_blocks.{}.img_attn_q", "double_blocks.{}.img_attn_k", "double_blocks.{}.img_attn_v",
                 "double_blocks.{}.img_attn_proj", "double_blocks.{}.txt_attn_q", "double_blocks.{}.txt_attn_k",
                 "double_blocks.{}.txt_attn_v", "double_blocks.{}.txt_attn_proj",
                 "txt_in.individual_token_refiner.blocks.{}.self_attn_qkv",
                 "txt_in.individual_token_refiner.blocks.{}.self_attn_proj"}


def _update(state, module):
    return state[f"{module}.lora_B.weight"] @ state[f"{module}.lora_A.weight"]


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("wan")])
def test_wan_original_keys_read_back_through_diffusers_converter(name):
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    tr = _trained(name, targets=["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2", "proj_out"])
    state = lora.lora_state(tr)
    original = lora.to_original_keys(state, lora.transformer_config(tr), 4, 8.0)
    names = {re.sub(r"\.\d+\.", ".N.", k.removeprefix("diffusion_model.").split(".lora_")[0]) for k in original}
    assert names == {f"blocks.N.{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"} | \
        {"blocks.N.ffn.0", "blocks.N.ffn.2", "head.head"}
    theirs = _convert_non_diffusers_wan_lora_to_diffusers(dict(original))
    ours = lora.scaled_state(state, 4, 8.0)
    modules = {k.split(".lora_")[0] for k in ours}
    assert {k.removeprefix("transformer.").split(".lora_")[0] for k in theirs} == modules
    theirs = {k.removeprefix("transformer."): v for k, v in theirs.items()}
    for m in modules:
        torch.testing.assert_close(_update(theirs, m), _update(ours, m))


def test_hunyuan_video_1_5_original_keys_are_the_checkpoint_names():
    tr = _trained("hunyuan_video_1_5")
    tr_all = load_transformer("hunyuan_video_1_5/tiny", None)
    targets = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
    lora.add_lora(tr_all, 4, 8.0, targets)
    cfg = lora.transformer_config(tr_all)
    original = lora.to_original_keys(lora.lora_state(tr_all), cfg, 4, 8.0)
    names = {re.sub(r"\.\d+\.", ".{}.", k.removeprefix("diffusion_model.").split(".lora_")[0]) for k in original}
    assert names == HV15_ORIGINAL
    back = lora.from_original_keys(lora.to_original_keys(lora.lora_state(tr), lora.transformer_config(tr), 4, 8.0),
                                   lora.transformer_config(tr))
    ours = lora.scaled_state(lora.lora_state(tr), 4, 8.0)
    for m in {k.split(".lora_")[0] for k in ours}:
        torch.testing.assert_close(_update(back, m), _update(ours, m))


@pytest.mark.parametrize("name", NAMES)
def test_a_fine_tuned_transformer_folder_replaces_the_base(name, tmp_path):
    pipe = _pipe(name)
    tuned = load_transformer(f"{name}/tiny", None)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.02)
    tuned.save_pretrained(str(tmp_path / "release" / "transformer"))
    loaded = load_model(f"{name}/tiny", str(tmp_path / "release"), "cpu", kind="video")
    for (n, a), (_, b) in zip(tuned.state_dict().items(), loaded.transformer.state_dict().items()):
        torch.testing.assert_close(a, b, msg=n)
    assert (_forward(loaded.transformer, pipe, name) - _forward(pipe.transformer, pipe, name)).abs().max() > 1e-4
    # the service's (and the evaluation's offline) generator with serve.weights = the release
    from medgen_ray.config import load_config
    from medgen_ray.serve.generator import VideoGenerator

    request = {"prompt": PROMPT, "height": 32, "width": 64, "num_frames": 5, "steps": 1, "guidance": 2.0, "seed": 0}
    videos = []
    for weights in ([], [f"serve.weights={tmp_path / 'release'}"]):
        cfg = load_config(None, [f"serve.model={name}/tiny", "serve.generator.num_gpus=0", "serve.vae_tiling=false",
                                 *weights]).serve
        gen = VideoGenerator(cfg)
        gen.setup()
        videos.append(gen.generate(request))
    assert videos[1].shape == (5, 32, 64, 3) and abs(videos[1] - videos[0]).max() > 1e-4
    other = next(n for n in NAMES if FAMILIES[n].transformer != FAMILIES[name].transformer)
    with pytest.raises(ValueError, match=FAMILIES[name].transformer):
        load_model(f"{other}/tiny", str(tmp_path / "release"), "cpu", kind="video")
    assert json.loads((tmp_path / "release" / "transformer" / "config.json").read_text())["_class_name"] \
        == FAMILIES[name].transformer


@pytest.mark.parametrize("name", NAMES)
def test_pulled_tiny_pipeline_loads_back_equal(name, tmp_path):
    """`medgen weights pull <family>/tiny` saves a diffusers folder that the family's pipeline class
    loads back (tokenizer settings recomputed), generating what the built twin generates; the
    precompute path reads the same folder without its transformer."""
    from medgen_ray.models.registry import load_video_encoders, pull_weights

    folder = pull_weights(f"{name}/tiny", str(tmp_path))
    assert (tmp_path / f"{name}__tiny" / "model_index.json").is_file()
    built, loaded = _pipe(name), load_model(f"{name}/tiny", folder, "cpu", kind="video")
    for comp, module in built.components.items():
        if isinstance(module, torch.nn.Module):  # the real claim: every weight is bit-equal ...
            other = loaded.components[comp].state_dict()
            assert all(torch.equal(v, other[k]) for k, v in module.state_dict().items()), comp
            # ... and sits in torch's aligned memory (from the safetensors buffer it did not, and
            # BLAS on the CPU then summed in another order: 1.5e-6 on AMD EPYC)
            assert all(t.data_ptr() % 64 == 0 for t in loaded.components[comp].parameters()), comp
    kw = dict(height=32, width=64, num_frames=5, steps=2, seed=4)
    # Equal weights in aligned memory give bit-equal frames on the CPUs we run (0.0); 1e-5 is the
    # float32 rounding that two kernel choices could still leave after two steps of a tiny model
    # (ten times the misaligned case's 1.5e-6), far below a wrong weight, dtype or processor.
    assert abs(generate_video(built, PROMPT, **kw) - generate_video(loaded, PROMPT, **kw)).max() <= 1e-5
    assert load_video_encoders(f"{name}/tiny", folder).transformer is None
