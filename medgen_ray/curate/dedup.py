"""Near-duplicate clips across a dataset: re-uploads, compilations, re-encodes, rescales, trims.

Every clip carries two signatures from the frames the classifier already sampled (1 fps):
`clip_embedding`, the unit mean of its frames' CLIP features, and `frame_hashes`, a 64-bit DCT
hash per sampled frame. A pair is a duplicate when the embeddings agree (cosine >=
`dedup.embedding_threshold`, a cheap prefilter over all pairs in blocks) AND the hash sequences
line up: at some shift of up to `dedup.max_shift_frames` sampled frames, at least `dedup.min_overlap`
frames overlap and their mean Hamming distance is <= `dedup.max_hamming` bits. The second test
is ours: a mean CLIP embedding groups footage of the same kind (two different generated
endoscopy clips sit at cosine 0.9999 on the tiny CLIP), the frame hashes tell the same footage
from similar footage. Duplicates form clusters (connected pairs); each keeps its best clip by
`dedup.keep_by` (then longer, then smaller clip_id) and the others are rejected naming it.

`write_dedup` is the view (no model runs); clips curated before signatures existed get them
from `curate.job.run_dedup`'s Ray Data pass first (`ClipSignatureStage`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import cv2
import fsspec
import numpy as np
import pyarrow as pa

from medgen_ray.config import DedupConfig
from medgen_ray.core.parts import list_parts, read_part, write_table_atomic
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import (
    CLIP_EMBEDDING,
    CLIP_ID,
    CLIP_URI,
    FRAME_HASHES,
    MANIFEST_SCHEMA,
    REJECT_REASON,
    REJECT_STAGE,
    REJECTS_SCHEMA,
)

SIGNATURES = "signatures"  # <out>/signatures/part-*.parquet: clip_id, clip_embedding, frame_hashes
SIGNATURE_SCHEMA = pa.schema([(CLIP_ID, pa.string()), (CLIP_EMBEDDING, pa.list_(pa.float32())),
                              (FRAME_HASHES, pa.list_(pa.uint64()))])
_BITS = np.array([1 << i for i in range(64)], dtype=np.uint64)


def frame_hashes(frames: np.ndarray) -> np.ndarray:
    """64-bit DCT hash of each uint8 RGB frame (grey, 32 x 32, the 8 x 8 lowest frequencies
    without DC against their median): survives re-encoding and rescaling."""
    out = np.zeros(len(frames), dtype=np.uint64)
    for i, f in enumerate(frames):
        grey = cv2.resize(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), (32, 32),
                          interpolation=cv2.INTER_AREA).astype(np.float32)
        low = cv2.dct(grey)[:8, :8].ravel()[1:]
        bits = np.append(low > np.median(low), False)
        out[i] = np.bitwise_or.reduce(np.where(bits, _BITS, np.uint64(0)))
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 of a (P, W) array."""
    bits = np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8), axis=-1)
    return bits.sum(axis=-1, dtype=np.int32)


