"""Ray start-up and device choice.

An embedded cluster listens on 127.0.0.1 only: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` must be
set before the first `import ray` anywhere in the process, so it is set when this module is
imported (entry points import it before anything that imports Ray).
"""

from __future__ import annotations

import os
import sys

from medgen_ray.config import RayConfig
from medgen_ray.core.ports import free_port
from medgen_ray.core.ray_compat import (
    block_open_cluster,
    loopback_init_kwargs,
    own_api_server,
    serve_replica_module,
    session_logs_dir,
)

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def init_ray(cfg: RayConfig) -> None:
    """Connect to a cluster (config or RAY_ADDRESS), or start an embedded one on 127.0.0.1."""
    import ray

    from medgen_ray.core.console import quiet_ray, verbose

    if ray.is_initialized():
        return
    console = quiet_ray()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **console)
        return
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # inherited by the processes ray.init starts
    block_open_cluster()
    dashboard_port = free_port()  # reserved now: the workers' state API asks it
    env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "MEDGEN_CACHE") if k in os.environ}
    ray.init(
        address="local",  # never attach to another `ray start` cluster found on this machine
        num_cpus=cfg.num_cpus,
        include_dashboard=cfg.include_dashboard,
        **loopback_init_kwargs(),
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        runtime_env={"env_vars": {**env, **own_api_server(dashboard_port)}},
        **console,
    )
    if not verbose():
        logs = session_logs_dir()
        print(f"medgen: Ray started on 127.0.0.1; its logs (and -v for them here): {logs}", file=sys.stderr)


def keep_serve_replica_on_loopback() -> None:
    """On a loopback-only cluster (this node's address is 127.0.0.1), make this Serve replica's
    inter-deployment gRPC server bind 127.0.0.1 too. Ray Serve 2.60 binds it to [::]:0 whatever
    the cluster (ray/serve/_private/replica.py, Replica._on_initialized), which would listen on
    every interface. Called from our deployments' constructors, which run before that server starts."""
    import ray

    replica = serve_replica_module()
    if not ray.is_initialized() or ray.util.get_node_ip_address() != "127.0.0.1":
        return
    original = replica.add_port_to_grpc_server
    if getattr(original, "medgen_loopback", False):
        return

    def bind_loopback(server, address: str):
        host, _, port = address.rpartition(":")
        return original(server, f"127.0.0.1:{port}" if host in ("[::]", "0.0.0.0", "") else address)

    bind_loopback.medgen_loopback = True
    replica.add_port_to_grpc_server = bind_loopback


def pick_device(num_gpus: float) -> str:
    """'cuda' when the stage was given GPUs and one is visible, else 'cpu'."""
    import torch

    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"
