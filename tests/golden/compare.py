#!/usr/bin/env python3
"""Compares a cartscope result with scanpy's reference run, by ALGORITHMS.md section 9.

Usage: compare.py RESULT.h5ad REFERENCE (a reference.h5ad from scanpy_reference.py, or a
golden .npz made by make_golden.py). Prints one line per metric and exits 1 if any tolerance
fails. Needs numpy, scipy and anndata (the test venv); scanpy is not needed.
"""
import json
import sys
from pathlib import Path
import warnings

import numpy as np
import scipy.sparse as sp

warnings.filterwarnings("ignore")
import anndata as ad  # noqa: E402

TOL = {
    "qc_totals_exact": 0,
    "pct_counts_mt_rel": 1e-6,
    "hvg_jaccard_min": 0.99,
    "dispersions_norm_abs": 1e-5,
    "pca_top10_abs_r_min": 0.999,
    "variance_ratio_rel": 1e-3,
    "knn_recall_min": 0.99,
    "connectivities_rel_frobenius": 1e-3,
}


def load_reference(path):
    if path.endswith(".npz"):
        z = np.load(path, allow_pickle=False)
        ref = {k: z[k] for k in z.files}
        for key in ("distances", "connectivities"):
            if f"{key}_data" not in ref:
                continue
            ref[key] = sp.csr_matrix((ref[f"{key}_data"], ref[f"{key}_indices"], ref[f"{key}_indptr"]),
                                     shape=tuple(ref[f"{key}_shape"]))
        return ref
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_golden import extract

    return extract(ad.read_h5ad(path))


def main():
    res = ad.read_h5ad(sys.argv[1])
    ref = load_reference(sys.argv[2])
    out, ok = {}, True

    def check(name, value, passed):
        nonlocal ok
        out[name] = value
        ok &= bool(passed)
        print(f"{'ok  ' if passed else 'FAIL'} {name}: {value}")

    names = np.asarray(ref["obs_names"]).astype(str)
    check("cells_identical", int(len(names)), list(res.obs_names) == list(names))
    order = np.arange(res.n_obs)
    check("total_counts_max_abs", float(np.max(np.abs(res.obs["total_counts"].to_numpy() - ref["total_counts"]))),
          np.array_equal(res.obs["total_counts"].to_numpy(), ref["total_counts"]))
    check("n_genes_by_counts_equal", True, np.array_equal(res.obs["n_genes_by_counts"].to_numpy(), ref["n_genes_by_counts"]))
    a, b = res.obs["pct_counts_mt"].to_numpy(), ref["pct_counts_mt"]
    rel = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))
    check("pct_counts_mt_max_rel", rel, rel <= TOL["pct_counts_mt_rel"] and np.array_equal(np.isnan(a), np.isnan(b)))
    hv = set(res.var_names[res.var["highly_variable"].to_numpy()])
    hr = set(np.asarray(ref["hvg_names"]).astype(str))
    jac = len(hv & hr) / len(hv | hr)
    check("hvg_jaccard", round(jac, 6), jac >= TOL["hvg_jaccard_min"])
    common = sorted(hv & hr)
    pos_res = {g: i for i, g in enumerate(res.var_names)}
    pos_ref = {g: i for i, g in enumerate(np.asarray(ref["hvg_names"]).astype(str))}
    dn = np.array([res.var["dispersions_norm"].to_numpy()[pos_res[g]] for g in common], dtype=float)
    dr = np.array([ref["dispersions_norm"][pos_ref[g]] for g in common], dtype=float)
    dmax = float(np.nanmax(np.abs(dn - dr)))
    check("dispersions_norm_max_abs", dmax, dmax <= TOL["dispersions_norm_abs"])
    P, R = res.obsm["X_pca"][order], ref["X_pca"]
    n_pc = min(10, P.shape[1], R.shape[1])
    rs = [abs(np.corrcoef(P[:, c], R[:, c])[0, 1]) for c in range(n_pc)]
    check("pca_top10_min_abs_r", round(float(min(rs)), 7), min(rs) >= TOL["pca_top10_abs_r_min"])
    signs = [np.sign(np.dot(P[:, c], R[:, c])) for c in range(n_pc)]
    check("pca_top10_signs_match", [int(s) for s in signs], all(s > 0 for s in signs))
    vr, vref = np.asarray(res.uns["pca"]["variance_ratio"]), ref["variance_ratio"]
    vrel = float(np.max(np.abs(vr - vref) / vref))
    check("variance_ratio_max_rel", vrel, vrel <= TOL["variance_ratio_rel"])
    D, Dr = res.obsp["distances"].tocsr(), ref["distances"]
    # Recall of the reference's 14 neighbours (self excluded) among ours. scanpy's approximate
    # path (pynndescent, n >= 8192) stores 16 entries including self: drop self there.
    def neigh(M, i):
        return set(M.indices[M.indptr[i]:M.indptr[i + 1]]) - {i}
    approx = Dr.nnz > 14 * Dr.shape[0]
    if "knn_exact" in ref:
        # Judge against exact neighbours on scanpy's PCA (pynndescent itself is approximate).
        E = ref["knn_exact"]
        recall = float(np.mean([len(neigh(D, i) & set(E[i])) / E.shape[1] for i in range(D.shape[0])]))
        check("knn_recall_vs_exact", round(recall, 6), recall >= (0.98 if approx else TOL["knn_recall_min"]))
        pynn = float(np.mean([len(neigh(Dr, i) & set(E[i])) / E.shape[1] for i in range(D.shape[0])]))
        print(f"info scanpy's own graph recall vs exact: {pynn:.4f}")
    else:
        recall = float(np.mean([len(neigh(D, i) & neigh(Dr, i)) / max(1, len(neigh(Dr, i))) for i in range(D.shape[0])]))
        check("knn_recall", round(recall, 6), recall >= (0.98 if approx else TOL["knn_recall_min"]))
    if "connectivities" in ref:
        C, Cr = res.obsp["connectivities"].tocsr(), ref["connectivities"]
        fro = float(sp.linalg.norm(C - Cr) / sp.linalg.norm(Cr))
        check("connectivities_rel_frobenius", fro, fro <= TOL["connectivities_rel_frobenius"])
    print(json.dumps(out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