def hash_matrix(hashes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Frame-hash sequences as one zero-padded (N, L) uint64 matrix and their lengths."""
    width = max((len(h) for h in hashes), default=1) or 1
    out = np.zeros((len(hashes), width), np.uint64)
    for i, h in enumerate(hashes):
        out[i, :len(h)] = h
    return out, np.array([len(h) for h in hashes])


def best_distances(H: np.ndarray, lens: np.ndarray, i: np.ndarray, j: np.ndarray, cfg: DedupConfig,
                   chunk: int = 50_000) -> np.ndarray:
    """Best mean Hamming distance (bits) of the hash sequences of each pair (i[k], j[k]) over
    shifts of up to max_shift_frames with at least min_overlap frames (or all of the shorter)
    overlapping; inf where no shift qualifies. All pairs at once, in chunks."""
    out = np.full(len(i), np.inf)
    width = H.shape[1]
    for c in range(0, len(i), chunk):
        a, b = H[i[c:c + chunk]], H[j[c:c + chunk]]
        la, lb = lens[i[c:c + chunk]], lens[j[c:c + chunk]]
        need = np.minimum(cfg.min_overlap, np.minimum(la, lb))
        best = np.full(len(a), np.inf)
        for s in range(-cfg.max_shift_frames, cfg.max_shift_frames + 1):
            w = width - abs(s)
            if w <= 0:
                continue
            x, y = (a[:, s:], b[:, :w]) if s >= 0 else (a[:, :w], b[:, -s:])
            n = np.minimum(la - s, lb) if s >= 0 else np.minimum(la, lb + s)
            ok = (n >= need) & (n > 0)
            mask = np.arange(w)[None, :] < n[:, None]
            dist = (_popcount(np.bitwise_xor(x, y)) * mask).sum(axis=1) / np.maximum(n, 1)
            best = np.where(ok, np.minimum(best, dist), best)
        out[c:c + chunk] = best
    return out


def sequences_match(a: np.ndarray, b: np.ndarray, cfg: DedupConfig) -> tuple[bool, float]:
    """(same footage?, best mean Hamming distance) of two frame-hash sequences."""
    H, lens = hash_matrix([np.asarray(a, np.uint64), np.asarray(b, np.uint64)])
    best = float(best_distances(H, lens, np.array([0]), np.array([1]), cfg)[0])
    return best <= cfg.max_hamming, best


def near_duplicates(rows: list[dict[str, Any]], cfg: DedupConfig) -> dict[str, tuple[str, str]]:
    """{duplicate clip_id: (kept clip_id, reason)} over rows with clip_id, clip_embedding,
    frame_hashes and the keep_by column."""
    if not rows:
        return {}
    emb = np.stack([np.asarray(r[CLIP_EMBEDDING], np.float32) for r in rows])
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    H, lens = hash_matrix([np.asarray(r[FRAME_HASHES], np.uint64) for r in rows])
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    evidence: dict[tuple[int, int], tuple[float, float]] = {}
    for start in range(0, len(rows), cfg.block_size):
        sims = emb[start:start + cfg.block_size] @ emb.T
        bi, j = np.nonzero(sims >= cfg.embedding_threshold)
        i = bi + start
        keep = j > i
        bi, i, j = bi[keep], i[keep], j[keep]
        dist = best_distances(H, lens, i, j, cfg)  # every candidate pair of the block at once
        for k in np.flatnonzero(dist <= cfg.max_hamming):
            evidence[(int(i[k]), int(j[k]))] = (float(sims[bi[k], j[k]]), float(dist[k]))
            parent[find(int(i[k]))] = find(int(j[k]))
    clusters: dict[int, list[int]] = {}
    for i in range(len(rows)):
        clusters.setdefault(find(i), []).append(i)

    def rank(i: int) -> tuple:
        score = rows[i].get(cfg.keep_by)
        score = -math.inf if score is None or (isinstance(score, float) and math.isnan(score)) else float(score)
        return (-score, -float(rows[i].get("duration") or 0.0), rows[i][CLIP_ID])

    out = {}
    for members in clusters.values():
        if len(members) < 2:
            continue
        keep = min(members, key=rank)
        for m in members:
            if m == keep:
                continue
            cos = float(emb[m] @ emb[keep])
            direct = evidence.get((min(m, keep), max(m, keep)))
            how = f"frame hashes {direct[1]:.1f}/64 bits apart" if direct else "linked through another duplicate"
            out[rows[m][CLIP_ID]] = (rows[keep][CLIP_ID], f"near-duplicate of {rows[keep][CLIP_ID]} (embedding "
                                     f"cosine {cos:.4f}, {how}; cluster of {len(members)}, kept by {cfg.keep_by})")
    return out


class ClipSignatureStage(RowStage):
    """The two signatures of a cut clip, for datasets curated before they were stored: frames at
    the curation's sampling rate and classifier size, CLIP features, frame hashes."""

    name = "signature"
    reads = (CLIP_ID, CLIP_URI)
    adds = (CLIP_EMBEDDING, FRAME_HASHES)

    def __init__(self, cfg, device: str | None = None):
        super().__init__(cfg)
        self.device = device
        self.encoder = None

    def setup(self) -> None:
        from medgen_ray.core.cluster import pick_device
        from medgen_ray.models.registry import load_model

        c = self.cfg.classify  # the curation's embedder, on the signature pass's own pool
        self.encoder = load_model(c.clip_model, c.weights, self.device or pick_device(self.cfg.dedup.pool.num_gpus),
                                  kind="clip")

    def process(self, row: Row) -> Row:
        from medgen_ray.core.decode import sample_frames
        from medgen_ray.core.errors import DataError
        from medgen_ray.curate.temporal import clip_embedding

        frames, _ = sample_frames(str(row[CLIP_URI]), self.cfg.sample.fps, self.encoder.image_size,
                                  self.cfg.sample.decode_threads)
        if len(frames) == 0:
            raise DataError("no frame decoded")
        row[CLIP_EMBEDDING] = clip_embedding(self.encoder.encode_images(frames), 0, len(frames) - 1)
        row[FRAME_HASHES] = frame_hashes(frames)
        return row


def has_signature(row: dict[str, Any]) -> bool:
    """Whether a manifest row carries both signatures."""
    return bool(row.get(CLIP_EMBEDDING)) and bool(row.get(FRAME_HASHES))


def read_signatures(out: str) -> dict[str, dict[str, Any]]:
    """Signatures the Ray pass already wrote under <out>/signatures (the pass resumes from them)."""
    fs, _ = fsspec.core.url_to_fs(out)
    found = {}
    for path in list_parts(out, SIGNATURES):
        for r in read_part(fs, path).to_pylist():
            found[r[CLIP_ID]] = r
    return found


def read_manifest(base: str) -> list[dict[str, Any]]:
    """Every manifest row of a dataset."""
    bfs, _ = fsspec.core.url_to_fs(base)
    parts = list_parts(base, "manifest")
    if not parts:
        raise FileNotFoundError(f"dataset {base!r}: no manifest/part-*.parquet")
    return [r for path in parts for r in read_part(bfs, path).to_pylist()]


def write_dedup(base: str, out: str, cfg: DedupConfig, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the deduplicated view of `base` under `out` (manifest of kept clips, rejects of the
    duplicates with the id of the clip kept, dedup.json); signatures come from the manifest or
    from <out>/signatures. `rows`: the manifest when the caller has read it. Returns the summary."""
    fs, root = fsspec.core.url_to_fs(out)
    if fs.exists(f"{root}/manifest"):
        raise FileExistsError(f"dedup output {out!r} already holds a dataset")
    rows = read_manifest(base) if rows is None else rows
    extra = read_signatures(out)
    for r in rows:
        if not has_signature(r) and r[CLIP_ID] in extra:
            r[CLIP_EMBEDDING], r[FRAME_HASHES] = extra[r[CLIP_ID]][CLIP_EMBEDDING], extra[r[CLIP_ID]][FRAME_HASHES]
    missing = [r[CLIP_ID] for r in rows if not has_signature(r)]
    if missing:
        raise ValueError(f"{len(missing)} clip(s) have no signature (e.g. {missing[0]}): run `medgen dataset dedup` "
                         "(its Ray pass computes them) rather than the view")
    dups = near_duplicates(rows, cfg)
    kept = [r for r in rows if r[CLIP_ID] not in dups]
    rejected = [{**r, REJECT_STAGE: "dedup", REJECT_REASON: dups[r[CLIP_ID]][1]} for r in rows if r[CLIP_ID] in dups]
    for name, items, schema in (("manifest", kept, MANIFEST_SCHEMA), ("rejects", rejected, REJECTS_SCHEMA)):
        if items:
            fs.makedirs(f"{root}/{name}", exist_ok=True)
            table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in items], schema=schema)
            write_table_atomic(fs, f"{root}/{name}/part-00000.parquet", table)
    summary = {"base": base, "clips": len(rows), "kept": len(kept), "duplicates": len(rejected),
               "settings": cfg.model_dump(),
               "removed": {d: k for d, (k, _) in sorted(dups.items())}}
    with fs.open(f"{root}/dedup.json", "w") as fh:
        fh.write(json.dumps(summary, indent=1))
    return summary
