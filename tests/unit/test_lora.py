import pytest
import torch

from medgen_ray.models.hunyuan import build_pipeline, build_tiny_components, prompt_template_for
from medgen_ray.train import lora

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _randomise(transformer, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _trained_state(rank=4, alpha=8.0):
    tr = build_tiny_components()["transformer"]
    lora.add_lora(tr, rank, alpha, TARGETS)
    _randomise(tr)
    return tr, lora.lora_state(tr)


def _generate(pipe, seed=0):
    out = pipe(prompt="endoscopy of the colon", height=32, width=32, num_frames=5, num_inference_steps=2,
               prompt_template=prompt_template_for(pipe), max_sequence_length=32,
               generator=torch.Generator().manual_seed(seed), output_type="pt")
    return out.frames


@pytest.fixture(scope="module")
def base_output():
    return _generate(build_pipeline(build_tiny_components()))


def test_add_lora_trains_only_adapter_and_starts_as_identity():
    tr = build_tiny_components()["transformer"]
    ref = {k: v.clone() for k, v in tr.state_dict().items()}
    lora.add_lora(tr, 4, 4.0, TARGETS)
    params = lora.trainable_parameters(tr)
    assert params and all("lora_" in n for n, p in tr.named_parameters() if p.requires_grad)
    assert sum(p.numel() for p in params) < 0.2 * sum(p.numel() for p in tr.parameters())
    state = lora.lora_state(tr)
    assert all(torch.count_nonzero(v) == 0 for k, v in state.items() if "lora_B" in k)
    assert all(torch.equal(ref[k], v) for k, v in tr.state_dict().items() if k in ref)


def test_unknown_target_is_named():
    tr = build_tiny_components()["transformer"]
    with pytest.raises(ValueError, match="qkv_fused"):
        lora.add_lora(tr, 4, 4.0, ["to_q", "qkv_fused"])


def test_diffusers_export_loads_changes_output_and_is_deterministic(tmp_path, base_output):
    _, state = _trained_state()
    path = lora.save_diffusers_lora(state, 4, 8.0, str(tmp_path / "lora"))
    outs = []
    for _ in range(2):
        pipe = build_pipeline(build_tiny_components())
        pipe.load_lora_weights(path, adapter_name="medgen")
        outs.append(_generate(pipe))
    assert not torch.allclose(outs[0], base_output, atol=1e-3)
    assert torch.equal(outs[0], outs[1])


def test_exported_update_equals_trained_model(tmp_path):
    """The file's update must reproduce the trained module, alpha/r scale included."""
    tr, state = _trained_state(rank=4, alpha=8.0)
    x = torch.randn(1, 7, tr.config.num_attention_heads * tr.config.attention_head_dim)
    lin = tr.transformer_blocks[0].attn.to_q
    want = lin(x)
    path = lora.save_diffusers_lora(state, 4, 8.0, str(tmp_path))
    pipe = build_pipeline(build_tiny_components())
    pipe.load_lora_weights(path)
    got = pipe.transformer.transformer_blocks[0].attn.to_q(x)
    assert torch.allclose(want, got, atol=1e-5)


def test_original_key_format_is_fused_and_round_trips(tmp_path):
    tr, state = _trained_state(rank=4, alpha=8.0)
    cfg = dict(tr.config)
    orig = lora.to_original_keys(state, cfg, 4, 8.0)
    assert "diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight" in orig
    assert "diffusion_model.single_blocks.1.linear1.lora_B.weight" in orig
    assert "diffusion_model.txt_in.individual_token_refiner.blocks.0.self_attn_proj.lora_A.weight" in orig
    # the fused update is exactly the stacked per-module updates (scale folded in)
    scaled = lora.scaled_state(state, 4, 8.0)
    fused = orig["diffusion_model.double_blocks.0.img_attn_qkv.lora_B.weight"] @ \
        orig["diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight"]
    parts = [scaled[f"transformer_blocks.0.attn.{m}.lora_B.weight"] @ scaled[f"transformer_blocks.0.attn.{m}.lora_A.weight"]
             for m in ("to_q", "to_k", "to_v")]
    assert torch.allclose(fused, torch.cat(parts, 0), atol=1e-6)
    # single blocks: the MLP slice of linear1 gets no update
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    b = orig["diffusion_model.single_blocks.0.linear1.lora_B.weight"]
    assert torch.count_nonzero(b[3 * inner:]) == 0

    lora.save_original_lora(state, cfg, 4, 8.0, str(tmp_path / "c"))
    lora.save_diffusers_lora(state, 4, 8.0, str(tmp_path / "d"))
    outs = []
    for folder in ("c", "d"):
        pipe = build_pipeline(build_tiny_components())
        pipe.load_lora_weights(lora.load_lora_file(str(tmp_path / folder), cfg))
        outs.append(_generate(pipe))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_diffusers_own_converter_maps_double_blocks_to_real_modules():
    """diffusers' original->diffusers LoRA converter (used by load_lora_weights on real-size
    models) must land our double-block keys on modules that exist."""
    from diffusers.loaders.lora_conversion_utils import _convert_hunyuan_video_lora_to_diffusers

    tr, state = _trained_state()
    orig = lora.to_original_keys(state, dict(tr.config), 4, 8.0)
    double = {k: v for k, v in orig.items() if ".double_blocks." in k}
    converted = _convert_hunyuan_video_lora_to_diffusers(dict(double))
    modules = {n for n, _ in tr.named_modules()}
    for key in converted:
        name = key.removeprefix("transformer.").split(".lora_")[0]
        assert name in modules or name.replace(".base_layer", "") in modules, key


def test_merge_fuses_weights(tmp_path, base_output):
    _, state = _trained_state()
    path = lora.save_diffusers_lora(state, 4, 8.0, str(tmp_path))
    adapter = build_pipeline(build_tiny_components())
    adapter.load_lora_weights(path)
    merged = lora.merge_lora_into_pipeline(build_pipeline(build_tiny_components()), path)
    assert not any("lora" in n for n, _ in merged.transformer.named_parameters())
    assert torch.allclose(_generate(merged), _generate(adapter), atol=1e-4)


def test_missing_lora_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        lora.load_lora_file(str(tmp_path / "nowhere.safetensors"))


def test_clip_truncation_warning_is_silenced_at_its_source():
    """A long caption truncates CLIP's 77-token pooled prompt by design: no warning per clip;
    the pipeline's other warnings still get through."""
    import logging

    from medgen_ray.models.hunyuan import PIPELINE_LOGGER, prompt_template_for
    from medgen_ray.models.registry import load_video_encoders

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    pipe = load_video_encoders("hunyuan_video/tiny")
    logger, keep = logging.getLogger(PIPELINE_LOGGER), Keep()
    logger.addHandler(keep)  # diffusers' loggers do not propagate to the root logger
    try:
        pipe.encode_prompt(prompt="an endoscopic view " * 40, prompt_template=prompt_template_for(pipe),
                           device="cpu", max_sequence_length=64)
        logger.warning("another warning")
    finally:
        logger.removeHandler(keep)
    assert keep.messages == ["another warning"], keep.messages
