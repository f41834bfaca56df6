#!/usr/bin/env python3
"""Compares cartscope's gene-set scores with scanpy's tl.score_genes (docs/algorithms.md section 7).

Usage: check_scores.py INPUT.h5ad OUTDIR (OUTDIR from `cartscope run INPUT -o OUTDIR`).
Runs the reference script's preprocessing (QC, filter_cells/genes, mito filter, normalize_total,
log1p) in scanpy, then for every scored set:
  - injected: scanpy's score_genes with its control-gene draw replaced by cartscope's control
    genes (summary.json), so only the arithmetic is compared: max |diff| must be <= 1e-6;
  - own RNG: scanpy's score_genes as the reference calls it (random_state=0): Pearson r >= 0.98.
Prints one JSON line with the numbers; exits 1 when a tolerance fails.
"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import anndata as ad, numpy as np, pandas as pd, scanpy as sc
import scanpy.tools._score_genes as sg

src, out = sys.argv[1], sys.argv[2]
a = sc.read_h5ad(src)
a.var_names_make_unique()
a.var["mt"] = a.var_names.str.upper().str.startswith("MT-")
sc.pp.calculate_qc_metrics(a, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
sc.pp.filter_cells(a, min_genes=200)
sc.pp.filter_genes(a, min_cells=3)
a = a[a.obs["pct_counts_mt"] < 20].copy()
sc.pp.normalize_total(a, target_sum=1e4)
sc.pp.log1p(a)
res = ad.read_h5ad(f"{out}/result.h5ad")
summary = json.load(open(f"{out}/summary.json"))["cart"]
assert list(res.obs_names) == list(a.obs_names)
report, ok = {}, True
orig = sg._score_genes_bins
for s in summary["gene_sets"]:
    col = s["score_column"]
    if col is None:
        continue
    ours = res.obs[col].to_numpy()
    sc.tl.score_genes(a, s["genes_used"], score_name="own", random_state=0)
    ctrl = pd.Index(s["control_genes"])
    sg._score_genes_bins = lambda *args, **kw: iter([ctrl])
    try:
        sc.tl.score_genes(a, s["genes_used"], score_name="inj", random_state=0)
    finally:
        sg._score_genes_bins = orig
    inj = float(np.max(np.abs(ours - a.obs["inj"].to_numpy())))
    own_diff = float(np.max(np.abs(ours - a.obs["own"].to_numpy())))
    r = float(np.corrcoef(ours, a.obs["own"].to_numpy())[0, 1])
    report[col] = {"injected_max_abs": inj, "own_rng_pearson_r": r, "own_rng_max_abs": own_diff}
    ok &= inj <= 1e-6 and r >= 0.98
print(json.dumps(report))
sys.exit(0 if ok else 1)
