"""The Ray Serve application: a FastAPI ingress and an autoscaling generator deployment.

The API is OpenAI's Videos API (what the `openai` SDK's `client.videos` and the servers of
vLLM-Omni, SGLang-Diffusion and FastVideo speak), with our native fields as extensions:

  POST   /v1/videos               create (JSON or multipart) -> 202 video object; 503 + Retry-After when full
  GET    /v1/videos               list {object: list, data, first_id, last_id, has_more} (limit, after, order)
  GET    /v1/videos/{id}          the video object: status queued | in_progress | completed | failed, progress %
  GET    /v1/videos/{id}/content  the mp4 when completed
  POST   /v1/videos/{id}/cancel   stop a queued or running job (it ends failed, error code cancelled)
  DELETE /v1/videos/{id}          remove the record and the video (a running job stops at its next step)
  POST   /v1/videos/sync          short jobs only: waits and returns the mp4 (a client that goes away
                                  stops waiting; the job goes on and can be fetched)
  GET    /v1/adapters             loaded adapters;  GET /healthz;  GET /  web page;  /docs OpenAPI

Every /v1 route checks the bearer token before it looks at the request. The OpenAPI document
is built from the deployment's config, so it carries every limit a client must respect.

Deploy with `medgen serve --config jobs/configs/serve.yaml` or `serve deploy` of a Serve
config whose import_path is `medgen_ray.serve.app:app_builder` (args: the `serve` section).
Job records and videos live in `serve.store`, so a restarted replica loses none of them. The
generator deployment owns each job (serve/store.py has the state machine): an HTTP request only
creates and watches it. The ingress recovers when it starts and every half lease: jobs still
queued are dispatched, and running ones whose lease ran out (their replica died) run again.
Every error answers in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.

No `from __future__ import annotations` here: FastAPI must see real types on the route
methods that Serve's class ingress wraps.
"""


import asyncio
import contextvars
import hmac
import ipaddress
import json
import logging
import os
import time
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from medgen_ray.config import ServeConfig, settings
from medgen_ray.serve.schema import (
    ID_PATTERN,
    RequestErrors,
    VideoDeleted,
    VideoList,
    VideoObject,
    parse_form_request,
    parse_json_request,
    request_schema,
    resolve,
    video_object,
)
from medgen_ray.serve.store import FINAL, JobStore, TransitionRefused

log = logging.getLogger("medgen_ray.serve")

# The OpenAPI document and /docs are our own routes: the document depends on the deployment's config.
api = FastAPI(title="medgen_ray generation API", version="2", openapi_url=None, docs_url=None, redoc_url=None,
              description="Text-to-video generation (a video base model + LoRA adapters) on Ray Serve, "
                          "in the shape of OpenAI's Videos API.")
# Set by the Ingress replica that serves this process: the token the /v1 routes require and the
# body-size cap the middleware enforces (one Ingress per replica process). Serve runs copies of
# the ingress class and app, so the Ingress writes this through the imported module and the
# dependency and middleware (pickled by reference) read it from there.
STATE: dict[str, Any] = {"token": None, "max_body_bytes": 65536, "body_timeout_s": 10.0, "max_per_client": 64,
                         "per_client": {}}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               408: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable", 504: "timeout"}


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None,
               detail: Any = None) -> dict[str, Any]:
    """OpenAI's error shape (`{"error": {message, type, param, code}}`, what the openai SDK shows
    as the exception's message), with FastAPI's `detail` kept beside it for clients that read that."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "api_error"), "param": param,
                      "code": code},
            "detail": message if detail is None else detail}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def proxy_host(default: str) -> str:
    """The address Serve's HTTP proxy actually binds (a running Serve keeps its own, and a
    `serve deploy` file sets its own), or `default` when no Serve controller is reachable."""
    import ray

    if not ray.is_initialized():  # no cluster here (a unit test, a builder run by hand)
        return default
    from medgen_ray.core.ray_compat import serve_client

    client = serve_client(required=False)
    return client.http_config.host if client is not None else default


def resolve_token(cfg: ServeConfig, bind_host: str | None = None) -> str | None:
    """The bearer token; serving without one is allowed only when the proxy binds loopback."""
    host = bind_host if bind_host is not None else cfg.host
    token = cfg.token or os.environ.get("MEDGEN_SERVE_TOKEN") or None
    if token is None and not is_loopback(host):
        raise ValueError(f"the HTTP proxy binds {host!r}: set serve.token or MEDGEN_SERVE_TOKEN; "
                         "serving without a token is allowed only on a loopback address (127.0.0.1)")
    return token


class BodyLimit:
    """ASGI middleware in front of every route: a request body over STATE['max_body_bytes'] gets
    413 and one not received within STATE['body_timeout_s'] gets 408, before any route reads it,
    and a client address with STATE['max_per_client'] requests in flight gets 429, so slow or
    greedy clients cannot hold the ingress."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = STATE["max_body_bytes"]
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _send_error(send, 413, f"request body over {limit} bytes")
        client = (scope.get("client") or ("?", 0))[0]
        counts = STATE["per_client"]
        if counts.get(client, 0) >= STATE["max_per_client"]:
            return await _send_error(send, 429, f"{STATE['max_per_client']} requests of this client are in flight; "
                                                "wait for one to end", code="too_many_requests")
        counts[client] = counts.get(client, 0) + 1
        seen, body_done = 0, False

        async def limited():
            nonlocal seen, body_done
            if body_done:  # after the body only a disconnect can come: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), STATE["body_timeout_s"])
            except asyncio.TimeoutError:
                raise _SlowBody() from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    raise _TooLarge()
            return message

        try:
            return await self.app(scope, limited, send)
        except _TooLarge:
            return await _send_error(send, 413, f"request body over {limit} bytes")
        except _SlowBody:
            return await _send_error(send, 408, f"request body not received within {STATE['body_timeout_s']:g} s",
                                     code="body_timeout")
        finally:
            counts[client] -= 1
            if not counts[client]:
                del counts[client]


