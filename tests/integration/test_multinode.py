"""A real multi-node Ray cluster on loopback (a head and two worker nodes started here with
`ray start`), the curation job submitted with `ray job submit`, and one worker node killed
midway (SIGKILL of its raylet and workers): the job must finish with every source accounted
for, no clip lost and none written twice."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # loopback test cluster: no token (a token-protected cluster would need it on every node)
    env.update(RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


class LoopbackCluster:
    def __init__(self, tmp: Path):
        self.gcs, self.dash = _port(), _port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.tmp = tmp
        common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
        try:
            self._start("head", ["--head", f"--port={self.gcs}", "--num-cpus=0", "--include-dashboard=true",
                                 "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash}", *common])
            self._wait_dashboard()
            self._wait_nodes(1)
            self.node_ids: dict[str, str] = {}
            for n, name in enumerate(("node_a", "node_b"), start=2):
                # one at a time: two raylets registering at once on one host can time out
                before = self.alive_ids()
                self._start(name, [f"--address=127.0.0.1:{self.gcs}", "--num-cpus=1", *common])
                self._wait_nodes(n)
                (self.node_ids[name],) = self.alive_ids() - before
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, args: list[str]) -> None:
        # every fixed-default port free-picked: an embedded Ray of the same test session may
        # hold the defaults (dashboard agent 52365, ...)
        args = [*args, f"--dashboard-agent-listen-port={_port()}", f"--dashboard-agent-grpc-port={_port()}",
                f"--runtime-env-agent-port={_port()}", f"--metrics-export-port={_port()}",
                f"--ray-client-server-port={_port()}"]
        log = open(self.tmp / f"{name}.log", "w")
        # own process group: killing it takes the raylet and every worker of that node
        self.procs[name] = subprocess.Popen([RAY, "start", *args], env=_env(), stdout=log, stderr=log,
                                            start_new_session=True)

    def _wait_dashboard(self, timeout: float = 90) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.dash}/api/version", timeout=3)
                return
            except OSError:
                time.sleep(1)
        raise TimeoutError("the head's dashboard did not start")

    def client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(f"http://127.0.0.1:{self.dash}")

    def _api(self, path: str) -> list[dict]:
        import urllib.request

        data = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.dash}{path}", timeout=10).read())
        return data["data"]["result"]["result"]

    def alive_ids(self) -> set[str]:
        return {n["node_id"] for n in self._api("/api/v0/nodes?limit=100") if n["state"] == "ALIVE"}

    def alive_nodes(self) -> int:
        return len(self.alive_ids())

    def running_tasks_on(self, node_id: str) -> list[str]:
        tasks = self._api("/api/v0/tasks?limit=10000&filter_keys=state&filter_predicates=%3D&filter_values=RUNNING")
        return [t["name"] for t in tasks if t.get("node_id") == node_id]

    def _wait_nodes(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.alive_nodes() >= n:
                    return
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"{n} nodes did not join")

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)

    def stop(self) -> None:
        import psutil

        for name in reversed(list(self.procs)):
            try:
                os.killpg(self.procs[name].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # anything of this cluster that left the process groups (GCS, raylets, workers)
        marks = (f"127.0.0.1:{self.gcs}", f"--gcs_server_port={self.gcs}")
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if any(m in cmd for m in marks):
                try:
                    proc.kill()
                except psutil.Error:
                    pass


@pytest.fixture()
def cluster(tmp_path):
    c = LoopbackCluster(tmp_path)
    yield c
    c.stop()


def _parts(out: Path) -> list[Path]:
    return list((out / "manifest").glob("part-*.parquet")) + list((out / "rejects").glob("part-*.parquet"))


def test_curate_job_survives_a_lost_worker_node(cluster, corpus, frame_probe, tmp_path):
    from medgen_ray.curate.sink import source_progress

    src = tmp_path / "corpus"
    src.mkdir()
    for copy in range(2):  # 12 sources: long enough to lose a node in the middle
        for p in sorted(corpus[0].glob("*.mp4"))[:6]:
            shutil.copy(p, src / f"{p.stem}_{copy}.mp4")
            side = p.with_suffix(".info.json")
            if side.exists():
                shutil.copy(side, src / f"{p.stem}_{copy}.info.json")
    out = tmp_path / "dataset"
    overrides = [f"curate.output={out}", f"curate.source.uris=[{src}]", "curate.classify.clip_model=clip/tiny",
                 f"curate.classify.probe_path={frame_probe}", "curate.segment.similarity_threshold=0.99",
                 "curate.classify.pool.num_cpus=0.1", "curate.task_num_cpus=0.5", "curate.quality.enabled=false",
                 "curate.write_batch_rows=1"]
    entry = f"{sys.executable} {ROOT / 'jobs' / 'curate.py'} --config {ROOT / 'jobs/configs/curate_smoke.yaml'} " \
            + " ".join(overrides)
    for _ in range(30):  # the head's job agent comes up a little after its dashboard
        submit = subprocess.run([RAY, "job", "submit", f"--address=http://127.0.0.1:{cluster.dash}", "--no-wait",
                                 "--runtime-env-json", json.dumps({"env_vars": {"HF_HUB_OFFLINE": "1"}}), "--",
                                 *entry.split()], env=_env(), capture_output=True, text=True, timeout=120)
        if submit.returncode == 0 or "No available agent" not in submit.stderr:
            break
        time.sleep(2)
    assert submit.returncode == 0, submit.stderr[-2000:]
    job_id = re.search(r"raysubmit_\w+", submit.stdout + submit.stderr).group(0)
    client = cluster.client()

    deadline = time.monotonic() + 300
    while not cluster.running_tasks_on(cluster.node_ids["node_b"]):
        # midway: the job running and node B busy with its share
        status = client.get_job_status(job_id)
        assert status.value not in ("FAILED", "STOPPED"), client.get_job_logs(job_id)[-3000:]
        assert status.value != "SUCCEEDED", "the job ended before a node could be killed"
        assert time.monotonic() < deadline, "node B got no task in time"
        time.sleep(0.3)
    busy = cluster.running_tasks_on(cluster.node_ids["node_b"])
    cluster.kill("node_b")
    while client.get_job_status(job_id).value not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline + 300, "the job did not finish after the node loss"
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id).value == "SUCCEEDED", logs[-4000:]
    assert busy, "node B ran nothing when it was killed"
    gone = time.monotonic() + 120
    while cluster.alive_nodes() != 2:  # the head notices the lost node (health checks)
        assert time.monotonic() < gone, "the killed node is still reported alive"
        time.sleep(2)

    finished, unfinished = source_progress(str(out))
    assert len(finished) == 12 and not unfinished
    keys = []
    for p in _parts(out):
        t = pq.read_table(p, columns=["video_id", "clip_id"]).to_pydict()
        keys += list(zip(t["video_id"], t["clip_id"]))
    assert len(keys) == len(set(keys)), "a clip was written twice"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accounted"] and summary["inputs"] == 12
