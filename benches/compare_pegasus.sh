#!/usr/bin/env bash
# Times Pegasus (the fastest CPU single-cell pipeline in Python) and `cartscope run --backend
# cpu` on the same input through the kNN graph, whole processes, alternating runs, and prints
# every run, the medians, the median of the per-run ratios and both peak RSS figures.
#
# Both sides: read the .h5ad, QC metrics and cell filter (min 200 genes, at most 20 % MT-
# counts), gene filter, normalisation to 10,000 counts + log1p, 2,000 highly variable genes,
# 50 PCs, 15 nearest neighbours. The steps differ where the tools do (Pegasus keeps "robust"
# genes and picks HVGs by its own flavour, scales inside its PCA and searches neighbours with
# HNSW; cartscope follows scanpy, searches exactly up to 300,000 cells, and also scores and
# calls the CAR-T programmes of every cell, which Pegasus does not).
#
# Usage: benches/compare_pegasus.sh INPUT.h5ad [RUNS]     (RUNS per side, default 3)
#   PEGASUS_PYTHON  python with pegasuspy 1.10.2 [python3]; e.g.
#                   python3 -m venv /tmp/pg && /tmp/pg/bin/pip install pegasuspy==1.10.2
#   CARTSCOPE       cartscope binary [target/release/cartscope, built if missing]
set -euo pipefail
cd "$(dirname "$0")/.."
input="$1"
runs="${2:-3}"
py="${PEGASUS_PYTHON:-python3}"
bin="${CARTSCOPE:-${CARGO_TARGET_DIR:-target}/release/cartscope}"
[ -x "$bin" ] || cargo build --release --locked
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat > "$work/pegasus_run.py" <<'PY'
import sys
import pegasus as pg

data = pg.read_input(sys.argv[1])
pg.qc_metrics(data, min_genes=200, max_genes=10**9, mito_prefix="MT-", percent_mito=20)
pg.filter_data(data)
pg.identify_robust_genes(data)
pg.log_norm(data, norm_count=1e4)
pg.highly_variable_features(data, n_top=2000)
pg.pca(data, n_components=50)
pg.neighbors(data, K=15)
print(data.shape[0])
PY

"$py" - "$py" "$work/pegasus_run.py" "$bin" "$input" "$work" "$runs" <<'PY'
import os, statistics, subprocess, sys, time

py, script, binary, path, work, runs = sys.argv[1:7]
sides = {
    "pegasus": [py, script, path],
    "cartscope": [binary, "run", "--backend", "cpu", "--quiet", "--no-cluster", "--no-umap",
                  "--no-report", path, "-o", os.path.join(work, "cs")],
}

def once(cmd):
    """Wall seconds and peak RSS (MiB) of one whole process."""
    subprocess.run(["rm", "-rf", os.path.join(work, "cs")], check=True)
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t
    if status != 0:
        sys.exit(f"{cmd[0]} failed with status {status}")
    return secs, usage.ru_maxrss / 1024

results = {k: [] for k in sides}
for r in range(int(runs)):
    # Alternate which side goes first, so neither always runs on a warm page cache.
    order = list(sides) if r % 2 == 0 else list(reversed(sides))
    for side in order:
        results[side].append(once(sides[side]))
for side, rs in results.items():
    secs = ", ".join(f"{s:.2f}" for s, _ in rs)
    print(f"{side:<10} median {statistics.median(s for s, _ in rs):8.2f} s  ({secs}); "
          f"peak RSS median {statistics.median(m for _, m in rs):7.0f} MiB")
ratios = [p[0] / c[0] for p, c in zip(results["pegasus"], results["cartscope"])]
rss = [c[1] / p[1] for p, c in zip(results["pegasus"], results["cartscope"])]
print(f"speed-up (median of per-run ratios) {statistics.median(ratios):.2f}x "
      f"({', '.join(f'{x:.2f}' for x in ratios)}); "
      f"cartscope peak RSS / Pegasus {statistics.median(rss):.2f}")
PY
