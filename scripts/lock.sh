#!/usr/bin/env bash
# Regenerates scripts/lock-cpu.txt, the fully pinned CPU stack that scripts/install.sh and CI
# install from: pip-tools resolves pyproject.toml (with the test extra) under the local torch pair
# of scripts/constraints-cpu.txt. Run it after changing a dependency, then run the tests
# (tests/unit/test_lock.py fails while the lock and pyproject.toml disagree).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${MEDGEN_LOCK_VENV:-${TMPDIR:-/tmp}/medgen-pip-tools}"
[ -x "$TOOLS/bin/pip-compile" ] || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q 'pip-tools==7.6.2'; }
"$TOOLS/bin/pip-compile" --quiet --resolver=backtracking --extra test --strip-extras --allow-unsafe \
  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
  -c scripts/constraints-cpu.txt --output-file scripts/lock-cpu.txt pyproject.toml
