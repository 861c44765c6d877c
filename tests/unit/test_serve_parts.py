import json

import pytest
import yaml

from medgen_ray.config import ConfigError, load_config
from medgen_ray.serve.schema import (
    RequestErrors,
    VideoRequest,
    frames_for_seconds,
    parse_form_request,
    parse_json_request,
    request_schema,
    resolve,
    resolved,
    video_object,
)
from medgen_ray.serve.store import JobStore


def test_serve_deploy_config_builds_the_application(monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    monkeypatch.setenv("MEDGEN_SERVE_TOKEN", "t")
    cfg = yaml.safe_load((root / "cluster/serve_deploy.yaml").read_text())
    app_cfg = cfg["applications"][0]
    module, name = app_cfg["import_path"].split(":")
    builder = getattr(__import__(module, fromlist=[name]), name)
    application = builder(app_cfg["args"])
    assert type(application).__name__ == "Application"


def _fields(exc: RequestErrors) -> set[str]:
    return {e["loc"][-1] for e in exc.errors}


def test_limits_and_defaults():
    cfg = load_config(None, ["serve.limits.max_steps=10", "serve.default_steps=4"]).serve
    _, errors = resolve(VideoRequest(prompt="x", steps=11, adapter="zzz"), cfg, ["medgen"])
    assert {e["loc"][-1] for e in errors} == {"steps", "adapter"}
    full = resolved(VideoRequest(prompt="x"), cfg)
    assert full["steps"] == 4 and full["height"] == cfg.default_height and full["adapter"] == "base"


@pytest.mark.parametrize("raw,field", [
    (b'{"prompt": "x", "guidance": NaN}', "guidance"),
    (b'{"prompt": "x", "guidance": Infinity}', "guidance"),
    (b'{"prompt": "x", "true_cfg_scale": -Infinity}', "true_cfg_scale"),
    (b'{"prompt": "x", "height": NaN}', "height"),
    (b'{"prompt": "x", "seconds": Infinity}', "seconds"),
])
def test_non_finite_numbers_are_refused_naming_the_field(raw, field):
    with pytest.raises(RequestErrors) as exc:
        parse_json_request(raw)
    assert _fields(exc.value) == {field}
    json.dumps(exc.value.errors, allow_nan=False)  # the 422 body is encodable: no NaN echoed back
    assert "finite" in exc.value.errors[0]["msg"]


@pytest.mark.parametrize("body,field", [
    ({"prompt": "x", "steps": True}, "steps"),
    ({"prompt": "x", "seed": False}, "seed"),
    ({"prompt": "x", "height": "64"}, "height"),
    ({"prompt": "x", "guidance": "6"}, "guidance"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": "x", "size": "850x480"}, "size"),
    ({"prompt": "x", "size": "848x480", "width": 848}, "body"),
    ({"prompt": "x", "seconds": "4", "num_frames": 33}, "body"),
    ({"prompt": "x", "seconds": "soon"}, "seconds"),
])
def test_json_types_are_strict(body, field):
    with pytest.raises(RequestErrors) as exc:
        parse_json_request(json.dumps(body).encode())
    assert field in _fields(exc.value)


def test_integral_numbers_are_integers_as_json_schema_says():
    """JSON Schema counts 3.0 as an integer (the fuzzer sent it): accepted; 3.5, true, "3" are not."""
    assert parse_json_request(b'{"prompt": "x", "steps": 3.0, "height": 16.0}').steps == 3
    for bad in (b'{"prompt": "x", "steps": 3.5}', b'{"prompt": "x", "steps": true}', b'{"prompt": "x", "steps": "3"}'):
        with pytest.raises(RequestErrors):
            parse_json_request(bad)


def test_form_fields_are_parsed_from_text_and_files_refused():
    req = parse_form_request({"prompt": "an endoscopy", "seconds": "4", "size": "848x480", "seed": "7",
                              "guidance": "5.5", "model": "medgen"})
    assert (req.seed, req.guidance, req.size, req.seconds, req.model) == (7, 5.5, "848x480", "4", "medgen")
    with pytest.raises(RequestErrors) as exc:
        parse_form_request({"prompt": "x", "steps": "many"})
    assert _fields(exc.value) == {"steps"}
    with pytest.raises(RequestErrors) as exc:
        parse_form_request({"prompt": "x", "input_reference": object()})
    assert _fields(exc.value) == {"input_reference"}


def test_openai_fields_map_to_native_ones():
    cfg = load_config(None, ["serve.model=hunyuan_video/tiny", "serve.fps=24", "serve.limits.max_frames=129"]).serve
    req = parse_form_request({"prompt": "x", "model": "medgen", "size": "848x480", "seconds": "4"})
    out, errors = resolve(req, cfg, ["medgen"])
    assert not errors
    assert (out["width"], out["height"], out["num_frames"], out["adapter"]) == (848, 480, 97, "medgen")
    assert frames_for_seconds(4, 24) == 97 and (frames_for_seconds(4, 24) - 1) % 4 == 0
    for base in ("base", "hunyuan_video/tiny"):
        assert resolve(VideoRequest(prompt="x", model=base), cfg, ["medgen"])[0]["adapter"] == "base"
    _, errors = resolve(VideoRequest(prompt="x", seconds="8"), cfg, [])  # 193 frames > 129
    assert [e["loc"][-1] for e in errors] == ["seconds"] and "5.38 s at 24 fps" in errors[0]["msg"]
    _, errors = resolve(VideoRequest(prompt="x", model="sora-2"), cfg, ["medgen"])
    assert [e["loc"][-1] for e in errors] == ["model"] and "medgen" in errors[0]["msg"]


def test_limits_hold_on_the_resolved_request():
    """A job that omits a field gets the default, and the default obeys the limits: the sync
    endpoint runs min(default_steps, sync_max_steps) instead of refusing every request."""
    shipped = load_config("jobs/configs/serve.yaml").serve
    out, errors = resolve(VideoRequest(prompt="x"), shipped, ["medgen"], sync=True)
    assert not errors and out["steps"] == shipped.limits.sync_max_steps < shipped.default_steps
    _, errors = resolve(VideoRequest(prompt="x", steps=shipped.limits.sync_max_steps + 1), shipped, [], sync=True)
    assert [e["loc"][-1] for e in errors] == ["steps"] and "POST /v1/videos" in errors[0]["msg"]
    with pytest.raises(ConfigError, match="default_steps=60 is over its limit 50"):
        load_config(None, ["serve.default_steps=60", "serve.limits.max_steps=50"])
    with pytest.raises(ConfigError, match="default_frames=34 is not 4k\\+1"):
        load_config(None, ["serve.default_frames=34"])


def test_request_schema_carries_every_limit():
    cfg = load_config(None, ["serve.limits.max_height=128", "serve.limits.max_width=64", "serve.limits.max_frames=17",
                             "serve.limits.max_steps=12", "serve.limits.sync_max_steps=4", "serve.default_height=32",
                             "serve.default_width=48", "serve.default_frames=5", "serve.default_steps=2",
                             "serve.fps=8"]).serve
    props = request_schema(cfg, ["medgen"])["properties"]
    assert props["height"] == {"type": "integer", "minimum": 16, "maximum": 128, "multipleOf": 16}
    assert props["num_frames"]["enum"] == [1, 5, 9, 13, 17]
    assert props["steps"]["maximum"] == 12 and request_schema(cfg, [], sync=True)["properties"]["steps"]["maximum"] == 4
    assert props["model"]["enum"] == ["base", cfg.model, "medgen"]
    assert "64x128" in props["size"]["enum"] and "80x16" not in props["size"]["enum"]
    assert props["seconds"]["enum"] == ["1", "2"]  # 9 and 17 frames at 8 fps; 3 s would be 25
    assert props["prompt"]["maxLength"] == cfg.limits.max_prompt_chars


def test_video_object_has_the_fields_openai_clients_read():
    from openai._models import construct_type  # how the SDK builds response objects (non-strict clients)
    from openai.types import Video

    cfg = load_config(None, ["serve.fps=8"]).serve
    record = {"id": "0123456789abcdef", "status": "running", "created": 1.7e9, "error": None,
              "progress": {"steps_done": 3, "steps_total": 12},
              "request": {"prompt": "p", "negative_prompt": None, "height": 480, "width": 848, "num_frames": 33,
                          "steps": 12, "guidance": 6.0, "true_cfg_scale": 1.0, "seed": 0, "adapter": "medgen"}}
    video = construct_type(type_=Video, value=video_object(record, cfg))
    assert (video.status, video.progress, video.size, video.seconds, video.model) == \
        ("in_progress", 25, "848x480", "4.12", "medgen")
    failed = construct_type(type_=Video, value=video_object({**record, "status": "cancelled"}, cfg))
    assert failed.status == "failed" and failed.error.code == "cancelled"


def test_store_round_trip_and_listing(tmp_path):
    store = JobStore(str(tmp_path))
    now = [1000.0]
    store.clock = lambda: now[0]
    a = store.create({"prompt": "a", "steps": 2})
    now[0] += 1
    b = store.create({"prompt": "b", "steps": 2})
    store.claim(a["id"], "me", lease_s=10)
    store.finish(a["id"], "me", b"mp4")
    assert store.get(a["id"])["status"] == "done" and store.read_video(a["id"]) == b"mp4"
    assert [r["id"] for r in store.page(10)[0]] == [b["id"], a["id"]]
    assert [r["id"] for r in store.active()] == [b["id"]]
    assert store.get("../../etc/passwd") is None and store.read_video(b["id"]) is None
    with pytest.raises(KeyError):
        store.cancel("missing")
    assert store.delete(a["id"]) and store.get(a["id"]) is None and store.read_video(a["id"]) is None
    assert not store.delete(a["id"])
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.lock"))


def test_the_openapi_id_pattern_is_the_stores(tmp_path):
    """The document's pattern (ECMA syntax) accepts exactly the ids the store hands out."""
    import re

    from medgen_ray.serve.schema import ID_PATTERN
    from medgen_ray.serve.store import ID_RE

    good = JobStore(str(tmp_path)).create({"prompt": "a", "steps": 1})["id"]
    for candidate in (good, good + "\n", good[:-1], good.upper(), "../" + good[3:]):
        assert bool(re.fullmatch(ID_PATTERN.strip("^$"), candidate)) == bool(ID_RE.match(candidate)), candidate


def test_ids_are_checked_by_shape_before_storage(tmp_path):
    """A 300-character id never reaches the file system (it was a 500: file name too long)."""
    store = JobStore(str(tmp_path))
    long_id = "a" * 300
    assert store.get(long_id) is None and store.read_video(long_id) is None and not store.delete(long_id)
    with pytest.raises(KeyError):
        store.video_path(long_id)


def test_token_rule_follows_the_address_the_proxy_binds(monkeypatch, tmp_path):
    """`serve deploy` binds the deploy file's host (0.0.0.0) whatever serve.host says: the
    builder and the ingress read the real bind, so no token means no start."""
    from medgen_ray.serve import app as serve_app

    monkeypatch.delenv("MEDGEN_SERVE_TOKEN", raising=False)
    cfg = load_config(None, [f"serve.store={tmp_path}"]).serve  # serve.host is 127.0.0.1
    assert serve_app.resolve_token(cfg) is None  # fine where the proxy really is on loopback
    monkeypatch.setattr(serve_app, "proxy_host", lambda default: "0.0.0.0")
    with pytest.raises(ValueError, match="binds '0.0.0.0'"):
        serve_app.build_app(cfg)
    with pytest.raises(ValueError, match="binds '0.0.0.0'"):
        serve_app.Ingress.func_or_class.__mro__[1](None, cfg.model_dump())  # our class under Serve's wrapper
    monkeypatch.setenv("MEDGEN_SERVE_TOKEN", "t")
    assert serve_app.resolve_token(cfg, "0.0.0.0") == "t"
    assert all(serve_app.is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "::ffff:127.0.0.1"))
    assert not any(serve_app.is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "example.org"))


