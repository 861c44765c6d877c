"""`medgen generate`: submit a prompt to a running service, follow its progress, save the mp4."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any


class ServiceError(RuntimeError):
    """The service answered with an error or the job failed."""

    pass


def call_api(url: str, token: str | None, data: dict[str, Any] | None = None,
             timeout: float = 60) -> tuple[int, bytes, Any]:
    """GET (data None) or POST JSON; returns (status, body, headers) for errors too; headers
    are case-insensitive."""
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def _detail(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
    if isinstance(detail, list):
        return "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in detail)
    return str(detail)


def generate(base_url: str, request: dict[str, Any], out: str, token: str | None = None, poll_s: float = 1.0,
             timeout_s: float = 3600, log=sys.stderr) -> dict[str, Any]:
    """Submit a job to a running service, poll it and download the mp4 to `out`; returns the job record."""
    base = base_url.rstrip("/")
    token = token or os.environ.get("MEDGEN_SERVE_TOKEN")
    deadline = time.monotonic() + timeout_s
    while True:
        code, body, headers = call_api(f"{base}/v1/videos", token, request)
        if code != 503:
            break
        wait = float(headers.get("Retry-After") or 5)
        print(f"queue full, retrying in {wait:g} s", file=log)
        if time.monotonic() + wait > deadline:
            raise ServiceError("queue stayed full until the timeout")
        time.sleep(wait)
    if code != 202:
        raise ServiceError(f"submit failed ({code}): {_detail(body)}")
    job = json.loads(body)
    last = None
    while job["status"] in ("queued", "in_progress"):
        if time.monotonic() > deadline:
            raise ServiceError(f"job {job['id']} not finished after {timeout_s:g} s")
        time.sleep(poll_s)
        code, body, _ = call_api(f"{base}/v1/videos/{job['id']}", token)
        if code != 200:
            raise ServiceError(f"status failed ({code}): {_detail(body)}")
        job = json.loads(body)
        now = (job["status"], job["steps_done"])
        if now != last:
            print(f"{job['id']}: {job['status']} {job['steps_done']}/{job['steps_total']}", file=log)
            last = now
    if job["status"] != "completed":
        raise ServiceError(f"job {job['id']} failed: {(job.get('error') or {}).get('message')}")
    code, body, _ = call_api(f"{base}/v1/videos/{job['id']}/content", token)
    if code != 200:
        raise ServiceError(f"download failed ({code}): {_detail(body)}")
    with open(out, "wb") as fh:
        fh.write(body)
    return job
