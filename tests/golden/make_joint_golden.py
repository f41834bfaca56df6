#!/usr/bin/env python3
"""scanpy's joint analysis of a manifest's samples, the golden of `cartscope run --joint`.

Usage: make_joint_golden.py MANIFEST.csv OUT.npz   (needs scanpy 1.11.5 and scikit-misc)

The samples are concatenated as anndata does (`ad.concat(join="inner", label="sample",
keys=sample_ids, index_unique="-")`), the manifest's patient/timepoint (categoricals in manifest
order) and day (float64) replace those obs columns, and the reference pipeline of
reference/scanpy_reference.py runs on all cells with
`highly_variable_genes(flavor="seurat", n_top_genes=2000, batch_key="sample")`, then scale, PCA
(arpack) and neighbors. Kept: what make_golden.py keeps (the first 10 PCs), plus every gene's
batch HVG columns after filter_genes (`var_names`, `highly_variable`,
`highly_variable_nbatches`, `highly_variable_intersection`, `means`, `dispersions`,
`dispersions_norm_all`), the cells' samples (`obs_sample`), the same HVG columns for
`flavor="cell_ranger"` with the batch key (prefix `cr_`), and `flavor="seurat_v3"` with the
batch key on the counts after QC (prefix `v3_`: `highly_variable`, `highly_variable_nbatches`,
`highly_variable_rank`, `variances_norm`, `means`, `variances`).
"""
import csv
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402
import scanpy as sc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_golden import extract  # noqa: E402

manifest, out = Path(sys.argv[1]), sys.argv[2]
rows = list(csv.DictReader(manifest.open()))
parts = {}
for r in rows:
    a = sc.read_h5ad(manifest.parent / r["path"])
    a.var_names_make_unique()
    parts[r["sample_id"]] = a
a = ad.concat(parts, join="inner", label="sample", index_unique="-")
sizes = [parts[r["sample_id"]].n_obs for r in rows]
for col in ("patient", "timepoint"):
    values = np.repeat([r[col] for r in rows], sizes)
    a.obs[col] = pd.Categorical(values, categories=list(dict.fromkeys(r[col] for r in rows)))
a.obs["day"] = np.repeat([float(r["day"]) for r in rows], sizes)

a.var["mt"] = a.var_names.str.upper().str.startswith("MT-")
sc.pp.calculate_qc_metrics(a, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
sc.pp.filter_cells(a, min_genes=200)
sc.pp.filter_genes(a, min_cells=3)
a = a[a.obs["pct_counts_mt"] < 20].copy()
v3 = sc.pp.highly_variable_genes(a, flavor="seurat_v3", n_top_genes=2000, batch_key="sample", inplace=False)
sc.pp.normalize_total(a, target_sum=1e4)
sc.pp.log1p(a)

cr = sc.pp.highly_variable_genes(a, flavor="cell_ranger", n_top_genes=2000, batch_key="sample", inplace=False)
sc.pp.highly_variable_genes(a, flavor="seurat", n_top_genes=2000, batch_key="sample")
hvg = {
    "var_names": a.var_names.to_numpy().astype(str),
    "highly_variable": a.var["highly_variable"].to_numpy(),
    "highly_variable_nbatches": a.var["highly_variable_nbatches"].to_numpy().astype(np.int64),
    "highly_variable_intersection": a.var["highly_variable_intersection"].to_numpy(),
    "means": a.var["means"].to_numpy(),
    "dispersions": a.var["dispersions"].to_numpy(),
    "dispersions_norm_all": a.var["dispersions_norm"].to_numpy(),
    "cr_highly_variable": cr["highly_variable"].to_numpy(),
    "cr_highly_variable_nbatches": cr["highly_variable_nbatches"].to_numpy().astype(np.int64),
    "cr_dispersions_norm": cr["dispersions_norm"].to_numpy().astype(np.float32),
    "obs_sample": a.obs["sample"].to_numpy().astype(str),
    "v3_highly_variable": v3["highly_variable"].to_numpy(),
    "v3_highly_variable_nbatches": v3["highly_variable_nbatches"].to_numpy().astype(np.int64),
    "v3_highly_variable_rank": v3["highly_variable_rank"].to_numpy().astype(np.float32),
    "v3_variances_norm": v3["variances_norm"].to_numpy().astype(np.float64),
    "v3_means": v3["means"].to_numpy().astype(np.float64),
    "v3_variances": v3["variances"].to_numpy().astype(np.float64),
}
a = a[:, a.var["highly_variable"]].copy()
sc.pp.scale(a, max_value=10)
sc.tl.pca(a, n_comps=50, svd_solver="arpack")
sc.pp.neighbors(a, n_neighbors=15, n_pcs=50)

d = extract(a, 10)
for key in ("distances", "connectivities"):
    m = d.pop(key)
    m.sort_indices()
    d[f"{key}_data"] = m.data.astype(np.float32)
    d[f"{key}_indices"] = m.indices.astype(np.int32)
    d[f"{key}_indptr"] = m.indptr.astype(np.int64)
    d[f"{key}_shape"] = np.array(m.shape)
d.update(hvg)
np.savez_compressed(out, **d)
print(f"wrote {out}: {a.n_obs} cells, {len(hvg['var_names'])} genes, {a.n_vars} HVGs")
