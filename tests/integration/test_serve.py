"""The generation service on Ray Serve, on 127.0.0.1 with the tiny pipeline: adapters, every
validation error, auth, backpressure, replica restarts, a bounded load test and the web page."""

import io
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
import torch

from medgen_ray.config import load_config
from medgen_ray.core.ports import free_port as _free_port  # the name the other tests import

TOKEN = "s3cret-token"


def _make_adapters(folder):
    from medgen_ray.models.hunyuan import build_tiny_components
    from medgen_ray.train import lora

    paths = {}
    for i, (name, fmt) in enumerate((("medgen", "diffusers"), ("other", "comfy"))):
        tr = build_tiny_components()["transformer"]
        lora.add_lora(tr, 4, 4.0, ["to_q", "to_k", "to_v", "to_out.0"])
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for n, p in tr.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        state = lora.lora_state(tr)
        out = folder / name
        if fmt == "diffusers":
            paths[name] = lora.save_diffusers_lora(state, 4, 4.0, str(out))
        else:
            paths[name] = lora.save_original_lora(state, dict(tr.config), 4, 4.0, str(out))
    return paths


@pytest.fixture(scope="module")
def service(tmp_path_factory, ray_cluster):
    from ray import serve

    from medgen_ray.serve.launch import start_serve

    root = tmp_path_factory.mktemp("serve")
    adapters = _make_adapters(root / "adapters")
    port = _free_port()
    app = load_config(None, [
        "ray.num_cpus=2", "serve.host=127.0.0.1", f"serve.port={port}", f"serve.store={root / 'store'}",
        f"serve.token={TOKEN}", "serve.max_queue=4", "serve.retry_after_s=3",
        f"serve.adapters={json.dumps(adapters)}",
        "serve.generator.num_cpus=0.5", "serve.generator.num_gpus=0", "serve.generator.threads=1",
        "serve.default_height=32", "serve.default_width=48", "serve.default_frames=5", "serve.default_steps=2",
        "serve.limits.max_height=128", "serve.limits.max_width=128", "serve.limits.max_frames=17",
        "serve.limits.max_steps=12", "serve.limits.sync_max_steps=4", "serve.limits.max_prompt_chars=300",
        "serve.fps=8",
    ])
    url = start_serve(app)
    _wait_healthy(url)
    yield {"url": url, "root": root, "app": app}
    serve.shutdown()


def _wait_healthy(url, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}/healthz did not answer")


def call(url, path, body=None, token=TOKEN, timeout=120):
    from medgen_ray.serve.client import call_api

    return call_api(url + path, token, body, timeout=timeout)


def frames_of(mp4: bytes) -> np.ndarray:
    with av.open(io.BytesIO(mp4)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def wait_done(url, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body, _ = call(url, f"/v1/videos/{job_id}")
        assert code == 200, body
        job = json.loads(body)
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.3)
    raise TimeoutError(job_id)


def test_adapters_differ_and_seed_reproduces(service):
    url = service["url"]
    outs = {}
    for adapter in ("base", "medgen", "other"):
        code, body, headers = call(url, "/v1/videos/sync", {"prompt": "an endoscopy", "seed": 7, "adapter": adapter})
        assert code == 200 and body[4:8] == b"ftyp", body[:200]
        outs[adapter] = frames_of(body).astype(np.int16)
    assert outs["base"].shape == (5, 32, 48, 3)
    assert np.abs(outs["medgen"] - outs["base"]).mean() > 1
    assert np.abs(outs["other"] - outs["medgen"]).mean() > 1
    code, body, _ = call(url, "/v1/videos/sync", {"prompt": "an endoscopy", "seed": 7, "adapter": "medgen"})
    assert np.array_equal(frames_of(body).astype(np.int16), outs["medgen"])
    code, body, _ = call(url, "/v1/adapters")
    assert json.loads(body)["adapters"] == ["base", "medgen", "other"]


@pytest.mark.parametrize("body,field", [
    ({"prompt": "x", "height": 40}, "height"),
    ({"prompt": "x", "width": 4096}, "width"),
    ({"prompt": "x", "width": 0}, "width"),
    ({"prompt": "x", "num_frames": 6}, "num_frames"),
    ({"prompt": "x", "num_frames": 129}, "num_frames"),
    ({"prompt": "x", "steps": 0}, "steps"),
    ({"prompt": "x", "steps": 13}, "steps"),
    ({"prompt": "x", "guidance": -1}, "guidance"),
    ({"prompt": "x", "guidance": 50}, "guidance"),
    ({"prompt": "x", "seed": -3}, "seed"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 301}, "prompt"),
    ({"prompt": "x", "negative_prompt": "y" * 301}, "negative_prompt"),
    ({"prompt": "x", "adapter": "nope"}, "adapter"),
    ({"prompt": "x", "colour": "red"}, "colour"),
    ({"height": 32}, "prompt"),
])
def test_validation_names_the_field(service, body, field):
    code, raw, _ = call(service["url"], "/v1/videos", body)
    assert code == 422, raw
    detail = json.loads(raw)["detail"]
    assert any(e["loc"][-1] == field for e in detail), detail


def test_sync_endpoint_refuses_long_jobs(service):
    code, raw, _ = call(service["url"], "/v1/videos/sync", {"prompt": "x", "steps": 10})
    assert code == 422 and "POST /v1/videos" in raw.decode()


