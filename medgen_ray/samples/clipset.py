"""A small curated-looking dataset (manifest part + clips) without running curation: the
input of precompute/training tests, benchmarks and the GPU scripts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medgen_ray.samples.generator import Segment, VideoSpec, render_video
from medgen_ray.samples.scenes import MEDICAL_SCENES

CAPTIONS = {
    "endoscopy": "An endoscopic view of pink mucosa with a metal instrument moving across the frame.",
    "ultrasound": "A grey ultrasound fan with speckled tissue and a bright boundary drifting slowly.",
    "anatomy": "An anatomy diagram of an organ with labelled parts on a plain background.",
}


def make_clip_dataset(out: str | Path, n: int = 4, seconds: float = 1.0, width: int = 96, height: int = 64,
                      fps: int = 24, seed: int = 0) -> Path:
    """Render n medical clips and a manifest part describing them; returns the dataset folder."""
    root = Path(out)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    (root / "manifest").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        scene = MEDICAL_SCENES[i % len(MEDICAL_SCENES)]
        clip_id = f"clip{i:04d}"
        path = root / "clips" / f"{clip_id}.mp4"
        render_video(VideoSpec(clip_id, [Segment(scene, seconds)], width=width, height=height, fps=fps,
                               seed=seed + i), path)
        rows.append({"clip_id": clip_id, "clip_uri": str(path), "width": width, "height": height,
                     "duration": seconds, "fps": float(fps), "caption_detailed": CAPTIONS[scene],
                     "caption_brief": scene, "category": scene})
    pq.write_table(pa.Table.from_pylist(rows), root / "manifest" / "part-0000.parquet")
    return root
