"""In-process speed of the cartscope Python package against scanpy on the same AnnData.

Runs the reference recipe (QC, filter, normalize_total, log1p, seurat HVGs, raw + HVG subset,
scale, PCA, neighbours, Leiden, UMAP, t-test marker genes) step by step with scanpy 1.11.5 and
with `cartscope.pp` / `cartscope.tl` on copies of the same AnnData, and the whole recipe as one
`cartscope.run(adata)` call, alternating the sides REPEATS times. Prints per-step medians, the
median of the per-run ratios, and writes them as JSON when asked. Both sides first run once,
untimed, on 2,000 cells (scanpy's numba kernels compile on first use).

Usage: python benches/compare_python.py INPUT.h5ad [--repeats N] [--json OUT] [--backend cpu]
       [--default-leiden]
The python must have scanpy 1.11.5 and cartscope (a release build: `pip install .`).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import warnings

warnings.filterwarnings("ignore")

import anndata as ad  # noqa: E402
import scanpy as sc  # noqa: E402

import cartscope as cs  # noqa: E402


def recipe(lib, a, backend, default_leiden=False):
    """The reference recipe with `lib` (scanpy or cartscope); returns per-step seconds (and,
    with `default_leiden`, those of `tl.leiden()` with its defaults, outside the total)."""
    kw = {} if lib is sc else {"backend": backend}
    times = {}

    def step(name, fn):
        t = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t

    a.var["mt"] = a.var_names.str.upper().str.startswith("MT-")
    step("qc", lambda: lib.pp.calculate_qc_metrics(a, qc_vars=["mt"], percent_top=None, log1p=False,
                                                   inplace=True, **kw))

    def filt():
        nonlocal a
        lib.pp.filter_cells(a, min_genes=200, **kw)
        lib.pp.filter_genes(a, min_cells=3, **kw)
        a = a[a.obs["pct_counts_mt"] < 20].copy()

    step("filter", filt)
    step("normalize_total", lambda: lib.pp.normalize_total(a, target_sum=1e4, **kw))
    step("log1p", lambda: lib.pp.log1p(a, **kw))
    step("hvg", lambda: lib.pp.highly_variable_genes(a, flavor="seurat", n_top_genes=2000, **kw))

    def subset():
        nonlocal a
        a.raw = a
        a = a[:, a.var["highly_variable"]].copy()

    step("subset", subset)
    step("scale", lambda: lib.pp.scale(a, max_value=10, **kw))
    if lib is sc:
        step("pca", lambda: sc.tl.pca(a, n_comps=50, svd_solver="arpack"))
    else:
        step("pca", lambda: cs.tl.pca(a, n_comps=50, **kw))
    step("neighbors", lambda: lib.pp.neighbors(a, n_neighbors=15, n_pcs=50, **kw))
    if lib is sc:
        step("leiden", lambda: sc.tl.leiden(a, resolution=1.0, flavor="igraph", n_iterations=2, directed=False))
    else:
        step("leiden", lambda: cs.tl.leiden(a, resolution=1.0, flavor="igraph", n_iterations=2, **kw))
    step("umap", lambda: lib.tl.umap(a, **kw))
    step("markers", lambda: lib.tl.rank_genes_groups(a, "leiden", method="t-test", **kw))
    times["total"] = sum(times.values())
    if default_leiden:
        # scanpy's default flavor (leidenalg, directed, until stable) on the same graph, timed
        # apart from the recipe's total.
        step("leiden default", lambda: lib.tl.leiden(a, key_added="leiden_default", **kw))
    return times, a.n_obs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--default-leiden", action="store_true",
                   help="also time tl.leiden() with scanpy's default flavor (leidenalg), apart from the total")
    args = p.parse_args()
    base = ad.read_h5ad(args.input)
    base.var_names_make_unique()
    # One untimed run of each side on 2,000 cells first: scanpy's numba kernels compile on
    # their first call (seconds each), which a notebook pays once per session.
    warm = base[: min(2000, base.n_obs)].copy()
    recipe(sc, warm.copy(), args.backend)
    recipe(cs, warm.copy(), args.backend)
    runs = {"scanpy": [], "cartscope": [], "cartscope.run": []}
    n_cells = None
    reads = {"scanpy": [], "cartscope": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        r = sc.read_h5ad(args.input)
        reads["scanpy"].append(time.perf_counter() - t0)
        del r
        gc.collect()
        t0 = time.perf_counter()
        r = cs.read(args.input)
        reads["cartscope"].append(time.perf_counter() - t0)
        del r
        gc.collect()
        t, n_cells = recipe(sc, base.copy(), args.backend, args.default_leiden)
        runs["scanpy"].append(t)
        gc.collect()
        t, _ = recipe(cs, base.copy(), args.backend, args.default_leiden)
        runs["cartscope"].append(t)
        gc.collect()
        a = base.copy()
        t0 = time.perf_counter()
        cs.run(a, backend=args.backend, umap=True, cluster=True)
        runs["cartscope.run"].append({"total": time.perf_counter() - t0})
        gc.collect()
    steps = list(runs["scanpy"][0])
    ra, rb = statistics.median(reads["scanpy"]), statistics.median(reads["cartscope"])
    print(f"{args.input}: {base.n_obs} cells in, {n_cells} after QC; {args.repeats} alternating runs, medians")
    print(f"{'step':<16} {'scanpy s':>10} {'cartscope s':>12} {'ratio':>8}")
    print(f"{'read (h5ad)':<16} {ra:>10.3f} {rb:>12.3f} {ra / rb:>7.1f}x  (sc.read_h5ad vs cartscope.read)")
    out = {"input": args.input, "n_cells_in": int(base.n_obs), "n_cells": int(n_cells), "repeats": args.repeats,
           "read": {"scanpy": ra, "cartscope": rb}, "steps": {}}
    for s in steps:
        a = statistics.median(r[s] for r in runs["scanpy"])
        b = statistics.median(r[s] for r in runs["cartscope"])
        ratio = statistics.median(x[s] / max(y[s], 1e-9) for x, y in zip(runs["scanpy"], runs["cartscope"], strict=True))
        out["steps"][s] = {"scanpy": a, "cartscope": b, "ratio": ratio}
        print(f"{s:<16} {a:>10.3f} {b:>12.3f} {ratio:>7.1f}x")
    whole = statistics.median(r["total"] for r in runs["cartscope.run"])
    ratio = statistics.median(x["total"] / y["total"] for x, y in zip(runs["scanpy"], runs["cartscope.run"], strict=True))
    out["run"] = {"cartscope": whole, "ratio": ratio}
    print(f"{'cartscope.run()':<16} {'':>10} {whole:>12.3f} {ratio:>7.1f}x  (whole recipe with CAR-T and markers in one call)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
