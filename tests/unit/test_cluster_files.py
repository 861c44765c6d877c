"""cluster.yaml, the KubeRay manifests, the Serve deploy config and every job config: parse and
carry what their consumers require; every entrypoint names a job script and config that exist."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from medgen_ray.config import load_config

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = sorted((ROOT / "cluster" / "kuberay").glob("*.yaml"))


def _entrypoint_ok(cmd: str) -> None:
    args = shlex.split(cmd)
    assert args[0] == "python" and re.fullmatch(r"jobs/\w+\.py", args[1]), cmd
    assert (ROOT / args[1]).is_file(), args[1]
    assert args[2] == "--config" and (ROOT / args[3]).is_file(), cmd
    load_config(ROOT / args[3], args[4:])  # the config it names validates


def _pod_template_ok(template: dict, where: str) -> None:
    containers = template["spec"]["containers"]
    assert containers and all(c.get("image") and c.get("name") for c in containers), where
    for c in containers:
        limits = c.get("resources", {}).get("limits", {})
        assert "cpu" in limits and "memory" in limits, f"{where}: container {c['name']} needs cpu/memory limits"


def _cluster_spec_ok(spec: dict, where: str) -> None:
    assert "rayStartParams" in spec["headGroupSpec"], where
    _pod_template_ok(spec["headGroupSpec"]["template"], f"{where} head")
    groups = spec["workerGroupSpecs"]
    assert groups and len({g["groupName"] for g in groups}) == len(groups), where
    for g in groups:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], f"{where}: {g['groupName']} replica bounds"
        assert "rayStartParams" in g
        _pod_template_ok(g["template"], f"{where} {g['groupName']}")


@pytest.mark.parametrize("path", KUBERAY, ids=[p.name for p in KUBERAY])
def test_kuberay_manifest(path):
    doc = yaml.safe_load(path.read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["name"]
    kind = doc["kind"]
    if kind == "RayCluster":
        _cluster_spec_ok(doc["spec"], path.name)
    elif kind == "RayJob":
        _entrypoint_ok(doc["spec"]["entrypoint"])
        yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
        _cluster_spec_ok(doc["spec"]["rayClusterSpec"], path.name)
    elif kind == "RayService":
        serve_cfg = yaml.safe_load(doc["spec"]["serveConfigV2"])
        for app in serve_cfg["applications"]:
            module, name = app["import_path"].split(":")
            assert callable(getattr(__import__(module, fromlist=[name]), name))
            load_config(ROOT / app["args"]["config"])
        _cluster_spec_ok(doc["spec"]["rayClusterConfig"], path.name)
    else:
        pytest.fail(f"{path.name}: unexpected kind {kind}")


def test_every_job_has_a_rayjob_and_configs():
    jobs = {p.stem for p in (ROOT / "jobs").glob("*.py") if not p.stem.startswith(("bench", "gpu_"))}
    assert {"curate", "precompute", "train", "evaluate"} <= jobs
    rayjobs = {yaml.safe_load(p.read_text())["metadata"]["name"].removeprefix("medgen-") for p in KUBERAY
               if yaml.safe_load(p.read_text())["kind"] == "RayJob"}
    assert rayjobs == jobs
    for job in jobs:  # experiments have one config each under jobs/configs/experiments/
        assert (ROOT / "jobs" / "configs" / f"{job}.yaml").is_file() or \
            any((ROOT / "jobs" / "configs" / f"{job}s").glob("*.yaml")), job


def test_cluster_launcher_config():
    doc = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "max_workers"):
        assert key in doc, key
    types = doc["available_node_types"]
    assert doc["head_node_type"] in types
    for name, t in types.items():
        assert "node_config" in t and t["min_workers"] <= t["max_workers"], name
    assert sum(t["max_workers"] for t in types.values()) <= doc["max_workers"]
    assert doc["docker"]["image"]
    gpu_kinds = [n for n in types if n.startswith("gpu")]
    assert len(gpu_kinds) >= 2, "a GPU pool for CLIP/IQA and one for training/serving"


def test_runtime_env_parses():
    env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "." and env["env_vars"]["HF_HUB_OFFLINE"] == "1"
