"""Job records and finished videos on fsspec storage, and the job state machine.

  <store>/jobs/<id>.json     the record: status, progress, request, error, owner and lease
  <store>/active/<id>        present while the job is queued or running (recovery lists these)
  <store>/locks/<id>.lock    held while one transition reads and writes the record
  <store>/videos/<id>.mp4    the finished video

The state machine (API names in brackets, serve/schema.py):

  queued [queued] --claim--> running [in_progress] --finish--> done [completed]
                                                   --fail----> failed [failed]
  queued | running --cancel--> cancelled [failed, error code `cancelled`]
  running --lease ran out (its replica is gone)--> queued again (seeded generation gives the same
          video), or failed with code `generator_lost` after `max_attempts`
  done, failed and cancelled are final; delete removes a record in any state.

Every change of a record goes through `transition`, one compare-and-set: under the job's lock
(a file created exclusively: O_EXCL on local disk, a conditional put, If-None-Match, on S3) it
re-reads the record, checks the state it expects (and, for the generator's writes, that it still
owns the job), and writes the new record to a temporary name that is renamed over the old one.
So cancel, delete, done and failed cannot overwrite each other, and a reader never sees half a
record. A lock older than `LOCK_STALE_S` (its holder died between create and remove) is broken.

Ids are the creation time (12 hex digits of milliseconds) and 4 random hex digits: listing sorts
names without reading records, and a cursor still places its page after its job was deleted.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import fsspec

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
# Every edge of the machine: (from, to). `transition` refuses any other.
EDGES = frozenset({("queued", "running"), ("queued", "cancelled"), ("running", "running"), ("running", "done"),
                   ("running", "failed"), ("running", "cancelled"), ("running", "queued")})
ID_RE = re.compile(r"\A[0-9a-f]{16}\Z")  # the ids create() hands out; anything else never touches storage
LOCK_WAIT_S = 30.0
LOCK_STALE_S = 60.0


class TransitionRefused(Exception):
    """The record was not in a state (or not owned by the caller) that allows the change; `record`
    is what it is now (None when the job is gone)."""

    def __init__(self, job_id: str, record: dict[str, Any] | None, why: str):
        self.record = record
        super().__init__(f"job {job_id}: {why}")


def new_id(now: float | None = None) -> str:
    """12 hex digits of the creation time in ms, then 4 random ones (sorts by creation time)."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}"[-12:] + secrets.token_hex(2)


