"""`medgen weights check` and the check every job runs before Ray starts: each model a job
loads, from the config alone, and whether its weights can be had offline."""

from pathlib import Path

import pytest

from medgen_ray import runner
from medgen_ray.cli import main
from medgen_ray.config import load_config
from medgen_ray.core import dataflow
from medgen_ray.models.requirements import check_weights, jobs_of_config
from medgen_ray.models.weights import WeightsUnavailable

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "jobs" / "configs").rglob("*.yaml"))


@pytest.fixture
def empty_caches(monkeypatch, tmp_path):
    """An offline machine with nothing pre-staged: empty HF, torch hub and pyiqa caches."""
    import torch
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("PYIQA_CACHE", str(tmp_path / "pyiqa"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch"))
    yield tmp_path
    torch.hub.set_dir(old)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT / "jobs" / "configs").as_posix())
def test_every_shipped_config_is_checked(path, empty_caches):
    reqs = check_weights(load_config(path), jobs_of_config(str(path)))
    assert reqs and all(r.status for r in reqs)
    missing = [r for r in reqs if not r.ok]
    if "smoke" in path.name:
        assert not missing, missing  # smoke configs run offline
    for r in missing:  # each says how to get the weight
        assert "medgen weights pull" in r.status or "evaluate.*_weights" in r.status, r


def test_local_paths_and_pulled_twins(tmp_path, empty_caches):
    from medgen_ray.models.registry import pull_weights

    pulled = pull_weights("clip/tiny", str(tmp_path / "w"))
    app = load_config(None, ["curate.quality.enabled=false", f"curate.classify.weights={pulled}"])
    assert all(r.ok for r in check_weights(app, ["curate"]))
    app = load_config(None, ["curate.quality.enabled=false", "curate.classify.clip_model=clip/vit-b-32",
                             f"curate.classify.weights={tmp_path / 'nowhere'}"])
    (req,) = check_weights(app, ["curate"])
    assert not req.ok and "does not exist" in req.status


def test_a_job_with_a_missing_weight_fails_before_ray(monkeypatch, tmp_path, empty_caches):
    """The curation used to fail 45 s in, inside an actor; now it stops in the driver, naming
    the field and the pull command, and no Ray process starts."""
    (tmp_path / "a.mp4").write_bytes(b"\0")
    monkeypatch.setattr(dataflow, "init_ray", lambda *_: pytest.fail("Ray started before the weights were checked"))
    app = load_config(None, [f"curate.source.uris=[{tmp_path}]", f"curate.output={tmp_path / 'out'}",
                             "curate.classify.clip_model=clip/tiny"])  # aesthetic/laion is the default
    with pytest.raises(WeightsUnavailable, match=r"curate.quality.aesthetic.model = aesthetic/laion.*"
                                                  r"medgen weights pull aesthetic/laion"):
        runner.run_curate(app)


def test_cli_exit_code(empty_caches, capsys):
    assert main(["weights", "check", "--config", str(ROOT / "jobs/configs/curate_smoke.yaml")]) == 0
    assert main(["weights", "check", "--config", str(ROOT / "jobs/configs/evaluate.yaml")]) == 1
    assert "MISS evaluate   evaluate.dino_model" in capsys.readouterr().out


def test_cli_job_with_a_missing_weight_exits_2_with_the_pull_command(tmp_path, empty_caches, capsys):
    (tmp_path / "a.mp4").write_bytes(b"\0")
    code = main(["curate", f"curate.source.uris=[{tmp_path}]", f"curate.output={tmp_path / 'out'}",
                 "curate.classify.clip_model=clip/tiny"])
    err = capsys.readouterr().err
    assert code == 2 and "medgen weights pull aesthetic/laion" in err and "Traceback" not in err


