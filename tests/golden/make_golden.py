#!/usr/bin/env python3
"""Extracts the values the golden tests compare from a scanpy reference run into a small .npz.

Usage: make_golden.py REFERENCE.h5ad OUT.npz [--input INPUT.h5ad] [--pcs N]
                      [--no-connectivities] [--exact-knn]

REFERENCE.h5ad is written by reference/scanpy_reference.py (scanpy 1.11.5). Kept:
obs names and QC columns, the HVG names and their dispersions_norm, the first N PCA scores
(all by default), variance and variance_ratio, the kNN distance graph (values in scanpy's own
dtype) and connectivities, and the dtypes scanpy wrote (`<name>_dtype`: X, X_pca, distances,
connectivities); cell indices (graph indices, knn_exact) are uint16 below 65,536 cells.

With --input (the INPUT.h5ad the reference run read): the log-normalised X, which
reference.h5ad does not keep (it holds the scaled HVG columns). It is recomputed here with the
reference script's own scanpy calls up to log1p, checked against the reference run (the same
cells, and X scaled as the reference scaled it equals its X exactly), and stored as CSR for
every `X_every`-th cell (every cell of a small input; at most about 40,000 entries, to keep
the file small): `X_rows` (positions in obs_names), `X_var_names` (all genes after
filter_genes), `X_data` (scanpy's dtype, float32), `X_indices`, `X_indptr`.

With --exact-knn (for n >= 8192, where scanpy's graph comes from approximate pynndescent):
the exact 14 nearest neighbours of every cell on scanpy's own X_pca (sklearn brute force,
needs scikit-learn), the ground truth that approximate or exact kNN is judged against.
"""
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")
import anndata as ad  # noqa: E402

# Stored X entries at most (about 70 KB compressed for the sample).
X_MAX_NNZ = 40_000


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
        "X_pca_dtype": np.array(str(r.obsm["X_pca"].dtype)),
        "distances_dtype": np.array(str(r.obsp["distances"].dtype)),
        "connectivities_dtype": np.array(str(r.obsp["connectivities"].dtype)),
    }


def log_normalised(src, r):
    """scanpy_reference.py's steps up to log1p on INPUT, checked against its run `r`."""
    import scanpy as sc

    a = sc.read_h5ad(src)
    a.var_names_make_unique()
    a.var["mt"] = a.var_names.str.upper().str.startswith("MT-")
    sc.pp.calculate_qc_metrics(a, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    sc.pp.filter_cells(a, min_genes=200)
    sc.pp.filter_genes(a, min_cells=3)
    a = a[a.obs["pct_counts_mt"] < 20].copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    assert list(a.obs_names) == list(r.obs_names), "not the reference run's cells"
    hvg = a[:, r.var_names].X
    hvg = hvg.toarray() if hasattr(hvg, "toarray") else np.asarray(hvg)
    mean, std = r.var["mean"].to_numpy(), r.var["std"].to_numpy()
    scaled = np.clip((hvg.astype(np.float64) - mean) / std, None, 10)
    err = float(np.max(np.abs(scaled - r.X)))
    assert err <= 1e-12, f"recomputed X, scaled, differs from the reference's by {err}"
    return a


def main():
    src, out = sys.argv[1], sys.argv[2]
    pcs = int(sys.argv[sys.argv.index("--pcs") + 1]) if "--pcs" in sys.argv else None
    r = ad.read_h5ad(src)
    d = extract(r, pcs)
    d["X_dtype"] = np.array(str(r.X.dtype))
    graphs = {key: d.pop(key) for key in ("distances", "connectivities")}
    keys = ["distances"] + ([] if "--no-connectivities" in sys.argv else ["connectivities"])
    # Cell indices in 16 bits where they fit (readers widen them), to keep the file small.
    cell_index = np.uint16 if r.n_obs < 65536 else np.int32
    for key in keys:
        m = graphs[key]
        m.sort_indices()
        d[f"{key}_data"] = m.data
        d[f"{key}_indices"] = m.indices.astype(cell_index)
        d[f"{key}_indptr"] = m.indptr.astype(np.int64)
        d[f"{key}_shape"] = np.array(m.shape)
    if "--input" in sys.argv:
        import scipy.sparse as sp

        a = log_normalised(sys.argv[sys.argv.index("--input") + 1], r)
        X = sp.csr_matrix(a.X)
        every = max(1, -(-X.nnz // X_MAX_NNZ))
        rows = np.arange(0, X.shape[0], every)
        S = X[rows]
        S.sort_indices()
        d["X_dtype"] = np.array(str(a.X.dtype))
        d["X_every"] = np.array(every)
        d["X_rows"] = rows.astype(np.int32)
        d["X_var_names"] = a.var_names.to_numpy().astype(str)
        d["X_data"] = S.data
        d["X_indices"] = S.indices.astype(np.uint16 if X.shape[1] < 65536 else np.int32)
        d["X_indptr"] = S.indptr.astype(np.int64)
    if "--exact-knn" in sys.argv:
        from sklearn.neighbors import NearestNeighbors

        X = r.obsm["X_pca"]
        _, idx = NearestNeighbors(n_neighbors=15, algorithm="brute").fit(X).kneighbors(X)
        d["knn_exact"] = np.array([[j for j in row if j != i][:14] for i, row in enumerate(idx)], dtype=cell_index)
    np.savez_compressed(out, **d)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
