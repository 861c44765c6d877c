"""The Ray Serve application: a FastAPI ingress and an autoscaling generator deployment.

  POST /v1/videos               submit -> 202 {id, status}; 503 + Retry-After when the queue is full
  GET  /v1/videos               past jobs (newest first)
  GET  /v1/videos/{id}          status and progress (steps done / total)
  GET  /v1/videos/{id}/content  the mp4 when done
  POST /v1/videos/sync          short jobs only: waits and returns the mp4
  GET  /v1/adapters             loaded adapters;  GET /healthz;  GET /  web page;  /docs OpenAPI

Deploy with `medgen serve --config jobs/configs/serve.yaml` or `serve deploy` of a Serve
config whose import_path is `medgen_ray.serve.app:app_builder` (args: the `serve` section).
Job records and videos live in `serve.store`, so a restarted replica loses none of them; an
ingress that starts re-dispatches jobs still queued (the generator skips finished ones).

No `from __future__ import annotations` here: FastAPI must see real types on the route
methods that Serve's class ingress wraps, or it reads the body as query parameters.
"""


import asyncio
import hmac
import logging
import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve

from medgen_ray.config import ServeConfig
from medgen_ray.serve.schema import VideoRequest, limit_errors, resolved
from medgen_ray.serve.store import JobStore

log = logging.getLogger("medgen_ray.serve")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

api = FastAPI(title="medgen_ray generation API", version="1",
              description="Text-to-video generation (HunyuanVideo + LoRA adapters) on Ray Serve.")


def resolve_token(cfg: ServeConfig) -> str | None:
    """The bearer token; serving without one is allowed only on loopback."""
    token = cfg.token or os.environ.get("MEDGEN_SERVE_TOKEN") or None
    if token is None and cfg.host not in LOOPBACK:
        raise ValueError(f"serve.host={cfg.host!r}: set serve.token or MEDGEN_SERVE_TOKEN; "
                         "serving without a token is allowed only on 127.0.0.1")
    return token


@serve.deployment(max_ongoing_requests=1)
class GeneratorDeployment:
    """Serve deployment holding one VideoGenerator; runs one job at a time."""

    def __init__(self, cfg: dict[str, Any]):
        from medgen_ray.serve.generator import VideoGenerator

        self.cfg = ServeConfig.model_validate(cfg)
        self.store = JobStore(self.cfg.store)
        self.generator = VideoGenerator(self.cfg)
        self.generator.setup()

    def run(self, job_id: str) -> dict[str, Any]:
        return self.generator.run_job(job_id, self.store)

    def adapters(self) -> list[str]:
        return self.generator.adapters


class _Unprocessable(HTTPException):
    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(422, errors)


