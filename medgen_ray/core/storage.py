"""Where data lives: local paths made absolute, fsspec filesystems handed to pyarrow / Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def absolute_local(path: str) -> str:
    """A local path made absolute (what workers in other folders and later jobs read);
    URIs (`s3://`, ...) unchanged."""
    return path if "://" in path else str(Path(path).absolute())


def arrow_fs(fs):
    """pyarrow filesystem for an fsspec one (Ray Data's readers want pyarrow's)."""
    import pyarrow.fs as pafs

    if getattr(fs, "protocol", None) in ("file", ("file", "local"), "local") or "file" in (fs.protocol or ()):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def storage_for(path: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train's RunConfig: remote URIs go through
    fsspec, so credentials and endpoints (AWS_ENDPOINT_URL, ...) work as for every other path."""
    if "://" not in path or path.startswith("file://"):
        return absolute_local(path.removeprefix("file://")), None
    import fsspec
    import pyarrow.fs as pafs

    fs, root = fsspec.core.url_to_fs(path)
    return root, pafs.PyFileSystem(pafs.FSSpecHandler(fs))
