"""One typed config tree for every job.

YAML files hold the tree; `a.b=c` overrides are applied on top (values parsed as YAML, so
`curate.segment.min_seconds=5` is an int). Everything is validated before Ray starts, and a
bad config names every bad field (`ConfigError`, exit code 2 in the CLI).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medgen_ray.models.families import VideoFamily, family_of
from medgen_ray.models.parallel import Degrees, degree_problems


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, and a validated config is never
    changed in place (derive a new one with `derive`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config that cannot be used; `problems` has one `field: message` line per bad field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid config:\n" + "\n".join(f"  {p}" for p in problems))


def _ordered(cfg: Any, low: str, high: str) -> Any:
    if getattr(cfg, high) < getattr(cfg, low):
        raise ValueError(f"{high} ({getattr(cfg, high)}) < {low} ({getattr(cfg, low)})")
    return cfg


class RayConfig(Strict):
    """Which Ray to use: a cluster address, or an embedded one on 127.0.0.1."""

    address: str | None = Field(None, description="None starts an embedded local Ray bound to 127.0.0.1")
    num_cpus: int | None = Field(None, ge=1)
    include_dashboard: bool = False


class PoolConfig(Strict):
    """Actor pool of a model stage. Sized from config, never from the driver's hardware."""

    min_actors: int = Field(1, ge=1)
    max_actors: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0)
    num_cpus: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)
    memory_mb: int = Field(1024, ge=0, description="host memory reserved per actor (ours: tiny-model actors were "
                                                   "measured at ~610 MiB by Ray's memory detector; give real models more)")

    @model_validator(mode="after")
    def _bounds(self) -> "PoolConfig":
        return _ordered(self, "min_actors", "max_actors")


class YtdlpConfig(Strict):
    """yt-dlp sources: what to list, how to download, and which sites are allowed."""

    queries: list[str] = Field(default_factory=list, description="keyword searches (ytsearchN:)")
    channels: list[str] = Field(default_factory=list, description="channel URLs to list")
    urls: list[str] = Field(default_factory=list, description="video page URLs")
    info_json: list[str] = Field(default_factory=list, description="yt-dlp .info.json files")
    max_results_per_query: int = Field(50, ge=1)
    max_height: int = Field(720, ge=144)
    rate_limit: str | None = Field("4M", description="bytes/s, yt-dlp syntax (4M, 500K)")
    retries: int = Field(5, ge=0)
    sleep_interval_s: float = Field(0.0, ge=0)
    allowed_domains: list[str] = Field(default_factory=lambda: ["youtube.com", "youtu.be"],
                                       description="sites whose pages (extractors) are listed and fetched")
    allowed_media_domains: list[str] | None = Field(
        None, description="hosts media may come from; None: whatever the page's extractor returns "
                          "(YouTube's media is on *.googlevideo.com, not youtube.com)")
    proxy: str | None = Field(None, description="HTTP(S)/SOCKS proxy for yt-dlp, e.g. http://proxy:3128")
    enable_file_urls: bool = Field(False, description="allow file:// URLs (offline tests)")
    download_dir: str | None = Field(None, description="default: <output>/downloads")
    download_concurrency: int = Field(2, ge=1)


class SourceConfig(Strict):
    """Where source videos come from: files (any fsspec URI) or yt-dlp."""

    kind: Literal["files", "ytdlp"] = "files"
    uris: list[str] = Field(default_factory=list, description="files, folders or globs; local, s3://, gs://")
    extensions: list[str] = Field(default_factory=lambda: [".mp4", ".mkv", ".webm", ".mov", ".avi"])
    ytdlp: YtdlpConfig = Field(default_factory=YtdlpConfig)


class MetadataConfig(Strict):
    """The metadata filter: keyword hits and a text classifier on title + description."""

    enabled: bool = True
    keywords_file: str | None = Field(None, description="one keyword per line; default: shipped list")
    embedder: str = "minilm"
    classifier_path: str | None = Field(None, description="from `medgen classifier train-text`")
    threshold: float = Field(0.5, ge=0, le=1)
    rule: Literal["any", "all", "keywords", "classifier"] = Field(
        "any", description="medical when any/all of the keyword and classifier signals say so"
    )
    pool: PoolConfig = Field(default_factory=PoolConfig)


class ContainerConfig(Strict):
    """Container checks before any decode: codecs, sizes, rotation, frame-rate spread, length."""

    allowed_codecs: list[str] = Field(default_factory=lambda: ["h264", "hevc", "vp9", "av1", "vp8", "mpeg4"])
    min_side: int = Field(16, ge=1, description="smaller frames are not video (1x1 px)")
    max_duration_s: float = Field(4 * 3600, gt=0)
    reject_rotated: bool = True
    reject_vfr: bool = Field(False, description="reject variable-frame-rate sources (default: keep them; they are "
                                                "sampled by timestamp and their clips re-encoded at a constant rate)")
    vfr_tolerance: float = Field(0.25, gt=0, description="relative spread of frame intervals above which a source "
                                                         "counts as variable frame rate")


class SampleConfig(Strict):
    """Frame sampling for the frame classifier (the paper: 1 fps)."""

    fps: float = Field(1.0, gt=0)
    decode_threads: int = Field(2, ge=0, description="0 lets FFmpeg choose")
    window_s: float = Field(300.0, gt=0, description="ours: a source longer than this is decoded by the classifier "
                                                     "window by window (frames of one window in memory at a time) "
                                                     "instead of travelling as one row of every frame")


class FrameClassifierConfig(Strict):
    """The medical frame classifier: CLIP model, linear probe or zero-shot prompts, actor pool."""

    clip_model: str = "clip/vit-b-32"
    weights: str | None = Field(None, description="local or s3:// path of the CLIP weights")
    probe_path: str | None = Field(None, description="linear probe from `medgen classifier train-frames`")
    medical_prompts: list[str] = Field(
        default_factory=lambda: [
            "a frame from a surgical video",
            "an endoscopy view inside the body",
            "an ultrasound image",
            "a medical anatomy illustration",
            "a doctor examining a patient in a clinic",
        ]
    )
    other_prompts: list[str] = Field(
        default_factory=lambda: [
            "a video game screenshot",
            "a presentation slide with text",
            "a person talking to the camera",
            "a landscape photo",
            "a cartoon",
        ]
    )
    threshold: float = Field(0.5, ge=0, le=1)
    pool: PoolConfig = Field(default_factory=lambda: PoolConfig(batch_size=4))


