"""The service's job store and state machine (serve/store.py) and the generator's ownership of a
job (serve/generator.py), without Ray: every edge, the races issue 24 found (a cancel lost to
`done`, two jobs at once on one pipeline), leases, listing by cursor. Concurrency is driven by
hooks at named points (events and barriers), never by sleeps."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from medgen_ray.config import load_config
from medgen_ray.serve.generator import VideoGenerator
from medgen_ray.serve.store import EDGES, FINAL, STATUSES, JobStore, TransitionRefused, new_id

REQ = {"prompt": "an endoscopy", "steps": 4, "height": 16, "width": 16, "num_frames": 1, "guidance": 1.0,
       "seed": 0, "adapter": "base"}
WAIT = 30  # seconds an event may take before the test fails (never reached when the code is right)


def _in_state(store: JobStore, status: str) -> str:
    """A job brought to `status` through the machine's own edges."""
    job = store.create(REQ)["id"]
    if status == "queued":
        return job
    store.claim(job, "o1", lease_s=60)
    if status == "running":
        return job
    if status == "done":
        store.finish(job, "o1", b"mp4")
    elif status == "failed":
        store.fail(job, "o1", "generation_failed", "boom")
    else:
        store.cancel(job)
    return job


@pytest.mark.parametrize("start", STATUSES)
@pytest.mark.parametrize("to", STATUSES)
def test_every_edge_of_the_state_machine(tmp_path, start, to):
    """Allowed edges go through; every other pair is refused and leaves the record as it was;
    the final states have no way out."""
    store = JobStore(str(tmp_path))
    job = _in_state(store, start)
    before = store.get(job)
    if (start, to) in EDGES:
        assert store.transition(job, to, expect=(start,))["status"] == to
    else:
        with pytest.raises(TransitionRefused):
            store.transition(job, to, expect=(start,))
        assert store.get(job) == before
    if start in FINAL:
        assert not any(a == start for a, _ in EDGES)


def test_round_trip_ids_and_shapes(tmp_path):
    store = JobStore(str(tmp_path))
    a = store.create(REQ)
    assert a["status"] == "queued" and store.get(a["id"]) == a
    assert store.get("../../etc/passwd") is None and store.read_video(a["id"]) is None
    assert store.get(a["id"] + "\n") is None  # `$` let a trailing newline through; `\Z` does not
    with pytest.raises(KeyError):
        store.video_path(a["id"] + "\n")
    assert new_id(1.0) < new_id(2.0) and len(new_id()) == 16  # ids sort by creation time
    assert [r["id"] for r in store.active()] == [a["id"]]
    store.cancel(a["id"])
    assert store.active() == []  # final: off the active list


def test_a_cancel_is_never_lost_to_a_finishing_generator(tmp_path):
    """Issue 24, defect 2: the status was checked before encoding and `done` overwrote a cancel
    (2 of 13 timed cancels ended completed with an mp4). The generator pauses after writing its
    video, a cancel goes through, then the generator's `done` is refused and its video removed."""
    store = JobStore(str(tmp_path))
    job = _in_state(store, "running")
    written, go_on = threading.Event(), threading.Event()

    def pause(_):
        written.set()
        assert go_on.wait(WAIT)

    store.hooks["finish.video_written"] = pause
    outcome = {}

    def finish():
        try:
            outcome["record"] = store.finish(job, "o1", b"mp4")
        except TransitionRefused as exc:
            outcome["refused"] = exc

    t = threading.Thread(target=finish)
    t.start()
    assert written.wait(WAIT)
    assert store.cancel(job)["status"] == "cancelled"
    go_on.set()
    t.join(WAIT)
    assert "refused" in outcome and outcome["refused"].record["status"] == "cancelled"
    assert store.get(job)["status"] == "cancelled" and store.read_video(job) is None
    assert not list((tmp_path / "videos").iterdir())  # the temporary video went too


def test_a_cancel_after_done_is_refused_and_the_video_stays(tmp_path):
    store = JobStore(str(tmp_path))
    job = _in_state(store, "done")
    with pytest.raises(TransitionRefused, match="is done"):
        store.cancel(job)
    assert store.get(job)["status"] == "done" and store.read_video(job) == b"mp4"