def test_auth(service):
    url = service["url"]
    assert call(url, "/v1/videos", {"prompt": "x"}, token=None)[0] == 401
    assert call(url, "/v1/videos", {"prompt": "x"}, token="wrong")[0] == 401
    assert call(url, "/v1/videos/abc", token=None)[0] == 401
    assert call(url, "/healthz", token=None)[0] == 200
    assert call(url, "/openapi.json", token=None)[0] == 200
    code, body, _ = call(url, "/v1/videos", {"prompt": "x"})
    assert code == 202
    assert wait_done(url, json.loads(body)["id"])["status"] == "completed"


def test_public_host_without_token_is_refused():
    from medgen_ray.serve.app import build_app

    app = load_config(None, ["serve.host=0.0.0.0"])
    with pytest.raises(ValueError, match="MEDGEN_SERVE_TOKEN"):
        build_app(app.serve, bind_host="0.0.0.0")


def test_queue_full_gives_503_with_retry_after(service):
    url = service["url"]
    accepted, refused = [], []
    for i in range(8):
        code, body, headers = call(url, "/v1/videos", {"prompt": f"job {i}", "steps": 12, "seed": i})
        if code == 202:
            accepted.append(json.loads(body)["id"])
        else:
            assert code == 503, body
            assert headers.get("Retry-After") == "3"
            refused.append(i)
    assert len(accepted) == 4 and len(refused) == 4
    for job_id in accepted:
        job = wait_done(url, job_id)
        assert job["status"] == "completed" and (job["steps_done"], job["steps_total"], job["progress"]) == (12, 12, 100)


def test_progress_is_reported_while_running(service):
    url = service["url"]
    code, body, _ = call(url, "/v1/videos", {"prompt": "slow", "steps": 12, "height": 128, "width": 128,
                                             "num_frames": 17})
    job_id = json.loads(body)["id"]
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = json.loads(call(url, f"/v1/videos/{job_id}")[1])
        seen.add(job["steps_done"])
        if job["status"] == "completed":
            break
        time.sleep(0.1)
    assert job["status"] == "completed"
    assert len(seen - {0, 12}) >= 1, seen  # a step count between start and end was visible
    assert call(url, f"/v1/videos/{job_id}/content")[0] == 200


def _kill_replicas(deployment: str) -> int:
    """SIGKILL-like end of a deployment's replica actors (Serve restarts them)."""
    import ray

    killed = 0
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if f"SERVE_REPLICA::medgen#{deployment}#" in actor["name"]:
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
            killed += 1
    return killed


def test_replica_restarts_keep_finished_jobs(service):
    url = service["url"]
    code, body, _ = call(url, "/v1/videos", {"prompt": "keep me", "seed": 3})
    job_id = json.loads(body)["id"]
    assert wait_done(url, job_id)["status"] == "completed"
    before = call(url, f"/v1/videos/{job_id}/content")[1]
    assert _kill_replicas("GeneratorDeployment") == 1
    assert _kill_replicas("Ingress") == 1
    time.sleep(1)
    _wait_healthy(url, timeout=180)
    code, body, _ = call(url, f"/v1/videos/{job_id}")
    assert code == 200 and json.loads(body)["status"] == "completed"
    assert call(url, f"/v1/videos/{job_id}/content")[1] == before
    code, body, _ = call(url, "/v1/videos/sync", {"prompt": "after restart"}, timeout=300)
    assert code == 200 and body[4:8] == b"ftyp"


def test_bounded_load_50_clients(service):
    url = service["url"]

    def client(i):
        code, body, _ = call(url, "/v1/videos", {"prompt": f"load {i}", "seed": i}, timeout=60)
        return code, (json.loads(body)["id"] if code == 202 else None)

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(client, range(50)))
    codes = [c for c, _ in results]
    assert all(c in (202, 503) for c in codes), codes
    accepted = [j for c, j in results if c == 202]
    assert accepted and codes.count(503) >= 1
    for job_id in accepted:
        assert wait_done(url, job_id, timeout=300)["status"] == "completed"


def test_page_in_headless_chromium(service, tmp_path):
    from tests.browser import Browser

    url = service["url"]
    browser = Browser(tmp_path / "chrome")
    try:
        state = browser.run(
            f"{url}/?prompt=an%20ultrasound%20of%20the%20liver&steps=3&seed=5&adapter=medgen&autorun=1&token={TOKEN}",
            "({...document.body.dataset, bar: document.getElementById('bar').style.width,"
            " videos: document.querySelectorAll('video').length})",
            "['done','error'].includes(document.body.dataset.state) && document.body.dataset.playable", 180)
    finally:
        browser.close()
    assert state["state"] == "done", state
    assert int(state["videoBytes"]) > 1000 and state["progress"] == "3/3" and state["bar"] == "100%"
    assert int(state["gallery"]) >= 1 and state["videos"] >= 2
    assert state["playable"] == "yes", state
    job = json.loads(call(url, f"/v1/videos/{state['job']}")[1])
    assert job["request"]["adapter"] == "medgen" and job["request"]["seed"] == 5


def test_service_metrics_exported(service):
    from tests.conftest import scrape_metrics

    code, body, _ = call(service["url"], "/v1/videos/sync", {"prompt": "metrics"})
    assert code == 200
    done = scrape_metrics(r'^ray_medgen_serve_jobs_total\{.*outcome="done"')
    assert done and sum(float(line.rsplit(" ", 1)[1]) for line in done) >= 1
    assert scrape_metrics(r"^ray_medgen_serve_queue_depth")
    assert scrape_metrics(r"^ray_medgen_serve_job_seconds_count")