class SegmentConfig(Strict):
    """The paper's clip rule: runs of medical frames, length bounds, similarity threshold tau."""

    min_seconds: float = Field(6.0, gt=0, description="paper: j - i >= 6")
    max_seconds: float = Field(10.0, gt=0, description="longer runs are split")
    similarity_threshold: float = Field(0.8, ge=-1, le=1, description="tau: adjacent CLIP cosine")

    @model_validator(mode="after")
    def _order(self) -> "SegmentConfig":
        return _ordered(self, "min_seconds", "max_seconds")


class ResolutionConfig(Strict):
    """Minimum short side of a source video."""

    min_short_side: int = Field(480, ge=1)


class CutConfig(Strict):
    """How clips are cut: stream copy at keyframes or exact re-encode."""

    mode: Literal["auto", "copy", "reencode"] = "auto"
    keyframe_tolerance_s: float = Field(0.05, ge=0)
    snap_to_keyframes_s: float = Field(
        2.0, ge=0, description="move clip ends inward by up to this much onto keyframes (0: never), "
        "so they can be stream-copied; a clip that would fall under segment.min_seconds is not moved"
    )
    crf: int = Field(20, ge=0, le=51)
    preset: str = "veryfast"


class ClipFramesConfig(Strict):
    """Frames decoded once per clip for the quality stages."""

    frames: int = Field(5, ge=1, description="uniformly sampled frames per clip (borders, OCR, aesthetic)")
    max_side: int = Field(640, ge=64, description="long side of those frames")
    motion_pairs: int = Field(8, ge=1, description="grey frame pairs for optical flow")
    motion_width: int = Field(160, ge=32, description="width of the flow frames")


class MotionConfig(Strict):
    """Camera motion from Farneback flow (ours: the paper has no motion filter)."""

    static_px: float = Field(0.05, ge=0, description="mean flow (px/frame at motion_width) below: static")
    coherence: float = Field(0.5, gt=0, le=1)
    reject_static: bool = False


class BorderConfig(Strict):
    """Black bars (the paper's black-border filter)."""

    action: Literal["reject", "crop", "flag"] = Field(
        "reject", description="crop: re-encode the clip without its bars (crop_box records x,y,w,h); "
        "flag: keep it as it is, with the bar sizes in border_*_frac"
    )
    persistence: float = Field(0.8, gt=0, le=1, description="share of frames with the bar")


class OcrConfig(Strict):
    """Burned-in text (the paper's subtitle filter)."""

    backend: Literal["rapidocr", "easyocr"] = "rapidocr"
    min_score: float = Field(0.5, ge=0, le=1)
    det_side: int = Field(480, ge=64, description="text detector's input side (rapidocr limit_side_len)")
    max_words: int = Field(20, ge=0, description="paper: reject when > 20 words over the 5 frames")
    recognize: Literal["near_threshold", "always"] = Field(
        "near_threshold", description="ours: detect text on every frame, read it only when the word estimate from "
                                      "the boxes is within [max_words/2, 2 max_words]; always: read every frame")
    threads: int = Field(1, ge=0, description="onnxruntime threads per OCR (0: all cores); the job already "
                                              "runs one OCR per CPU task")


class AestheticConfig(Strict):
    """LAION aesthetic score (the paper's aesthetic filter)."""

    model: str = "aesthetic/laion"
    weights: str | None = None
    min: float = Field(3.0, description="paper: reject below 3.0 (LAION scale)")


class TechnicalConfig(Strict):
    """No-reference technical quality and the paper's joint technical/aesthetic rule."""

    metric: str = Field("sharpness", description="sharpness | pyiqa:<metric>")
    min: float | None = Field(None, description="joint rule: reject when technical is worse than this ... "
                                                "None (ours): score only. No shipped value is calibrated for "
                                                "sharpness or pyiqa metrics; the paper's 0.3 is on DOVER's scale")
    lower_better: bool = Field(False, description="true for metrics where lower is better (pyiqa:piqe)")
    joint_aesthetic_max: float = Field(4.0, description="... and aesthetic < this (paper: DOVER low and LAION < 4)")


# Flat quality keys of the previous release -> (section, key). Accepted for one release with a warning.
LEGACY_QUALITY_KEYS = {
    "frames": ("clipframes", "frames"), "max_side": ("clipframes", "max_side"),
    "motion_pairs": ("clipframes", "motion_pairs"), "motion_width": ("clipframes", "motion_width"),
    "static_px": ("motion", "static_px"), "motion_coherence": ("motion", "coherence"),
    "reject_static": ("motion", "reject_static"),
    "border_action": ("borders", "action"), "border_persistence": ("borders", "persistence"),
    "ocr_backend": ("ocr", "backend"), "ocr_min_score": ("ocr", "min_score"), "ocr_det_side": ("ocr", "det_side"),
    "ocr_max_words": ("ocr", "max_words"),
    "aesthetic_model": ("aesthetic", "model"), "aesthetic_weights": ("aesthetic", "weights"),
    "aesthetic_min": ("aesthetic", "min"),
    "technical_metric": ("technical", "metric"), "technical_min": ("technical", "min"),
    "technical_lower_better": ("technical", "lower_better"), "joint_aesthetic_max": ("technical", "joint_aesthetic_max"),
}


