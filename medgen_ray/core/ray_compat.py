"""Every private Ray name the project uses, behind one version check.

The project reaches into Ray 2.60's private modules in a few places (the loopback-only embedded
cluster, the Serve replica's gRPC bind, Ray Data's console, the Serve client) and into
diffusers 0.42's pipeline internals. Private names change between minor releases without
notice, so the installed versions are checked when this module is imported (every job imports
it through `core.cluster` before Ray starts) and an unsupported one fails with one line naming
the supported range. The ranges are pyproject.toml's bounds (tests/unit/test_lock.py checks
they agree); scripts/lock-cpu.txt pins the exact versions CI tests.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from medgen_ray.core.errors import UnsupportedVersion

# distribution -> (lowest supported, first unsupported); minor ranges that were tested
SUPPORTED = {"ray": ("2.60", "2.61"), "diffusers": ("0.42", "0.43")}
# loggers of Ray's whose expected notices the console filters (names, not imports)
RAY_DATA_PROGRESS_LOGGER = "ray.data._internal.progress"
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def check_version(dist: str, version: str | None = None) -> str:
    """The installed version of `dist` (or `version`), or UnsupportedVersion naming the range."""
    from packaging.version import Version

    low, high = SUPPORTED[dist]
    found = version if version is not None else metadata.version(dist)
    if not Version(low) <= Version(found) < Version(high):
        raise UnsupportedVersion(
            f"medgen_ray needs {dist}>={low},<{high} (it uses {dist}'s private names, all in "
            f"medgen_ray/core/ray_compat.py or cited there); {dist} {found} is installed: "
            "reinstall from the lock with `bash scripts/install.sh`")
    return found


def check_versions() -> dict[str, str]:
    """Every supported range checked; {dist: installed version}."""
    return {dist: check_version(dist) for dist in SUPPORTED}


VERSIONS = check_versions()


def block_open_cluster() -> None:
    """Make `ray.init` refuse to start a cluster that listens on every interface. Ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when it is first imported, so a program that imported
    Ray before us (even `from ray import serve`) has the open default: set the constant itself."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def loopback_init_kwargs() -> dict[str, Any]:
    """`ray.init` arguments that put this node's address on 127.0.0.1."""
    return {"_node_ip_address": "127.0.0.1"}


def own_api_server(port: int) -> dict[str, str]:
    """Worker environment that points Ray's state API at this embedded cluster's own dashboard
    port. Without it a worker looks the API server up in /tmp/ray/ray_current_cluster, which any
    earlier `ray start` on the machine leaves behind: Ray Train 2.60's PlacementGroupCleaner
    (ray/train/v2/_internal/execution/controller/placement_group_cleaner.py) then waits 40 s on
    that dead cluster's address, and every training run stalled 12 s at its end (its controller's
    stop timeout) with an ERROR in its log. With the dashboard off the query now fails at once,
    as it does on a machine without that file. `RAY_API_SERVER_ADDRESS` is read by
    ray/dashboard/utils.py, get_address_for_submission_client."""
    return {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}


def session_logs_dir() -> str:
    """The running session's log folder ('' when Ray does not say)."""
    import ray._private.worker as worker

    return getattr(worker._global_node, "get_logs_dir_path", lambda: "")()


def serve_replica_module() -> Any:
    """Ray Serve's replica module (ray/serve/_private/replica.py), whose gRPC bind we narrow."""
    from ray.serve._private import replica

    return replica


def serve_client(required: bool = True) -> Any:
    """The running Serve controller's client; None when none runs and `required` is false."""
    from ray.serve.context import _get_global_client

    return _get_global_client() if required else _get_global_client(raise_if_no_controller_running=False)


def configure_ray_data_logging() -> None:
    """Make Ray Data re-read RAY_DATA_LOGGING_CONFIG (it reads it once, at import)."""
    from ray.data._internal.logging import configure_logging

    configure_logging()
