"""The whole recipe of ``cartscope run`` on an AnnData in memory."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from . import _core
from ._anndata import check_backend, check_counts, check_dtype, csr, csr_parts, frame, frame_columns, matrix, uns


def run_core(adata: AnnData, *, layer: str | None, backend: str, report: bool, options: dict[str, Any],
             name: str = "adata") -> tuple[dict[str, Any], str | None]:
    """Runs the recipe on the counts of ``adata`` (unchanged); returns the result's parts as
    Python objects (obs/var DataFrames, X, obsm, varm, obsp, uns, layers, summary) and the
    report's HTML when asked for."""
    check_backend(backend)
    if not isinstance(adata, AnnData):
        raise TypeError(f"expected an AnnData, got {type(adata).__name__}")
    if not adata.var_names.is_unique:
        raise ValueError("var_names are not unique: call adata.var_names_make_unique() first")
    if not adata.obs_names.is_unique:
        raise ValueError("obs_names are not unique: call adata.obs_names_make_unique() first")
    x = matrix(adata, layer)
    parts = csr_parts(x)
    # The core's scan checks the values as the CLI does; with allow_non_integer it warns about
    # non-integer, negative or non-finite values where it would otherwise refuse them, so the
    # early check here then looks at the dtype only.
    what = "X" if layer is None else f"layers[{layer!r}]"
    (check_dtype if options.get("allow_non_integer") else check_counts)(parts[2], what)
    try:
        opts = json.dumps(options)
    except TypeError as e:
        raise ValueError(f"options: {e}") from None
    r = _core.run(parts, [str(v) for v in adata.obs_names], frame_columns(adata.obs),
                  [str(v) for v in adata.var_names], opts, backend, report, name)
    ad = r["adata"]
    out: dict[str, Any] = {
        "obs": frame(ad["obs"]),
        "var": frame(ad["var"]),
        "X": None if ad["X"] is None else csr(ad["X"]),
        "layers": {k: csr(v) for k, v in ad["layers"]},
        "obsm": dict(ad["obsm"]),
        "varm": dict(ad["varm"]),
        "obsp": {k: csr(v) for k, v in ad["obsp"]},
        "uns": uns(ad["uns"]),
        "summary": json.loads(r["summary"]),
    }
    return out, r["report_html"]


def run(adata: AnnData, *, layer: str | None = None, backend: str = "auto", report: str | None = None,
        **options: Any) -> dict[str, Any]:
    """The whole scanpy recipe and the CAR-T layer of ``cartscope run``, in place.

    From the raw counts in X (or ``layer``): QC and filtering, normalize_total + log1p,
    highly variable genes, CAR-T scores and calls, scale, PCA, neighbours, Leiden, UMAP and
    marker genes. ``adata`` is subset to the cells and genes that pass QC and receives what
    ``result.h5ad`` holds under scanpy's keys: X (log-normalised, CSR float32), the obs and
    var columns, ``obsm["X_pca"]``, ``obsm["X_umap"]``, ``varm["PCs"]``, ``obsp`` distances
    and connectivities, and ``uns`` (``pca``, ``neighbors``, ``leiden``, ``umap``, ``hvg``,
    ``rank_genes_groups``, ...).

    Parameters
    ----------
    adata
        Raw counts (non-negative integers) with unique obs and var names.
    layer
        Take the counts from ``layers[layer]``.
    backend
        ``"auto"`` (a hardware GPU when there is one), ``"cpu"`` or ``"gpu"``.
    report
        Also write the HTML report there.
    **options
        ``cartscope run``'s config keys with its defaults (docs/run.md, "Config files"), e.g.
        ``n_top_genes=3000``, ``resolution=0.8``, ``min_genes=200``.

    Returns
    -------
    The run summary (``summary.json`` of the CLI) as a dict.
    """
    if isinstance(adata, AnnData) and adata.isbacked:
        raise ValueError("run: the AnnData is backed (read with backed=...): run subsets it in place, "
                         "which a backed AnnData cannot do; load it with adata.to_memory() first")
    res, html = run_core(adata, layer=layer, backend=backend, report=report is not None, options=options)
    if report is not None:
        from .cart import _write_text

        _write_text(report, html)
    obs_pos = adata.obs_names.get_indexer(res["obs"].index)
    var_pos = adata.var_names.get_indexer(res["var"].index)
    if (obs_pos < 0).any() or (var_pos < 0).any():
        raise RuntimeError("run: the result's cells or genes are not those of the input")
    if adata.is_view:
        adata._init_as_actual(adata.copy())
    # X is replaced by the result's below: dropping it first spares subsetting it (two copies
    # of the counts, 0.35 s at 30k cells). Layers are kept, so they are subset.
    adata.X = None
    adata._inplace_subset_obs(obs_pos)
    adata._inplace_subset_var(var_pos)
    adata.X = res["X"]
    for k in res["obs"].columns:
        adata.obs[k] = res["obs"][k].to_numpy() if not isinstance(res["obs"][k].dtype, pd.CategoricalDtype) else res["obs"][k].values
    for k in res["var"].columns:
        adata.var[k] = res["var"][k].to_numpy() if not isinstance(res["var"][k].dtype, pd.CategoricalDtype) else res["var"][k].values
    for k, v in res["layers"].items():
        adata.layers[k] = v
    for k, v in res["obsm"].items():
        adata.obsm[k] = np.asarray(v)
    for k, v in res["varm"].items():
        adata.varm[k] = np.asarray(v)
    for k, v in res["obsp"].items():
        adata.obsp[k] = v
    for k, v in res["uns"].items():
        adata.uns[k] = v
    if adata.uns.get("log1p") == {}:
        # An h5ad cannot store None; in memory scanpy records the base as None.
        adata.uns["log1p"] = {"base": None}
    return res["summary"]
