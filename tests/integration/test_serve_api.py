"""The service against clients nobody here wrote: the official `openai` SDK (create, poll,
download, list, cancel, delete) and a schemathesis fuzz of the live OpenAPI document; plus
the inputs that used to give 500s (NaN, over-long ids, huge bodies) and the defaults that
used to break /sync. Tiny pipeline and tight limits, so generation takes a second."""

import json
import os
import subprocess
import sys
import urllib.request
import warnings
from pathlib import Path

import pytest

from medgen_ray.config import derive, load_config
from tests.integration.test_serve import _free_port, _make_adapters, _wait_healthy, call, frames_of

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def api_service(tmp_path_factory, ray_cluster):
    from ray import serve

    from medgen_ray.serve.launch import start_serve

    root = tmp_path_factory.mktemp("serve_api")
    adapters = _make_adapters(root / "adapters")
    port = _free_port()
    app = load_config(None, [
        "ray.num_cpus=2", "serve.host=127.0.0.1", f"serve.port={port}", f"serve.store={root / 'store'}",
        f"serve.token={TOKEN}", "serve.max_queue=6", "serve.retry_after_s=2",
        f"serve.adapters={json.dumps({'medgen': adapters['medgen']})}",
        "serve.generator.num_cpus=0.5", "serve.generator.num_gpus=0", "serve.generator.threads=1",
        "serve.default_height=32", "serve.default_width=32", "serve.default_frames=5", "serve.default_steps=3",
        "serve.limits.max_height=64", "serve.limits.max_width=64", "serve.limits.max_frames=9",
        "serve.limits.max_steps=4", "serve.limits.sync_max_steps=2", "serve.limits.max_prompt_chars=200",
        "serve.limits.max_body_bytes=8192", "serve.fps=8",
    ])
    url = start_serve(app)
    _wait_healthy(url)
    yield {"url": url, "root": root, "app": app, "port": port}
    serve.shutdown()


def _raw(url: str, path: str, data: bytes, token: str | None = TOKEN, ctype: str = "application/json"):
    req = urllib.request.Request(url + path, data=data, method="POST", headers={"Content-Type": ctype})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _client(url: str):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0, timeout=120)