class QualityConfig(Strict):
    """Clip-level quality stages, each with its own section, and their shared switches."""

    enabled: bool = True
    score_only: bool = Field(False, description="compute every quality score, reject nothing (calibration)")
    pool: PoolConfig = Field(default_factory=lambda: PoolConfig(batch_size=4))
    clipframes: ClipFramesConfig = Field(default_factory=ClipFramesConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    borders: BorderConfig = Field(default_factory=BorderConfig)
    ocr: OcrConfig = Field(default_factory=OcrConfig)
    aesthetic: AestheticConfig = Field(default_factory=AestheticConfig)
    technical: TechnicalConfig = Field(default_factory=TechnicalConfig)

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        """Move the previous release's flat keys (quality.ocr_max_words) into their sections, warning once each."""
        if not isinstance(data, dict) or not any(k in LEGACY_QUALITY_KEYS for k in data):
            return data
        data = dict(data)
        for old in [k for k in data if k in LEGACY_QUALITY_KEYS]:
            section, key = LEGACY_QUALITY_KEYS[old]
            sub = data.get(section)
            sub = dict(sub) if isinstance(sub, dict) else sub.model_dump() if isinstance(sub, BaseModel) else {}
            if key in sub:
                raise ValueError(f"{old} and {section}.{key} both given; keep {section}.{key}")
            warnings.warn(f"curate.quality.{old} is deprecated and goes in the next release: "
                          f"use curate.quality.{section}.{key}", FutureWarning, stacklevel=2)
            sub[key] = data.pop(old)
            data[section] = sub
        return data


class CaptionConfig(Strict):
    """LLM captions (OpenAI-compatible) or the metadata captioner, with retries and budget."""

    enabled: bool = True
    backend: Literal["auto", "openai", "metadata"] = Field(
        "auto", description="auto: the LLM when a key is found, else the metadata captioner"
    )
    model: str = "gpt-4o"
    base_url: str | None = Field(None, description="any OpenAI-compatible server, e.g. vLLM on the cluster")
    api_key_env: str = "OPENAI_API_KEY"
    api_key_file: str | None = Field(None, description="secret file holding the key (never logged)")
    frames: int = Field(8, ge=1)
    frame_side: int = Field(512, ge=64)
    min_words: int = Field(40, ge=1, description="shorter detailed captions are retried, then rejected")
    max_tokens: int = Field(600, ge=64)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    concurrency: int = Field(4, ge=1, description="requests in flight per caption task")
    budget_usd: float | None = Field(None, gt=0, description="per caption worker; then captions stay pending")
    usd_per_1k_input: float = Field(0.0025, ge=0)
    usd_per_1k_output: float = Field(0.01, ge=0)
    cache_uri: str | None = Field(None, description="default <output>/caption_cache")


class DedupConfig(Strict):
    """Near-duplicate removal over a dataset (`medgen dataset dedup`); every number here is ours
    (the paper removes no duplicates): set on generated re-encodes, rescales and 1-s trims."""

    embedding_threshold: float = Field(0.9, ge=-1, le=1, description="prefilter: clip-embedding cosine at least")
    max_hamming: float = Field(10.0, ge=0, le=64, description="same footage: mean frame-hash distance (bits) at most")
    max_shift_frames: int = Field(3, ge=0, description="alignment shifts tried, in sampled frames (1 fps: seconds)")
    min_overlap: int = Field(3, ge=1, description="frames that must overlap at the best shift")
    keep_by: str = Field("score_aesthetic", description="manifest column: the highest-scored clip of a cluster stays")
    block_size: int = Field(4096, ge=1, description="rows per block of the all-pairs similarity")
    pool: PoolConfig = Field(default_factory=lambda: PoolConfig(num_gpus=0.0, batch_size=8),
                             description="signature pass (clips without stored signatures)")


class CurateConfig(Strict):
    """The curation job: output folder, one section per stage, resume and task sizing."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_probe_section(cls, data: Any) -> Any:
        """`curate.probe` (the container checks) was renamed `curate.container`: a saved linear
        probe is a different thing. The old key loads for one release with a warning."""
        if isinstance(data, dict) and "probe" in data:
            if "container" in data:
                raise ValueError("probe and container both given; keep container")
            warnings.warn("curate.probe is deprecated and goes in the next release: use curate.container "
                          "(the probe stage's container checks)", FutureWarning, stacklevel=2)
            data = {**{k: v for k, v in data.items() if k != "probe"}, "container": data["probe"]}
        return data

    output: str = Field("medgen_out", description="dataset folder: local path or s3:// URI")
    source: SourceConfig = Field(default_factory=SourceConfig)
    metadata: MetadataConfig = Field(default_factory=MetadataConfig)
    container: ContainerConfig = Field(default_factory=ContainerConfig,
                                       description="the probe stage's container checks (was `probe`)")
    sample: SampleConfig = Field(default_factory=SampleConfig)
    classify: FrameClassifierConfig = Field(default_factory=FrameClassifierConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    resolution: ResolutionConfig = Field(default_factory=ResolutionConfig)
    cut: CutConfig = Field(default_factory=CutConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    captions: CaptionConfig = Field(default_factory=CaptionConfig)
    resume: bool = True
    write_batch_rows: int = Field(64, ge=1, description="rows per Parquet part")
    task_num_cpus: float = Field(1.0, gt=0, description="CPUs per decode/segment/cut task")
    task_memory_mb: int = Field(
        1024, ge=1, description="memory reserved per CPU task (ours: Ray measured 380-640 MiB for the decode, cut "
                                "and OCR tasks on the sample corpus and the demo); also keeps decoding out of model "
                                "actors"
    )


def _family(model: str) -> VideoFamily:
    """The family of a video model name, as a validation error when there is none."""
    try:
        return family_of(model)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


class BucketConfig(Strict):
    """One training shape (frames x height x width) clips are resized into."""

    frames: int = Field(..., ge=1, description="4k+1 frames (the model family's rule)")
    height: int = Field(..., ge=16)
    width: int = Field(..., ge=16)

    def problems(self, family: VideoFamily) -> list[str]:
        """What in this shape the family's VAE and patch size refuse."""
        out = [f"frames={self.frames}: {why}" for why in [family.check_frames(self.frames)] if why]
        out += [f"{side}={getattr(self, side)}: {why}" for side in ("height", "width")
                for why in [family.check_side(getattr(self, side))] if why]
        return out


class PrecomputeConfig(Strict):
    """Curated clips -> VAE latents + text embeddings, as Parquet shards."""

    dataset: str = Field("medgen_out", description="curated dataset folder (has manifest/)")
    output: str = Field("medgen_latents", description="shard folder: local path or s3:// URI")
    model: str = Field("hunyuan_video/tiny", description="registry name of the video model")
    weights: str | None = None
    buckets: list[BucketConfig] | None = Field(
        None, description="None = 33 frames (ours) at the family's default shape, its transpose and the square "
                          "of equal area (HunyuanVideo: 544x960, 960x544, 720x720)")
    fps: float | None = Field(24.0, gt=0, description="frame rate the clip is resampled to; None = source fps")
    caption_field: str = "caption_detailed"
    fallback_caption_field: str | None = "caption_brief"
    max_sequence_length: int = Field(256, ge=8)
    vae_tiling: bool = True
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    pool: PoolConfig = Field(default_factory=lambda: PoolConfig(num_gpus=1.0, batch_size=1))
    resume: bool = True
    write_batch_rows: int = Field(8, ge=1)

    family_defaults: ClassVar[tuple[str, ...]] = ("buckets",)

    @model_validator(mode="after")
    def _buckets_fit_model(self) -> "PrecomputeConfig":
        family = _family(self.model)
        if self.buckets is None:  # the family's, filled in at every validation (see `settings`)
            side = round((family.height * family.width) ** 0.5 / family.spatial) * family.spatial
            object.__setattr__(self, "buckets", [BucketConfig(frames=33, height=family.height, width=family.width),
                                                 BucketConfig(frames=33, height=family.width, width=family.height),
                                                 BucketConfig(frames=33, height=side, width=side)])
        bad = [f"buckets[{i}] {why}" for i, b in enumerate(self.buckets) for why in b.problems(family)]
        if bad:
            raise ValueError("; ".join(bad))
        return self


class LoraConfig(Strict):
    """LoRA rank, alpha, dropout and target modules."""

    rank: int = Field(32, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])


