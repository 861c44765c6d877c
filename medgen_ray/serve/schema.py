"""The HTTP API's shapes: requests (JSON or multipart, as the `openai` SDK sends them), the
OpenAI-style video object, and every check against the configured limits.

A request is checked in two steps: its shape (types are strict: `true` is not a number and
`"64"` is not an integer in JSON; NaN and Infinity are refused; sides are multiples of 16,
frames 4k+1), then the *resolved* request (defaults filled in, `size`/`seconds`/`model`
mapped) against `serve.limits`, so a job that omits a field is held to the same bounds as one
that sends it. Both answer 422 with FastAPI's error shape, `{"detail": [{"loc": ["body",
<field>], "msg": ...}]}`, naming the field the client sent.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medgen_ray.config import CacheKind, ServeConfig
from medgen_ray.models.families import family_of

ID_PATTERN = "^[0-9a-f]{16}$"  # ID_RE in JSON Schema's (ECMA) syntax: what JobStore.create hands out
MAX_SECONDS = 3600.0  # a request's `seconds` above this is refused by shape (frames overflowed before)
SIZE_RE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
MAX_SEED = 2**32 - 1
INT_FIELDS = ("height", "width", "num_frames", "steps", "seed")
FLOAT_FIELDS = ("guidance", "true_cfg_scale")
STATUS = {"queued": "queued", "running": "in_progress", "done": "completed", "failed": "failed",
          "cancelled": "failed"}  # store status -> the status OpenAI's clients poll for
Finite = Annotated[float, Field(allow_inf_nan=False)]


class RequestErrors(Exception):
    """A request that cannot be used: FastAPI-shaped error entries, one per bad field."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(errors)
        self.errors = errors


def field_error(field: str, msg: str) -> dict[str, Any]:
    """One 422 entry naming a body field."""
    return {"loc": ["body", field], "msg": msg, "type": "value_error"}


