#!/usr/bin/env bash
# The main job on the bundled sample data, on a fresh Debian 12 machine: installs what is
# missing, builds cartscope (release), describes each sample of sample_data/ and runs the
# whole batch of the manifest (one patient, three time points): per sample the scanpy pipeline
# with Leiden, UMAP and the CAR-T report in demo_output/samples/<sample_id>/ (result.h5ad,
# summary.json, summary.csv, report.html, config.toml), and across samples
# demo_output/batch_summary.csv, persistence.csv and batch_report.html, and from the samples'
# TCR contigs (manifest column vdj) clonotypes.parquet and clones.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/cartscope"
out="${DEMO_OUTPUT:-demo_output}"
tail -n +2 sample_data/manifest.csv | while IFS=, read -r sample_id path _rest; do
  echo "== $sample_id"
  "$bin" info "sample_data/$path"
done
"$bin" batch sample_data/manifest.csv -o "$out" --jobs 1
echo "results in $out/: batch_report.html and persistence.csv across time points, clones.csv and"
echo "clonotypes.parquet for the TCR clones; per sample"
echo "samples/<sample_id>/report.html, and result.h5ad to open with scanpy (sc.read_h5ad) and plot at once"
