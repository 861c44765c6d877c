"""Shared fixtures: generated corpora (nothing binary committed), offline hub, local Ray on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.pop("OPENAI_API_KEY", None)  # captions use the local fake server or the metadata captioner


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    """6 videos x 16 s with known truth: off-topic, low-res, letterboxed, frozen and subtitled ones included."""
    from medgen_ray.samples.generator import make_corpus

    folder = tmp_path_factory.mktemp("corpus")
    truth = make_corpus(folder, n_videos=6, seconds=16, seed=7)
    return folder, truth


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    from medgen_ray.samples.bad import make_bad_inputs

    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="session")
def one_video(tmp_path_factory) -> Path:
    """20 s: 10 s endoscopy, a cut to 10 s of game play. 25 fps, keyframe every second."""
    from medgen_ray.samples.generator import Segment, VideoSpec, render_video

    path = tmp_path_factory.mktemp("one") / "endo_game.mp4"
    render_video(VideoSpec("endo_game", [Segment("endoscopy", 10), Segment("game", 10)], 640, 480, 25), path)
    return path


@pytest.fixture(scope="session")
def frame_probe(tmp_path_factory) -> Path:
    """Linear probe on tiny-CLIP features of generated frames (not those of the test corpora)."""
    from medgen_ray.curate.classifiers import train_frame_probe
    from medgen_ray.demo import write_frame_training

    folder = tmp_path_factory.mktemp("probe")
    labels = write_frame_training(folder / "frames", n_per_class=60, seed=900)
    path = folder / "frames.probe.npz"
    report = train_frame_probe(str(labels), "clip/tiny", str(path))
    assert report.test_accuracy >= 0.9
    return path


@pytest.fixture(scope="session")
def s3():
    """An S3-compatible server (moto's server mode) on 127.0.0.1 with bucket `medgen-test`.
    The AWS_* variables are set before Ray starts (ray_cluster depends on this fixture), so
    Ray's workers reach the same server through fsspec/s3fs."""
    import os
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("medgen-test")
    yield {"endpoint": env["AWS_ENDPOINT_URL"], "bucket": "medgen-test"}
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def ray_cluster(s3):
    """An embedded Ray on 127.0.0.1 shared by the integration tests; yields its GCS address."""
    import ray

    from medgen_ray.config import RayConfig
    from medgen_ray.core.cluster import init_ray

    init_ray(RayConfig(num_cpus=2))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


TINY_MODELS = [
    "curate.classify.clip_model=clip/tiny",
    "curate.quality.aesthetic.model=aesthetic/tiny",
    # 2 CPUs: tiny-model actors take a fraction of a core so two tasks run beside them
    "curate.classify.pool.num_cpus=0.25",
    "curate.quality.pool.num_cpus=0.25",
    "curate.task_num_cpus=0.75",
]


def tiny_overrides(output: Path, uris: list[str]) -> list[str]:
    return [f"curate.output={output}", f"curate.source.uris=[{','.join(uris)}]", "ray.num_cpus=2", *TINY_MODELS]


def scrape_metrics(pattern: str, timeout: float = 40.0) -> list[str]:
    """Lines of the local Ray node's Prometheus endpoint matching `pattern` (regex), waiting for
    the next export (Ray exports every few seconds)."""
    import re
    import time
    import urllib.request

    import ray

    port = ray.nodes()[0]["MetricsExportPort"]
    deadline = time.monotonic() + timeout
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        lines = [line for line in text.splitlines() if not line.startswith("#") and re.search(pattern, line)]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(2)