class ValidationConfig(Strict):
    """Validation videos written during training."""

    every_steps: int = Field(0, ge=0, description="0 = only at the end")
    prompts: list[str] = Field(default_factory=lambda: ["An endoscopic view of the stomach lining during a gastroscopy."])
    height: int = Field(320, ge=16)
    width: int = Field(512, ge=16)
    num_frames: int = Field(33, ge=1)
    steps: int = Field(30, ge=1)
    seed: int = 0


class ContextParallelTrain(Strict):
    """Context-parallel training (Ulysses): each clip's tokens over `ulysses` workers, which hold
    the same clip, noise and timestep; the other factor of num_workers is data parallel."""

    ulysses: int = Field(1, ge=1, description="Ulysses degree: divides num_workers and the model's attention heads")


class TrainConfig(Strict):
    """LoRA fine-tuning of the video transformer on precomputed shards (Ray Train)."""

    data: str = Field("medgen_latents", description="shard folder written by `medgen precompute`")
    model: str = "hunyuan_video/tiny"
    weights: str | None = None
    storage_path: str = Field("medgen_runs", description="checkpoints and results: local path or s3:// URI")
    name: str = "medgen_lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    strategy: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: int = Field(2, ge=1, le=3)
    ddp_find_unused: bool | None = Field(None, description="DDP tolerates LoRA modules whose output the model "
                                                           "discards; None = on only when a target can be discarded "
                                                           "(HunyuanVideo-1.5's last text-stream projections), since "
                                                           "on costs a graph walk per step (ours)")
    num_workers: int = Field(1, ge=1)
    context_parallel: ContextParallelTrain = Field(
        default_factory=lambda: ContextParallelTrain(),
        description="one clip's tokens over several workers: num_workers = data-parallel x ulysses")
    use_gpu: bool = True
    cpus_per_worker: float = Field(1.0, gt=0)
    max_steps: int = Field(1000, ge=1, description="optimizer steps")
    micro_batch: int = Field(1, ge=1, description="clips per worker per forward (grouped by bucket)")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"
    gradient_checkpointing: bool = True
    unpadded_attention: bool = Field(True, description="at micro_batch 1, attention without the text mask "
                                                       "(exact: shards hold trimmed prompts; takes flash kernels)")
    timestep_sampling: Literal["uniform", "logit_normal", "mode"] = "logit_normal"
    shift: float | None = Field(None, gt=0, description="flow time shift; None = the model family's (the released "
                                                       "scheduler's: 7 HunyuanVideo, 5 HunyuanVideo-1.5, 3-5 Wan)")
    guidance: float = Field(1.0, ge=0, description="guidance-embedding input (x1000 inside)")
    caption_dropout: float = Field(0.0, ge=0, le=1, description="share of steps trained with an empty prompt")
    ema_decay: float | None = Field(None, gt=0, lt=1)
    shuffle_buffer: int = Field(64, ge=1)
    cache_mb_per_worker: int = Field(2048, ge=0, description="keep a worker's rows in memory after one pass when "
                                                            "they fit (small sets, many epochs); 0 = always stream")
    seed: int = 0
    checkpoint_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(3, ge=1)
    max_failures: int = Field(3, ge=0, description="worker losses survived by resuming from the last checkpoint")
    log_every: int = Field(10, ge=1)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    export_dir: str | None = Field(None, description="default <storage_path>/<name>/lora")
    kill_rank_at_step: int | None = Field(None, ge=1, description="fault drill: SIGKILL rank 1 once at this step")

    @model_validator(mode="after")
    def _known_model(self) -> "TrainConfig":
        _family(self.model)
        cp = self.context_parallel.ulysses
        bad = degree_problems(self.model, Degrees(cp), where="context_parallel", training=True)
        if self.num_workers % cp:
            bad.append(f"context_parallel.ulysses={cp} must divide num_workers={self.num_workers} "
                       "(num_workers = data-parallel x ulysses)")
        if cp > 1 and self.validation.every_steps:
            bad.append(f"context_parallel.ulysses={cp}: validation.every_steps must be 0 (a context-parallel "
                       "transformer generates only with its whole group; serve the exported LoRA instead)")
        if cp > 1 and self.micro_batch != 1:
            bad.append(f"context_parallel.ulysses={cp} trains one clip at a time: micro_batch must be 1, "
                       f"not {self.micro_batch}")
        if bad:
            raise ValueError("; ".join(bad))
        return self

    @property
    def find_unused(self) -> bool:
        """Whether DDP looks for parameters without a gradient: `ddp_find_unused`, else whether a
        LoRA target's output can be discarded by the model family."""
        if self.ddp_find_unused is not None:
            return self.ddp_find_unused
        return family_of(self.model).discards_any(self.lora.targets)

    @property
    def flow_shift(self) -> float:
        """The flow time shift training uses: `shift`, else the model family's (read here, never
        stored, so a derived config with another model gets that model's)."""
        return self.shift if self.shift is not None else family_of(self.model).shift



