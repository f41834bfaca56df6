#!/usr/bin/env bash
# Runs every cartscope test on a fresh Debian 12 machine: installs what is missing, then
# `cargo test` (unit, integration, anndata interop, robustness and doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --locked "$@"