def test_transitions_on_one_job_run_one_at_a_time(tmp_path):
    """Two writers meet inside the lock: the second waits for the first, then sees its result
    (read-modify-write without a lock let the later write win)."""
    store = JobStore(str(tmp_path))
    job = _in_state(store, "running")
    inside, release = threading.Event(), threading.Event()

    def hold(_):
        if threading.current_thread().name == "canceller":
            inside.set()
            assert release.wait(WAIT)

    store.hooks["transition.locked"] = hold
    t = threading.Thread(target=store.cancel, args=(job,), name="canceller")
    t.start()
    assert inside.wait(WAIT)
    results = {}
    f = threading.Thread(target=lambda: results.setdefault("fail", _refused(lambda: store.fail(job, "o1", "x", "y"))))
    f.start()
    f.join(0.2)
    assert f.is_alive()  # waiting for the lock the canceller holds
    release.set()
    t.join(WAIT)
    f.join(WAIT)
    assert results["fail"] is not None and store.get(job)["status"] == "cancelled"


def _refused(fn):
    try:
        fn()
    except TransitionRefused as exc:
        return exc
    return None


def test_leases_claims_and_lost_replicas(tmp_path):
    """A running job belongs to its owner while the lease lasts; after it runs out (the replica is
    gone) another claims it (attempt 2); after max_attempts losses it fails, named."""
    store = JobStore(str(tmp_path))
    now = [1000.0]
    store.clock = lambda: now[0]
    job = store.create(REQ)["id"]
    assert store.claim(job, "a", lease_s=10)["owner"] == "a"
    with pytest.raises(TransitionRefused, match="lease valid"):
        store.claim(job, "b", lease_s=10)
    now[0] += 5
    store.heartbeat(job, "a", lease_s=10, progress=(2, 4))
    assert store.get(job)["progress"] == {"steps_done": 2, "steps_total": 4}
    now[0] += 9  # still within the renewed lease
    with pytest.raises(TransitionRefused):
        store.claim(job, "b", lease_s=10)
    now[0] += 2
    second = store.claim(job, "b", lease_s=10)
    assert (second["owner"], second["attempts"]) == ("b", 2)
    with pytest.raises(TransitionRefused, match="owned by b"):
        store.heartbeat(job, "a", lease_s=10)  # the old owner learns it lost the job
    now[0] += 11
    store.claim(job, "c", lease_s=10, max_attempts=3)
    now[0] += 11
    lost = store.claim(job, "d", lease_s=10, max_attempts=3)
    assert lost["status"] == "failed" and lost["error"]["code"] == "generator_lost"


def test_delete_stops_the_owner_and_leaves_nothing(tmp_path):
    store = JobStore(str(tmp_path))
    job = _in_state(store, "running")
    assert store.delete(job) and store.get(job) is None and not store.delete(job)
    with pytest.raises(TransitionRefused, match="deleted"):
        store.heartbeat(job, "o1", lease_s=10)
    with pytest.raises(TransitionRefused):
        store.finish(job, "o1", b"mp4")
    assert store.read_video(job) is None and store.active() == []


def test_a_stale_lock_is_broken(tmp_path):
    """A holder that died inside a transition leaves its lock; after LOCK_STALE_S it is broken."""
    import json

    store = JobStore(str(tmp_path))
    job = store.create(REQ)["id"]
    (tmp_path / "locks" / f"{job}.lock").write_text(json.dumps({"t": 0.0}))
    assert store.cancel(job)["status"] == "cancelled"


def test_listing_pages_by_cursor_that_survives_deletes(tmp_path):
    """Issue 24, defect 5: a deleted `after` ended the list ({"data": [], "has_more": false} with
    135 jobs left). Ids sort by creation time, so a deleted cursor still places the page; only
    the page's records are read."""
    store = JobStore(str(tmp_path))
    now = [1000.0]
    store.clock = lambda: now[0]
    ids = []
    for _ in range(7):
        now[0] += 1
        ids.append(store.create(REQ)["id"])
    reads = []
    real_get = store.get
    store.get = lambda i: reads.append(i) or real_get(i)
    page, more = store.page(3)
    assert [r["id"] for r in page] == ids[::-1][:3] and more and len(reads) == 3
    store.delete(page[-1]["id"])  # the SDK's `for v in list(): delete(v.id)` deletes as it goes
    page2, more2 = store.page(3, after=page[-1]["id"])
    assert [r["id"] for r in page2] == ids[::-1][3:6] and more2
    page3, more3 = store.page(3, after=page2[-1]["id"])
    assert [r["id"] for r in page3] == [ids[0]] and not more3
    asc, _ = store.page(2, after=ids[1], order="asc")
    assert [r["id"] for r in asc] == ids[2:4]


