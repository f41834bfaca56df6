#!/usr/bin/env python3
"""Golden gene-set scores from scanpy 1.11.5's tl.score_genes, for tests/it/cart.rs.

Usage: make_score_golden.py INPUT.h5ad OUT.npz
The reference script's preprocessing (QC, filter_cells(200), filter_genes(3), pct_counts_mt < 20,
normalize_total(1e4), log1p), then score_genes(random_state=0) for each default CAR-T set on the
log data of all genes. Stores obs_names, per set `<set>_score` and the control genes scanpy
drew (`<set>_control`, captured from its binning generator).
"""
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, scanpy as sc
import scanpy.tools._score_genes as sg

SETS = {
    "exhaustion": ["PDCD1", "HAVCR2", "LAG3", "TIGIT", "CTLA4", "TOX", "ENTPD1"],
    "memory": ["TCF7", "SELL", "CCR7", "IL7R", "LEF1", "CD27", "CD28"],
    "cytotoxicity": ["PRF1", "IFNG", "GZMK", "GZMB", "NKG7", "GNLY"],
    "proliferation": ["MKI67", "TOP2A", "TYMS", "ZWINT", "TUBA1B"],
    "treg": ["FOXP3", "IL2RA", "CTLA4", "CCR4"],
}
a = sc.read_h5ad(sys.argv[1])
a.var_names_make_unique()
a.var["mt"] = a.var_names.str.upper().str.startswith("MT-")
sc.pp.calculate_qc_metrics(a, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
sc.pp.filter_cells(a, min_genes=200)
sc.pp.filter_genes(a, min_cells=3)
a = a[a.obs["pct_counts_mt"] < 20].copy()
sc.pp.normalize_total(a, target_sum=1e4)
sc.pp.log1p(a)
out = {"obs_names": np.asarray(a.obs_names, dtype=str)}
orig = sg._score_genes_bins
for name, genes in SETS.items():
    present = [g for g in genes if g in a.var_names]
    drawn = []
    def capture(*args, **kw):
        for r in orig(*args, **kw):
            drawn.append(r)
            yield r
    sg._score_genes_bins = capture
    try:
        sc.tl.score_genes(a, present, score_name=f"{name}_score", random_state=0)
    finally:
        sg._score_genes_bins = orig
    ctrl = pd.Index([], dtype="string")
    for r in drawn:
        ctrl = ctrl.union(r)
    out[f"{name}_score"] = a.obs[f"{name}_score"].to_numpy()
    out[f"{name}_control"] = np.asarray(sorted(ctrl), dtype=str)
np.savez_compressed(sys.argv[2], **out)
