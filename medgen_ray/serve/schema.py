"""The HTTP API's request and response shapes, and the checks against the configured limits.

Shape errors (sides not multiples of 16, frames not 4k+1, a negative number) come from the
model itself; bounds come from `serve.limits`. Both answer 422 with FastAPI's error shape,
`{"detail": [{"loc": ["body", <field>], "msg": ...}]}`, so a client always learns the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medgen_ray.config import ServeConfig


class VideoRequest(BaseModel):
    """A generation request as clients send it (unknown fields refused)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1)
    negative_prompt: str | None = None
    height: int | None = Field(None, ge=16)
    width: int | None = Field(None, ge=16)
    num_frames: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    guidance: float | None = Field(None, ge=0)
    true_cfg_scale: float = Field(1.0, ge=1.0, le=20.0, description="> 1 with a negative prompt: real CFG")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    adapter: str = "base"

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_16(cls, v: int | None) -> int | None:
        if v is not None and v % 16:
            raise ValueError(f"must be a multiple of 16 (got {v})")
        return v

    @field_validator("num_frames")
    @classmethod
    def _four_k_plus_one(cls, v: int | None) -> int | None:
        if v is not None and (v - 1) % 4:
            raise ValueError(f"must be 4k+1 (1, 5, 9, ..., 33, ..., 129); got {v}")
        return v

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


class JobView(BaseModel):
    """A job as the API shows it: status, progress and links."""

    id: str
    status: Literal["queued", "running", "done", "failed"]
    progress: dict[str, int]
    request: dict[str, Any]
    error: str | None = None
    created: float
    content_url: str | None = None


def limit_errors(req: VideoRequest, cfg: ServeConfig, adapters: list[str]) -> list[dict[str, Any]]:
    """Field errors against the configured bounds and the loaded adapters."""
    lim = cfg.limits
    checks = [
        ("prompt", len(req.prompt), lim.max_prompt_chars, "characters"),
        ("negative_prompt", len(req.negative_prompt or ""), lim.max_prompt_chars, "characters"),
        ("height", req.height or 0, lim.max_height, "pixels"),
        ("width", req.width or 0, lim.max_width, "pixels"),
        ("num_frames", req.num_frames or 0, lim.max_frames, "frames"),
        ("steps", req.steps or 0, lim.max_steps, "steps"),
        ("guidance", req.guidance or 0, lim.max_guidance, ""),
    ]
    errors = [{"loc": ["body", f], "msg": f"must be at most {m:g} {unit}".rstrip(), "type": "value_error"}
              for f, v, m, unit in checks if v > m]
    if req.adapter not in ["base", *adapters]:
        errors.append({"loc": ["body", "adapter"], "type": "value_error",
                       "msg": f"unknown adapter {req.adapter!r}; choices: {', '.join(['base', *adapters])}"})
    return errors


def resolved(req: VideoRequest, cfg: ServeConfig) -> dict[str, Any]:
    """The request with the configured defaults filled in: what a job record stores."""
    return {
        "prompt": req.prompt, "negative_prompt": req.negative_prompt,
        "height": req.height or cfg.default_height, "width": req.width or cfg.default_width,
        "num_frames": req.num_frames or cfg.default_frames, "steps": req.steps or cfg.default_steps,
        "guidance": cfg.default_guidance if req.guidance is None else req.guidance,
        "true_cfg_scale": req.true_cfg_scale, "seed": req.seed, "adapter": req.adapter,
    }
