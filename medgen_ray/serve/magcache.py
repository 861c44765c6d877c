"""`medgen cache calibrate`: MagCache's magnitude ratios for the served model, written per family
into one JSON file that `serve.cache.mag_ratios` names.

MagCache skips the transformer's blocks while the accumulated change of their residual,
predicted from these ratios, stays under a threshold; the ratios are the model's own (diffusers
ships Flux's only), so each base model is calibrated once: one uncached generation with the
served config's shape and steps (diffusers' calibration mode, models.video.calibrate_magcache).
"""

from __future__ import annotations

import json
import time
from typing import Any

import fsspec

from medgen_ray.config import AppConfig, derive

CALIBRATION_PROMPT = ("A surgeon performs a laparoscopic cholecystectomy; the camera follows the instruments "
                      "as they dissect tissue under bright operating-room light.")


def run_calibration(app: AppConfig, out: str, steps: int | None = None, prompt: str = CALIBRATION_PROMPT
                    ) -> dict[str, Any]:
    """Calibrate the served model (one process, no Ray) and merge its ratios into `out`."""
    from medgen_ray.models.families import family_of
    from medgen_ray.models.video import calibrate_magcache
    from medgen_ray.serve.generator import build_pipeline

    cfg = derive(app.serve, {"generator.parallel.ulysses": 1, "generator.parallel.ring": 1, "compile": False,
                             "cache.kind": "none"})
    steps = steps or cfg.default_steps
    pipe, _ = build_pipeline(cfg)
    t0 = time.perf_counter()
    ratios = calibrate_magcache(pipe, prompt, height=cfg.default_height, width=cfg.default_width,
                                num_frames=cfg.default_frames, steps=steps)
    entry = {**ratios, "model": cfg.model, "weights": cfg.weights, "steps": steps,
             "shape": [cfg.default_frames, cfg.default_height, cfg.default_width], "prompt": prompt,
             "seconds": round(time.perf_counter() - t0, 2)}
    fs, path = fsspec.core.url_to_fs(out)
    table = json.loads(fs.cat(path)) if fs.exists(path) else {}
    table[family_of(cfg.model).name] = entry
    fs.pipe(path, json.dumps(table, indent=1).encode())
    return entry