def test_laion_head_brings_its_vit_l_14_in_every_job(empty_caches):
    """The LAION head sits on CLIP ViT-L/14: curation and Med-VBench both list it."""
    app = load_config(None, ["evaluate.dimensions=[aesthetic]", "evaluate.videos=/x"])
    for job in ("curate", "evaluate"):
        assert "clip/vit-l-14" in {r.model for r in check_weights(app, [job])}, job


def test_med_vbench_models_pull_from_their_sources_and_load(tmp_path, empty_caches, monkeypatch):
    """`medgen weights pull raft/things` fetches VBench's source (a zip holding
    models/raft-things.pth, here served on 127.0.0.1), keeps the named file, and the job's check
    and loader accept the pulled folder; a hub source offline fails naming the model."""
    import http.server
    import threading
    import zipfile

    import torch

    from medgen_ray.evaluate.models import load_flow, raft_things
    from medgen_ray.models import requirements

    site = tmp_path / "site"
    site.mkdir()
    state = {f"module.{k}": v for k, v in raft_things().state_dict().items()}
    torch.save(state, tmp_path / "raft-things.pth")
    with zipfile.ZipFile(site / "models.zip", "w") as z:
        z.write(tmp_path / "raft-things.pth", "models/raft-things.pth")
        z.writestr("models/raft-small.pth", b"other")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(site))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setitem(requirements.EVAL_SOURCES, "raft/things",
                            (f"http://127.0.0.1:{server.server_port}/models.zip", "raft-things.pth"))
        assert main(["weights", "pull", "raft/things", "--dest", str(tmp_path / "w")]) == 0
    finally:
        server.shutdown()
    pulled = tmp_path / "w" / "raft__things"
    assert sorted(p.name for p in pulled.iterdir()) == ["raft-things.pth"]
    app = load_config(None, ["evaluate.videos=/x", "evaluate.dimensions=[dynamic_degree]", f"evaluate.flow_weights={pulled}"])
    assert all(r.ok for r in check_weights(app, ["evaluate"]))
    loaded = load_flow("raft/things", str(pulled)).net.state_dict()
    assert all(torch.equal(loaded[k.removeprefix("module.")], v) for k, v in state.items())
    app = load_config(None, ["evaluate.videos=/x", "evaluate.dimensions=[dynamic_degree]"])
    (req,) = check_weights(app, ["evaluate"])
    assert not req.ok and "medgen weights pull raft/things" in req.status
    with pytest.raises(WeightsUnavailable, match="amt/s: could not fetch"):
        requirements.pull_eval_weights("amt/s", str(tmp_path / "w"))


def test_weights_list_shows_every_model_pull_and_check_accept(capsys, monkeypatch, tmp_path):
    """Issue 22, bug 3: the Med-VBench models were pullable and checked but not listed. One list:
    every name `weights list` prints as pullable is taken by `weights pull`, and every name pull
    takes is listed."""
    from medgen_ray.cli import main
    from medgen_ray.models import requirements
    from medgen_ray.models.registry import REGISTRY

    assert main(["weights", "list"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name in ("dino/vit-b-16", "musiq/spaq", "raft/things", "amt/s", "aesthetic/vbench"):
        assert name in listed and "eval" in listed[name], name
    assert set(REGISTRY) <= set(listed)
    pulled = []
    monkeypatch.setattr(requirements, "pull_eval_weights", lambda n, d: pulled.append(n) or f"{d}/{n}")
    monkeypatch.setattr("medgen_ray.models.registry.pull_weights", lambda n, d: pulled.append(n) or f"{d}/{n}")
    pullable = [m.name for m in requirements.list_models() if m.pullable]
    assert main(["weights", "pull", *pullable, "--dest", str(tmp_path)]) == 0
    assert pulled == pullable
    not_pullable = [m.name for m in requirements.list_models() if not m.pullable]
    assert not_pullable and all(n in listed and "nothing to pull" in listed[n] for n in not_pullable)
    assert main(["weights", "pull", not_pullable[0], "--dest", str(tmp_path)]) == 2
