#!/usr/bin/env bash
# Creates the virtual environment (default .venv, or $MEDGEN_VENV) and installs medgen_ray with
# its test extras from the lock: scripts/lock-cpu.txt pins every package of the CPU stack
# (regenerate it with scripts/lock.sh), so a fresh clone and CI get exactly what was tested. On
# the project's CPU machines the torch pair comes from local wheels (scripts/constraints-cpu.txt);
# GPU clusters use their image's torch (see cluster/).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MEDGEN_VENV:-.venv}"
PY="${PYTHON:-python3}"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
# Label Studio (the doctors' study's round-trip test) in its own environment: its pins clash with ours.
# Installed beside the main environment (pip uses one core; the machines have two), waited for below.
LS_VENV="${MEDGEN_LABEL_STUDIO_VENV:-.venv-labelstudio}"
ls_pid=""
if [ ! -x "$LS_VENV/bin/label-studio" ]; then
  { "$PY" -m venv "$LS_VENV" && "$LS_VENV/bin/pip" install -q --disable-pip-version-check \
      -r scripts/lock-labelstudio.txt; } &
  ls_pid=$!
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"${PIP[@]}" -c scripts/lock-cpu.txt 'setuptools<81' wheel
"${PIP[@]}" -r scripts/lock-cpu.txt
"${PIP[@]}" --no-deps -e .
"${PIP[@]}" --no-deps -r scripts/requirements-nodeps.txt
# Headless Chromium for the report page's browser test (Debian package; needs root).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "install.sh: could not install chromium" >&2
fi
if [ -n "$ls_pid" ] && ! wait "$ls_pid"; then
  echo "install.sh: the Label Studio environment ($LS_VENV) did not install" >&2
  exit 1
fi
