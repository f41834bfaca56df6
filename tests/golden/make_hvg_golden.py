#!/usr/bin/env python3
"""scanpy's highly_variable_genes for one flavor on an input, after the reference QC and
normalisation, saved as a small .npz (gene names, highly_variable, and dispersions_norm or, for
seurat_v3 on the raw counts, variances_norm as `score`).

Usage: make_hvg_golden.py INPUT.h5ad FLAVOR OUT.npz   (needs scanpy 1.11.5; scikit-misc for seurat_v3)
"""
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")
import scanpy as sc  # noqa: E402

src, flavor, out = sys.argv[1:4]
a = sc.read_h5ad(src)
a.var_names_make_unique()
a.var["mt"] = a.var_names.str.upper().str.startswith("MT-")
sc.pp.calculate_qc_metrics(a, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
sc.pp.filter_cells(a, min_genes=200)
sc.pp.filter_genes(a, min_cells=3)
a = a[a.obs["pct_counts_mt"] < 20].copy()
if flavor == "seurat_v3":
    # seurat_v3 expects raw counts (needs scikit-misc for its LOESS).
    sc.pp.highly_variable_genes(a, flavor=flavor, n_top_genes=2000)
    score = a.var["variances_norm"].to_numpy().astype(np.float64)
else:
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, flavor=flavor, n_top_genes=2000)
    score = a.var["dispersions_norm"].to_numpy().astype(np.float64)
np.savez_compressed(out, var_names=a.var_names.to_numpy().astype(str),
                    highly_variable=a.var["highly_variable"].to_numpy(), score=score)
print(f"wrote {out}")
