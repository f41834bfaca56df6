"""The CAR-T layer on AnnData: CAR detection, programme scores, cell calls and the report."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
from anndata import AnnData

from ._run import run_core

__all__ = ["annotate", "report"]


def annotate(adata: AnnData, *, layer: str | None = None, backend: str = "auto", **options) -> None:
    """Adds the obs columns a ``cartscope run`` writes (QC, CAR status and counts, programme
    scores, T-cell, lineage, CD4/CD8 and phenotype calls, cell-cycle phase) to ``adata``, from
    the raw counts in X (or ``layer``), by the same recipe. ``adata`` is not subset: cells that
    fail QC get missing values; its own obs columns are left as they are, and the names
    written are kept in ``uns["cartscope_annotate"]`` (so a second call recomputes them). ``options`` are ``cartscope run``'s config keys (e.g.
    ``min_genes=200``, ``max_pct_mt=20``); clustering, UMAP and marker genes are skipped.
    """
    options = {"cluster": False, "umap": False, "markers": False, **options}
    # Columns an earlier annotate wrote are recomputed, not carried through as input columns.
    previous = [c for c in adata.uns.get("cartscope_annotate", {}).get("columns", []) if c in adata.obs.columns]
    source = adata if not previous else AnnData(X=adata.X, obs=adata.obs.drop(columns=previous),
                                                var=adata.var, layers=dict(adata.layers))
    res, _ = run_core(source, layer=layer, backend=backend, report=False, options=options)
    obs = res["obs"]
    written = [k for k in obs.columns if k not in source.obs.columns]
    pos = adata.obs_names.get_indexer(obs.index)
    n = adata.n_obs
    if adata.is_view:
        adata._init_as_actual(adata.copy())
    for k in written:
        col = obs[k]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = np.full(n, -1, dtype=col.cat.codes.dtype)
            codes[pos] = col.cat.codes.to_numpy()
            adata.obs[k] = pd.Categorical.from_codes(codes, categories=col.cat.categories)
        elif col.dtype.kind == "f":
            full = np.full(n, np.nan, dtype=col.dtype)
            full[pos] = col.to_numpy()
            adata.obs[k] = full
        else:
            s = pd.Series(pd.NA, index=adata.obs_names, dtype="object")
            s.iloc[pos] = col.to_numpy()
            adata.obs[k] = s.convert_dtypes() if col.dtype.kind in "biu" else s
    adata.uns["cartscope_annotate"] = {"columns": written}


def report(adata: AnnData, path: str | os.PathLike, *, layer: str | None = None, backend: str = "auto",
           **options) -> None:
    """Writes the CAR-T report (``report.html`` of ``cartscope run``) of the raw counts in X
    (or ``layer``) to ``path``, running the recipe on them; ``adata`` is left unchanged."""
    _, html = run_core(adata, layer=layer, backend=backend, report=True, options=options)
    _write_text(path, html)


def _write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (a temporary file, then a rename)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".report-", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