@pytest.mark.parametrize("raw", [b'{"prompt": "a", "seconds": "1e308"}', b'{"prompt": "a", "seconds": 1e308}'])
def test_huge_seconds_are_422_naming_the_field(raw):
    """Issue 24, defect 6: 1e308 seconds overflowed into an OverflowError (a 500)."""
    from medgen_ray.serve.schema import RequestErrors, parse_json_request

    with pytest.raises(RequestErrors) as err:
        parse_json_request(raw)
    assert err.value.errors[0]["loc"] == ["body", "seconds"] and "at most 3600" in err.value.errors[0]["msg"]


def test_deeply_nested_json_is_422():
    """Issue 24, defect 6: JSON nested 20,000 deep was a RecursionError (a 500)."""
    from medgen_ray.serve.schema import RequestErrors, parse_json_request

    with pytest.raises(RequestErrors) as err:
        parse_json_request(b'{"prompt": ' + b"[" * 20000 + b"]" * 20000 + b"}")
    assert "nested too deeply" in err.value.errors[0]["msg"]


def test_the_demo_config_refuses_requests_a_cpu_takes_minutes_for():
    """Issue 24: 512x512x65 was allowed on the demo (CPU) config and ran for minutes."""
    from importlib import resources

    from medgen_ray.serve.schema import VideoRequest, resolve

    app = load_config(str(resources.files("medgen_ray.configs").joinpath("demo.yaml")))
    _, errors = resolve(VideoRequest(prompt="big", height=512, width=512, num_frames=65), app.serve, [], False)
    assert {e["loc"][-1] for e in errors} >= {"height", "width", "num_frames"}
    _, ok = resolve(VideoRequest(prompt="small"), app.serve, [], False)
    assert not ok
