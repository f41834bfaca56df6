"""scirpy 0.22.5's receptor QC and clonotypes on a contig table, for tests/it/vdj.rs.

Reads the table(s) with scirpy (`read_10x_vdj` or `read_airr`), optionally keeps only the
cells listed in a barcode file (the cells of a count matrix), runs `pp.index_chains` and
`tl.chain_qc`, then for every requested option set `pp.ir_dist(metric="identity")` and
`tl.define_clonotypes` (nucleotide) or `tl.define_clonotype_clusters(metric="identity")`
(amino acid), and `tl.clonal_expansion` on the result. Writes one JSON document:

    {"scirpy": version, "cells": [...], "receptor_type": [...], "receptor_subtype": [...],
     "chain_pairing": [...], "chains": {"VJ_1_junction_aa": [...], ...},
     "runs": [{"options": {...}, "clone_id": [...], "clone_id_size": [...],
               "clonal_expansion": [...]}]}

with one entry per cell in scirpy's cell order (missing values are null).

usage: vdj_reference.py --format {10x,airr} --runs RUNS.json [--barcodes FILE] --out OUT.json
       INPUT [INPUT ...]

RUNS.json is a list of option objects: sequence ("nt"|"aa"), receptor_arms, dual_ir,
same_v_gene, same_j_gene, within_group (a column name or null).
"""

import argparse
import json
import math
import warnings

warnings.filterwarnings("ignore")

import scirpy as ir  # noqa: E402

FIELDS = ["junction", "junction_aa", "v_call", "j_call", "umi_count", "locus"]
SLOTS = ["VJ_1", "VJ_2", "VDJ_1", "VDJ_2"]


def clean(v):
    """JSON-friendly value: None for missing, int for integral numbers."""
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer():
            return int(v)
    if hasattr(v, "item"):
        return clean(v.item())
    return v


def read(fmt, inputs):
    if fmt == "10x":
        assert len(inputs) == 1, "read_10x_vdj takes one file"
        return ir.io.read_10x_vdj(inputs[0])
    return ir.io.read_airr(inputs if len(inputs) > 1 else inputs[0])


def clonotypes(adata, opts):
    kwargs = dict(
        receptor_arms=opts["receptor_arms"],
        dual_ir=opts["dual_ir"],
        same_v_gene=opts["same_v_gene"],
        same_j_gene=opts.get("same_j_gene", False),
        within_group=opts["within_group"],
        inplace=False,
        n_jobs=1,
    )
    ir.pp.ir_dist(adata, metric="identity", sequence=opts["sequence"])
    try:
        if opts["sequence"] == "nt":
            clone_id, size, _ = ir.tl.define_clonotypes(adata, **kwargs)
        else:
            clone_id, size, _ = ir.tl.define_clonotype_clusters(
                adata, sequence="aa", metric="identity", **kwargs
            )
    except ValueError as e:
        # scirpy raises when no cell takes part (e.g. receptor_arms="VDJ" on TRA chains
        # only); every cell is then without a clone.
        if not str(e).startswith("Error computing clonotypes"):
            raise
        n = adata.n_obs
        return {
            "options": opts,
            "error": str(e),
            "clone_id": [None] * n,
            "clone_id_size": [None] * n,
            "clonal_expansion": ["nan"] * n,
        }
    clone_id = clone_id.reindex(adata.obs_names)
    size = size.reindex(adata.obs_names)
    adata.obs["_clone"] = clone_id
    expansion = ir.tl.clonal_expansion(adata, target_col="_clone", inplace=False)
    del adata.obs["_clone"]
    return {
        "options": opts,
        "clone_id": [clean(v) for v in clone_id.values],
        "clone_id_size": [clean(v) for v in size.values],
        "clonal_expansion": [str(v) for v in expansion.values],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--format", choices=["10x", "airr"], required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--barcodes")
    p.add_argument("--out", required=True)
    p.add_argument("inputs", nargs="+")
    a = p.parse_args()
    adata = read(a.format, a.inputs)
    if a.barcodes:
        with open(a.barcodes) as f:
            keep = {line.strip() for line in f if line.strip()}
        adata = adata[adata.obs_names.isin(keep)].copy()
    ir.pp.index_chains(adata)
    ir.tl.chain_qc(adata)
    present = [f for f in FIELDS if f in adata.obsm["airr"].fields]
    chains = ir.get.airr(adata, present, SLOTS)
    for f in FIELDS:
        for slot in SLOTS:
            if f"{slot}_{f}" not in chains.columns:
                chains[f"{slot}_{f}"] = None
    with open(a.runs) as f:
        runs = json.load(f)
    out = {
        "scirpy": ir.__version__,
        "cells": [str(c) for c in adata.obs_names],
        "receptor_type": [str(v) for v in adata.obs["receptor_type"]],
        "receptor_subtype": [str(v) for v in adata.obs["receptor_subtype"]],
        "chain_pairing": [str(v) for v in adata.obs["chain_pairing"]],
        "chains": {c: [clean(v) for v in chains[c].values] for c in chains.columns},
        "runs": [clonotypes(adata, r) for r in runs],
    }
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