class VideoRequest(BaseModel):
    """A generation request: OpenAI's Videos fields (prompt, model, size, seconds) and our
    native ones (steps, guidance, seed, adapter, exact height/width/num_frames). Unknown fields
    are refused; types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(..., min_length=1)
    model: str | None = Field(None, description="the served model (or 'base') or an adapter name")
    size: str | None = Field(None, description="WIDTHxHEIGHT, e.g. 848x480")
    seconds: str | Finite | None = Field(None, description="clip length; frames = 4k+1 nearest seconds x fps")
    negative_prompt: str | None = None
    height: int | None = Field(None, ge=16)
    width: int | None = Field(None, ge=16)
    num_frames: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    guidance: Finite | None = Field(None, ge=0)
    true_cfg_scale: Finite = Field(1.0, ge=1.0, le=20.0, description="> 1 with a negative prompt: real CFG")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    adapter: str | None = Field(None, description="adapter name or 'base' (same as model)")
    cache: CacheKind | None = Field(
        None, description="step caching for this job (ours); default the deployment's serve.cache.kind")

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

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        m = SIZE_RE.match(v) if v is not None else None
        if v is not None and (m is None or int(m.group(1)) % 16 or int(m.group(2)) % 16):
            raise ValueError(f"must be WIDTHxHEIGHT with both multiples of 16, e.g. 848x480 (got {v!r})")
        return v

    @field_validator("seconds")
    @classmethod
    def _seconds(cls, v: str | float | None) -> str | float | None:
        if v is None:
            return v
        try:
            x = float(v)
        except ValueError:
            raise ValueError(f"must be a number of seconds, e.g. \"4\" (got {v!r})") from None
        if not math.isfinite(x) or x <= 0:
            raise ValueError(f"must be a positive number of seconds (got {v!r})")
        if x > MAX_SECONDS:
            raise ValueError(f"must be at most {MAX_SECONDS:g} seconds (got {v!r})")
        return v

    @model_validator(mode="after")
    def _one_way_each(self) -> VideoRequest:
        both = [(a, b) for a, b, given in (("size", "height/width", self.height or self.width),
                                           ("seconds", "num_frames", self.num_frames),
                                           ("model", "adapter", self.adapter))
                if getattr(self, a) is not None and given is not None]
        if both and not (both[0][0] == "model" and self.model == self.adapter):
            raise ValueError(f"give {both[0][0]} or {both[0][1]}, not both")
        return self


class NonFinite:
    """A NaN/Infinity token in a JSON body: kept as a marker so the error names its field."""

    def __init__(self, token: str):
        self.token = token


def _errors_of(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors(include_input=True, include_url=False):
        loc = [str(x) for x in e["loc"] if not isinstance(x, int)]
        field = loc[0] if loc else "body"
        msg = e["msg"]
        if isinstance(e.get("input"), NonFinite):
            msg = f"must be a finite number (got {e['input'].token})"
        elif e["type"] == "value_error" and msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append({"loc": ["body", field] if field != "body" else ["body"], "msg": msg, "type": e["type"]})
    return out


def parse_json_request(raw: bytes) -> VideoRequest:
    """A JSON body as a VideoRequest; RequestErrors naming each bad field (NaN and Infinity included)."""
    try:
        data = json.loads(raw, parse_constant=NonFinite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestErrors([{"loc": ["body"], "msg": f"not valid JSON: {exc}", "type": "json_invalid"}]) from None
    except RecursionError:
        raise RequestErrors([{"loc": ["body"], "msg": "nested too deeply (a request is a flat JSON object)",
                              "type": "json_invalid"}]) from None
    if not isinstance(data, dict):
        raise RequestErrors([{"loc": ["body"], "msg": "must be a JSON object", "type": "model_attributes_type"}])
    for key in INT_FIELDS:  # JSON Schema's integer includes 3.0; booleans and strings stay refused
        value = data.get(key)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            data[key] = int(value)
    try:
        return VideoRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestErrors(_errors_of(exc)) from None


_INT_RE = re.compile(r"^[+-]?[0-9]{1,20}$")


def parse_form_request(form: dict[str, Any]) -> VideoRequest:
    """A multipart or urlencoded body (what the `openai` SDK sends) as a VideoRequest: number
    fields are parsed from their text, files are refused."""
    data: dict[str, Any] = {}
    errors = []
    for key, value in form.items():
        if not isinstance(value, str):
            errors.append(field_error(key, "file uploads are not supported (text-to-video only)"))
            continue
        if key in INT_FIELDS and _INT_RE.match(value.strip()):
            data[key] = int(value)
        elif key in FLOAT_FIELDS:
            try:
                data[key] = float(value)
            except ValueError:
                data[key] = value  # refused below, naming the field
        else:
            data[key] = value
    if errors:
        raise RequestErrors(errors)
    try:
        return VideoRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestErrors(_errors_of(exc)) from None


def frames_for_seconds(seconds: float, fps: int) -> int:
    """Frames (4k+1, at least 5) nearest to `seconds` at `fps`."""
    return max(5, 4 * round(seconds * fps / 4) + 1)


def model_names(cfg: ServeConfig, adapters: list[str]) -> list[str]:
    """Every value `model` (or `adapter`) may take: base, the served model's name, the adapters."""
    return ["base", cfg.model, *adapters]


