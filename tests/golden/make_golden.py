#!/usr/bin/env python3
"""Extracts the values the golden tests compare from a scanpy reference run into a small .npz.

Usage: make_golden.py REFERENCE.h5ad OUT.npz [--pcs N] [--no-connectivities] [--exact-knn]

REFERENCE.h5ad is written by reference/scanpy_reference.py (scanpy 1.11.5). Kept:
obs names and QC columns, the HVG names and their dispersions_norm, the first N PCA scores
(all by default), variance and variance_ratio, the kNN distance graph and connectivities.
With --exact-knn (for n >= 8192, where scanpy's graph comes from approximate pynndescent):
the exact 14 nearest neighbours of every cell on scanpy's own X_pca (sklearn brute force,
needs scikit-learn), the ground truth that approximate or exact kNN is judged against.
"""
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")
import anndata as ad  # noqa: E402


def extract(r, pcs=None):
    """The compared values of a reference AnnData (obsp graphs left as sparse matrices)."""
    return {
        "obs_names": r.obs_names.to_numpy().astype(str),
        "total_counts": r.obs["total_counts"].to_numpy(),
        "n_genes_by_counts": r.obs["n_genes_by_counts"].to_numpy(),
        "pct_counts_mt": r.obs["pct_counts_mt"].to_numpy(),
        "hvg_names": r.var_names.to_numpy().astype(str),
        "dispersions_norm": r.var["dispersions_norm"].to_numpy(),
        "X_pca": r.obsm["X_pca"][:, :pcs] if pcs else r.obsm["X_pca"],
        "variance_ratio": np.asarray(r.uns["pca"]["variance_ratio"]),
        "variance": np.asarray(r.uns["pca"]["variance"]),
        "distances": r.obsp["distances"].tocsr(),
        "connectivities": r.obsp["connectivities"].tocsr(),
    }


def main():
    src, out = sys.argv[1], sys.argv[2]
    pcs = int(sys.argv[sys.argv.index("--pcs") + 1]) if "--pcs" in sys.argv else None
    r = ad.read_h5ad(src)
    d = extract(r, pcs)
    graphs = {key: d.pop(key) for key in ("distances", "connectivities")}
    keys = ["distances"] + ([] if "--no-connectivities" in sys.argv else ["connectivities"])
    for key in keys:
        m = graphs[key]
        m.sort_indices()
        d[f"{key}_data"] = m.data.astype(np.float32)
        d[f"{key}_indices"] = m.indices.astype(np.int32)
        d[f"{key}_indptr"] = m.indptr.astype(np.int64)
        d[f"{key}_shape"] = np.array(m.shape)
    if "--exact-knn" in sys.argv:
        from sklearn.neighbors import NearestNeighbors

        X = r.obsm["X_pca"]
        _, idx = NearestNeighbors(n_neighbors=15, algorithm="brute").fit(X).kneighbors(X)
        d["knn_exact"] = np.array([[j for j in row if j != i][:14] for i, row in enumerate(idx)], dtype=np.int32)
    np.savez_compressed(out, **d)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
