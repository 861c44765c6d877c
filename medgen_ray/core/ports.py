"""Free TCP ports on this machine (no torch, no Ray: the GPU scripts, the embedded cluster and
the demo all ask)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (a rendezvous, a dashboard, a Serve proxy)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
