"""Curated clips -> VAE latents and text embeddings, the training set's shards.

One row in, one row out: `shards/part-*.parquet` for encoded clips, `rejects/part-*.parquet`
for clips that fit no bucket or failed to decode (with the reason). Tensors are stored as raw
little-endian bytes with their shape and dtype beside them, so a shard is plain Parquet that
any reader can open and the training loop rebuilds tensors without copying through Python.

Latents are the VAE posterior mean, normalised as the model family does (scaling factor or
per-channel mean/std; deterministic, so a rerun gives identical shards). Text embeddings are
trimmed to the prompt's real tokens: at batch 1 the transformer then sees no padding, and
batches pad per step (see `collate`). Every row records its family (`models.families`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from medgen_ray.config import BucketConfig, PrecomputeConfig
from medgen_ray.core.batch import mark_reject
from medgen_ray.core.cluster import pick_device
from medgen_ray.core.decode import open_video, sample_window
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.models.families import DEFAULT_FAMILY
from medgen_ray.schema import (
    CLIP_ID,
    CLIP_URI,
    PRECOMPUTE_INPUT,
    SHARD_REJECTS,
    SHARD_REJECTS_SCHEMA,
    SHARD_SCHEMA,
    SHARDS,
)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_NP = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}

def bucket_key(b: BucketConfig) -> str:
    """A bucket's name, frames x height x width."""
    return f"{b.frames}x{b.height}x{b.width}"


def choose_bucket(buckets: list[BucketConfig], width: int, height: int, n_frames: float) -> BucketConfig | None:
    """The bucket nearest the clip's aspect ratio (log scale) among those it has frames for;
    among equals, the longest. None when the clip is shorter than every bucket."""
    fits = [b for b in buckets if b.frames <= n_frames + 1e-6]
    if not fits or width <= 0 or height <= 0:
        return None
    aspect = np.log(width / height)
    return min(fits, key=lambda b: (round(abs(np.log(b.width / b.height) - aspect), 6), -b.frames))


def tensor_bytes(t: torch.Tensor) -> tuple[bytes, list[int]]:
    """(raw bytes, shape) of a tensor for a Parquet shard (bf16 stored as int16)."""
    t = t.detach().cpu().contiguous()
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    return raw.numpy().tobytes(), list(t.shape)


def bytes_tensor(raw: bytes, shape: list[int], dtype: str) -> torch.Tensor:
    """The tensor back from shard bytes, shape and dtype."""
    if dtype == "bfloat16":
        return torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16).reshape(shape)
    return torch.from_numpy(np.frombuffer(raw, dtype=dtype).copy()).reshape(shape)


def caption_of(row: Row, cfg: PrecomputeConfig) -> str:
    """The clip's caption from the configured field or its fallback; raises DataError when both are empty."""
    for field in (cfg.caption_field, cfg.fallback_caption_field):
        if field and isinstance(row.get(field), str) and row[field].strip():
            return row[field].strip()
    raise DataError(f"no caption in {cfg.caption_field!r}" +
                    (f" or {cfg.fallback_caption_field!r}" if cfg.fallback_caption_field else ""))