class JobStore:
    """Job records and finished videos under a folder (local or s3://), changed only through
    `transition` and the helpers built on it."""

    def __init__(self, root: str):
        self.fs, path = fsspec.core.url_to_fs(root)
        self.root = path.rstrip("/")
        for folder in ("jobs", "videos", "locks", "active"):
            self.fs.makedirs(f"{self.root}/{folder}", exist_ok=True)
        # test hooks: name -> callable, called at named points (a barrier, a pause), never in production
        self.hooks: dict[str, Callable[[str], None]] = {}
        self.clock: Callable[[], float] = time.time  # leases and timestamps (tests move it)

    # --- paths ----------------------------------------------------------------------------------
    @staticmethod
    def _check(job_id: str) -> str:
        if not isinstance(job_id, str) or not ID_RE.match(job_id):
            raise KeyError(f"job {str(job_id)[:40]!r}: not a job id")
        return job_id

    def _job(self, job_id: str) -> str:
        return f"{self.root}/jobs/{self._check(job_id)}.json"

    def video_path(self, job_id: str) -> str:
        """Where a job's finished mp4 is stored."""
        return f"{self.root}/videos/{self._check(job_id)}.mp4"

    def _hook(self, name: str, job_id: str) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook(job_id)

    def _write(self, path: str, data: bytes) -> None:
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, path)

    def _exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` only if it does not exist (the compare-and-set primitive)."""
        try:
            with self.fs.open(path, "xb") as fh:
                fh.write(data)
            return True
        except FileExistsError:
            return False

    def _rm(self, path: str) -> None:
        try:
            self.fs.rm(path)
        except FileNotFoundError:
            pass

    @contextmanager
    def _locked(self, job_id: str) -> Iterator[None]:
        path = f"{self.root}/locks/{self._check(job_id)}.lock"
        deadline = time.monotonic() + LOCK_WAIT_S
        while not self._exclusive(path, json.dumps({"t": time.time()}).encode()):
            try:
                with self.fs.open(path, "rb") as fh:
                    held_since = float(json.loads(fh.read() or b"{}").get("t", time.time()))
            except (FileNotFoundError, ValueError):
                continue  # released (or being written) meanwhile: try again
            if time.time() - held_since > LOCK_STALE_S:
                self._rm(path)  # its holder died inside a transition
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id}: its lock was held for {LOCK_WAIT_S:.0f} s")
            time.sleep(0.005)
        try:
            yield
        finally:
            self._rm(path)

    # --- records --------------------------------------------------------------------------------
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """A new queued job (its id unique by exclusive create)."""
        while True:
            now = self.clock()
            job_id = new_id(now)
            record = {"id": job_id, "status": "queued", "created": now, "updated": now, "attempts": 0,
                      "progress": {"steps_done": 0, "steps_total": int(request.get("steps", 0))},
                      "request": request, "error": None, "owner": None, "lease_until": None}
            self._exclusive(f"{self.root}/active/{job_id}", b"")
            if self._exclusive(self._job(job_id), json.dumps(record).encode()):
                return record

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The record, or None (no such job, or not a job id)."""
        if not isinstance(job_id, str) or not ID_RE.match(job_id):
            return None
        try:
            with self.fs.open(self._job(job_id), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None

    def transition(self, job_id: str, to: str, *, expect: tuple[str, ...], owned_by: str | None = None,
                   check: Callable[[dict[str, Any]], str | None] | None = None,
                   before_write: Callable[[dict[str, Any]], None] | None = None, **fields: Any) -> dict[str, Any]:
        """The one compare-and-set: under the job's lock, move it to `to` if its status is in
        `expect` (and `owned_by` owns it, when given; and `check` returns no reason); set `fields`.
        `before_write` runs inside the lock after the checks (moving a finished video into place).
        Raises TransitionRefused (with the record as it is) otherwise."""
        if to not in STATUSES:
            raise ValueError(f"unknown status {to!r}")
        with self._locked(job_id):
            self._hook("transition.locked", job_id)
            record = self.get(job_id)
            if record is None:
                raise TransitionRefused(job_id, None, "not found (deleted)")
            status = record["status"]
            if status not in expect or (status, to) not in EDGES:
                raise TransitionRefused(job_id, record, f"is {status}, not {'/'.join(expect)}: cannot become {to}")
            if owned_by is not None and record.get("owner") != owned_by:
                raise TransitionRefused(job_id, record, f"is owned by {record.get('owner')}, not {owned_by}")
            why = check(record) if check is not None else None
            if why:
                raise TransitionRefused(job_id, record, why)
            if before_write is not None:
                before_write(record)
            record.update(fields, status=to, updated=self.clock())
            self._write(self._job(job_id), json.dumps(record).encode())
            if to in FINAL:
                self._rm(f"{self.root}/active/{job_id}")
            return record

    # --- the generator's side -------------------------------------------------------------------
    def claim(self, job_id: str, owner: str, lease_s: float, max_attempts: int = 3) -> dict[str, Any]:
        """Take a queued job, or a running one whose lease ran out (its replica is gone), for
        `owner` until now + lease_s. A job lost `max_attempts` times is failed (`generator_lost`)."""
        now = self.clock()

        def claimable(record: dict[str, Any]) -> str | None:
            if record["status"] == "running" and (record.get("lease_until") or 0) > now:
                return f"is running on {record.get('owner')} (lease valid)"
            return None

        current = self.get(job_id)
        if current is None:
            raise TransitionRefused(job_id, None, "not found (deleted)")
        attempts = int(current.get("attempts", 0)) + 1
        if current["status"] == "running" and attempts > max_attempts:
            return self.transition(job_id, "failed", expect=("running",), check=claimable,
                                   error={"code": "generator_lost",
                                          "message": f"its generator replica was lost {max_attempts} times"})
        total = int(current.get("request", {}).get("steps", 0))
        return self.transition(job_id, "running", expect=("queued", "running"), check=claimable, owner=owner,
                               attempts=attempts, started=now, lease_until=now + lease_s,
                               progress={"steps_done": 0, "steps_total": total})

    def heartbeat(self, job_id: str, owner: str, lease_s: float,
                  progress: tuple[int, int] | None = None) -> dict[str, Any]:
        """Extend the owner's lease (and record progress: steps done, steps in all); refused when
        the job was cancelled, deleted or re-claimed, which is how the generator learns to stop."""
        fields: dict[str, Any] = {"lease_until": self.clock() + lease_s}
        if progress is not None:
            fields["progress"] = {"steps_done": progress[0], "steps_total": progress[1]}
        return self.transition(job_id, "running", expect=("running",), owned_by=owner, **fields)

    def finish(self, job_id: str, owner: str, video: bytes, **fields: Any) -> dict[str, Any]:
        """Store the video and mark the job done, in one step: the mp4 is moved into place inside
        the transition, so a job cancelled or deleted meanwhile gets no video."""
        tmp = f"{self.video_path(job_id)}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(video)
        self._hook("finish.video_written", job_id)
        try:
            return self.transition(job_id, "done", expect=("running",), owned_by=owner,
                                   before_write=lambda _: self.fs.mv(tmp, self.video_path(job_id)), **fields)
        finally:
            self._rm(tmp)  # refused: the temporary video goes (moved: nothing left to remove)

    def fail(self, job_id: str, owner: str, code: str, message: str) -> dict[str, Any]:
        """Mark the owner's running job failed with an error code and message."""
        return self.transition(job_id, "failed", expect=("running",), owned_by=owner,
                               error={"code": code, "message": message[:2000]})

    # --- the API's side -------------------------------------------------------------------------
    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (the generator stops at its next heartbeat)."""
        return self.transition(job_id, "cancelled", expect=ACTIVE,
                               error={"code": "cancelled", "message": "cancelled by the client"})

    def delete(self, job_id: str) -> bool:
        """Remove a job's record and video in any state; False when there was no such job. A
        running job's generator finds its record gone at the next heartbeat and stops."""
        if self.get(job_id) is None:
            return False
        with self._locked(job_id):
            found = self.get(job_id) is not None
            for path in (self.video_path(job_id), self._job(job_id), f"{self.root}/active/{job_id}"):
                self._rm(path)
        return found

    def read_video(self, job_id: str) -> bytes | None:
        """The finished mp4's bytes, or None."""
        if not isinstance(job_id, str) or not ID_RE.match(job_id):
            return None
        try:
            with self.fs.open(self.video_path(job_id), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def _ids(self, folder: str) -> list[str]:
        try:
            names = self.fs.ls(f"{self.root}/{folder}", detail=False)
        except FileNotFoundError:  # object stores have no empty folders: no job yet
            return []
        ids = [n.rsplit("/", 1)[-1].removesuffix(".json") for n in names]
        return sorted(i for i in ids if ID_RE.match(i))

    def page(self, limit: int, after: str | None = None, order: str = "desc") -> tuple[list[dict[str, Any]], bool]:
        """One page of jobs by creation time (ids sort by it) and whether more follow. `after` is
        a cursor: the page starts past that id's place, whether or not the job still exists.
        Lists names once and reads only the page's records."""
        ids = self._ids("jobs")
        if order == "desc":
            ids.reverse()
            rest = [i for i in ids if after is None or i < after]
        else:
            rest = [i for i in ids if after is None or i > after]
        records, taken = [], 0
        for job_id in rest:
            if len(records) == limit:
                break
            taken += 1
            record = self.get(job_id)
            if record is not None:  # deleted between the listing and the read
                records.append(record)
        return records, len(rest) > taken

    def active(self) -> list[dict[str, Any]]:
        """Jobs queued or running (recovery reads these only)."""
        out = []
        for job_id in self._ids("active"):
            record = self.get(job_id)
            if record is not None and record["status"] in ACTIVE:
                out.append(record)
            elif record is not None:  # final: a marker left by a crash between two writes
                self._rm(f"{self.root}/active/{job_id}")
            # no record: a job being created (its marker is written first) or one whose create
            # lost an id collision; the marker is left alone
        return out