class _TooLarge(Exception):
    pass


class _SlowBody(Exception):
    pass


async def _send_error(send, status: int, message: str, code: str | None = None) -> None:
    body = json.dumps(error_body(status, message, code=code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


api.add_middleware(BodyLimit)


def _field_errors(detail: list[dict[str, Any]]) -> JSONResponse:
    """422 naming every bad field: the message lists them (`body.height: must be ...`) and
    `param` is the first, as OpenAI's errors name theirs."""
    names = [".".join(str(x) for x in e["loc"][1:]) or str(e["loc"][0]) for e in detail]
    message = "; ".join(f"{n}: {e['msg']}" for n, e in zip(names, detail))
    return JSONResponse(error_body(422, message, param=names[0] if names else None, code="invalid_value",
                                   detail=detail), status_code=422)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own 422 (path and query parameters) without echoing the input, which may not
    be JSON-encodable (NaN) or may be huge."""
    return _field_errors([{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                           "type": str(e.get("type", ""))} for e in exc.errors()])


@api.exception_handler(RequestErrors)
async def _request_errors(request: Request, exc: RequestErrors) -> JSONResponse:
    return _field_errors(exc.errors)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug still answers in OpenAI's shape (and is logged with its traceback)."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body(500, f"internal error ({type(exc).__name__}); see the service log",
                                   code="internal_error"), status_code=500)


def require_token(request: Request) -> None:
    """Dependency of every /v1 route: 401 unless the bearer token matches (when one is set)."""
    token = STATE["token"]
    if token is None:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """An error in OpenAI's shape, with the message again as `detail`."""

    error: ErrorDetail
    detail: str


class FieldError(BaseModel):
    """One bad field of a request."""

    loc: list[str]
    msg: str
    type: str


class ValidationErrors(BaseModel):
    """The request's bad fields: OpenAI's error (every field in the message, the first as param)
    and FastAPI's list of them."""

    error: ErrorDetail
    detail: list[FieldError]


def _responses(*codes: int) -> dict[int, dict[str, Any]]:
    text = {400: "malformed body", 401: "missing or wrong bearer token", 404: "no such video",
            408: "request body not received in time", 409: "the video is not in a state for this",
            413: "request body too large", 429: "too many requests of this client in flight",
            422: "a field is invalid or over its limit (named in detail)",
            503: "queue full: retry after Retry-After seconds", 504: "still running: poll GET /v1/videos/{id}"}
    out: dict[int, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": ValidationErrors if code == 422 else ErrorBody, "description": text[code]}
        if code == 503:
            out[code]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return out


AUTH = [Depends(require_token)]


@serve.deployment(max_ongoing_requests=1)
class GeneratorDeployment:
    """Serve deployment holding one VideoGenerator; runs one job at a time."""

    def __init__(self, cfg: dict[str, Any]):
        from medgen_ray.core.cluster import keep_serve_replica_on_loopback
        from medgen_ray.serve.generator import VideoGenerator

        keep_serve_replica_on_loopback()
        self.cfg = ServeConfig.model_validate(cfg)
        self.store = JobStore(self.cfg.store)
        self.generator = VideoGenerator(self.cfg)
        workers = None
        if self.cfg.generator.parallel.ranks > 1:
            from medgen_ray.serve.ranks import RankWorkers

            workers = RankWorkers(self.cfg)
        self.generator.setup(workers)

    def run(self, job_id: str) -> dict[str, Any]:
        """Generate one stored job (see VideoGenerator.run_job)."""
        return self.generator.run_job(job_id, self.store)

    def ranks(self) -> list[dict[str, Any]]:
        """Each rank's last job: rank 0's record and every worker's (rank, job, steps, outcome)."""
        own = {"rank": 0, **self.generator.last}
        return [own] + (self.generator.workers.status() if self.generator.workers is not None else [])

    def check_health(self) -> None:
        """Serve replaces a replica whose ranks can run no more jobs (a rank died mid-job)."""
        if self.generator.broken:
            raise RuntimeError(f"generator replica unusable: {self.generator.broken}")

    def adapters(self) -> list[str]:
        """Names of the loaded adapters."""
        return self.generator.adapters


def build_openapi(cfg: ServeConfig, adapters: list[str], routes: list[Any]) -> dict[str, Any]:
    """The OpenAPI document with this deployment's request schema (every limit) on the create
    and sync routes, for JSON and multipart bodies, and the id shape on every id parameter."""
    doc = get_openapi(title=api.title, version=api.version, description=api.description, routes=routes)
    for path, sync in (("/v1/videos", False), ("/v1/videos/sync", True)):
        schema = request_schema(cfg, adapters, sync)
        doc["paths"][path]["post"]["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": schema},
            "multipart/form-data": {"schema": schema}}}
    doc.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {"type": "http",
                                                                                    "scheme": "bearer"}
    for path, ops in doc["paths"].items():
        if path.startswith("/v1/"):
            for op in ops.values():
                op["security"] = [{"bearer": []}]
                for param in op.get("parameters", []):
                    if param["name"] in ("video_id", "after"):
                        param["schema"] = {**param["schema"], "pattern": ID_PATTERN}
    return doc


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Ingress:
    """The HTTP API (FastAPI) and web page: validates, queues and tracks jobs, streams results."""

    def __init__(self, generator, cfg: dict[str, Any]):
        from medgen_ray.core.cluster import keep_serve_replica_on_loopback
        from medgen_ray.serve import app as module  # the real module, not Serve's copy of our globals

        keep_serve_replica_on_loopback()
        self.cfg = ServeConfig.model_validate(cfg)
        # the rule reads the address the proxy really binds, not only the config's
        self.token = module.resolve_token(self.cfg, module.proxy_host(self.cfg.host))
        module.STATE.update(token=self.token, max_body_bytes=self.cfg.limits.max_body_bytes,
                            body_timeout_s=self.cfg.limits.body_timeout_s,
                            max_per_client=self.cfg.limits.max_per_client)
        self.store = JobStore(self.cfg.store)
        self.generator = generator
        self.inflight: dict[str, asyncio.Task] = {}
        self.adapter_names = list(self.cfg.adapters)
        self._openapi: dict[str, Any] | None = None
        self._recovery: asyncio.Task | None = None
        try:  # Serve runs the constructor on the replica's event loop: recover now, not at the next create
            self._recovery = asyncio.get_running_loop().create_task(self._recover_forever(),
                                                                    context=contextvars.Context())
        except RuntimeError:  # no loop (a unit test building the class): the first request starts it
            pass

    # --- plumbing -------------------------------------------------------------------------
    def orphans(self) -> list[str]:
        """Accepted jobs nobody is running: queued ones left by an earlier ingress, and running ones
        whose lease ran out (their generator replica is gone; the claim runs them again, or fails
        them after `max_attempts`). Reads only the active jobs (storage I/O: call off the loop)."""
        now = self.store.clock()
        return [r["id"] for r in self.store.active()
                if r["status"] == "queued" or (r.get("lease_until") or 0) <= now]

    async def _recover_forever(self) -> None:
        """Recovery at start, then every half lease (a replica that dies later is noticed too)."""
        while True:
            try:
                sent = [job_id for job_id in await asyncio.to_thread(self.orphans) if job_id not in self.inflight]
                for job_id in sent:
                    self._dispatch(job_id)
                if sent:
                    log.warning("recovery: re-dispatched %d job(s): %s", len(sent), ", ".join(sent[:5]))
            except Exception:  # storage hiccup: try again next period, never stop recovering
                log.exception("recovery pass failed")
            await asyncio.sleep(max(1.0, self.cfg.lease_s / 2))

    def _dispatch(self, job_id: str) -> asyncio.Task:
        # A fresh context: the work must not inherit the HTTP request's (Serve cancels a request's
        # downstream calls when its client disconnects); the generator deployment owns the job.
        task = asyncio.get_running_loop().create_task(self._run(job_id), context=contextvars.Context())
        self.inflight[job_id] = task
        return task

    async def _run(self, job_id: str) -> dict[str, Any]:
        from medgen_ray.core.observability import serve_job_finished, serve_queue

        t0 = time.perf_counter()
        serve_queue(len(self.inflight))
        result: dict[str, Any] = {}
        try:
            result = await self.generator.run.remote(job_id)
            return result
        except Exception as exc:  # a replica died or Serve gave up: the record keeps its state and lease
            log.warning("job %s: generator call failed (%s); recovery re-dispatches it when its lease ends",
                        job_id, exc)
            return self.store.get(job_id) or {"id": job_id, "status": "cancelled"}
        finally:
            self.inflight.pop(job_id, None)
            serve_queue(len(self.inflight))
            serve_job_finished(result.get("status", "unknown"), time.perf_counter() - t0)

    async def _final(self, job_id: str, timeout: float) -> dict[str, Any] | None:
        """The job's record once it is final (done, failed, cancelled) or gone; None at timeout."""
        deadline = time.monotonic() + timeout
        task = self.inflight.get(job_id)
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except asyncio.TimeoutError:
                return None
        while True:  # another replica (or a re-run after recovery) may own it
            record = self.store.get(job_id)
            if record is None or record["status"] in FINAL:
                return record
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.2)

    async def _parse(self, request: Request, sync: bool) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            try:
                form = await request.form(max_files=0, max_fields=32)
            except (StarletteHTTPException, AssertionError, ValueError) as exc:
                raise HTTPException(400, f"malformed form body: {getattr(exc, 'detail', exc)}") from None
            req = parse_form_request(dict(form))
        else:
            req = parse_json_request(await request.body())
        resolved, errors = resolve(req, self.cfg, self.adapter_names, sync)
        if errors:
            raise RequestErrors(errors)
        return resolved

    async def _submit(self, resolved: dict[str, Any]) -> dict[str, Any]:
        if self._recovery is None:
            self._recovery = asyncio.get_running_loop().create_task(self._recover_forever(),
                                                                    context=contextvars.Context())
        if len(self.inflight) >= self.cfg.max_queue:
            raise HTTPException(503, f"queue full ({self.cfg.max_queue} jobs queued or running); retry later",
                                headers={"Retry-After": str(self.cfg.retry_after_s)})
        record = self.store.create(resolved)
        self._dispatch(record["id"])
        return record

    def _record(self, video_id: str) -> dict[str, Any]:
        record = self.store.get(video_id)
        if record is None:
            raise HTTPException(404, f"video {video_id[:40]!r}: not found")
        return record

    def _view(self, record: dict[str, Any]) -> dict[str, Any]:
        return video_object(record, self.cfg)

    # --- routes -----------------------------------------------------------------------------
    @api.post("/v1/videos", status_code=202, dependencies=AUTH, response_model=VideoObject,
              responses=_responses(400, 401, 413, 422, 503))
    async def create(self, request: Request) -> dict[str, Any]:
        return self._view(await self._submit(await self._parse(request, sync=False)))

    @api.post("/v1/videos/sync", dependencies=AUTH, response_class=Response,
              responses={200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                               "description": "the mp4"},
                         500: {"model": VideoObject, "description": "the generation failed"},
                         **_responses(400, 401, 413, 422, 503, 504)})
    async def create_sync(self, request: Request) -> Response:
        # The job belongs to the generator: a client that disconnects cancels only this wait.
        record = await self._submit(await self._parse(request, sync=True))
        final = await self._final(record["id"], self.cfg.sync_timeout_s)
        if final is None:
            raise HTTPException(504, f"video {record['id']} still running; poll GET /v1/videos/{record['id']}")
        if final["status"] != "done":
            return JSONResponse(self._view(final), status_code=500)
        return Response(self.store.read_video(record["id"]), media_type="video/mp4",
                        headers={"X-Job-Id": record["id"]})

    @api.get("/v1/videos", dependencies=AUTH, response_model=VideoList, responses=_responses(401))
    async def list_videos(self, limit: int = Query(20, ge=1, le=100),
                          after: str | None = Query(None, pattern=ID_PATTERN),
                          order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
        records, more = self.store.page(limit, after, order)  # a deleted `after` still places the page
        page = [self._view(r) for r in records]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": more}

    @api.get("/v1/videos/{video_id}", dependencies=AUTH, response_model=VideoObject,
             responses=_responses(401, 404))
    async def retrieve(self, video_id: str) -> dict[str, Any]:
        return self._view(self._record(video_id))

    @api.get("/v1/videos/{video_id}/content", dependencies=AUTH, response_class=Response,
             responses={200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "the mp4"}, **_responses(401, 404, 409)})
    async def content(self, video_id: str, variant: Literal["video"] = "video") -> Response:
        record = self._record(video_id)
        data = self.store.read_video(video_id) if record["status"] == "done" else None
        if data is None:
            raise HTTPException(409, f"video {video_id!r} is {video_object(record, self.cfg)['status']}; no mp4 yet")
        return Response(data, media_type="video/mp4")

    @api.post("/v1/videos/{video_id}/cancel", dependencies=AUTH, response_model=VideoObject,
              responses=_responses(401, 404, 409))
    async def cancel(self, video_id: str) -> dict[str, Any]:
        self._record(video_id)
        try:
            return self._view(self.store.cancel(video_id))
        except TransitionRefused as refused:
            if refused.record is None:
                raise HTTPException(404, f"video {video_id!r}: not found") from None
            raise HTTPException(409, f"video {video_id!r} is {video_object(refused.record, self.cfg)['status']}; "
                                     "only queued or in_progress videos can be cancelled") from None

    @api.delete("/v1/videos/{video_id}", dependencies=AUTH, response_model=VideoDeleted,
                responses=_responses(401, 404))
    async def delete(self, video_id: str) -> dict[str, Any]:
        if not self.store.delete(video_id):  # a running job's generator stops at its next heartbeat
            raise HTTPException(404, f"video {video_id[:40]!r}: not found")
        return {"id": video_id, "object": "video.deleted", "deleted": True}

    @api.get("/v1/adapters", dependencies=AUTH, responses=_responses(401))
    async def adapters(self) -> dict[str, list[str]]:
        return {"adapters": ["base", *self.adapter_names]}

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> JSONResponse:
        if self._openapi is None:
            self._openapi = build_openapi(self.cfg, self.adapter_names, request.app.routes)
        return JSONResponse(self._openapi)

    @api.get("/docs", include_in_schema=False)
    async def docs(self) -> HTMLResponse:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title=api.title)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"ok": True, "inflight": len(self.inflight), "max_queue": self.cfg.max_queue}

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self) -> HTMLResponse:
        from medgen_ray.serve.page import PAGE

        return HTMLResponse(PAGE.replace("{{AUTH}}", "true" if self.token else "false"))


