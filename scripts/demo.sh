#!/usr/bin/env bash
# The main job on the bundled sample data, on a fresh Debian 12 machine: installs what is
# missing, builds cartscope (release), describes each sample of sample_data/ and runs the
# standard pipeline on it. Results go to demo_output/<sample_id>/ (result.h5ad, summary.json,
# config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/cartscope"
out="${DEMO_OUTPUT:-demo_output}"
tail -n +2 sample_data/manifest.csv | while IFS=, read -r sample_id path _rest; do
  echo "== $sample_id"
  "$bin" info "sample_data/$path"
  "$bin" run "sample_data/$path" -o "$out/$sample_id" --backend cpu
done
echo "results in $out/: open any result.h5ad with scanpy (sc.read_h5ad) and plot at once"
