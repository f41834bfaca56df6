"""Patient-level clonotypes and clonal persistence of a batch with scirpy 0.22.5, for
tests/it/clonal.rs.

Reads every sample's contig table with `ir.io.read_10x_vdj`, keeps the sample's cells after
QC (the barcodes of its cells.parquet, one a line in a text file the test writes), names cells `<sample_id>|<barcode>` and
concatenates the samples (patients in manifest order of first appearance, each patient's
samples in manifest order) with `anndata.concat`, then runs `ir.pp.index_chains`,
`ir.tl.chain_qc`, `ir.pp.ir_dist(metric="identity")` and
`ir.tl.define_clonotypes(within_group=["receptor_type", "patient"])`. The persistence columns
are recomputed from scirpy's clones with numpy, the clone entropy with
`ir.tl.alpha_diversity(metric="normalized_shannon_entropy")`.

usage: clonal_reference.py SPEC.json OUT.json

SPEC.json: {"samples": [{"sample_id", "patient", "timepoint", "day" (number or null),
"vdj" (path or null), "barcodes" (a text file of the sample's cells after QC)}], "product_timepoint": label or null}.
Samples whose vdj file does not read are left out (they have no clonal part).

OUT.json: {"scirpy": version, "cells": [{"sample_id", "barcode", "clone_id",
"clone_id_size", "chain_pairing", "receptor_type", "receptor_subtype"}] for every cell with a
receptor, "persistence": {sample_id: {column: value or null}}}.
"""

import json
import sys
import warnings

warnings.filterwarnings("ignore")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scirpy as ir  # noqa: E402

PRODUCT = {"ip", "prod", "product", "infusion"}


def is_product(s, label):
    if label is not None:
        return s["timepoint"].lower() == label.lower()
    return s["timepoint"].lower() in PRODUCT or s["day"] == 0


def load(samples):
    parts = []
    done = []
    for s in samples:
        if not s["vdj"]:
            continue
        try:
            a = ir.io.read_10x_vdj(s["vdj"])
        except Exception:  # a missing or malformed table: no clonal part
            continue
        with open(s["barcodes"]) as f:
            keep = {line.strip() for line in f if line.strip()}
        a = a[a.obs_names.isin(keep)].copy()
        a.obs_names = [f"{s['sample_id']}|{b}" for b in a.obs_names]
        a.obs["sample_id"] = s["sample_id"]
        a.obs["patient"] = s["patient"]
        parts.append(a)
        done.append(s)
    patients = list(dict.fromkeys(s["patient"] for s in samples))
    order = [p for pat in patients for p, s in zip(parts, done) if s["patient"] == pat]
    adata = ad.concat(order, merge="same")
    return adata, done


def fraction(num, den):
    return float(num) / float(den) if den > 0 else None


def morisita_horn(a, b):
    """2 sum(a_i b_i) / ((sum a_i^2 / X^2 + sum b_i^2 / Y^2) X Y) over the union of clones."""
    keys = sorted(set(a) | set(b))
    x = np.array([a.get(k, 0) for k in keys], dtype=float)
    y = np.array([b.get(k, 0) for k in keys], dtype=float)
    X, Y = x.sum(), y.sum()
    if X == 0 or Y == 0:
        return None
    return float(2 * np.sum(x * y) / ((np.sum(x**2) / X**2 + np.sum(y**2) / Y**2) * X * Y))


def jaccard(a, b):
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return None
    return len(sa & sb) / len(sa | sb)


def pool(counts_list):
    out = {}
    for c in counts_list:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


def persistence(adata, done, label):
    obs = adata.obs
    with_clone = obs[~obs["clone_id"].isna()]
    counts = {
        s["sample_id"]: with_clone.loc[with_clone["sample_id"] == s["sample_id"], "clone_id"]
        .astype(str)
        .value_counts()
        .to_dict()
        for s in done
    }
    entropy = ir.tl.alpha_diversity(
        adata, groupby="sample_id", target_col="clone_id", inplace=False
    )
    entropy = entropy.iloc[:, 0].to_dict()
    out = {}
    for s in done:
        c = counts[s["sample_id"]]
        pat = [t for t in done if t["patient"] == s["patient"]]
        n = sum(c.values())
        row = {
            "vdj_cells": n,
            "clonotypes": len(c),
            "expanded_fraction": fraction(sum(v for v in c.values() if v > 2), n),
            "clone_entropy": float(entropy[s["sample_id"]]) if n > 0 else None,
            "largest_clone_fraction": fraction(max(c.values(), default=0), n),
        }
        # Earlier: a smaller day (every sample here has a day).
        earlier = [t for t in pat if t["day"] < s["day"]]
        if earlier:
            before = pool(counts[t["sample_id"]] for t in earlier)
            row["seen_before_fraction"] = fraction(
                sum(v for k, v in c.items() if k in before), n
            )
            last = max(t["day"] for t in earlier)
            prev = pool(counts[t["sample_id"]] for t in earlier if t["day"] == last)
            row["jaccard_previous"] = jaccard(c, prev)
            row["morisita_horn_previous"] = morisita_horn(c, prev)
        products = [t for t in pat if is_product(t, label)]
        if products and not is_product(s, label):
            prod = pool(counts[t["sample_id"]] for t in products)
            row["product_clone_fraction"] = fraction(
                sum(v for k, v in c.items() if k in prod), n
            )
            row["product_clones_seen"] = sum(1 for k in c if k in prod)
            row["jaccard_product"] = jaccard(c, prod)
            row["morisita_horn_product"] = morisita_horn(c, prod)
        out[s["sample_id"]] = row
    return out


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    samples = spec["samples"]
    label = spec.get("product_timepoint")
    adata, done = load(samples)
    ir.pp.index_chains(adata)
    ir.tl.chain_qc(adata)
    ir.pp.ir_dist(adata, metric="identity", sequence="nt")
    ir.tl.define_clonotypes(adata, within_group=["receptor_type", "patient"], n_jobs=1)
    obs = adata.obs
    has_ir = obs["chain_pairing"] != "no IR"
    cells = []
    for name, r in obs[has_ir].iterrows():
        sid, bc = name.split("|", 1)
        clone = r["clone_id"]
        size = r["clone_id_size"]
        cells.append(
            {
                "sample_id": sid,
                "barcode": bc,
                "clone_id": None if pd.isna(clone) else str(clone),
                "clone_id_size": None if pd.isna(size) else int(size),
                "chain_pairing": str(r["chain_pairing"]),
                "receptor_type": str(r["receptor_type"]),
                "receptor_subtype": str(r["receptor_subtype"]),
            }
        )
    out = {
        "scirpy": ir.__version__,
        "cells": cells,
        "persistence": persistence(adata, done, label),
    }
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
