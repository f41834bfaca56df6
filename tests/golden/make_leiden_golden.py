#!/usr/bin/env python3
"""scanpy's Leiden labels on the graphs stored in other goldens, for several seeds and resolutions.

Usage: make_leiden_golden.py [--flavor leidenalg] OUT.npz NAME=GRAPH.npz [NAME=GRAPH.npz ...]

Each GRAPH.npz is a make_golden.py output (connectivities_{data,indices,indptr,shape}). On
exactly that matrix, sc.tl.leiden(flavor="igraph", n_iterations=2, directed=False) (scanpy
1.11.5, python-igraph 1.0.0) runs with random_state 0..9 at resolution 1, and with
random_state 0 at resolutions 0.5 and 2. With --flavor leidenalg the runs are scanpy's
default sc.tl.leiden(resolution, random_state) instead: leidenalg 0.12.0 on the directed
graph, n_iterations=-1. Kept per NAME: NAME_seed and NAME_resolution (one
entry per run), NAME_leiden (runs x cells, scanpy's labels as integers) and NAME_modularity
(igraph's modularity of each partition on the graph, resolution 1).
"""
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")
import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402
import scanpy as sc  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from cluster_metrics import modularity  # noqa: E402

RUNS = [(seed, 1.0) for seed in range(10)] + [(0, 0.5), (0, 2.0)]


def main():
    args = sys.argv[1:]
    leidenalg = args[:2] == ["--flavor", "leidenalg"]
    if leidenalg:
        args = args[2:]
    out, d = args[0], {}
    for arg in args[1:]:
        name, path = arg.split("=", 1)
        g = np.load(path)
        conn = sp.csr_matrix(
            (g["connectivities_data"], g["connectivities_indices"].astype(np.int32),
             g["connectivities_indptr"]),
            shape=tuple(g["connectivities_shape"]),
        )
        a = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(conn.shape[0])]))
        a.obsp["connectivities"] = conn
        a.uns["neighbors"] = {"connectivities_key": "connectivities", "params": {}}
        labels, mods = [], []
        for seed, resolution in RUNS:
            if leidenalg:
                sc.tl.leiden(a, resolution=resolution, random_state=seed)
            else:
                sc.tl.leiden(a, resolution=resolution, flavor="igraph", n_iterations=2,
                             directed=False, random_state=seed)
            labels.append(a.obs["leiden"].astype(int).to_numpy())
            mods.append(modularity(conn, labels[-1]))
        d[f"{name}_seed"] = np.array([s for s, _ in RUNS], dtype=np.int64)
        d[f"{name}_resolution"] = np.array([r for _, r in RUNS])
        d[f"{name}_leiden"] = np.array(labels, dtype=np.int16)
        d[f"{name}_modularity"] = np.array(mods)
        print(name, conn.shape[0], "cells; clusters per run", [int(l.max()) + 1 for l in labels])
    np.savez_compressed(out, **d)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
