"""Marker genes of a cartscope result against scanpy's rank_genes_groups on the same data.

Usage: compare_markers.py RESULT.h5ad [--tie-correct]

Reads result.h5ad with anndata, runs scanpy 1.11.5's `rank_genes_groups` on its X (the
log-normalised matrix), grouped and parameterised as `uns["rank_genes_groups"]["params"]`
says, keeping as many genes as cartscope kept, and compares per group:
- gene order of the top 100: identical, except inside runs of exactly equal scores (scanpy
  orders ties by numpy's unstable sort);
- scores and log fold changes: relative difference (floor 1e-3 absolute for values near zero);
- adjusted p-values: relative difference, or absolute below 1e-300.
The bounds below are far inside the required agreement (1e-5 for scores and fold changes,
1e-6 for adjusted p-values), just above what is measured.
Prints the measured maxima as JSON; exits 1 when a bound is exceeded. Also checks that
`sc.get.rank_genes_groups_df` reads cartscope's table and that markers.csv holds the same
rows.
"""

import json
import os
import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

# Bounds: just above what cartscope measures on the test data (tests/it/markers.rs): scores
# and fold changes are identical float32 values (allowed: two float32 ulps, since summation
# order may differ on another machine), adjusted p-values within 3.2e-12 relative.
MAX_REL_SCORE = 2.4e-7
MAX_REL_LFC = 2.4e-7
MAX_REL_PADJ = 1e-11
TOP = 100


def rel(a, b, floor):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor), initial=0.0))


def same_order(ours, theirs, scores):
    """Identical gene order, allowing permutations inside runs of equal scanpy scores."""
    if list(ours) == list(theirs):
        return True
    i = 0
    while i < len(theirs):
        j = i
        while j + 1 < len(theirs) and scores[j + 1] == scores[i]:
            j += 1
        if set(ours[i : j + 1]) != set(theirs[i : j + 1]):
            return False
        i = j + 1
    return True


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: compare_markers.py RESULT.h5ad [--tie-correct]")
    tie = "--tie-correct" in sys.argv[2:]
    warnings.filterwarnings("ignore")
    a = ad.read_h5ad(sys.argv[1])
    ours = a.uns["rank_genes_groups"]
    params = ours["params"]
    groups = list(ours["names"].dtype.names)
    n_genes = len(ours["names"])
    df = sc.get.rank_genes_groups_df(a, group=None)
    assert len(df) == n_genes * len(groups), "rank_genes_groups_df reads every row"
    # markers.csv beside result.h5ad holds the same table.
    csv = pd.read_csv(os.path.join(os.path.dirname(sys.argv[1]), "markers.csv"), dtype={"group": str})
    csv = csv[csv["groupby"] == params["groupby"]]
    assert len(csv) == len(df), "markers.csv has one row per group and gene"
    assert list(csv["gene"]) == list(df["names"]), "markers.csv lists uns' genes in order"
    assert np.allclose(csv["score"], df["scores"], rtol=1e-6, atol=0), "markers.csv scores"
    assert np.allclose(csv["pval_adj"], df["pvals_adj"], rtol=1e-12, atol=0), "markers.csv pvals_adj"
    b = a.copy()
    del b.uns["rank_genes_groups"]
    sc.tl.rank_genes_groups(
        b,
        params["groupby"],
        groups=groups,
        method=params["method"],
        n_genes=n_genes,
        tie_correct=tie,
        use_raw=False,
    )
    theirs = b.uns["rank_genes_groups"]
    r = {"method": params["method"], "tie_correct": tie, "groups": len(groups), "order_ok": True,
         "score_rel": 0.0, "lfc_rel": 0.0, "padj_rel": 0.0, "pval_rel": 0.0}
    top = min(TOP, n_genes)
    for g in groups:
        on, tn = ours["names"][g][:top], theirs["names"][g][:top]
        ts = theirs["scores"][g][:top]
        if not same_order(on, tn, ts):
            first = next(k for k in range(top) if on[k] != tn[k])
            print(f"group {g}: order differs at rank {first}: {list(on[first:first+3])} vs {list(tn[first:first+3])}")
            r["order_ok"] = False
            continue
        # Compare gene by gene (tied runs may be permuted).
        pos = {gene: k for k, gene in enumerate(tn)}
        idx = [pos[gene] for gene in on]
        r["score_rel"] = max(r["score_rel"], rel(ours["scores"][g][:top], ts[idx], 1e-3))
        r["lfc_rel"] = max(r["lfc_rel"], rel(ours["logfoldchanges"][g][:top], theirs["logfoldchanges"][g][:top][idx], 1e-3))
        op, tp = ours["pvals_adj"][g][:top], theirs["pvals_adj"][g][:top][idx]
        small = (np.abs(tp) < 1e-300) & (np.abs(op) < 1e-300)
        r["padj_rel"] = max(r["padj_rel"], rel(op[~small], tp[~small], 1e-300))
        opv, tpv = ours["pvals"][g][:top], theirs["pvals"][g][:top][idx]
        small = (np.abs(tpv) < 1e-300) & (np.abs(opv) < 1e-300)
        r["pval_rel"] = max(r["pval_rel"], rel(opv[~small], tpv[~small], 1e-300))
    print(json.dumps(r, indent=1))
    ok = (r["order_ok"] and r["score_rel"] <= MAX_REL_SCORE and r["lfc_rel"] <= MAX_REL_LFC
          and r["padj_rel"] <= MAX_REL_PADJ)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
