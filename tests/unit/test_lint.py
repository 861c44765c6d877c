"""ruff (pyflakes, pycodestyle, import order, bugbear; settings in pyproject.toml) is part of the
test command, so CI enforces it."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ruff() -> list[str]:
    local = Path(sys.executable).with_name("ruff")
    return [str(local)] if local.exists() else [shutil.which("ruff") or "ruff"]


def test_tree_is_ruff_clean():
    out = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_would_catch_an_unsorted_import(tmp_path):
    """The check can fail: a file with imports out of order and an unused name is flagged."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\nprint(os.sep)\n")
    out = subprocess.run([*_ruff(), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "I001" in out.stdout and "F401" in out.stdout