def _view(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: record.get(k) for k in ("id", "status", "progress", "request", "error", "created", "seconds")}
    out["content_url"] = f"/v1/videos/{record['id']}/content" if record["status"] == "done" else None
    return out


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Ingress:
    """The HTTP API (FastAPI) and web page: validates, queues and tracks jobs, streams results."""

    def __init__(self, generator, cfg: dict[str, Any]):
        self.cfg = ServeConfig.model_validate(cfg)
        self.token = resolve_token(self.cfg)
        self.store = JobStore(self.cfg.store)
        self.generator = generator
        self.inflight: dict[str, asyncio.Task] = {}
        self.adapter_names = list(self.cfg.adapters)
        self._redispatched = False

    # --- plumbing -------------------------------------------------------------------------
    def _auth(self, request: Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def _redispatch(self) -> None:
        """Jobs left queued by an earlier ingress (restart): send them again."""
        if self._redispatched:
            return
        self._redispatched = True
        for record in self.store.list(limit=10_000, status="queued"):
            if record["id"] not in self.inflight:
                self._dispatch(record["id"])

    def _dispatch(self, job_id: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._run(job_id))
        self.inflight[job_id] = task
        return task

    async def _run(self, job_id: str) -> dict[str, Any]:
        from medgen_ray.core.observability import serve_job_finished, serve_queue

        t0 = time.perf_counter()
        serve_queue(len(self.inflight))
        result: dict[str, Any] = {}
        try:
            for attempt in (1, 2):  # one retry: a generator replica may die mid-job
                try:
                    result = await self.generator.run.remote(job_id)
                    return result
                except Exception as exc:  # Ray surfaces replica deaths as several error types
                    log.warning("job %s attempt %d failed: %s", job_id, attempt, exc)
                    if attempt == 2:
                        result = self.store.update(job_id, status="failed", error=f"generator: {exc}"[:2000])
                        return result
        finally:
            self.inflight.pop(job_id, None)
            serve_queue(len(self.inflight))
            serve_job_finished(result.get("status", "failed"), time.perf_counter() - t0)
        return result

    async def _submit(self, body: VideoRequest) -> dict[str, Any]:
        errors = limit_errors(body, self.cfg, self.adapter_names)
        if errors:
            raise _Unprocessable(errors)
        self._redispatch()
        if len(self.inflight) >= self.cfg.max_queue:
            raise HTTPException(503, f"queue full ({self.cfg.max_queue} jobs queued or running); retry later",
                                headers={"Retry-After": str(self.cfg.retry_after_s)})
        record = self.store.create(resolved(body, self.cfg))
        self._dispatch(record["id"])
        return record

    # --- routes -----------------------------------------------------------------------------
    @api.post("/v1/videos", status_code=202)
    async def submit(self, body: VideoRequest, request: Request) -> dict[str, Any]:
        self._auth(request)
        return _view(await self._submit(body))

    @api.post("/v1/videos/sync", responses={200: {"content": {"video/mp4": {}}}})
    async def submit_sync(self, body: VideoRequest, request: Request) -> Response:
        self._auth(request)
        steps = resolved(body, self.cfg)["steps"]
        if steps > self.cfg.limits.sync_max_steps:
            raise _Unprocessable([{"loc": ["body", "steps"], "type": "value_error",
                                   "msg": f"the synchronous endpoint takes at most {self.cfg.limits.sync_max_steps} "
                                          "steps; use POST /v1/videos"}])
        record = await self._submit(body)
        try:
            result = await asyncio.wait_for(asyncio.shield(self.inflight[record["id"]]), self.cfg.sync_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"job {record['id']} still running; poll GET /v1/videos/{record['id']}") from None
        if result.get("status") != "done":
            return JSONResponse(_view(result), status_code=422 if "adapter" in (result.get("error") or "") else 500)
        return Response(self.store.read_video(record["id"]), media_type="video/mp4",
                        headers={"X-Job-Id": record["id"]})

    @api.get("/v1/videos")
    async def list_jobs(self, request: Request, limit: int = 50) -> list[dict[str, Any]]:
        self._auth(request)
        return [_view(r) for r in self.store.list(limit=min(max(limit, 1), 500))]

    @api.get("/v1/videos/{job_id}")
    async def status(self, job_id: str, request: Request) -> dict[str, Any]:
        self._auth(request)
        record = self.store.get(job_id)
        if record is None:
            raise HTTPException(404, f"job {job_id!r}: not found")
        return _view(record)

    @api.get("/v1/videos/{job_id}/content", responses={200: {"content": {"video/mp4": {}}}})
    async def content(self, job_id: str, request: Request) -> Response:
        self._auth(request)
        record = self.store.get(job_id)
        if record is None:
            raise HTTPException(404, f"job {job_id!r}: not found")
        if record["status"] != "done":
            raise HTTPException(409, f"job {job_id!r} is {record['status']}; no video yet")
        return Response(self.store.read_video(job_id), media_type="video/mp4")

    @api.get("/v1/adapters")
    async def adapters(self, request: Request) -> dict[str, Any]:
        self._auth(request)
        return {"adapters": ["base", *self.adapter_names]}

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"ok": True, "inflight": len(self.inflight), "max_queue": self.cfg.max_queue}

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self) -> HTMLResponse:
        from medgen_ray.serve.page import PAGE

        return HTMLResponse(PAGE.replace("{{AUTH}}", "true" if self.token else "false"))


def build_app(cfg: ServeConfig):
    """The Serve application for a validated config."""
    resolve_token(cfg)  # refuse a public host without a token before anything starts
    data = cfg.model_dump()
    g = cfg.generator
    generator = GeneratorDeployment.options(
        ray_actor_options={"num_cpus": g.num_cpus, "num_gpus": g.num_gpus},
        autoscaling_config={"min_replicas": g.min_replicas, "max_replicas": g.max_replicas,
                            "target_ongoing_requests": 1, "initial_replicas": max(1, g.min_replicas)},
    ).bind(data)
    return Ingress.bind(generator, data)


def app_builder(args: dict[str, Any]):
    """`serve deploy` entry: args is the `serve` section of our config (or a path under `config`)."""
    from medgen_ray.config import load_config

    if "config" in args:
        return build_app(load_config(args["config"], args.get("overrides", [])).serve)
    return build_app(ServeConfig.model_validate(args))