def resolve(req: VideoRequest, cfg: ServeConfig, adapters: list[str], sync: bool = False
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the request with defaults filled in and OpenAI fields mapped, the limit errors of that
    resolved request, each naming the field the client sent)."""
    lim = cfg.limits
    errors: list[dict[str, Any]] = []
    if req.size is not None:
        w, h = (int(x) for x in req.size.split("x"))
        origin_w = origin_h = "size"
    else:
        w, h = req.width or cfg.default_width, req.height or cfg.default_height
        origin_w, origin_h = "width", "height"
    if req.seconds is not None:
        frames, origin_f = frames_for_seconds(float(req.seconds), cfg.fps), "seconds"
    else:
        frames, origin_f = req.num_frames or cfg.default_frames, "num_frames"
    steps = req.steps or (min(cfg.default_steps, lim.sync_max_steps) if sync else cfg.default_steps)
    name = req.model if req.model is not None else req.adapter
    adapter = "base" if name in (None, "base", cfg.model) else name
    if name is not None and name not in model_names(cfg, adapters):
        errors.append(field_error("model" if req.model is not None else "adapter",
                                  f"unknown model {name!r}; choices: {', '.join(model_names(cfg, adapters))}"))
    out = {"prompt": req.prompt, "negative_prompt": req.negative_prompt, "height": h, "width": w,
           "num_frames": frames, "steps": steps,
           "guidance": cfg.default_guidance if req.guidance is None else req.guidance,
           "true_cfg_scale": req.true_cfg_scale, "seed": req.seed, "adapter": adapter,
           "cache": req.cache or cfg.cache.kind}
    checks = [
        ("prompt", len(req.prompt), lim.max_prompt_chars, "characters"),
        ("negative_prompt", len(req.negative_prompt or ""), lim.max_prompt_chars, "characters"),
        (origin_h, h, lim.max_height, "pixels high"),
        (origin_w, w, lim.max_width, "pixels wide"),
        (origin_f, frames, lim.max_frames, f"frames ({lim.max_frames / cfg.fps:.2f} s at {cfg.fps} fps)"),
        ("steps", steps, lim.sync_max_steps if sync else lim.max_steps, "steps"),
        ("guidance", out["guidance"], lim.max_guidance, ""),
    ]
    family = family_of(cfg.model)
    if out["cache"] not in cache_kinds(cfg):
        why = f"fails on {family.label}" if out["cache"] in family.unsupported_caches else \
            "needs ratios this deployment has not got (serve.cache.mag_ratios, from `medgen cache calibrate`)"
        errors.append(field_error("cache", f"{out['cache']!r} {why}; choices: {', '.join(cache_kinds(cfg))}"))
    for field, value in ((origin_h, h), (origin_w, w)):
        why = family.check_side(value)
        if why and field not in {e["loc"][-1] for e in errors}:
            errors.append(field_error(field, f"{value}: {why}"))
    seen = {e["loc"][-1] for e in errors}
    for field, value, most, unit in checks:
        if value > most and field not in seen:
            seen.add(field)
            msg = f"must be at most {most:g} {unit}".rstrip()
            if field == "steps" and sync:
                msg = f"the synchronous endpoint takes at most {most} steps; use POST /v1/videos"
            errors.append(field_error(field, msg))
    return out, errors


def cache_kinds(cfg: ServeConfig) -> list[str]:
    """The step-cache kinds this deployment runs: not those its family cannot, not magcache
    without calibrated ratios (what the OpenAPI document offers and resolve accepts)."""
    family = family_of(cfg.model)
    return [k for k in get_args(CacheKind) if k not in family.unsupported_caches
            and (k != "magcache" or cfg.cache.mag_ratios)]


def resolved(req: VideoRequest, cfg: ServeConfig, sync: bool = False) -> dict[str, Any]:
    """The request with the configured defaults filled in: what a job record stores."""
    return resolve(req, cfg, list(cfg.adapters), sync)[0]


class VideoError(BaseModel):
    """Why a job failed (OpenAI's error shape)."""

    code: str
    message: str


class VideoObject(BaseModel):
    """A job as OpenAI's Videos API shows it, plus our native fields (request, steps, link)."""

    id: str
    object: Literal["video"] = "video"
    created_at: int
    completed_at: int | None = None
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(..., ge=0, le=100, description="per cent of denoising steps done")
    model: str
    prompt: str
    size: str
    seconds: str
    error: VideoError | None = None
    steps_done: int
    steps_total: int
    request: dict[str, Any] = Field(..., description="the resolved request (native fields)")
    generation_seconds: float | None = None
    content_url: str | None = None


class VideoList(BaseModel):
    """A page of jobs, newest first (OpenAI's list shape)."""

    object: Literal["list"] = "list"
    data: list[VideoObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class VideoDeleted(BaseModel):
    """Confirmation that a job and its video are gone."""

    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool


def video_object(record: dict[str, Any], cfg: ServeConfig) -> dict[str, Any]:
    """A stored job record as the API's video object."""
    req = record["request"]
    done, total = int(record["progress"]["steps_done"]), int(record["progress"]["steps_total"])
    status = record["status"]
    error, stored = None, record.get("error")
    if status == "cancelled":
        error = stored if isinstance(stored, dict) else {"code": "cancelled", "message": "cancelled by the client"}
    elif status == "failed":
        error = stored if isinstance(stored, dict) else {"code": "generation_failed",
                                                         "message": str(stored or "failed")}
    finished = record.get("finished")
    return {
        "id": record["id"], "object": "video", "created_at": int(record["created"]),
        "completed_at": int(finished) if status == "done" and finished else None,
        "status": STATUS[status], "progress": 100 if status == "done" else int(100 * done / max(1, total)),
        "model": cfg.model if req["adapter"] == "base" else req["adapter"], "prompt": req["prompt"],
        "size": f"{req['width']}x{req['height']}", "seconds": f"{req['num_frames'] / cfg.fps:.2f}",
        "error": error, "steps_done": done, "steps_total": total, "request": req,
        "generation_seconds": record.get("seconds"),
        "content_url": f"/v1/videos/{record['id']}/content" if status == "done" else None,
    }


def _sizes(cfg: ServeConfig) -> list[str]:
    lim = cfg.limits
    ws, hs = range(16, lim.max_width + 1, 16), range(16, lim.max_height + 1, 16)
    if len(ws) * len(hs) <= 256:
        return [f"{w}x{h}" for w in ws for h in hs]
    common = [(1280, 720), (720, 1280), (960, 544), (544, 960), (848, 480), (480, 848), (1024, 576), (576, 1024),
              (720, 720), (640, 640), (512, 512), (cfg.default_width, cfg.default_height)]
    return sorted({f"{w}x{h}" for w, h in common if w <= lim.max_width and h <= lim.max_height})


def request_schema(cfg: ServeConfig, adapters: list[str], sync: bool = False) -> dict[str, Any]:
    """JSON Schema of a request with this deployment's limits: maxima, multiples of 16, the
    4k+1 frame counts, the model names, the sizes and seconds that fit."""
    lim = cfg.limits
    frames = list(range(1, lim.max_frames + 1, 4))
    max_seconds = [s for s in range(1, 61) if frames_for_seconds(s, cfg.fps) <= lim.max_frames]
    names = model_names(cfg, adapters)
    text = {"type": "string", "maxLength": lim.max_prompt_chars}
    return {
        "type": "object", "additionalProperties": False, "required": ["prompt"],
        "properties": {
            "prompt": {**text, "minLength": 1, "pattern": r"\S"},
            "model": {"type": "string", "enum": names, "description": "the served model (or base) or an adapter"},
            "size": {"type": "string", "enum": _sizes(cfg), "description": "WIDTHxHEIGHT, multiples of 16"},
            "seconds": {"type": "string", "enum": [str(s) for s in max_seconds],
                        "description": f"clip length; frames = the 4k+1 count nearest seconds x {cfg.fps} fps"},
            "negative_prompt": text,
            "height": {"type": "integer", "minimum": 16, "maximum": lim.max_height, "multipleOf": 16},
            "width": {"type": "integer", "minimum": 16, "maximum": lim.max_width, "multipleOf": 16},
            "num_frames": {"type": "integer", "enum": frames, "description": "4k+1"},
            "steps": {"type": "integer", "minimum": 1,
                      "maximum": lim.sync_max_steps if sync else lim.max_steps,
                      "description": f"default {min(cfg.default_steps, lim.sync_max_steps) if sync else cfg.default_steps}"},
            "guidance": {"type": "number", "minimum": 0, "maximum": lim.max_guidance},
            "true_cfg_scale": {"type": "number", "minimum": 1, "maximum": 20},
            "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
            "adapter": {"type": "string", "enum": names},
            "cache": {"type": "string", "enum": cache_kinds(cfg),
                      "description": f"step caching (ours); default {cfg.cache.kind}"},
        },
        "not": {"anyOf": [{"required": ["size", "height"]}, {"required": ["size", "width"]},
                          {"required": ["seconds", "num_frames"]}, {"required": ["model", "adapter"]}]},
    }
