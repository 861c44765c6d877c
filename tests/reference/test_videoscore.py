"""VideoScore v1.1 equals its reference on identical mp4s and seeded weights.

Reference side: the model class VideoScore's inference runs, `mantis.models.idefics2.
Idefics2ForSequenceClassification` (PyPI `mantis-vl` 0.0.5, installed --no-deps: its
`datasets==2.18` pin does not fit; the class needs none of it), the checkpoint's processor through
transformers' `AutoProcessor`, and the frame sampling and prompt handling of VideoScore's
`examples/run_videoscore.py` (TIGER-AI-Lab/VideoScore, the v1.1 example; quoted below, since it
is a script and not importable). Ours: `medgen_ray.evaluate.videoscore` loading the same
checkpoint folder. Per video and aspect |ours - reference| <= 1e-4 on the 1-4 scale.

One adaptation of the reference to transformers 5: mantis's `tie_weights()` takes no keyword
arguments and transformers 5 passes one; the subclass below accepts and ignores it (the
classification model ties nothing: `tie_word_embeddings` is false).
"""

import copy

import numpy as np
import pytest
import torch

from medgen_ray.core.encode import write_mp4
from medgen_ray.evaluate import videoscore as vs

TOL = 1e-4
PROMPT = "Laparoscopic cholecystectomy: the surgeon clips the cystic duct"
MAX_FRAMES = 16


def _texture(n, h, w, seed, lo=0, hi=255):
    rng = np.random.default_rng(seed)
    base = rng.integers(lo, hi, (h, w + 4 * n, 3)).astype(np.uint8)
    return np.stack([base[:, 4 * i:4 * i + w] for i in range(n)])


VIDEOS = {  # name: (frames, fps)
    "forty_frames": (_texture(40, 48, 80, 1, 150, 255), 8),  # more than MAX_FRAMES: 16 spread frames
    "nine_frames": (_texture(9, 64, 64, 2), 24),  # fewer: every frame
    "portrait_37": (_texture(37, 80, 48, 3, 0, 60), 30),  # 37 / 16 = 2.3125: truncated positions
}


def _reference_class():
    from mantis.models.idefics2 import Idefics2ForSequenceClassification

    class Reference(Idefics2ForSequenceClassification):
        def tie_weights(self, *args, **kwargs):  # transformers 5 passes recompute_mapping=
            return None

    return Reference


def _read_video_pyav(container, indices):
    # VideoScore examples/run_videoscore.py, `_read_video_pyav`, quoted
    frames = []
    container.seek(0)
    start_index = indices[0]
    end_index = indices[-1]
    for i, frame in enumerate(container.decode(video=0)):
        if i > end_index:
            break
        if i >= start_index and i in indices:
            frames.append(frame)
    return np.stack([x.to_ndarray(format="rgb24") for x in frames])


def _reference_scores(model, processor, video_path, video_prompt):
    # VideoScore examples/run_videoscore.py, from `container = av.open(video_path)` to the logits, quoted
    import av
    from PIL import Image

    container = av.open(video_path)
    total_frames = container.streams.video[0].frames
    if total_frames > MAX_FRAMES:
        indices = np.arange(0, total_frames, total_frames / MAX_FRAMES).astype(int)
    else:
        indices = np.arange(total_frames)
    frames = [Image.fromarray(x) for x in _read_video_pyav(container, indices)]
    eval_prompt = vs.REGRESSION_QUERY_PROMPT.format(text_prompt=video_prompt)
    num_image_token = eval_prompt.count("<image>")
    if num_image_token < len(frames):
        eval_prompt += "<image> " * (len(frames) - num_image_token)
    inputs = processor(text=eval_prompt, images=frames, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, use_cache=False)  # use_cache: transformers 5's cache API differs
    return outputs.logits[0].tolist(), len(frames)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The seeded tiny VideoScore written as a checkpoint folder (a pulled VideoScore's layout)."""
    return vs.save_pretrained(vs.load_videoscore("videoscore/tiny"), tmp_path_factory.mktemp("videoscore"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videoscore_videos")
    out = {}
    for name, (frames, fps) in VIDEOS.items():
        out[name] = str(folder / f"{name}.mp4")
        write_mp4(frames, out[name], fps=fps)
    return out


def test_videoscore_equals_the_reference(checkpoint, videos):
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    ours = vs.load_videoscore("videoscore/v1.1", checkpoint, "cpu", max_frames=MAX_FRAMES)
    config = copy.deepcopy(ours.model.config)
    for c in (config, config.vision_config, config.perceiver_config, config.text_config):
        c._attn_implementation = None  # mantis's copy declares no SDPA: transformers picks eager
    ref = _reference_class()(config).eval()
    ref.load_state_dict(load_file(f"{checkpoint}/model.safetensors"), strict=True)
    processor = AutoProcessor.from_pretrained(checkpoint)
    seen = set()
    for name, path in videos.items():
        expected, n_frames = _reference_scores(ref, processor, path, PROMPT)
        got = ours.score(path, PROMPT)
        assert len(vs.read_frames(path, MAX_FRAMES)) == n_frames, name
        assert [got[a] for a in vs.ASPECTS] == pytest.approx(expected, abs=TOL), name
        seen.add(tuple(round(v, 4) for v in expected))
    assert len(seen) == len(videos)  # the videos score differently: the comparison can tell them apart


def test_the_prompt_and_the_frames_matter(checkpoint, videos):
    """Another prompt or other frames move the scores beyond the tolerance (so the equality above
    is not met by a model that ignores its inputs)."""
    ours = vs.load_videoscore("videoscore/v1.1", checkpoint, "cpu", max_frames=MAX_FRAMES)
    a = ours.score(videos["forty_frames"], PROMPT)
    b = ours.score(videos["forty_frames"], "an ultrasound of the liver")
    c = vs.load_videoscore("videoscore/v1.1", checkpoint, "cpu", max_frames=8).score(videos["forty_frames"], PROMPT)
    assert max(abs(a[k] - b[k]) for k in a) > 10 * TOL
    assert max(abs(a[k] - c[k]) for k in a) > 10 * TOL
