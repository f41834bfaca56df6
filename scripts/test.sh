#!/usr/bin/env bash
# Runs every cartscope test on a fresh Debian 12 machine: installs what is missing, then
# `cargo test` (unit, integration, anndata interop, robustness and doc tests), then the Python
# package's tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --locked "$@"
# The Python package (python/): `pip install .` as a user runs it, through maturin, but with
# the dev profile (its dependencies are the test build's, already compiled; the library itself
# is optimised, see Cargo.toml), then its tests against scanpy with pytest.
MATURIN_PEP517_ARGS="--profile dev --strip" "$CARTSCOPE_PYTHON" -m pip install \
  --disable-pip-version-check -q --no-deps --force-reinstall .
"$CARTSCOPE_PYTHON" -m pytest -q -p no:cacheprovider python/tests