class PrecomputeStage(RowStage):
    """Model stage (actor pool): decodes a clip into its bucket, encodes latents and the caption."""

    name = "precompute"
    reads = tuple(PRECOMPUTE_INPUT)
    adds = ("bucket", "caption", "latent", "latent_shape", "text_embeds", "text_shape", "pooled", "pooled_shape",
            "text_embeds_2", "text_2_shape", "dtype", "family")

    def empty_values(self) -> Row:
        return {"bucket": "", "caption": "", "latent": b"", "latent_shape": [], "text_embeds": b"",
                "text_shape": [], "pooled": b"", "pooled_shape": [], "text_embeds_2": b"", "text_2_shape": [],
                "dtype": "", "family": ""}

    def __init__(self, cfg: PrecomputeConfig, device: str | None = None, dataset_root: str = ""):
        super().__init__(cfg)
        self.device = device
        self.root = dataset_root.rstrip("/")
        self.dtype = DTYPES[cfg.dtype]
        self.pipe: Any = None

    def setup(self) -> None:
        from medgen_ray.models.families import family_of
        from medgen_ray.models.registry import load_video_encoders

        if self.device is None:  # decided where the stage runs, never on the driver
            self.device = pick_device(self.cfg.pool.num_gpus)
        if self.device == "cpu" and self.dtype == torch.float16:
            self.dtype = torch.float32  # half-precision convolutions are not implemented on CPU
        self.family = family_of(self.cfg.model)
        pipe = load_video_encoders(self.cfg.model, self.cfg.weights)  # no transformer: it is never used here
        if self.cfg.vae_tiling:
            pipe.vae.enable_tiling()
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.to(self.device, self.dtype).eval()
        self.pipe = pipe
        self.vae_dtype = self.dtype

    def _uri(self, row: Row) -> str:
        uri = str(row[CLIP_URI])
        if "://" in uri or uri.startswith("/") or not self.root:
            return uri
        return f"{self.root}/{uri}"

    def process(self, row: Row) -> Row:
        cfg = self.cfg
        uri = self._uri(row)
        width, height = int(row.get("width") or 0), int(row.get("height") or 0)
        duration, fps = float(row.get("duration") or 0.0), float(row.get("fps") or 0.0)
        if not (width and height and duration):
            with open_video(uri) as c:
                s = c.streams.video[0]
                width, height = s.codec_context.width, s.codec_context.height
                fps = float(s.average_rate or 0)
                duration = float(s.duration * s.time_base) if s.duration else float(c.duration or 0) / 1e6
        rate = cfg.fps or fps
        bucket = choose_bucket(cfg.buckets, width, height, duration * rate)
        if bucket is None:
            shortest = min(b.frames for b in cfg.buckets)
            mark_reject(row, self.name, f"too short: {duration * rate:.0f} frames at {rate:g} fps, "
                                        f"the shortest bucket needs {shortest}")
            return {**self.empty_values(), **row}
        caption = caption_of(row, cfg)
        frames, _ = sample_window(uri, cfg.fps, bucket.width, bucket.height, limit=bucket.frames)
        if len(frames) < bucket.frames:
            raise DataError(f"decoded {len(frames)} frames, bucket {bucket_key(bucket)} needs {bucket.frames}")
        tensors = self.encode(frames, caption)
        row.update(self.empty_values())  # columns this family has no tensor for stay empty
        row.update({"bucket": bucket_key(bucket), "caption": caption, "dtype": _NP[self.dtype],
                    "family": self.family.name})
        for col, t in tensors.items():
            row[col], row[SHAPE_COLUMNS[col]] = tensor_bytes(t)
        return row

    @torch.no_grad()
    def encode(self, frames: np.ndarray, caption: str) -> dict[str, torch.Tensor]:
        """The clip's latent and its caption's tensors (text_embeds [, pooled] [, text_embeds_2])."""
        from medgen_ray.models.video import encode_latent, encode_text

        video = torch.from_numpy(frames).permute(3, 0, 1, 2).unsqueeze(0)  # (1, C, F, H, W)
        video = (video.to(self.device, torch.float32) / 127.5 - 1.0).to(self.vae_dtype)
        out = {"latent": encode_latent(self.pipe, self.family, video)}
        out.update(encode_text(self.pipe, self.family, caption, self.cfg.max_sequence_length, self.device))
        return {k: v.to(self.dtype) for k, v in out.items()}


@dataclass
class ShardCheck:
    """What a shard folder holds: files, rows and clips per bucket."""

    files: int
    rows: int
    buckets: dict[str, int]


REQUIRED = ["clip_id", "bucket", "latent", "latent_shape", "text_embeds", "text_shape", "pooled", "pooled_shape",
            "dtype"]
SHAPE_COLUMNS = {"latent": "latent_shape", "text_embeds": "text_shape", "pooled": "pooled_shape",
                 "text_embeds_2": "text_2_shape"}
LEGACY_FAMILY = DEFAULT_FAMILY  # shards written before families were recorded hold the default family's latents