class ServeLimits(Strict):
    """Bounds on every request number; requests outside them get 422 naming the field."""

    max_height: int = Field(1280, ge=16)
    max_width: int = Field(1280, ge=16)
    max_frames: int = Field(129, ge=1)
    max_steps: int = Field(100, ge=1)
    max_guidance: float = Field(20.0, gt=0)
    max_prompt_chars: int = Field(2000, ge=1)
    sync_max_steps: int = Field(50, ge=1, description="the synchronous endpoint takes only short jobs; a sync "
                                                    "request that omits steps runs min(default_steps, this)")
    max_body_bytes: int = Field(65536, ge=1024, description="larger request bodies get 413")
    body_timeout_s: float = Field(10.0, gt=0, description="a body not received within this gets 408 (ours: slow "
                                                          "clients cannot hold the ingress)")
    max_per_client: int = Field(64, ge=1, description="requests one client address may have in flight; then 429 "
                                                      "(ours: a quarter of ingress_max_ongoing)")


class ParallelDegrees(Strict):
    """One video over several ranks (context parallelism; models/parallel.py): ranks = ulysses x ring."""

    ulysses: int = Field(1, ge=1, description="Ulysses degree: must divide the model's attention heads")
    ring: int = Field(1, ge=1, description="ring-attention degree (GPU attention backends only; not for "
                                           "HunyuanVideo-1.5, whose attention masks its text padding)")
    split_decode: bool = Field(True, description="the VAE's tiled decode shared by the ranks, each decoding 1/N of "
                                                 "the tiles (HunyuanVideo and HunyuanVideo-1.5; Wan's VAE carries a "
                                                 "cache between tiles and decodes on rank 0) (ours)")

    @property
    def ranks(self) -> int:
        return self.ulysses * self.ring


