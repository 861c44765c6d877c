"""Job records and finished videos on fsspec storage: what survives a replica restart.

  <store>/jobs/<id>.json    status (queued | running | done | failed), progress, request, error
  <store>/videos/<id>.mp4   the finished video

Every write goes to a temporary name and is renamed, so a reader never sees half a record.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import fsspec

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ID_RE = re.compile(r"^[0-9a-f]{16}$")  # the ids create() hands out; anything else never touches storage


class JobStore:
    """Job records and finished videos under a folder (local or s3://)."""

    def __init__(self, root: str):
        self.fs, path = fsspec.core.url_to_fs(root)
        self.root = path.rstrip("/")
        self.fs.makedirs(f"{self.root}/jobs", exist_ok=True)
        self.fs.makedirs(f"{self.root}/videos", exist_ok=True)

    def _job(self, job_id: str) -> str:
        if not ID_RE.match(job_id):
            raise KeyError(f"job {job_id!r}: not a job id")
        return f"{self.root}/jobs/{job_id}.json"

    def video_path(self, job_id: str) -> str:
        """Where a job's finished mp4 is stored."""
        if not ID_RE.match(job_id):
            raise KeyError(f"job {job_id!r}: not a job id")
        return f"{self.root}/videos/{job_id}.mp4"

    def _write(self, path: str, data: bytes) -> None:
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, path)

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:16]
        record = {"id": job_id, "status": "queued", "created": time.time(), "updated": time.time(),
                  "progress": {"steps_done": 0, "steps_total": int(request.get("steps", 0))},
                  "request": request, "error": None}
        self._write(self._job(job_id), json.dumps(record).encode())
        return record

    def get(self, job_id: str) -> dict[str, Any] | None:
        if not isinstance(job_id, str) or not ID_RE.match(job_id):
            return None
        try:
            with self.fs.open(self._job(job_id), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None

    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        record = self.get(job_id)
        if record is None:
            raise KeyError(f"job {job_id!r}: not found")
        record.update(fields, updated=time.time())
        self._write(self._job(job_id), json.dumps(record).encode())
        return record

    def delete(self, job_id: str) -> bool:
        """Remove a job's record and video; False when there was no such job."""
        if self.get(job_id) is None:
            return False
        for path in (self.video_path(job_id), self._job(job_id)):
            if self.fs.exists(path):
                self.fs.rm(path)
        return True

    def put_video(self, job_id: str, data: bytes) -> str:
        self._write(self.video_path(job_id), data)
        return self.video_path(job_id)

    def read_video(self, job_id: str) -> bytes | None:
        """The finished mp4's bytes, or None."""
        if not ID_RE.match(job_id):
            return None
        try:
            with self.fs.open(self.video_path(job_id), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def list(self, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
        records = []
        try:
            paths = self.fs.ls(f"{self.root}/jobs", detail=False)
        except FileNotFoundError:  # object stores have no empty folders: no job yet
            paths = []
        for path in paths:
            if not path.endswith(".json"):
                continue
            record = self.get(path.rsplit("/", 1)[-1].removesuffix(".json"))
            if record is not None and (status is None or record["status"] == status):
                records.append(record)
        records.sort(key=lambda r: r["created"], reverse=True)
        return records[:limit]
