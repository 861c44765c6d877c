"""Weights on disk: the seed of tiny twins, the `random` marker, and staging remote weights
into the local cache. Imported by the registry and by the model builders (never the reverse)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import fsspec

TINY_SEED = 0  # every tiny twin is seeded from here: random but fixed
WEIGHTS_FILE = "weights.pt"
RANDOM = "random"  # weights="random": full-size architecture, random init (benchmarks, no download)



class WeightsUnavailable(RuntimeError):
    """A model's weights are not on disk, in the cache, or reachable."""


def cache_root() -> Path:
    """Root of the local weights cache ($MEDGEN_CACHE, default ~/.cache/medgen_ray)."""
    return Path(os.environ.get("MEDGEN_CACHE", Path.home() / ".cache" / "medgen_ray"))


def pull_folder(name: str) -> Path:
    """The local folder `weights pull` fills for `name` before publishing it."""
    tmp = cache_root() / "pull" / name.replace("/", "__")
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def publish_pull(name: str, tmp: Path, dest: str) -> str:
    """Copy a filled pull folder to dest/<name> (local or s3://); returns that URI."""
    target = dest.rstrip("/") + "/" + name.replace("/", "__")
    fs, root = fsspec.core.url_to_fs(target)
    fs.makedirs(root, exist_ok=True)
    fs.put(str(tmp) + "/", root, recursive=True)
    return target


def stage_weights(uri: str) -> str:
    """Local path for `uri`; remote folders/files are copied into the cache once."""
    if "://" not in uri or uri.startswith("file://"):
        local = uri.removeprefix("file://")
        if not Path(local).exists():
            raise WeightsUnavailable(f"weights path {uri!r}: not found")
        return local
    dest = cache_root() / "staged" / hashlib.sha1(uri.encode()).hexdigest()[:16]
    marker = dest / ".complete"
    if not marker.exists():
        fs, path = fsspec.core.url_to_fs(uri)
        if not fs.exists(path):
            raise WeightsUnavailable(f"weights {uri!r}: not found")
        dest.mkdir(parents=True, exist_ok=True)
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", str(dest), recursive=True)
        else:
            fs.get(path, str(dest / Path(path).name))
        marker.touch()
    return str(dest)


def weights_file(path: str) -> str:
    """The weights file of a tiny twin saved by `weights pull` (a folder holds WEIGHTS_FILE)."""
    p = Path(path)
    return str(p / WEIGHTS_FILE) if p.is_dir() else str(p)