class GeneratorPoolConfig(Strict):
    """The Serve generator replicas: count and resources."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    num_gpus: float = Field(1.0, ge=0)
    num_cpus: float = Field(1.0, gt=0)
    threads: int | None = Field(None, ge=1, description="torch CPU threads in a replica (CPU serving)")
    parallel: ParallelDegrees = Field(default_factory=ParallelDegrees,
                                      description="ranks per replica: the replica is rank 0, with ranks-1 worker "
                                                  "actors in one STRICT_PACK placement group of num_gpus/num_cpus "
                                                  "bundles")
    collective_timeout_s: float = Field(300.0, gt=0, description="a multi-rank replica's collectives wait this long "
                                                                 "for a rank before the job fails (rank_lost) and "
                                                                 "the replica is replaced (ours)")
    health_check_period_s: float = Field(10.0, gt=0, description="Serve's replica health check period")

    @model_validator(mode="after")
    def _bounds(self) -> "GeneratorPoolConfig":
        return _ordered(self, "min_replicas", "max_replicas")


# Step-cache kinds (models.video.CACHE_KINDS builds them; tests/unit/test_step_cache.py checks they agree).
CacheKind = Literal["none", "first_block", "taylorseer", "pab", "magcache", "faster"]


class StepCacheConfig(Strict):
    """Step caching of the served transformer (diffusers' cache hooks); a request's `cache` field
    picks the kind per job with these parameters. All ours: no default changes the output."""

    kind: CacheKind = Field(
        "none", description="none (bit-identical to no caching) | first_block | taylorseer | pab | magcache "
                            "(needs mag_ratios) | faster (not Wan: diffusers 0.42's FasterCache fails on it)")
    threshold: float = Field(0.05, gt=0, description="first_block: relative change of the first block's output "
                                                     "under which the other blocks are skipped")
    cache_interval: int = Field(5, ge=1, description="taylorseer: a full step every this many steps")
    disable_before: int = Field(3, ge=0, description="taylorseer: full steps before caching starts")
    max_order: int = Field(1, ge=0, description="taylorseer: Taylor expansion order")
    skip_range: int = Field(2, ge=1, description="pab: spatial attention recomputed every this many blocks")
    timestep_range: tuple[int, int] = Field((100, 800), description="pab: timesteps where attention is reused")

    mag_ratios: str | None = Field(None, description="magcache: the JSON `medgen cache calibrate` writes (ratios "
                                                     "per model); without it magcache is refused")
    mag_threshold: float = Field(0.06, gt=0, description="magcache: accumulated error under which blocks are "
                                                          "skipped (diffusers' default)")
    mag_max_skip: int = Field(3, ge=1, description="magcache: most consecutive skipped steps (diffusers' default)")
    mag_retention: float = Field(0.2, ge=0, le=1, description="magcache: share of first steps never skipped "
                                                              "(diffusers' default)")
    faster_skip_range: int = Field(2, ge=1, description="faster: spatial attention recomputed every this many "
                                                         "steps (FasterCache's 2)")
    faster_timestep_range: tuple[int, int] = Field((-1, 681), description="faster: timesteps where attention is "
                                                                           "reused (FasterCache's)")

    def params(self) -> dict[str, Any]:
        """The keyword arguments of models.video.cache_config."""
        return self.model_dump(exclude={"kind"})


class ServeConfig(Strict):
    """The generation service (Ray Serve): `medgen serve` or `serve deploy`."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model: str = "hunyuan_video/tiny"
    weights: str | None = None
    adapters: dict[str, str] = Field(default_factory=dict, description="name -> LoRA file or folder (either format)")
    store: str = Field("medgen_videos", description="job records and finished mp4s: local path or s3:// URI")
    token: str | None = Field(None, description="bearer token; default from MEDGEN_SERVE_TOKEN")
    max_queue: int = Field(16, ge=1, description="jobs queued or running per ingress replica; then 503")
    retry_after_s: int = Field(10, ge=1)
    sync_timeout_s: float = Field(600.0, gt=0)
    ingress_max_ongoing: int = Field(256, ge=1, description="HTTP requests the ingress replica serves at once "
                                                            "(Serve's max_ongoing_requests; its default 5 let five "
                                                            "slow clients block the API)")
    lease_s: float = Field(30.0, gt=0, description="a running job's lease: a replica that stops renewing it for this "
                                                   "long is gone, and the job is run again (ours)")
    heartbeat_s: float = Field(0.5, gt=0, description="how often a running job renews its lease and writes progress")
    max_attempts: int = Field(3, ge=1, description="runs of a job whose replicas keep dying; then it fails "
                                                   "(code generator_lost)")
    generator: GeneratorPoolConfig = Field(default_factory=GeneratorPoolConfig)
    limits: ServeLimits = Field(default_factory=ServeLimits)
    default_height: int | None = Field(None, description="None = the model family's default shape")
    default_width: int | None = None
    default_frames: int | None = None
    default_steps: int = 30
    default_guidance: float | None = Field(None, description="None = the family's (embedded guidance for "
                                                             "HunyuanVideo, classifier-free scale for the others)")
    fps: int | None = Field(None, ge=1, description="frame rate of the written mp4; None = the family's")
    vae_tiling: bool = True
    compile: bool = Field(False, description="torch.compile the transformer blocks at start-up")
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    cache: StepCacheConfig = Field(default_factory=StepCacheConfig,
                                   description="step caching: the deployment's default kind and its parameters")

    family_defaults: ClassVar[tuple[str, ...]] = ("default_height", "default_width", "default_frames",
                                                  "default_guidance", "fps")

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> "ServeConfig":
        """A request that omits a field gets the default: it must obey the same limits."""
        if self.heartbeat_s * 3 > self.lease_s:
            raise ValueError(f"heartbeat_s ({self.heartbeat_s:g}) must be at most a third of lease_s "
                             f"({self.lease_s:g}): a live job would lose its lease")
        family = _family(self.model)
        for name, value in (("default_height", family.height), ("default_width", family.width),
                            ("default_frames", family.frames), ("default_guidance", family.guidance),
                            ("fps", family.fps)):
            if getattr(self, name) is None:
                # the family's, filled in at every validation; `settings` leaves it out, so a derived
                # config with another model gets that model's
                object.__setattr__(self, name, value)
        lim, bad = self.limits, []
        for name, value, most in (("default_height", self.default_height, lim.max_height),
                                  ("default_width", self.default_width, lim.max_width),
                                  ("default_frames", self.default_frames, lim.max_frames),
                                  ("default_steps", self.default_steps, lim.max_steps),
                                  ("default_guidance", self.default_guidance, lim.max_guidance)):
            if value > most:
                bad.append(f"{name}={value:g} is over its limit {most:g}")
        for name in ("default_height", "default_width"):
            why = family.check_side(getattr(self, name))
            if why:
                bad.append(f"{name}={getattr(self, name)}: {why}")
        why = family.check_frames(self.default_frames)
        if why:
            bad.append(f"default_frames={self.default_frames} is not 4k+1: {why}")
        kind = self.cache.kind
        if kind in family.unsupported_caches:
            bad.append(f"cache.kind={kind}: fails on {family.label} in diffusers 0.42; choose another kind")
        if kind == "magcache" and not self.cache.mag_ratios:
            bad.append("cache.kind=magcache needs cache.mag_ratios (write it with `medgen cache calibrate`)")
        par = self.generator.parallel
        bad += degree_problems(self.model, Degrees(par.ulysses, par.ring), where="generator.parallel")
        if par.ring > 1 and self.generator.num_gpus == 0:
            bad.append(f"generator.parallel.ring={par.ring}: ring attention needs a GPU attention backend "
                       "(the log-sum-exp of flash or cuDNN); on CPU ranks use ulysses")
        if bad:
            raise ValueError("; ".join(bad))
        return self


DEFAULT_DIMENSIONS = ("subject_consistency", "background_consistency", "motion_smoothness", "imaging_quality",
                      "dynamic_degree", "text_alignment", "aesthetic", "warping_auto", "medical_frames")
# VideoScore v1.1's five aspects (evaluate/videoscore.py ASPECTS), one model call for all five;
# off by default: an 8B model beside VBench's extractors.
VIDEOSCORE_DIMENSIONS = ("videoscore_visual_quality", "videoscore_temporal_consistency", "videoscore_dynamic_degree",
                         "videoscore_text_alignment", "videoscore_factual_consistency")
DIMENSIONS = DEFAULT_DIMENSIONS + VIDEOSCORE_DIMENSIONS

# Zero-shot phrases per clip category (the captioner's taxonomy, curate/captions.CATEGORIES).
CATEGORY_DESCRIPTIONS = {
    "medical teaching": ["a lecturer teaching medical students with slides or a whiteboard",
                         "an instructional medical training video explaining a technique step by step",
                         "a teacher demonstrating anatomy on a model for a class"],
    "clinical practice": ["a surgical procedure in an operating room with surgeons and instruments",
                          "doctors and nurses treating a patient in a hospital or clinic",
                          "a physical therapist or clinician examining a patient"],
    "medical popular science": ["a science explainer about health and disease for the general public",
                                "a presenter talking about healthy habits and the human body",
                                "a documentary about medicine for a general audience"],
    "medical animation": ["a 3D animation of cells, organs or molecules inside the body",
                          "an animated illustration of a biological process",
                          "a computer-generated rendering of anatomy"],
    "medical imaging": ["an ultrasound scan with a grey fan-shaped image",
                        "an MRI, CT or X-ray image of internal organs",
                        "a radiology or endoscopic camera view of tissue"],
}


class PromptClassifierConfig(Strict):
    """Puts each Med-VBench prompt into one of the clip categories: a softmax probe on sentence
    embeddings (trained on a curated dataset's captions), or zero-shot by similarity to
    `descriptions` when no probe is given."""

    embedder: str = "minilm"
    weights: str | None = None
    probe: str | None = Field(None, description="category probe from `medgen classifier train-categories`")
    train_on: str | None = Field(None, description="a curated dataset: fit the probe on its captions and categories "
                                                   "when the job starts (saved beside the scores)")
    text_column: str = Field("caption_detailed", description="caption column train_on learns from")
    max_train_texts: int = Field(5000, ge=4, description="captions sampled from train_on")
    descriptions: dict[str, list[str]] = Field(default_factory=lambda: {k: list(v) for k, v in
                                                                        CATEGORY_DESCRIPTIONS.items()},
                                               description="zero-shot phrases per category")

    @model_validator(mode="after")
    def _one_source(self) -> "PromptClassifierConfig":
        if self.probe and self.train_on:
            raise ValueError("give probe or train_on, not both")
        if len(self.descriptions) < 2 or any(not v for v in self.descriptions.values()):
            raise ValueError("descriptions: at least 2 categories, each with at least one phrase")
        return self


class EvalModelConfig(Strict):
    """One evaluated model: its report label and the adapter that generates it."""

    name: str = Field(..., min_length=1, description="row label in the report")
    adapter: str = Field("base", description="adapter of the generator (serve.adapters), or base")


class EvaluateConfig(Strict):
    """Med-VBench: generate from a prompt file with each model/adapter, then score."""

    prompts: str | None = Field(None, description="text file, one prompt per line")
    max_prompts: int | None = Field(None, ge=1)
    videos: str | None = Field(None, description="score this folder of mp4s instead of generating")
    output: str = "medgen_eval"
    models: list[EvalModelConfig] = Field(default_factory=lambda: [EvalModelConfig(name="HunyuanVideo"),
                                                                   EvalModelConfig(name="MedGen", adapter="medgen")])
    url: str | None = Field(None, description="generate through this running service; "
                                              "default: offline generator actors built from the serve section")
    token: str | None = Field(None, description="bearer token for url; default MEDGEN_SERVE_TOKEN on the driver")
    seed: int = 0
    dimensions: list[str] = Field(default_factory=lambda: list(DEFAULT_DIMENSIONS),
                                  description="Med-VBench dimensions; VideoScore's five (videoscore_*) are off "
                                              "by default")
    dino_model: str = "dino/vit-b-16"
    dino_weights: str | None = None
    clip_model: str = "clip/vit-b-32"
    clip_weights: str | None = None
    iqa_model: str = "musiq/spaq"
    iqa_weights: str | None = Field(None, description="musiq_spaq_ckpt file; default pyiqa's cache/download")
    flow_model: str = Field("raft/things", description="raft/things (VBench's RAFT) | farneback")
    flow_weights: str | None = Field(None, description="raft-things.pth (`medgen weights pull raft/things`)")
    interpolator_model: str = Field("amt/s", description="motion smoothness: amt/s (VBench's AMT-S) | linear")
    interpolator_weights: str | None = Field(None, description="amt-s.pth (`medgen weights pull amt/s`)")
    aesthetic_model: str = Field("aesthetic/vbench", description="aesthetic/vbench (ViT-L/14 + LAION linear head, "
                                                                 "VBench's) | aesthetic/vbench-tiny")
    aesthetic_weights: str | None = Field(None, description="LAION's sa_0_4_vit_l_14_linear.pth or a pulled folder")
    videoscore_model: str = Field("videoscore/v1.1", description="videoscore_* dimensions: videoscore/v1.1 "
                                                                 "(TIGER-Lab) | videoscore/tiny")
    videoscore_weights: str | None = Field(None, description="a pulled VideoScore-v1.1 folder; default the hub cache")
    videoscore_max_frames: int = Field(16, ge=1, description="frames VideoScore sees: 16 as the paper states (issue "
                                                             "25); VideoScore-v1.1's own example uses 48")
    medical_probe: str | None = Field(None, description="medical_frames: frame probe trained on clip_model "
                                                        "features (`medgen classifier train-frames`); default "
                                                        "zero-shot with medical_prompts / other_prompts")
    medical_prompts: list[str] = Field(default_factory=lambda: FrameClassifierConfig().medical_prompts)
    other_prompts: list[str] = Field(default_factory=lambda: FrameClassifierConfig().other_prompts)
    prompt_classifier: PromptClassifierConfig | None = Field(
        None, description="assign prompts to clip categories (per-category scores by `clip_category`)")
    max_frames: int | None = Field(None, ge=3, description="frames read per video; None = all, as VBench "
                                                            "(a cap is ours: the scores then differ from VBench's)")
    flow_side: int = Field(256, ge=32, description="short side frames are resized to for optical flow")
    ratings: list[str] = Field(default_factory=list, description="raters' CSV files: video_id,rater,rating")
    reference_csv: str | None = Field(None, description="published rows to show beside ours (Table 2 format)")
    pool: PoolConfig = Field(default_factory=lambda: PoolConfig(num_gpus=1.0, batch_size=1))
    generator_pool: PoolConfig = Field(default_factory=lambda: PoolConfig(num_gpus=1.0, batch_size=1))
    resume: bool = True

    @model_validator(mode="after")
    def _dims(self) -> "EvaluateConfig":
        if "medical_accuracy" in self.dimensions:
            raise ValueError("medical_accuracy was renamed medical_frames: it is the share of frames the curation's "
                             "frame classifier calls medical, not the paper's doctor-judged Medical Accuracy")
        bad = [d for d in self.dimensions if d not in DIMENSIONS]
        if bad:
            raise ValueError(f"unknown dimensions {bad}; choices: {', '.join(DIMENSIONS)}")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models: names must be unique, got {names}")
        return self



class MixConfig(Strict):
    """A second dataset mixed into an experiment arm at a given share."""

    dataset: str = Field(..., description="a second curated dataset (e.g. general, non-medical clips)")
    share: float = Field(..., ge=0, lt=1, description="share of the arm's training clips taken from it")


class ArmConfig(Strict):
    """One arm of an experiment: a dataset view, then its own LoRA, evaluated beside the others."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    disable: list[str] = Field(default_factory=list, description="clip filters off in this arm's view")
    categories: list[str] = Field(default_factory=list, description="keep only clips of these categories")
    mix: MixConfig | None = None
    overrides: list[str] = Field(default_factory=list, description="a.b=c for this arm (curate.quality.*, "
                                                                   "precompute.*, train.*)")
    lora: str | None = Field(None, description="an already trained LoRA (export folder): evaluated as it is, "
                                               "no view and no training")

    @model_validator(mode="after")
    def _trained_or_given(self) -> "ArmConfig":
        if self.lora and (self.disable or self.categories or self.mix or self.overrides):
            raise ValueError(f"arm {self.name}: lora is evaluated as given; disable, categories, mix and "
                             "overrides would not apply")
        return self


class SweepConfig(Strict):
    """A Ray Tune grid over one training setting (each trial one LoRA, run by Ray Train)."""

    key: str = Field("train.lora.rank", description="the dotted config key the grid varies")
    values: list[Any] = Field(default_factory=lambda: [8, 16, 32, 64])
    also: dict[str, str] = Field(default_factory=lambda: {"train.lora.alpha": "{value}"},
                                 description="keys set from the same value ({value} is replaced)")
    max_concurrent: int = Field(1, ge=1, description="trials at once (each holds train.num_workers workers)")
    trial_cpus: float = Field(0.01, gt=0, description="CPUs of the trial driver (its workers ask for their own)")


class ExperimentConfig(Strict):
    """An experiment: arms (or a sweep) on one scored dataset, compared against a reference."""

    name: str = "experiment"
    dataset: str = Field("medgen_out", description="scored dataset (curate with quality.score_only=true to loosen)")
    output: str = "medgen_experiments"
    arms: list[ArmConfig] = Field(default_factory=list)
    include_base: bool = Field(True, description="evaluate the base model beside the arms")
    reference: str | None = Field(None, description="arm (or base) every arm is compared with, paired over prompts "
                                                    "and per category; default base, else the first arm")
    sweep: SweepConfig | None = Field(None, description="instead of arms: one shared view, a Ray Tune grid of LoRAs")
    seed: int = 0

    @model_validator(mode="after")
    def _names(self) -> "ExperimentConfig":
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: names must be unique, got {names}")
        if "base" in names:
            raise ValueError("arms: 'base' names the base model; call the arm something else")
        if self.reference == "base" and not self.include_base:
            raise ValueError("reference: base is not evaluated (include_base is false)")
        if self.reference not in (None, "base") and self.sweep is None and self.reference not in names:
            raise ValueError(f"reference: {self.reference!r} is not an arm ({names})")
        return self


class DemoConfig(Strict):
    """The local demo: working folder, corpus size and training sizes."""

    workdir: str = "medgen_demo"
    videos: int = Field(10, ge=2)
    seconds: float = Field(30.0, ge=8)
    seed: int = 0
    train_frames_per_class: int = Field(120, ge=10)
    train_texts_per_class: int = Field(60, ge=10)
    train_lora: bool = Field(True, description="precompute latents of the kept clips and train a LoRA on them")
    model: str | None = Field(None, description="a video family (models.families) whose tiny twin the demo trains, "
                                                "serves and scores; None = the config's (HunyuanVideo's twin)")


class AppConfig(Strict):
    """The whole config tree: one section per job."""

    ray: RayConfig = Field(default_factory=RayConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    precompute: PrecomputeConfig = Field(default_factory=PrecomputeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)

    def model_loads(self, job: str) -> list[tuple[str, str, str | None, str]]:
        """(config field, model name, weights, "registry" | "eval") for every model `job` loads;
        `models.requirements` checks them (and adds the backbones some heads sit on)."""
        c, e = self.curate, self.evaluate
        if job == "curate":
            out = [("curate.classify.clip_model", c.classify.clip_model, c.classify.weights, "registry")]
            if c.metadata.enabled and c.metadata.classifier_path:
                out.append(("curate.metadata.embedder", c.metadata.embedder, None, "registry"))
            if c.quality.enabled:
                out.append(("curate.quality.aesthetic.model", c.quality.aesthetic.model, c.quality.aesthetic.weights,
                            "registry"))
            return out
        if job in ("precompute", "train", "serve"):
            section = getattr(self, job)
            return [(f"{job}.model", section.model, section.weights, "registry")]
        if job == "evaluate":
            out = [] if e.videos or e.url else [("serve.model (offline generators)", self.serve.model,
                                                self.serve.weights, "registry")]
            dims = set(e.dimensions)
            for field, used_by in (("dino_model", {"subject_consistency"}),
                                   ("clip_model", {"background_consistency", "text_alignment", "medical_frames"}),
                                   ("iqa_model", {"imaging_quality"}),
                                   ("flow_model", {"dynamic_degree", "warping_auto"}),
                                   ("interpolator_model", {"motion_smoothness"}),
                                   ("aesthetic_model", {"aesthetic"}),
                                   ("videoscore_model", set(VIDEOSCORE_DIMENSIONS))):
                if dims & used_by:
                    weights = getattr(e, field.replace("_model", "_weights"))
                    out.append((f"evaluate.{field}", getattr(e, field), weights, "eval"))
            return out
        if job == "experiment":
            return [x for j in ("precompute", "train", "evaluate") for x in self.model_loads(j)]
        raise KeyError(f"unknown job {job!r}; choices: curate, precompute, train, serve, evaluate, experiment")


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    keys = dotted.split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError([f"{dotted}: '{key}' is a value, not a section"])
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`a.b=c` strings as (dotted key, YAML-parsed value) pairs; raises ConfigError on bad ones."""
    parsed: list[tuple[str, Any]] = []
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"{item!r}: overrides look like a.b.c=value")
            continue
        parsed.append((key.strip(), yaml.safe_load(raw) if raw.strip() else None))
    if problems:
        raise ConfigError(problems)
    return parsed


