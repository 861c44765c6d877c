"""VideoScore v1.1 (TIGER-Lab): five 1-4 scores per video from a Mantis-Idefics2-8B with a
regression head, computed as the reference computes them (TIGER-AI-Lab/VideoScore,
`examples/run_videoscore.py`; model class `mantis.models.idefics2.Idefics2ForSequenceClassification`
from PyPI `mantis-vl` 0.0.5):

- frames: the container's frame count n; when n > max_frames, frames at
  `np.arange(0, n, n / max_frames).astype(int)`, else every frame (PyAV, rgb24);
- text: the regression prompt below with the video's prompt filled in, then one "<image> " per
  frame appended;
- inputs: the checkpoint's own Idefics2 processor (transformers) on that text and those frames;
- model: Idefics2 (vision tower, perceiver connector, Mistral) and a linear head on the hidden
  state of the last token (of the last one before the first pad token when the config names a
  pad token); the five outputs are the scores, unscaled: visual quality, temporal consistency,
  dynamic degree, text-to-video alignment, factual consistency.

Ours runs transformers' own `Idefics2Model` (the reference carries a copy of an older one) and
does not round to 3 digits as the example prints. `tests/reference/test_videoscore.py` runs
the reference class beside ours on the same mp4s and seeded weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

ASPECTS = ("visual_quality", "temporal_consistency", "dynamic_degree", "text_alignment", "factual_consistency")
HUB_ID = "TIGER-Lab/VideoScore-v1.1"

# The reference's REGRESSION_QUERY_PROMPT (run_videoscore.py), character for character: the
# model was trained on it, so any edit is another metric.
REGRESSION_QUERY_PROMPT = """
Suppose you are an expert in judging and evaluating the quality of AI-generated videos,
please watch the following frames of a given video and see the text prompt for generating the video,
then give scores from 5 different dimensions:
(1) visual quality: the quality of the video in terms of clearness, resolution, brightness, and color
(2) temporal consistency, both the consistency of objects or humans and the smoothness of motion or movements
(3) dynamic degree, the degree of dynamic changes
(4) text-to-video alignment, the alignment between the text prompt and the video content
(5) factual consistency, the consistency of the video content with the common-sense and factual knowledge

for each dimension, output a float number from 1.0 to 4.0,
the higher the number is, the better the video performs in that sub-score, \n\
the lowest 1.0 means Bad, the highest 4.0 means Perfect/Real (the video is like a real video)
Here is an output example:
visual quality: 3.2
temporal consistency: 2.7
dynamic degree: 4.0
text-to-video alignment: 2.3
factual consistency: 1.8

For this video, the text prompt is "{text_prompt}",
all the frames of video are as follows:
"""


def frame_indices(total_frames: int, max_frames: int) -> np.ndarray:
    """The frames VideoScore looks at: every frame up to max_frames, else max_frames spread
    evenly from the first (truncated positions)."""
    if total_frames > max_frames:
        return np.arange(0, total_frames, total_frames / max_frames).astype(int)
    return np.arange(total_frames)


def read_frames(uri: str, max_frames: int) -> list[np.ndarray]:
    """The sampled RGB frames of a video. The count comes from the container as the reference
    reads it; a container without one (ours) is counted by decoding."""
    from medgen_ray.core.decode import open_video
    from medgen_ray.core.errors import DataError

    frames = []
    with open_video(uri) as c:
        total = int(c.streams.video[0].frames or 0)
        if total <= 0:
            total = sum(1 for _ in c.decode(video=0))
            c.seek(0)
        wanted = set(frame_indices(total, max_frames).tolist())
        for i, frame in enumerate(c.decode(video=0)):
            if i > max(wanted, default=-1):
                break
            if i in wanted:
                frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise DataError("no frames decoded: VideoScore needs at least one")
    return frames


def query_text(prompt: str, n_frames: int) -> str:
    """The regression prompt for one video, one image placeholder per frame."""
    text = REGRESSION_QUERY_PROMPT.format(text_prompt=prompt)
    missing = n_frames - text.count("<image>")
    return text + "<image> " * missing if missing > 0 else text


def _regressor_class():
    from transformers import Idefics2Model
    from transformers.models.idefics2.modeling_idefics2 import Idefics2PreTrainedModel

    class VideoScoreRegressor(Idefics2PreTrainedModel):
        """Idefics2 and a linear head on the last token: the checkpoint's `model.*` and
        `score.*` weights load by name."""

        def __init__(self, config):
            super().__init__(config)
            self.model = Idefics2Model(config)
            self.score = nn.Linear(config.text_config.hidden_size, config.num_labels)
            self.post_init()

        def forward(self, input_ids, attention_mask=None, pixel_values=None, pixel_attention_mask=None):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                                pixel_attention_mask=pixel_attention_mask, use_cache=False).last_hidden_state
            logits = self.score(hidden)
            pad = getattr(self.config, "pad_token_id", None)
            if pad is None:
                last = torch.full((len(input_ids),), -1, device=logits.device)
            else:  # the last token before the first pad (the whole row when there is none)
                last = (torch.eq(input_ids, pad).int().argmax(-1) - 1) % input_ids.shape[-1]
            return logits[torch.arange(len(input_ids), device=logits.device), last]

    return VideoScoreRegressor


def build_regressor(config) -> nn.Module:
    """Our VideoScore network for an Idefics2Config (num_labels = 5)."""
    return _regressor_class()(config)


TINY_TEXT = "a surgeon sutures a wound in an operating room; an ultrasound probe on the abdomen"


def tiny_processor():
    """A small Idefics2 processor built here: a byte-level BPE tokenizer trained on the
    regression prompt (deterministic) with Idefics2's image tokens, 64-px frames, 4 image tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import Idefics2ImageProcessor, Idefics2Processor, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([REGRESSION_QUERY_PROMPT, TINY_TEXT], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>",
                                   additional_special_tokens=["<fake_token_around_image>", "<image>",
                                                              "<end_of_utterance>"])
    images = Idefics2ImageProcessor(do_image_splitting=False, size={"longest_edge": 64, "shortest_edge": 32})
    return Idefics2Processor(image_processor=images, tokenizer=fast, image_seq_len=4)


