"""The lock (scripts/lock-cpu.txt) against pyproject.toml and the installed packages, and the
version check that guards the private Ray names (core/ray_compat.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "scripts" / "lock-cpu.txt").read_text().splitlines():
        m = PIN.match(line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _pyproject_requirements() -> list[Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def disagreements(reqs: list[Requirement], pins: dict[str, str]) -> list[str]:
    """Every requirement the lock does not pin, or pins outside its range."""
    bad = []
    for r in reqs:
        got = pins.get(canonicalize_name(r.name))
        if got is None:
            bad.append(f"{r}: not in the lock")
        elif not r.specifier.contains(Version(got), prereleases=True):
            bad.append(f"{r}: the lock pins {got}")
    return bad


def test_the_lock_pins_every_requirement_of_pyproject_within_its_range():
    """Run scripts/lock.sh after changing pyproject.toml: until then this fails."""
    assert not disagreements(_pyproject_requirements(), _lock())


def test_the_disagreement_check_can_fail():
    pins = _lock()
    assert disagreements([Requirement("ray>=2.61")], pins) == [f"ray>=2.61: the lock pins {pins['ray']}"]
    assert disagreements([Requirement("not-a-dependency-of-ours>=1")], pins)


def test_the_installed_packages_are_the_locks():
    """CI tests what a fresh clone gets: every pinned package is installed at its pin."""
    off = {}
    for name, version in _lock().items():
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            found = None
        if found is None or Version(found) != Version(version):
            off[name] = (version, found)
    assert not off, f"installed packages differ from scripts/lock-cpu.txt (run scripts/install.sh): {off}"


def test_the_version_check_names_pyprojects_range():
    """core/ray_compat.py's supported ranges are pyproject.toml's bounds."""
    from medgen_ray.core.ray_compat import SUPPORTED

    reqs = {canonicalize_name(r.name): r for r in _pyproject_requirements()}
    for dist, (low, high) in SUPPORTED.items():
        assert str(reqs[dist].specifier) in (f">={low},<{high}", f"<{high},>={low}"), dist


@pytest.mark.parametrize("version", ["2.59.1", "2.61.0", "3.0.0"])
def test_an_unsupported_ray_fails_with_one_line_naming_the_range(version, monkeypatch):
    import importlib

    from medgen_ray.core import ray_compat
    from medgen_ray.core.errors import UnsupportedVersion

    with pytest.raises(UnsupportedVersion, match=rf"ray>=2\.60,<2\.61 .* ray {re.escape(version)} is installed"):
        ray_compat.check_version("ray", version)
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: version if d == "ray" else real(d))
    with pytest.raises(UnsupportedVersion):
        importlib.reload(ray_compat)  # checked at import
    monkeypatch.undo()
    importlib.reload(ray_compat)
    assert ray_compat.check_version("ray") == real("ray")


def test_the_cli_says_the_range_in_one_line_when_ray_is_unsupported(tmp_path):
    """A job run with an unsupported Ray stops before anything starts, with one line, exit 2."""
    code = ("import importlib.metadata as m; real = m.version; "
            "m.version = lambda d: '2.70.0' if d == 'ray' else real(d); "
            "from medgen_ray.cli import main; raise SystemExit(main(['precompute', 'precompute.dataset=nowhere']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("medgen: error: medgen_ray needs ray>=2.60,<2.61") and "ray 2.70.0 is installed" in lines[-1]
    assert "Traceback" not in out.stderr
