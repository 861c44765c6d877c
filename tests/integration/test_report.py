"""The dataset report renders and opens in real headless Chromium with every image loaded."""

import re
import shutil
import subprocess

from medgen_ray.config import load_config
from medgen_ray.curate.dataset_report import write_dataset_report
from medgen_ray.runner import run_curate
from tests.conftest import tiny_overrides

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_report_opens_in_chromium(ray_cluster, corpus, bad_inputs, frame_probe, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium not found: scripts/install.sh installs it (apt-get, as root)"
    folder = tmp_path / "in"
    folder.mkdir()
    for p in list(corpus[0].glob("*.mp4")) + list(corpus[0].glob("*.info.json")) + [bad_inputs["rotated"]]:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "ds"
    cfg = load_config(None, tiny_overrides(out, [str(folder)]) + [f"curate.classify.probe_path={frame_probe}",
                                                                  "curate.segment.similarity_threshold=0.99"])
    run_curate(cfg)
    page = write_dataset_report(str(out), cfg.curate)
    text = page.read_text()
    assert "Dataset report" in text and "funnel.png" in text and "sheet_kept.jpg" in text
    assert "probe: rejected" in text
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chrome'}",
                          "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert loaded, dom[:500]
    n_ok, n_all = int(loaded.group(1)), int(loaded.group(2))
    assert n_all >= 5 and n_ok == n_all
