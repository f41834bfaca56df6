#!/usr/bin/env bash
# Times the marker genes (scanpy's rank_genes_groups by Leiden cluster) in cartscope and in
# scanpy on the same data and groups, and checks that they agree.
#
# `cartscope run --backend cpu` ranks the genes of its own clusters (the `markers` stage of
# summary.json); scanpy then ranks the same log-normalised X of result.h5ad by the same
# obs["leiden"] with the same method, in the same process that loaded it (only the
# rank_genes_groups call is timed). Prints both medians over REPEATS runs, the speed-up, and
# the agreement: groups whose top 100 genes come in the same order, and the largest relative
# differences of scores and log fold changes over them.
#
# Usage: benches/compare_markers.sh INPUT [METHOD ...]    (methods: t-test, t-test_overestim_var,
#                                                          wilcoxon; default t-test wilcoxon)
#   REF_PYTHON  python with scanpy 1.11.5 [python3]
#   CARTSCOPE   cartscope binary [target/release/cartscope, built if missing]
#   REPEATS     runs per side [3]
set -euo pipefail
cd "$(dirname "$0")/.."
input="$1"
shift
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(t-test wilcoxon)
py="${REF_PYTHON:-python3}"
bin="${CARTSCOPE:-${CARGO_TARGET_DIR:-target}/release/cartscope}"
[ -x "$bin" ] || cargo build --release --locked
repeats="${REPEATS:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for m in "${methods[@]}"; do
  secs=()
  for r in $(seq "$repeats"); do
    rm -rf "$work/cs"
    "$bin" run --backend cpu --quiet --no-umap --markers-method "$m" "$input" -o "$work/cs"
    secs+=("$("$py" -c 'import json,sys; print(dict(json.load(open(sys.argv[1]))["stage_seconds"])["markers"])' "$work/cs/summary.json")")
  done
  "$py" - "$work/cs/result.h5ad" "$m" "$repeats" "${secs[@]}" <<'PY'
import statistics, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
import scanpy as sc

path, method, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
cs_secs = [float(s) for s in sys.argv[4:]]
adata = sc.read_h5ad(path)
mine = adata.uns["rank_genes_groups"]
times = []
for _ in range(repeats):
    a = adata.copy()
    del a.uns["rank_genes_groups"]
    t = time.perf_counter()
    sc.tl.rank_genes_groups(a, "leiden", method=method, use_raw=False)
    times.append(time.perf_counter() - t)
ref = a.uns["rank_genes_groups"]
groups = list(ref["names"].dtype.names)
same = sum(
    list(ref["names"][g][:100]) == list(mine["names"][g][:100]) for g in groups
)
def rel(key):
    worst = 0.0
    for g in groups:
        x = np.asarray(mine[key][g][:100], float)
        y = np.asarray(ref[key][g][:100], float)
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-12))))
    return worst
cs, scp = statistics.median(cs_secs), statistics.median(times)
print(f"{method}: {adata.n_obs} cells x {adata.n_vars} genes, {len(groups)} clusters")
print(f"  scanpy    median {scp:8.3f} s  ({', '.join(f'{t:.3f}' for t in times)})")
print(f"  cartscope median {cs:8.3f} s  ({', '.join(f'{t:.3f}' for t in cs_secs)})")
print(f"  speed-up {scp / cs:.1f}x; top-100 order identical in {same}/{len(groups)} groups; "
      f"max rel. diff scores {rel('scores'):.2e}, logfoldchanges {rel('logfoldchanges'):.2e}")
PY
done
