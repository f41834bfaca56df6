#!/usr/bin/env bash
# Regenerates sample_data/: one responder patient (P01), the infusion product and two later
# blood draws, 2,000 barcodes x 3,000 features each, made by `cartscope simulate --vdj`, with
# each sample's TCR contig table (P01_<timepoint>_contigs.csv.gz, Cell Ranger 7 columns).
# Run from anywhere; builds cartscope first. Same seed, same matrices and contigs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/cartscope"
out=sample_data
mkdir -p "$out"
echo "sample_id,path,patient,timepoint,day,vdj" > "$out/manifest.csv"
for tp_day in infusion:0 day14:14 day90:90; do
  tp="${tp_day%%:*}"
  day="${tp_day##*:}"
  "$bin" simulate -o "$out/P01_$tp.h5ad" --cells 2000 --genes 3000 --seed 2026 \
    --patient P01 --timepoint "$tp" --day "$day" --preset responder --gzip 6 --vdj
  echo "P01_$tp,P01_$tp.h5ad,P01,$tp,$day,P01_${tp}_contigs.csv.gz" >> "$out/manifest.csv"
done