def _generator(tmp_path, **overrides) -> VideoGenerator:
    cfg = load_config(None, [f"serve.store={tmp_path}", "serve.heartbeat_s=0.05", "serve.lease_s=5",
                             *[f"serve.{k}={v}" for k, v in overrides.items()]]).serve
    gen = VideoGenerator(cfg)

    def generate(request, on_step=None):  # the pipeline's loop: one callback per step
        for step in range(1, int(request["steps"]) + 1):
            if on_step is not None:
                on_step(step)
        return np.zeros((1, 16, 16, 3), dtype=np.float32)

    gen.generate = generate
    return gen


def test_one_pipeline_runs_one_job_at_a_time(tmp_path):
    """Issue 24, defect 1: a call Serve gave up on kept its thread while the next job started on
    the same pipeline (AttributeError from the shared scheduler). Two jobs sent to one generator
    at once: the second waits at the lock until the first has finished."""
    store = JobStore(str(tmp_path))
    gen = _generator(tmp_path)
    first, second = store.create(REQ)["id"], store.create(REQ)["id"]
    in_first, release = threading.Event(), threading.Event()
    order = []

    def step(job_id):
        order.append(job_id)
        if job_id == first:
            in_first.set()
            assert release.wait(WAIT)

    gen.hooks["run.step"] = step
    a = threading.Thread(target=gen.run_job, args=(first, store))
    a.start()
    assert in_first.wait(WAIT)
    b = threading.Thread(target=gen.run_job, args=(second, store))
    b.start()
    b.join(0.2)
    assert b.is_alive() and second not in order  # blocked at the lock, not denoising
    release.set()
    a.join(WAIT)
    b.join(WAIT)
    assert order == [first] * 4 + [second] * 4 and gen.runs == [first, second]
    assert store.get(first)["status"] == store.get(second)["status"] == "done"


def test_a_cancel_stops_the_generator_at_the_next_step(tmp_path):
    """The heartbeat is refused once the job is cancelled, and denoising stops; no video."""
    store = JobStore(str(tmp_path))
    gen = _generator(tmp_path)
    job = store.create({**REQ, "steps": 1000})["id"]
    seen = []
    refused = threading.Event()
    real = store.heartbeat

    def heartbeat(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except TransitionRefused:
            refused.set()
            raise

    store.heartbeat = heartbeat

    def step(job_id):
        seen.append(job_id)
        if len(seen) == 2:
            store.cancel(job_id)
            assert refused.wait(WAIT)  # the next heartbeat is refused: denoising stops after this step

    gen.hooks["run.step"] = step
    record = gen.run_job(job, store)
    assert record["status"] == "cancelled" and len(seen) == 2 and store.read_video(job) is None


def test_a_finished_or_foreign_job_is_not_run_again(tmp_path):
    """Re-dispatching (recovery, a retried call) costs nothing: a done job and a job another
    replica holds a lease on are returned as they are, not generated."""
    store = JobStore(str(tmp_path))
    gen = _generator(tmp_path)
    done = store.create(REQ)["id"]
    assert gen.run_job(done, store)["status"] == "done"
    assert gen.run_job(done, store)["status"] == "done"
    held = store.create(REQ)["id"]
    store.claim(held, "another-replica", lease_s=60)
    assert gen.run_job(held, store)["owner"] == "another-replica"
    assert gen.runs == [done]


def test_a_model_error_fails_the_job_with_its_message(tmp_path):
    store = JobStore(str(tmp_path))
    gen = _generator(tmp_path)

    def broken(request, on_step=None):
        raise RuntimeError("CUDA out of memory")

    gen.generate = broken
    job = store.create(REQ)["id"]
    record = gen.run_job(job, store)
    assert record["status"] == "failed" and record["error"] == {"code": "generation_failed",
                                                                "message": "RuntimeError: CUDA out of memory"}


def test_the_compare_and_set_holds_on_s3(s3):
    """On an object store the lock is a conditional put (If-None-Match: *, s3fs's mode "xb"):
    a second exclusive create of the same key is refused, so the machine holds there too
    (moto's S3 server on 127.0.0.1)."""
    store = JobStore(f"s3://{s3['bucket']}/job-store")
    job = store.create(REQ)["id"]
    lock = f"{store.root}/locks/{job}.lock"
    assert store._exclusive(lock, b"{}") and not store._exclusive(lock, b"{}")
    store._rm(lock)
    store.claim(job, "o1", lease_s=60)
    assert store.cancel(job)["status"] == "cancelled"
    with pytest.raises(TransitionRefused, match="is cancelled"):
        store.finish(job, "o1", b"mp4")
    assert store.read_video(job) is None and store.active() == []
    page, more = store.page(10)
    assert [r["id"] for r in page] == [job] and not more
