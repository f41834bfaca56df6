#!/usr/bin/env python3
"""Extracts scanpy's Leiden and UMAP results from a reference run (with clustering) into a .npz.

Usage: make_cluster_golden.py REFERENCE.h5ad INPUT.h5ad OUT.npz

REFERENCE.h5ad is written by reference/scanpy_reference.py without --no-cluster
(scanpy 1.11.5: sc.tl.leiden(flavor="igraph", n_iterations=2, directed=False), sc.tl.umap()).
Kept: the Leiden labels, their modularity on scanpy's graph (igraph's, as scanpy computes it),
X_umap, its trustworthiness and kNN(15) preservation against X_pca, and the simulated truth
(truth_cell_type of INPUT.h5ad) of the same cells. Also scanpy's own seed-to-seed agreement:
the ARI of sc.tl.leiden with random_state 1..9 against random_state 0 on the same graph. The graph and X_pca themselves are in the
matching make_golden.py output, from a separate reference run whose graph can differ from this
run's in a few entries (16 of 47,122 by up to 0.0015 for the sample); make_leiden_golden.py runs
scanpy's Leiden on exactly the stored graph, for comparisons that must be exact.
"""
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")
import anndata as ad  # noqa: E402

from cluster_metrics import knn_preservation, modularity, trustworthiness  # noqa: E402


def main():
    ref, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
    r = ad.read_h5ad(ref)
    truth = ad.read_h5ad(src, backed="r").obs.loc[r.obs_names, "truth_cell_type"].astype(str)
    labels = r.obs["leiden"].astype(int).to_numpy().astype(np.int16)
    conn = r.obsp["connectivities"].tocsr()
    x, e = r.obsm["X_pca"], r.obsm["X_umap"]
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    seed_ari = []
    for seed in range(1, 10):
        sc.tl.leiden(r, resolution=1.0, flavor="igraph", n_iterations=2, directed=False,
                     random_state=seed, key_added="other_seed")
        seed_ari.append(adjusted_rand_score(labels, r.obs["other_seed"].astype(int)))
    d = {
        "leiden": labels,
        "modularity": np.float64(modularity(conn, labels)),
        "X_umap": e.astype(np.float32),
        "trustworthiness": np.float64(trustworthiness(x, e)),
        "knn_preservation": np.float64(knn_preservation(x, e)),
        "truth_cell_type": truth.to_numpy().astype(str),
        "leiden_seed_ari": np.array(seed_ari),
    }
    np.savez_compressed(out, **d)
    print({k: v for k, v in d.items() if np.ndim(v) == 0}, "seed ARI", np.round(seed_ari, 4))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