def tiny_config(processor):
    """A small Idefics2Config (SigLIP-like tower, one-layer perceiver, two-layer Mistral) for `processor`."""
    from transformers import Idefics2Config

    tok = processor.tokenizer
    cfg = Idefics2Config(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 16},
        perceiver_config={"hidden_size": 32, "resampler_n_latents": 4, "resampler_depth": 1, "resampler_n_heads": 2,
                          "resampler_head_dim": 8, "num_key_value_heads": 1},
        text_config={"model_type": "mistral", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": len(tok),
                     "max_position_embeddings": 4096, "pad_token_id": tok.pad_token_id},
        image_token_id=tok.convert_tokens_to_ids("<image>"), num_labels=len(ASPECTS), use_cache=False,
        tie_word_embeddings=False)
    cfg.pad_token_id = tok.pad_token_id
    return cfg


class VideoScorer:
    """VideoScore's five scores of one video: `score(uri, prompt)` -> {aspect: value}."""

    def __init__(self, model: nn.Module, processor, name: str, device: str, max_frames: int):
        self.model, self.processor, self.name = model.to(device).eval(), processor, name
        self.device, self.max_frames = device, max_frames
        self.dtype = next(self.model.parameters()).dtype

    def inputs(self, frames: list[np.ndarray], prompt: str) -> dict[str, torch.Tensor]:
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        batch = self.processor(text=query_text(prompt, len(images)), images=images, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def score(self, uri: str, prompt: str) -> dict[str, float]:
        batch = self.inputs(read_frames(uri, self.max_frames), prompt)
        batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model(**batch)[0].float().cpu().numpy()
        return dict(zip(ASPECTS, (float(v) for v in out)))


def load_videoscore(name: str, weights: str | None = None, device: str = "cpu", max_frames: int = 16) -> VideoScorer:
    """videoscore/v1.1 (hub weights, a pulled folder, or random at full size) or videoscore/tiny
    (seeded, built here)."""
    from medgen_ray.models.weights import RANDOM, TINY_SEED, WeightsUnavailable, stage_weights

    if name == "videoscore/tiny":
        processor = tiny_processor()
        torch.manual_seed(TINY_SEED + 15)
        model = build_regressor(tiny_config(processor))
        with torch.no_grad():  # scores around the middle of VideoScore's 1-4 scale, spread ~1
            torch.nn.init.normal_(model.score.weight, std=0.3)
            model.score.bias.fill_(2.5)
        return VideoScorer(model, processor, name, device, max_frames)
    if name != "videoscore/v1.1":
        raise KeyError(f"unknown VideoScore model {name!r}; choices: videoscore/v1.1, videoscore/tiny")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32  # the reference runs bf16
    if weights == RANDOM:  # Mantis-Idefics2-8B's shape (Idefics2's defaults), seeded; tiny tokenizer
        from transformers import Idefics2Config

        processor = tiny_processor()
        cfg = Idefics2Config(num_labels=len(ASPECTS), use_cache=False, tie_word_embeddings=False)
        cfg.image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
        torch.manual_seed(TINY_SEED + 15)
        with torch.device(device if device.startswith("cuda") else "cpu"):
            model = build_regressor(cfg).to(dtype)
        processor.image_processor.size = {"longest_edge": 980, "shortest_edge": 378}
        processor.image_seq_len = cfg.perceiver_config.resampler_n_latents
        return VideoScorer(model, processor, name, device, max_frames)
    from transformers import AutoProcessor

    path = stage_weights(weights) if weights else HUB_ID
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = _regressor_class().from_pretrained(path, dtype=dtype)
    except OSError as exc:
        raise WeightsUnavailable(f"videoscore/v1.1: weights {path!r} unavailable ({exc}); `medgen weights pull "
                                 "videoscore/v1.1 --dest DIR` and set evaluate.videoscore_weights") from exc
    return VideoScorer(model, processor, name, device, max_frames)


def save_pretrained(scorer: VideoScorer, folder: str | Path) -> str:
    """Write a scorer's model and processor as a checkpoint folder (a pulled VideoScore's layout)."""
    scorer.model.save_pretrained(str(folder))
    scorer.processor.save_pretrained(str(folder))
    return str(folder)


def videoscore_total(vq: float, tc: float, t2va: float, fc: float, we: float) -> float:
    """The fit to the paper's Table 8 Total given in issue 25 (not printed in the paper):
    (VQ + TC + T2VA + FC + (100 - WE) / 25) / 6, VideoScore aspects on their 1-4 scale and the
    raters' warping error in per cent. Ours: the paper states no formula."""
    return (vq + tc + t2va + fc + (100.0 - we) / 25.0) / 6.0