def check_shards(data: str, family: str | None = None) -> ShardCheck:
    """Validate a shard folder before any training starts; errors name the folder or file.
    `family`: the training model's family; shards of another one are refused."""
    import fsspec
    import pyarrow.parquet as pq

    fs, root = fsspec.core.url_to_fs(data)
    folder = f"{root.rstrip('/')}/{SHARDS}"
    if not fs.exists(root):
        raise FileNotFoundError(f"train.data {data!r}: not found")
    if not fs.exists(folder):
        raise FileNotFoundError(f"train.data {data!r}: no {SHARDS}/ folder; run `medgen precompute` first")
    parts = sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".parquet"))
    if not parts:
        raise FileNotFoundError(f"train.data {data!r}: {SHARDS}/ holds no .parquet shards")
    rows, buckets = 0, {}
    for path in parts:
        try:
            with fs.open(path, "rb") as fh:
                meta = pq.ParquetFile(fh)
                names = meta.schema_arrow.names
                n = meta.metadata.num_rows
                missing = [c for c in REQUIRED if c not in names]
                if missing:
                    raise ValueError(f"shard {path}: missing columns {missing}")
                for b in meta.read(columns=["bucket"]).column("bucket").to_pylist():
                    buckets[b] = buckets.get(b, 0) + 1
                found = set(meta.read(columns=["family"]).column("family").to_pylist()) if "family" in names \
                    else {LEGACY_FAMILY}
                if family is not None and found - {family}:
                    raise ValueError(f"shard {path}: latents of {sorted(found - {family})}, but train.model is a "
                                     f"{family!r} model; precompute the dataset with a {family} model (or train "
                                     f"that family)")
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"shard {path}: not a readable Parquet file ({exc})") from exc
        rows += n
    if rows == 0:
        raise ValueError(f"train.data {data!r}: shards hold no rows")
    return ShardCheck(len(parts), rows, buckets)


def decode_row(row: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A shard row's tensors: latent, text_embeds, and pooled / text_embeds_2 where the family has them."""
    dtype = row["dtype"]
    out = {}
    for col, shape in SHAPE_COLUMNS.items():
        shape_value = row.get(shape)
        if shape_value is not None and len(shape_value):
            out[col] = bytes_tensor(row[col], list(shape_value), dtype)
    return out


TEXT_MASKS = {"text_embeds": "text_mask", "text_embeds_2": "text_mask_2"}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack clips of one bucket; pad each prompt stream to its longest (the mask marks real
    tokens; at batch 1 it is all true, which `attention.unpadded` can exploit)."""
    out = {"latent": torch.stack([it["latent"] for it in items])}
    if "pooled" in items[0]:
        out["pooled"] = torch.stack([it["pooled"] for it in items])
    for key, mask_key in TEXT_MASKS.items():
        if key not in items[0]:
            continue
        n = max(it[key].shape[0] for it in items)
        dim = items[0][key].shape[1]
        text = torch.zeros(len(items), n, dim, dtype=items[0][key].dtype)
        mask = torch.zeros(len(items), n, dtype=torch.bool)
        for i, it in enumerate(items):
            k = it[key].shape[0]
            text[i, :k], mask[i, :k] = it[key], True
        out[key], out[mask_key] = text, mask
    return out


def write_shard_batch(output: str, batch: dict[str, np.ndarray]) -> dict[str, int]:
    """Write one batch's encoded rows and rejects as parts; returns row counts."""
    import uuid

    import fsspec

    from medgen_ray.core.batch import is_active
    from medgen_ray.core.parts import table_from_batch, write_table_atomic

    fs, root = fsspec.core.url_to_fs(output)
    active = is_active(batch)
    part = uuid.uuid4().hex[:16]
    counts = {}
    for name, rows, schema in ((SHARD_REJECTS, np.flatnonzero(~active), SHARD_REJECTS_SCHEMA),
                               (SHARDS, np.flatnonzero(active), SHARD_SCHEMA)):
        counts[name] = len(rows)
        if len(rows):
            fs.makedirs(f"{root.rstrip('/')}/{name}", exist_ok=True)
            write_table_atomic(fs, f"{root.rstrip('/')}/{name}/part-{part}.parquet", table_from_batch(batch, rows, schema))
    return counts


def done_clip_ids(output: str) -> set[str]:
    """Clip ids already written (encoded or rejected): a resumed run skips them."""
    import fsspec
    import pyarrow.parquet as pq

    fs, root = fsspec.core.url_to_fs(output)
    done: set[str] = set()
    for name in (SHARDS, SHARD_REJECTS):
        folder = f"{root.rstrip('/')}/{name}"
        if not fs.exists(folder):
            continue
        for path in fs.ls(folder, detail=False):
            if path.endswith(".parquet") and path.rsplit("/", 1)[-1].startswith("part-"):
                with fs.open(path, "rb") as fh:
                    done.update(pq.read_table(fh, columns=[CLIP_ID]).column(CLIP_ID).to_pylist())
    return done