def test_official_openai_sdk_create_poll_download_list_delete(api_service):
    import openai

    client = _client(api_service["url"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks Sora's API deprecated
        video = client.videos.create(model="medgen", prompt="an endoscopic view of the stomach",
                                     size="64x48", seconds="1")  # multipart, as the SDK sends it
        assert video.status in ("queued", "in_progress") and video.model == "medgen" and video.size == "64x48"
        done = client.videos.poll(video.id, poll_interval_ms=200)
        assert done.status == "completed" and done.progress == 100, done
        assert done.seconds == "1.12"  # 9 frames (the 4k+1 count nearest 1 s at 8 fps)
        mp4 = client.videos.download_content(done.id).read()
        assert frames_of(mp4).shape == (9, 48, 64, 3)
        base = client.videos.create_and_poll(prompt="an ultrasound of the liver", model="base", poll_interval_ms=200)
        assert base.status == "completed" and base.model == api_service["app"].serve.model
        listed = [v.id for v in client.videos.list(limit=1)]  # one per page: the SDK follows `after`
        assert video.id in listed and base.id in listed and len(listed) == len(set(listed))
        deleted = client.videos.delete(video.id)
        assert deleted.deleted and deleted.id == video.id
        with pytest.raises(openai.NotFoundError):
            client.videos.retrieve(video.id)
        with pytest.raises(openai.UnprocessableEntityError) as exc:
            client.videos.create(model="sora-2", prompt="x")
        assert exc.value.response.json()["detail"][0]["loc"] == ["body", "model"]


def test_cancel_a_queued_job(api_service):
    url = api_service["url"]
    ids = [json.loads(call(url, "/v1/videos", {"prompt": f"busy {i}", "steps": 4, "num_frames": 9,
                                               "height": 64, "width": 64})[1])["id"] for i in range(3)]
    code, body, _ = call(url, f"/v1/videos/{ids[-1]}/cancel", {})
    assert code == 200, body
    assert json.loads(body)["status"] == "failed" and json.loads(body)["error"]["code"] == "cancelled"
    from tests.integration.test_serve import wait_done

    for job_id in ids[:-1]:
        assert wait_done(url, job_id)["status"] == "completed"
    code, body, _ = call(url, f"/v1/videos/{ids[-1]}/content")
    assert code == 409 and b"failed" in body
    assert call(url, f"/v1/videos/{ids[0]}/cancel", {})[0] == 409  # finished: nothing to cancel


@pytest.mark.parametrize("raw", [b'{"prompt": "x", "guidance": NaN}', b'{"prompt": "x", "height": Infinity}',
                                 b'{"prompt": "x", "true_cfg_scale": -Infinity}'])
def test_non_finite_numbers_are_422_after_the_token_check(api_service, raw):
    url = api_service["url"]
    assert _raw(url, "/v1/videos", raw, token=None)[0] == 401
    code, body = _raw(url, "/v1/videos", raw)
    assert code == 422 and "finite" in json.loads(body)["detail"][0]["msg"]
    assert _raw(url, "/v1/videos/sync", raw)[0] == 422


@pytest.mark.parametrize("body", [{"prompt": "x", "steps": True}, {"prompt": "x", "seed": False},
                                  {"prompt": "x", "height": "64"}])
def test_booleans_and_strings_are_not_numbers(api_service, body):
    code, raw, _ = call(api_service["url"], "/v1/videos", body)
    assert code == 422 and json.loads(raw)["detail"][0]["loc"][-1] in body


def test_over_long_ids_and_huge_bodies_are_client_errors(api_service):
    url = api_service["url"]
    long_id = "a" * 300
    for path in (f"/v1/videos/{long_id}", f"/v1/videos/{long_id}/content"):
        code, body, _ = call(url, path)
        assert code in (404, 422), (code, body[:200])
    assert call(url, "/v1/videos/0123456789abcdef")[0] == 404
    code, body = _raw(url, "/v1/videos", json.dumps({"prompt": "x" * 20_000}).encode())
    assert code == 413 and b"8192" in body
    before = len(json.loads(call(url, "/v1/videos?limit=100")[1])["data"])
    try:  # 10 MB: refused from its Content-Length, before the upload ends (a reset is a refusal too)
        code = _raw(url, "/v1/videos", json.dumps({"prompt": "x" * 10_000_000}).encode())[0]
    except (urllib.error.URLError, ConnectionError):
        code = 413
    assert code == 413 and len(json.loads(call(url, "/v1/videos?limit=100")[1])["data"]) == before


def test_omitted_fields_resolve_within_the_limits(api_service):
    url = api_service["url"]
    code, body, headers = call(url, "/v1/videos/sync", {"prompt": "no steps given"})  # default 3 > sync max 2
    assert code == 200 and body[4:8] == b"ftyp", body[:300]
    job = json.loads(call(url, f"/v1/videos/{headers['X-Job-Id']}")[1])
    assert job["steps_total"] == 2 and job["request"]["steps"] == 2
    code, body, _ = call(url, "/v1/videos", {"prompt": "async default"})
    assert code == 202 and json.loads(body)["steps_total"] == 3


def test_openapi_document_states_every_limit(api_service):
    doc = json.loads(call(api_service["url"], "/openapi.json", token=None)[1])
    create = doc["paths"]["/v1/videos"]["post"]
    schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert create["requestBody"]["content"]["multipart/form-data"]["schema"] == schema
    p = schema["properties"]
    assert p["height"]["maximum"] == 64 and p["height"]["multipleOf"] == 16
    assert p["num_frames"]["enum"] == [1, 5, 9] and p["steps"]["maximum"] == 4
    assert doc["paths"]["/v1/videos/sync"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["steps"]["maximum"] == 2
    assert {"202", "401", "413", "422", "503"} <= set(create["responses"])
    assert "Retry-After" in create["responses"]["503"]["headers"]
    ref = create["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert {"id", "status", "progress", "size", "seconds"} <= set(doc["components"]["schemas"][ref]["properties"])
    for path in ("/v1/videos/{video_id}", "/v1/videos/{video_id}/content", "/v1/videos/{video_id}/cancel"):
        assert "404" in next(iter(doc["paths"][path].values()))["responses"]


def test_schemathesis_fuzz_of_the_live_api(api_service, tmp_path):
    """Schema-driven requests (valid and invalid) against every operation: no 5xx but a declared
    503, every response as declared, every schema-valid request accepted."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[checks.not_a_server_error]\nexpected-statuses = ["2xx", "4xx", "503"]\n'
        '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "404", "409", "503"]\n')
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run",
           f"{api_service['url']}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}",
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                       "response_schema_conformance,positive_data_acceptance",
           "--phases", "examples,coverage,fuzzing", "--max-examples", "6", "--seed", "1",
           "--request-timeout", "120", "--max-time", "80", "--workers", "1", "--no-color"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=420, env={**os.environ, "NO_COLOR": "1"})
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    assert "9 selected" in out.stdout and "failed" not in out.stdout, report  # every operation was exercised


def test_attaching_to_a_running_serve_reports_its_real_address(api_service, capsys):
    """A second `start_serve` with another port attaches to the running Serve: the URL it returns
    (and prints) is the proxy's real one, and the token rule used that real bind."""
    from medgen_ray.serve.app import proxy_host
    from medgen_ray.serve.launch import start_serve

    assert proxy_host("0.0.0.0") == "127.0.0.1"  # what Serve binds, not the default handed in
    other = _free_port()
    url = start_serve(derive(api_service["app"], {"serve.port": other}))
    assert url == api_service["url"] and f":{api_service['port']}" in url
    assert "already running" in capsys.readouterr().out
    _wait_healthy(url)
