#!/usr/bin/env bash
# Regenerates the scanpy goldens. Needs a venv with reference/requirements.txt
# (scanpy 1.11.5) as $REF_PYTHON, and a release build of cartscope for the simulated input.
# The goldens were made with exactly these commands.
set -euo pipefail
cd "$(dirname "$0")/../.."
py="${REF_PYTHON:?set REF_PYTHON to a python with scanpy 1.11.5}"
ref=reference/scanpy_reference.py
tmp="$(mktemp -d)"
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/cartscope"

# (a1) the committed sample: exact kNN path (< 8192 cells).
"$py" "$ref" sample_data/P01_day90.h5ad "$tmp/day90" --no-cluster
"$py" tests/golden/make_golden.py "$tmp/day90/reference.h5ad" tests/golden/P01_day90_scanpy.npz \
    --input sample_data/P01_day90.h5ad

# (a2) a simulated sample above 8192 cells: scanpy's approximate (pynndescent) kNN path.
"$bin" simulate -o "$tmp/sim9k.h5ad" --cells 9500 --genes 4000 --seed 9 --timepoint day30 --patient P02 --preset non-responder
"$py" "$ref" "$tmp/sim9k.h5ad" "$tmp/sim9k" --no-cluster
"$py" tests/golden/make_golden.py "$tmp/sim9k/reference.h5ad" tests/golden/sim9k_scanpy.npz --pcs 10 --no-connectivities --exact-knn \
    --input "$tmp/sim9k.h5ad"

# (b) real T cells shipped in a PyPI wheel (scirpy, BSD-3): 200 cells of Wu et al. 2020.
"$py" -m pip download --no-deps -q -d "$tmp/whl" scirpy==0.22.5
unzip -o -q -j "$tmp"/whl/scirpy-*.whl scirpy/tests/data/wu2020_200_v0_11.h5ad -d "$tmp"
"$py" "$ref" "$tmp/wu2020_200_v0_11.h5ad" "$tmp/wu" --no-cluster
"$py" tests/golden/make_golden.py "$tmp/wu/reference.h5ad" tests/golden/wu2020_200_scanpy.npz \
    --input "$tmp/wu2020_200_v0_11.h5ad"

# (c) the cell_ranger and seurat_v3 HVG flavors on the sample (seurat_v3 needs scikit-misc).
"$py" tests/golden/make_hvg_golden.py sample_data/P01_day90.h5ad cell_ranger tests/golden/P01_day90_cell_ranger_hvg.npz
"$py" tests/golden/make_hvg_golden.py sample_data/P01_day90.h5ad seurat_v3 tests/golden/P01_day90_seurat_v3_hvg.npz

# (d) gene-set scores (score_genes, random_state=0) and score_genes_cell_cycle on the sample and
# the real T cells.
"$py" tests/golden/make_score_golden.py sample_data/P01_day90.h5ad tests/golden/P01_day90_scores.npz
"$py" tests/golden/make_score_golden.py "$tmp/wu2020_200_v0_11.h5ad" tests/golden/wu2020_200_scores.npz

# (e) Leiden and UMAP on the sample: the same reference run with clustering (its X_umap and
# scores; scanpy is not bit-reproducible, so its graph differs from (a1)'s in a few entries and
# the Leiden labels compared cluster for cluster come from (e2), on exactly (a1)'s graph).
"$py" "$ref" sample_data/P01_day90.h5ad "$tmp/day90_cluster"
"$py" tests/golden/make_cluster_golden.py "$tmp/day90_cluster/reference.h5ad" sample_data/P01_day90.h5ad tests/golden/P01_day90_cluster.npz

# (e2) scanpy's Leiden for several seeds and resolutions on exactly the graphs stored in (a1) and
# (b) (the graph of the run in (e) can differ from (a1)'s in a few entries).
# The same runs with scanpy's default flavor (leidenalg, directed, until stable).
(cd tests/golden && "$py" make_leiden_golden.py leiden_scanpy.npz \
    P01_day90=P01_day90_scanpy.npz wu2020_200=wu2020_200_scanpy.npz)
(cd tests/golden && "$py" make_leiden_golden.py --flavor leidenalg leidenalg_scanpy.npz \
    P01_day90=P01_day90_scanpy.npz wu2020_200=wu2020_200_scanpy.npz \
    joint=sample_joint_scanpy.npz)

# (f) the joint analysis of the sample manifest: ad.concat + highly_variable_genes(batch_key="sample")
# (seurat, and cell_ranger and seurat_v3 for the HVG columns; needs scikit-misc), then scale, PCA
# and neighbors.
"$py" tests/golden/make_joint_golden.py sample_data/manifest.csv tests/golden/sample_joint_scanpy.npz
