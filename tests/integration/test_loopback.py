"""An embedded cluster listens on loopback only, even in a program that imported Ray before
medgen_ray (the old `medgen serve` path did `from ray import serve` first): every listening
socket of the Ray processes and the Serve proxy, checked from the process table."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import ipaddress, json, sys, time
    from ray import serve  # Ray first, before medgen_ray could set anything
    import psutil
    from medgen_ray.config import load_config
    from medgen_ray.serve.launch import start_serve

    app = load_config(None, ["ray.num_cpus=1", "serve.port=" + sys.argv[1], "serve.store=" + sys.argv[2],
                             "serve.generator.num_cpus=0.1", "serve.generator.num_gpus=0",
                             "serve.default_height=32", "serve.default_width=32", "serve.default_frames=5"])
    start_serve(app)
    time.sleep(2)
    me = psutil.Process()
    listening = []
    for p in [me, *me.children(recursive=True)]:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    listening.append([p.name(), c.laddr.ip, c.laddr.port])
        except psutil.Error:
            pass
    print("LISTEN " + json.dumps(listening))
    serve.shutdown()
""")


def _loopback(ip: str) -> bool:
    import ipaddress

    a = ipaddress.ip_address(ip.split("%")[0])
    return a.is_loopback or bool(getattr(a, "ipv4_mapped", None) and a.ipv4_mapped.is_loopback)


def test_embedded_ray_and_serve_listen_on_loopback_only(tmp_path):
    from tests.integration.test_serve import _free_port

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(_free_port()), str(tmp_path / "store")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("LISTEN ")), None)
    assert line is not None, out.stdout[-3000:] + out.stderr[-3000:]
    import json

    sockets = json.loads(line[len("LISTEN "):])
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names and len(sockets) >= 5, sockets  # the check saw the cluster
    public = [s for s in sockets if not _loopback(s[1])]
    assert not public, f"listening beyond loopback: {public}"


def test_loopback_rule_reads_mapped_addresses():
    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("::ffff:127.0.0.1")
    assert not _loopback("0.0.0.0") and not _loopback("::") and not _loopback("192.0.2.2")


def test_workers_ask_their_own_cluster_for_state(ray_cluster):
    """Ray's state API in a worker (Ray Train's PlacementGroupCleaner polls it for its controller)
    resolves this embedded cluster's own dashboard address, never the cluster that a stale
    /tmp/ray/ray_current_cluster names (an earlier `ray start` leaves it behind; the cleaner then
    waited 40 s on that address and every training run stalled 12 s at its end). With the
    dashboard off the query fails at once with Ray's "API server" error."""
    import ray
    from ray.util.state.exception import RayStateApiException

    @ray.remote(num_cpus=0)
    def ask() -> tuple[str, str]:
        from ray.dashboard.utils import get_address_for_submission_client
        from ray.util.state import get_actor

        address = get_address_for_submission_client(None)
        try:
            get_actor("ff" * 16, timeout=5)
        except RayStateApiException as e:
            return address, type(e).__name__
        return address, "answered"

    address, outcome = ray.get(ask.remote())
    assert address.startswith("http://127.0.0.1:") and int(address.rsplit(":", 1)[1]) > 0
    assert outcome == "ServerUnavailable"  # dashboard off: nothing listens on its reserved port
