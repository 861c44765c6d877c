"""A generator replica that owns two ranks (issue 23) through a real Serve app on 127.0.0.1:
its video equals the one-device generator's, a cancel stops both ranks at the same step, and a
worker rank that dies fails its job (`rank_lost`) and the replica is replaced. The pauses are
the worker's named hold point (RankWorker.hold / release), not sleeps."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from medgen_ray.config import load_config
from tests.integration.test_serve import _free_port, _wait_healthy, call, frames_of, wait_done

OVERRIDES = ["serve.default_height=32", "serve.default_width=64", "serve.default_frames=9",
             "serve.default_steps=3", "serve.limits.max_steps=200", "serve.fps=8"]


@pytest.fixture(scope="module")
def parallel_service(tmp_path_factory, ray_cluster):
    from ray import serve

    from medgen_ray.serve.launch import start_serve

    root = tmp_path_factory.mktemp("serve_parallel")
    port = _free_port()
    app = load_config(None, [
        "ray.num_cpus=2", "serve.host=127.0.0.1", f"serve.port={port}", f"serve.store={root / 'store'}",
        "serve.token=s3cret-token", "serve.generator.num_cpus=0.5", "serve.generator.num_gpus=0",
        "serve.generator.threads=1", "serve.generator.parallel.ulysses=2", "serve.generator.collective_timeout_s=60",
        "serve.generator.health_check_period_s=1", "serve.lease_s=6", "serve.heartbeat_s=0.2", *OVERRIDES])
    url = start_serve(app)
    _wait_healthy(url)
    yield {"url": url, "app": app}
    serve.shutdown()


def _workers():
    import ray

    from medgen_ray.serve.ranks import WORKER_PREFIX

    return [ray.get_actor(a["name"], namespace=a["namespace"])
            for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(WORKER_PREFIX)]


def _ranks():
    from ray import serve

    return serve.get_deployment_handle("GeneratorDeployment", app_name="medgen").ranks.remote().result()


def test_two_ranks_make_the_one_device_video(parallel_service):
    from medgen_ray.config import ServeConfig
    from medgen_ray.core.encode import float_mp4_bytes
    from medgen_ray.serve.generator import VideoGenerator

    url = parallel_service["url"]
    code, body, _ = call(url, "/v1/videos", {"prompt": "an endoscope enters the stomach", "seed": 11})
    assert code == 202, body
    job = wait_done(url, json.loads(body)["id"])
    assert job["status"] == "completed", job
    served = frames_of(call(url, f"/v1/videos/{job['id']}/content")[1])
    one = VideoGenerator(ServeConfig.model_validate({**parallel_service["app"].serve.model_dump(),
                                                     "generator": {"num_gpus": 0, "threads": 1}}))
    one.setup()
    local = frames_of(float_mp4_bytes(one.generate(job["request"]), 8))
    # float frames agree to 1e-5 (tests/unit/test_context_parallel.py); through 8-bit H.264 they are equal
    assert served.shape == local.shape and np.array_equal(served, local)
    assert [r["steps"] for r in _ranks()] == [3, 3]


def test_a_cancel_stops_every_rank_at_the_same_step(parallel_service):
    url = parallel_service["url"]
    (worker,) = _workers()
    worker.hold.remote(5)
    code, body, _ = call(url, "/v1/videos", {"prompt": "cancel me", "steps": 200})
    job_id = json.loads(body)["id"]
    import ray

    assert ray.get(worker.wait_holding.remote())  # rank 1 holds before step 5; rank 0 waits in the collective
    assert call(url, f"/v1/videos/{job_id}/cancel", {})[0] == 200
    deadline = time.monotonic() + 10  # rank 0 learns of the cancel at its next heartbeat (0.2 s)
    while time.monotonic() < deadline and json.loads(call(url, f"/v1/videos/{job_id}")[1])["status"] != "failed":
        time.sleep(0.1)
    worker.release.remote()
    ranks = wait_ranks_idle(job_id)
    assert [r["outcome"] for r in ranks] == ["cancelled", "cancelled"]
    assert ranks[0]["steps"] == ranks[1]["steps"] + 1 < 200  # rank 0 counts the step it said stop at
    job = wait_done(url, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "cancelled"


def wait_ranks_idle(job_id: str, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranks = _ranks()  # answers once the replica's job has ended (one call at a time)
        if all(r.get("job") == job_id and r["outcome"] != "running" for r in ranks):
            return ranks
        time.sleep(0.2)
    raise TimeoutError(f"ranks still on {job_id}")


def test_a_dead_rank_fails_its_job_and_the_replica_is_replaced(parallel_service):
    import ray

    url = parallel_service["url"]
    (worker,) = _workers()
    worker.hold.remote(2)
    code, body, _ = call(url, "/v1/videos", {"prompt": "lose a rank", "steps": 50})
    job_id = json.loads(body)["id"]
    assert ray.get(worker.wait_holding.remote())
    ray.kill(worker, no_restart=True)
    job = wait_done(url, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "rank_lost", job
    assert "rank(s) 1" in job["error"]["message"]
    code, body, _ = call(url, "/v1/videos", {"prompt": "after the replacement", "seed": 2})
    assert code == 202
    assert wait_done(url, json.loads(body)["id"], timeout=240)["status"] == "completed"
    assert len(_workers()) == 1  # the new replica's worker; the dead one's name is gone