def _without_family_defaults(model: BaseModel, tree: dict[str, Any]) -> dict[str, Any]:
    for name in getattr(model, "family_defaults", ()):
        if name not in model.model_fields_set:
            tree.pop(name, None)
    for name, value in model:
        if isinstance(value, BaseModel) and isinstance(tree.get(name), dict):
            _without_family_defaults(value, tree[name])
    return tree


def settings(cfg: BaseModel) -> dict[str, Any]:
    """A config as a plain tree without the values validation filled in from the model family
    (serve shape, frames, fps, guidance; precompute buckets) unless the user set them: validating
    it again gives an equal config, and changing the model in it gives the new model's defaults.
    The one way a config is copied (`derive`) or sent to another process."""
    return _without_family_defaults(cfg, cfg.model_dump())


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return settings(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def derive(cfg: M, updates: dict[str, Any]) -> M:
    """A new config of cfg's type with dotted fields replaced (`{"train.data": "..."}`),
    validated again; `cfg` itself is unchanged."""
    tree = settings(cfg)
    for key, value in updates.items():
        _set_path(tree, key, _plain(value))
    try:
        return type(cfg).model_validate(tree)
    except ValidationError as exc:
        raise ConfigError([f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]) from exc


def with_overrides(app: AppConfig, overrides: list[str]) -> AppConfig:
    """A copy of a validated config with `a.b=c` overrides applied and validated again."""
    return derive(app, dict(parse_overrides(overrides)))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> AppConfig:
    """Read YAML (if given), apply `a.b=c` overrides, validate; raises ConfigError."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError([f"config file {str(p)!r}: not found"])
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError([f"config file {str(p)!r}: not valid YAML ({exc})"]) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([f"config file {str(p)!r}: top level must be a mapping"])
        tree = loaded or {}
    for key, value in parse_overrides(overrides or []):
        _set_path(tree, key, value)
    try:
        return AppConfig.model_validate(tree)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "<root>"
            problems.append(f"{loc}: {err['msg']}")
        raise ConfigError(problems) from exc
