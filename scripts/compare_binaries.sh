#!/usr/bin/env bash
# Runs two cartscope binaries on the same inputs and options and compares every output with
# scripts/compare_runs.py (result.h5ad bit for bit, tables byte for byte, summary.json and
# report.html without their timings). Proves that a change (a refactoring, a dependency
# update) left the results alone. Exit 0 when every configuration is identical.
#
# Usage: scripts/compare_binaries.sh OLD_BINARY NEW_BINARY
#   PYTHON   a python with h5py and numpy [$CARTSCOPE_PYTHON, else python3]
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1"
new="$2"
py="${PYTHON:-${CARTSCOPE_PYTHON:-python3}}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
day90=sample_data/P01_day90.h5ad
# name | arguments after `run INPUT -o DIR`
configs=(
  "default|--backend cpu"
  "streamed|--backend cpu --max-memory 1"
  "cell_ranger|--backend cpu --hvg-flavor cell_ranger"
  "seurat_v3|--backend cpu --hvg-flavor seurat_v3 --no-umap"
  "car_out_of_hvg|--backend cpu --car-out-of-hvg --no-cluster"
  "keep_counts|--backend cpu --keep-counts --n-pcs 20 --no-umap"
  "nn_descent|--backend cpu --knn approx --no-umap"
)
failed=0
for c in "${configs[@]}"; do
  name="${c%%|*}"
  read -r -a args <<< "${c#*|}"
  for side in old new; do
    bin="$old"
    [ "$side" = new ] && bin="$new"
    "$bin" run "$day90" -o "$work/$name.$side" --quiet "${args[@]}"
  done
  printf '%-16s ' "$name"
  "$py" scripts/compare_runs.py "$work/$name.old" "$work/$name.new" || failed=1
done
# The joint analysis of the manifest (batch-key HVGs) and the batch with its cross-sample tables.
for side in old new; do
  bin="$old"
  [ "$side" = new ] && bin="$new"
  "$bin" run --joint sample_data/manifest.csv -o "$work/joint.$side" --quiet --backend cpu --no-umap
  "$bin" batch sample_data/manifest.csv -o "$work/batch.$side" --jobs 1 --backend cpu > /dev/null 2>&1
done
printf '%-16s ' joint
"$py" scripts/compare_runs.py "$work/joint.old" "$work/joint.new" || failed=1
for s in P01_infusion P01_day14 P01_day90; do
  printf '%-16s ' "batch/$s"
  "$py" scripts/compare_runs.py "$work/batch.old/samples/$s" "$work/batch.new/samples/$s" || failed=1
done
for f in batch_summary.csv persistence.csv; do
  if cmp -s "$work/batch.old/$f" "$work/batch.new/$f"; then
    printf '%-16s identical\n' "$f"
  else
    printf '%-16s differs\n' "$f"
    failed=1
  fi
done
exit "$failed"