def build_app(cfg: ServeConfig, bind_host: str | None = None):
    """The Serve application for a validated config; `bind_host` is where the proxy listens
    (default: ask the running Serve, else the config's host)."""
    resolve_token(cfg, bind_host if bind_host is not None else proxy_host(cfg.host))  # before anything starts
    data = settings(cfg)
    g = cfg.generator
    ranks = g.parallel.ranks
    placement = {} if ranks == 1 else {  # the replica is rank 0 in bundle 0; its rank workers take the others
        "placement_group_bundles": [{"CPU": g.num_cpus, **({"GPU": g.num_gpus} if g.num_gpus else {})}] * ranks,
        "placement_group_strategy": "STRICT_PACK"}
    generator = GeneratorDeployment.options(
        ray_actor_options={"num_cpus": g.num_cpus, "num_gpus": g.num_gpus},
        autoscaling_config={"min_replicas": g.min_replicas, "max_replicas": g.max_replicas,
                            "target_ongoing_requests": 1, "initial_replicas": max(1, g.min_replicas)},
        health_check_period_s=g.health_check_period_s, **placement,
    ).bind(data)
    return Ingress.options(max_ongoing_requests=cfg.ingress_max_ongoing).bind(generator, data)


def app_builder(args: dict[str, Any]):
    """`serve deploy` entry: args is the `serve` section of our config (or a path under `config`)."""
    from medgen_ray.config import load_config

    if "config" in args:
        return build_app(load_config(args["config"], args.get("overrides", [])).serve)
    return build_app(ServeConfig.model_validate(args))
