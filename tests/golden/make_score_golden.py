#!/usr/bin/env python3
"""Golden gene-set scores from scanpy 1.11.5's tl.score_genes, for tests/it/cart.rs.

Usage: make_score_golden.py INPUT.h5ad OUT.npz
The reference script's preprocessing (QC, filter_cells(200), filter_genes(3), pct_counts_mt < 20,
normalize_total(1e4), log1p), then score_genes(random_state=0) for each default CAR-T set on the
log data of all genes. Stores obs_names, per set `<set>_score` and the control genes scanpy
drew (`<set>_control`, captured from its binning generator).

Then score_genes_cell_cycle(s_genes, g2m_genes) with the full lists of
data/cell_cycle_genes.tsv (Tirosh et al. 2016; scanpy drops the genes missing from the data):
`S_score`, `G2M_score`, `phase` and the control genes drawn (`cycle_S_ctrl`, `cycle_G2M_ctrl`).
"""
import sys, warnings
from pathlib import Path
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
TSV = Path(__file__).resolve().parents[2] / "data" / "cell_cycle_genes.tsv"
rows = [l.split("\t") for l in TSV.read_text().splitlines() if l and not l.startswith("#")][1:]
S_GENES = [g for p, g in rows if p == "S"]
G2M_GENES = [g for p, g in rows if p == "G2M"]
assert (len(S_GENES), len(G2M_GENES)) == (43, 54)

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
drawn = []
def capture(*args, **kw):
    r_all = []
    for r in orig(*args, **kw):
        r_all.append(r)
        yield r
    drawn.append(r_all)
sg._score_genes_bins = capture
try:
    sc.tl.score_genes_cell_cycle(a, s_genes=S_GENES, g2m_genes=G2M_GENES)
finally:
    sg._score_genes_bins = orig
for name, rs in zip(("S", "G2M"), drawn):
    ctrl = pd.Index([], dtype="string")
    for r in rs:
        ctrl = ctrl.union(r)
    out[f"cycle_{name}_ctrl"] = np.asarray(sorted(ctrl), dtype=str)
out["S_score"] = a.obs["S_score"].to_numpy()
out["G2M_score"] = a.obs["G2M_score"].to_numpy()
out["phase"] = np.asarray(a.obs["phase"], dtype=str)
print({p: int((out["phase"] == p).sum()) for p in ("G1", "S", "G2M")}, len(out["phase"]))
np.savez_compressed(sys.argv[2], **out)
