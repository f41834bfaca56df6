#!/usr/bin/env bash
# Times scanpy (reference/scanpy_reference.py) and `cartscope run --backend cpu` on
# the same input on this machine, one after the other, and prints per-stage and end-to-end
# seconds (leiden and umap included), the speed-up, and both peak RSS figures.
#
# Usage: benches/compare_scanpy.sh INPUT.h5ad [--no-cluster]
#   --no-cluster skips leiden and umap on both sides.
#   REF_PYTHON   python with reference/requirements.txt (scanpy 1.11.5) [python3]
#   CARTSCOPE    cartscope binary [target/release/cartscope, built if missing]
set -euo pipefail
cd "$(dirname "$0")/.."
input="$1"
no_cluster=()
cs_no_cluster=()
if [ "${2:-}" = "--no-cluster" ]; then
  no_cluster=(--no-cluster)
  cs_no_cluster=(--no-cluster --no-umap)
fi
py="${REF_PYTHON:-python3}"
bin="${CARTSCOPE:-${CARGO_TARGET_DIR:-target}/release/cartscope}"
[ -x "$bin" ] || cargo build --release --locked
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$py" reference/scanpy_reference.py "$input" "$work/scanpy" "${no_cluster[@]}" > /dev/null
# Peak RSS of the cartscope process as the OS reports it (getrusage of the child).
"$py" - "$bin" "$input" "$work/cartscope" "${cs_no_cluster[@]}" <<'PY' > "$work/cartscope_rss"
import resource, subprocess, sys
subprocess.run([sys.argv[1], "run", "--backend", "cpu", "--quiet", sys.argv[2], "-o", sys.argv[3], *sys.argv[4:]], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
PY
"$py" - "$work/scanpy/timings.json" "$work/cartscope/summary.json" "$work/cartscope_rss" <<'PY'
import json, sys
sc = json.load(open(sys.argv[1]))
cs = json.load(open(sys.argv[2]))
rss = float(open(sys.argv[3]).read())
st = dict(cs["stage_seconds"])
pairs = [
    ("read + qc", sc["read"] + sc["qc"], st["read+qc"]),
    ("filter", sc["filter"], st["filter"]),
    ("normalize + log1p", sc["normalize_total"] + sc["log1p"], st["normalize+log1p"]),
    # cartscope takes the scale statistics in the HVG pass and scales chunk by chunk inside
    # PCA, so the stages are compared as hvg + scale + pca.
    ("hvg + scale + pca", sc["hvg"] + sc["scale"] + sc["pca"], st["hvg"] + st["scale"] + st["pca"]),
    ("neighbors", sc["neighbors"], st["neighbors"]),
]
# Gene-set scores: scanpy's score_genes calls against cartscope's CAR-T stage (scores and
# cell calls); both end-to-end totals include them.
scores = sum(v for k, v in sc.items() if k.startswith("score_"))
pairs.append(("gene-set scores", scores, st.get("cart", 0.0)))
pairs += [(k, sc[k], st[k]) for k in ("leiden", "umap") if k in sc and k in st]
sc_total = sc["total_without_import"]
cs_total = cs["total_seconds"]
print(f"input: {cs['input']}  cells in {cs['n_cells_in']}, after QC {cs['n_cells_after_qc']}, genes {cs['n_genes_after_filter']}")
print(f"{'stage':<20}{'scanpy s':>10}{'cartscope s':>13}{'speed-up':>10}")
for name, a, b in pairs:
    print(f"{name:<20}{a:>10.2f}{b:>13.3f}{a / max(b, 1e-9):>9.1f}x")
print(f"{'write':<20}{'':>10}{st.get('write', 0):>13.3f}   (result.h5ad, tables, report.html; scanpy's write is not timed)")
print(f"{'end to end':<20}{sc_total:>10.2f}{cs_total:>13.2f}{sc_total / cs_total:>9.1f}x   (scanpy without its import)")
print(f"{'peak RSS MiB':<20}{sc['peak_rss_mib']:>10.0f}{rss:>13.0f}{rss / sc['peak_rss_mib']:>9.2f}x")
PY
