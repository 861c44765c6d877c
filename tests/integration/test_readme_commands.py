"""The README's curation commands, run as written (the smoke folder moved to a temp dir): the
smoke config must work offline on 2 cores."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "/tmp/medgen_smoke"


def _readme_commands(prefix: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.startswith(prefix)]


def test_readme_smoke_curation_runs_offline_on_two_cores(tmp_path):
    samples = _readme_commands("medgen samples --out /tmp/medgen_smoke")
    curate = _readme_commands("medgen curate --config jobs/configs/curate_smoke.yaml")
    assert len(samples) == 1 and len(curate) == 1, (samples, curate)
    medgen = [sys.executable, "-m", "medgen_ray.cli"]
    for line, extra in ((samples[0], []), (curate[0], [f"curate.source.uris=[{tmp_path}/corpus]"])):
        args = shlex.split(line.replace(SMOKE, str(tmp_path)))[1:] + extra
        out = subprocess.run(medgen + args, cwd=ROOT, capture_output=True, text=True, timeout=900,
                             env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert out.returncode == 0, (line, out.stdout[-3000:], out.stderr[-3000:])
    console = (out.stdout + out.stderr).splitlines()  # the curation's: one progress display and its own lines
    assert len(console) <= 20, console
    assert sum(ln.startswith("curate: ") and " sources · kept " in ln for ln in console) >= 1, console
    noise = ("logging_progress", "issue_detector", "Token authentication", "Progress bars", "Running Dataset")
    assert not [ln for ln in console if any(n in ln for n in noise)], console
    summary = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert summary["accounted"] and summary["inputs"] == int(re.search(r"--videos (\d+)", samples[0]).group(1))
    assert summary["funnel"][0]["in"] == summary["inputs"]  # tiny CLIP zero-shot: plumbing, clips may be few
    assert all(r["t_end"] - r["t_start"] <= 12.01 for r in _manifest(tmp_path / "ds"))  # the README's override


def _manifest(folder: Path) -> list[dict]:
    import pyarrow.dataset as pads

    if not (folder / "manifest").exists():
        return []
    return pads.dataset(folder / "manifest", format="parquet").to_table().to_pylist()
