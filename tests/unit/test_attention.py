import torch

from medgen_ray.models.attention import set_unpadded_attention, trim_text
from medgen_ray.models.hunyuan import build_tiny_components


def _inputs(seed=0, pad=20, real=7):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(1, pad, 32, generator=g)
    mask = torch.zeros(1, pad, dtype=torch.bool)
    mask[0, :real] = True
    return {"hidden_states": torch.randn(1, 4, 3, 4, 6, generator=g), "timestep": torch.tensor([500.0]),
            "pooled_projections": torch.randn(1, 16, generator=g), "guidance": torch.tensor([1000.0])}, text, mask


def test_trimmed_unmasked_equals_padded_masked():
    tr = build_tiny_components()["transformer"].eval()
    kw, text, mask = _inputs()
    with torch.no_grad():
        padded = tr(encoder_hidden_states=text, encoder_attention_mask=mask, return_dict=False, **kw)[0]
        t_text, t_mask = trim_text(text, mask)
        assert set_unpadded_attention(tr) == 4  # 2 double + 2 single blocks in the twin
        trimmed = tr(encoder_hidden_states=t_text, encoder_attention_mask=t_mask, return_dict=False, **kw)[0]
    assert torch.allclose(padded, trimmed, atol=1e-5)


def test_dropping_mask_on_padded_text_would_differ():
    """The guard matters: with padding present, the unmasked processor changes the output."""
    tr = build_tiny_components()["transformer"].eval()
    kw, text, mask = _inputs()
    with torch.no_grad():
        masked = tr(encoder_hidden_states=text, encoder_attention_mask=mask, return_dict=False, **kw)[0]
        set_unpadded_attention(tr)
        unmasked = tr(encoder_hidden_states=text, encoder_attention_mask=mask, return_dict=False, **kw)[0]
    assert not torch.allclose(masked, unmasked, atol=1e-4)


def test_generate_video_trimmed_matches_padded_pipeline():
    """The generator's trimmed, unmasked path gives the pipeline's own padded, masked result."""
    from medgen_ray.models.hunyuan import build_pipeline, prompt_template_for
    from medgen_ray.models.video import generate_video

    pipe = build_pipeline(build_tiny_components())
    kw = dict(height=32, width=48, num_frames=5)
    ref = pipe(prompt="an ultrasound of the liver", num_inference_steps=2, guidance_scale=6.0,
               prompt_template=prompt_template_for(pipe), max_sequence_length=128,
               generator=torch.Generator().manual_seed(3), output_type="np", **kw).frames[0]
    set_unpadded_attention(pipe.transformer)
    ours = generate_video(pipe, "an ultrasound of the liver", steps=2, seed=3, max_sequence_length=128, **kw)
    assert abs(ref - ours).max() < 1e-4
