import pytest
import yaml

from medgen_ray.config import load_config
from medgen_ray.serve.schema import VideoRequest, limit_errors, resolved
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


def test_limits_and_defaults():
    cfg = load_config(None, ["serve.limits.max_steps=10", "serve.default_steps=4"]).serve
    req = VideoRequest(prompt="x", steps=11, adapter="zzz")
    fields = {e["loc"][-1] for e in limit_errors(req, cfg, ["medgen"])}
    assert fields == {"steps", "adapter"}
    full = resolved(VideoRequest(prompt="x"), cfg)
    assert full["steps"] == 4 and full["height"] == cfg.default_height and full["adapter"] == "base"


def test_store_round_trip_and_listing(tmp_path):
    store = JobStore(str(tmp_path))
    a = store.create({"prompt": "a", "steps": 2})
    b = store.create({"prompt": "b", "steps": 2})
    store.update(a["id"], status="done")
    store.put_video(a["id"], b"mp4")
    assert store.get(a["id"])["status"] == "done" and store.read_video(a["id"]) == b"mp4"
    assert [r["id"] for r in store.list()] == [b["id"], a["id"]]
    assert [r["id"] for r in store.list(status="queued")] == [b["id"]]
    assert store.get("../../etc/passwd") is None and store.read_video(b["id"]) is None
    with pytest.raises(KeyError):
        store.update("missing", status="done")
    assert not list(tmp_path.rglob("*.tmp"))
