#!/usr/bin/env bash
# Wheels the lent GPU machine lacks for jobs/gpu_check.py (its python3 3.12 holds torch,
# transformers, peft, pyarrow, fsspec, opencv; not diffusers, pydantic, PyAV, open_clip), at the
# versions of our lock, downloaded here into .whl/ (ignored by git; carried by the device call).
# On the machine: python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#                 && PYTHONPATH=/tmp/site python3 jobs/gpu_check.py --out $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
names="diffusers pydantic pydantic-core annotated-types typing-inspection av open-clip-torch ftfy wcwidth
       importlib-metadata"
for name in $names; do
  pin=$(grep -i "^${name}==" scripts/lock-cpu.txt)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "$pin"
done
ls -la .whl
