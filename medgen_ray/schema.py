"""Column names and Arrow schemas: the one place the data's shape is written down.

A row in flight is a source video until temporal segmentation, then a candidate clip. Every
row carries `reject_stage`, `reject_reason` and `error` (empty string = none), so a rejected or
errored row keeps flowing to the sink and nothing is dropped silently.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Status columns on every row in flight.
REJECT_STAGE = "reject_stage"
REJECT_REASON = "reject_reason"
ERROR = "error"

# Source-level columns.
REQUEST = "request"  # a yt-dlp search / channel / page URL (yt-dlp sources, before listing)
INFO_JSON = "info_json"  # a yt-dlp info dict as JSON (until the download stage)
VIDEO_ID = "video_id"
SOURCE_URI = "source_uri"
SOURCE_URL = "source_url"
TITLE = "title"
DESCRIPTION = "description"
CHANNEL = "channel"
LICENSE = "license"
TRANSCRIPT = "transcript"
DAMAGED_SPANS = "damaged_spans"  # JSON [[start, end], ...] seconds of the source that did not decode

# Heavy, transient columns: dropped right after their last consumer.
FRAMES = "frames"  # uint8 (T, S, S, 3) at the frame classifier's input size
FRAME_TIMES = "frame_times"  # float64 (T,) seconds
FRAME_SCORES = "frame_scores"  # float32 (T,) P(medical)
FRAME_SIMS = "frame_sims"  # float32 (T-1,) adjacent cosine similarity
FRAME_FEATS = "frame_feats"  # float16 (T, D) unit CLIP image features (for the clip embedding)
WINDOWED = "windowed"  # bool: a long source the classifier samples window by window (no frames in the row)
FRAME_HASHES = "frame_hashes"  # uint64 (T,) DCT hash per sampled frame (a source's, then its clip's)
QFRAMES = "qframes"  # uint8 (N, H, W, 3): a clip's uniformly sampled frames (borders, aesthetic, technical, OCR)
MFRAMES = "mframes"  # uint8 (P, 2, h, w): grey frame pairs for optical flow (motion)
HEAVY_COLUMNS = (FRAMES, FRAME_TIMES, FRAME_SCORES, FRAME_SIMS, FRAME_FEATS, QFRAMES, MFRAMES)

# Clip-level columns (after segmentation).
CLIP_ID = "clip_id"
N_CANDIDATES = "n_candidates"  # candidate clips of the source; 0 when the source ended whole
T_START = "t_start"
T_END = "t_end"
CLIP_URI = "clip_uri"
CUT_MODE = "cut_mode"
CLIP_EMBEDDING = "clip_embedding"  # float32 (D,) unit mean of the clip's sampled-frame CLIP features

PROBE_COLUMNS = ("width", "height", "fps", "duration", "codec", "bitrate", "rotation")

# Stage names, in pipeline order; also the funnel's order in summary.json. Rows are source
# videos up to segmentation and clips after it.
VIDEO_STAGES = ("source", "metadata", "download", "probe", "resolution", "sample", "classify", "segment")
CLIP_STAGES = ("cut", "clipframes", "motion", "borders", "aesthetic", "technical", "ocr", "caption")
STAGES = VIDEO_STAGES + CLIP_STAGES
QUALITY_SCORES = [
    ("score_border_top", "float64"), ("score_border_bottom", "float64"), ("score_border_left", "float64"),
    ("score_border_right", "float64"), ("border_top_frac", "float64"), ("border_bottom_frac", "float64"),
    ("border_left_frac", "float64"), ("border_right_frac", "float64"), ("score_ocr_words", "float64"),
    ("score_text_area", "float64"), ("score_motion", "float64"), ("label_camera_motion", "string"),
    ("score_aesthetic", "float64"), ("score_technical", "float64"), ("crop_box", "string"),
]
CAPTION_FIELDS = ["caption_detailed", "caption_brief", "category", "caption_source", "caption_status"]

MANIFEST_SCHEMA = pa.schema(
    [
        (CLIP_ID, pa.string()),
        (VIDEO_ID, pa.string()),
        (CLIP_URI, pa.string()),
        (SOURCE_URI, pa.string()),
        (SOURCE_URL, pa.string()),
        (T_START, pa.float64()),
        (T_END, pa.float64()),
        ("duration", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bitrate", pa.int64()),
        ("codec", pa.string()),
        (CUT_MODE, pa.string()),
        ("score_text_keywords", pa.float64()),
        ("score_text_medical", pa.float64()),
        ("score_frame_medical", pa.float64()),
        ("score_min_similarity", pa.float64()),
        *[(n, getattr(pa, t)()) for n, t in QUALITY_SCORES],
        *[(n, pa.string()) for n in CAPTION_FIELDS],
        (TITLE, pa.string()),
        (DESCRIPTION, pa.string()),
        (CHANNEL, pa.string()),
        (LICENSE, pa.string()),
        (TRANSCRIPT, pa.string()),
        ("provenance", pa.string()),
        (N_CANDIDATES, pa.int32()),
        (DAMAGED_SPANS, pa.string()),
        (CLIP_EMBEDDING, pa.list_(pa.float32())),
        (FRAME_HASHES, pa.list_(pa.uint64())),
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        (VIDEO_ID, pa.string()),
        (CLIP_ID, pa.string()),
        (SOURCE_URI, pa.string()),
        (SOURCE_URL, pa.string()),
        (REJECT_STAGE, pa.string()),
        (REJECT_REASON, pa.string()),
        (ERROR, pa.string()),
        (T_START, pa.float64()),
        (T_END, pa.float64()),
        (N_CANDIDATES, pa.int32()),
        ("score_text_keywords", pa.float64()),
        ("score_text_medical", pa.float64()),
        ("score_frame_medical", pa.float64()),
        ("score_min_similarity", pa.float64()),
        *[(n, getattr(pa, t)()) for n, t in QUALITY_SCORES],
        ("width", pa.int32()),
        ("height", pa.int32()),
        (CLIP_URI, pa.string()),
        (DAMAGED_SPANS, pa.string()),
    ]
)

# Latent shards (precompute -> training), under <output>/shards and <output>/rejects.
SHARDS, SHARD_REJECTS = "shards", "rejects"
PRECOMPUTE_INPUT = [CLIP_ID, CLIP_URI, "width", "height", "duration", "fps"]  # manifest columns precompute reads
SHARD_SCHEMA = pa.schema([
    (CLIP_ID, pa.string()),
    ("bucket", pa.string()),
    ("caption", pa.string()),
    ("latent", pa.binary()),
    ("latent_shape", pa.list_(pa.int32())),
    ("text_embeds", pa.binary()),
    ("text_shape", pa.list_(pa.int32())),
    ("pooled", pa.binary()),
    ("pooled_shape", pa.list_(pa.int32())),
    ("text_embeds_2", pa.binary()),  # a second prompt stream (HunyuanVideo-1.5's glyph encoder); empty elsewhere
    ("text_2_shape", pa.list_(pa.int32())),
    ("dtype", pa.string()),
    ("family", pa.string()),  # models.families name: training refuses shards of another family
])
SHARD_REJECTS_SCHEMA = pa.schema([(CLIP_ID, pa.string()), (REJECT_STAGE, pa.string()),
                                  (REJECT_REASON, pa.string()), (ERROR, pa.string())])

# Med-VBench per-video rows (<output>/per_video): these columns plus every score_* and time_* one.
PER_VIDEO_COLUMNS = ("video_id", "model", "adapter", "prompt", "prompt_index", "category", "clip_category",
                     "clip_category_p", "video_uri", "frames", ERROR, REJECT_REASON)
PER_VIDEO_PREFIXES = ("score_", "time_")

# Defaults for columns that a row has not reached yet.
COLUMN_DEFAULTS: dict[str, object] = {
    DAMAGED_SPANS: "",
    WINDOWED: False,
    CLIP_EMBEDDING: np.zeros(0, np.float32),  # arrays, like the clips' (Ray keeps one tensor column)
    FRAME_HASHES: np.zeros(0, np.uint64),
    VIDEO_ID: "",
    SOURCE_URI: "",
    REQUEST: "",
    INFO_JSON: "",
    REJECT_STAGE: "",
    REJECT_REASON: "",
    ERROR: "",
    CLIP_ID: "",
    CLIP_URI: "",
    CUT_MODE: "",
    SOURCE_URL: "",
    TITLE: "",
    DESCRIPTION: "",
    CHANNEL: "",
    LICENSE: "",
    TRANSCRIPT: "",
    "codec": "",
    "provenance": "",
    N_CANDIDATES: 0,
    "width": 0,
    "height": 0,
    "bitrate": 0,
    "rotation": 0,
    "label_camera_motion": "",
    "crop_box": "",
    **{n: "" for n in CAPTION_FIELDS},
}


def default_for(column: str) -> object:
    """Value of a column that a row never reached: '' for text, 0 for counts, NaN for scores."""
    return COLUMN_DEFAULTS.get(column, float("nan"))
