#!/usr/bin/env bash
# The main job on the bundled sample data, on a fresh Debian 12 machine: installs what is
# missing, builds cartscope (release) and describes each sample of sample_data/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/cartscope"
tail -n +2 sample_data/manifest.csv | while IFS=, read -r sample_id path _rest; do
  echo "== $sample_id"
  "$bin" info "sample_data/$path"
done
