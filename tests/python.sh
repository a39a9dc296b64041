#!/usr/bin/env bash
# The Python bindings: builds the `skiff` wheel from python/ with pip (maturin is the
# PEP 517 backend, fetched by pip) into a venv under the target directory, then runs
# pytest over python/tests/ (real appliances, images built with the real tools).
#   tests/python.sh [PYTEST ARGS]     e.g. tests/python.sh -k pool -x
#   SKIFF_PY_BUILD_ONLY=1             build and install, run no test (bench/python.sh)
#   PYTHON=python3.11                 the interpreter for the venv (default: python3)
# Prints the venv's python path last when building only.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/pyvenv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "== python venv: $venv ($("$py" --version))" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
fi
echo "== pip install ./python (maturin, release build of the extension)" >&2
# The extension's cargo build shares the target directory (and the appliance build).
CARGO_TARGET_DIR="$target" "$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./python >&2
"$venv/bin/python" -m pip install -q pytest >&2
if [ "${SKIFF_PY_BUILD_ONLY:-0}" = 1 ]; then
  echo "$venv/bin/python"
  exit 0
fi
echo "== pytest python/tests" >&2
cd python
exec "$venv/bin/python" -m pytest -q tests "$@"
