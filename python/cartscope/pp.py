"""Preprocessing: scanpy's ``sc.pp`` functions with its names, defaults and keys.

Every function works in place on the AnnData (a view is first made an actual object, as
scanpy does) and accepts ``backend="auto" | "cpu" | "gpu"``. Values are computed in float32,
the dtype scanpy computes in for float32 data; float64 data keep their dtype where the step
works in place on them (``normalize_total``, ``log1p``) and are computed in float32 elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import _core
from ._anndata import actual, check_backend, check_counts, check_values, csr_parts, matrix

__all__ = [
    "calculate_qc_metrics",
    "filter_cells",
    "filter_genes",
    "normalize_total",
    "log1p",
    "highly_variable_genes",
    "scale",
    "pca",
    "neighbors",
]


def _sparse_for_qc(x):
    """CSR (int64 indptr, int32 indices) over float32 or float64 values, without copying
    float CSR data."""
    if isinstance(x, np.ndarray):
        x = sp.csr_matrix(x)
    elif not sp.issparse(x):
        raise ValueError(f"X: expected a numpy array or a scipy sparse matrix, got {type(x).__name__}")
    elif x.format != "csr":
        x = x.tocsr()
    data = x.data
    if data.dtype not in (np.float32, np.float64):
        check_values(data, "X")
        data = data.astype(np.float32)
    check_counts(data, "X")
    return (
        np.ascontiguousarray(x.indptr.astype(np.int64, copy=False)),
        np.ascontiguousarray(x.indices.astype(np.int32, copy=False)),
        np.ascontiguousarray(data),
        x.shape,
    )


def _qc(x, qc_masks, percent_top):
    indptr, indices, data, shape = _sparse_for_qc(x)
    f = _core.qc_metrics_f32 if data.dtype == np.float32 else _core.qc_metrics_f64
    return f(indptr, indices, data, shape[1], qc_masks, list(percent_top)), data.dtype


def calculate_qc_metrics(
    adata: AnnData,
    *,
    expr_type: str = "counts",
    var_type: str = "genes",
    qc_vars: Sequence[str] | str = (),
    percent_top: Sequence[int] | None = (50, 100, 200, 500),
    layer: str | None = None,
    use_raw: bool = False,
    inplace: bool = False,
    log1p: bool = True,
    backend: str = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Quality-control metrics per cell and per gene, as ``scanpy.pp.calculate_qc_metrics``.

    Parameters
    ----------
    adata
        Raw counts in ``X`` (or ``layer`` / ``raw``).
    expr_type, var_type
        Words used in the column names (``n_genes_by_counts``, ...).
    qc_vars
        Boolean ``var`` columns (e.g. ``"mt"``) whose share of the counts is reported.
    percent_top
        Ranks ``n`` for ``pct_counts_in_top_{n}_genes``; ``None`` or empty for none.
    layer, use_raw
        Read counts from ``layers[layer]`` or ``raw.X``.
    inplace
        Add the columns to ``obs`` and ``var`` instead of returning them.
    log1p
        Also write the ``log1p_`` columns.
    backend
        Accepted for symmetry; the metrics are sums computed on the CPU.

    Returns
    -------
    ``(obs_metrics, var_metrics)`` unless ``inplace``.
    """
    check_backend(backend)
    if inplace:
        actual(adata)
    if isinstance(qc_vars, str):
        qc_vars = [qc_vars]
    if use_raw and adata.raw is None:
        raise ValueError("use_raw=True but the AnnData has no .raw")
    var = adata.raw.var if use_raw else adata.var
    masks = []
    for q in qc_vars:
        if q not in var.columns:
            raise ValueError(f"qc_vars: var has no column {q!r}")
        masks.append(np.ascontiguousarray(var[q].to_numpy(bool)))
    top = sorted(percent_top) if percent_top else []
    x = matrix(adata, layer, use_raw)
    m, dtype = _qc(x, masks, top)
    n_obs = x.shape[0]
    obs = pd.DataFrame(index=adata.obs_names)
    # scanpy's dtypes: nnz counts are int32 for sparse X, int64 for dense.
    obs[f"n_{var_type}_by_{expr_type}"] = m["n_genes_by_counts"].astype(np.int32 if sp.issparse(x) else np.int64)
    if log1p:
        obs[f"log1p_n_{var_type}_by_{expr_type}"] = np.log1p(obs[f"n_{var_type}_by_{expr_type}"].to_numpy())
    total = m["total_counts"].astype(dtype)
    obs[f"total_{expr_type}"] = total
    if log1p:
        obs[f"log1p_total_{expr_type}"] = np.log1p(total)
    for n, v in zip(top, m["pct_top"], strict=True):
        obs[f"pct_{expr_type}_in_top_{n}_{var_type}"] = v
    for q, t in zip(qc_vars, m["qc_totals"], strict=True):
        t = t.astype(dtype)
        obs[f"total_{expr_type}_{q}"] = t
        if log1p:
            obs[f"log1p_total_{expr_type}_{q}"] = np.log1p(t)
        with np.errstate(invalid="ignore", divide="ignore"):
            obs[f"pct_{expr_type}_{q}"] = t / total * 100
    varm = pd.DataFrame(index=var.index)
    ncells = m["n_cells_by_counts"]
    varm[f"n_cells_by_{expr_type}"] = ncells
    mean = m["gene_totals"] / n_obs
    varm[f"mean_{expr_type}"] = mean
    if log1p:
        varm[f"log1p_mean_{expr_type}"] = np.log1p(mean)
    varm[f"pct_dropout_by_{expr_type}"] = (1 - ncells / n_obs) * 100
    gt = m["gene_totals"].astype(dtype)
    varm[f"total_{expr_type}"] = gt
    if log1p:
        varm[f"log1p_total_{expr_type}"] = np.log1p(gt)
    if not inplace:
        return obs, varm
    for k in obs.columns:
        adata.obs[k] = obs[k].to_numpy()
    target = adata.raw.var if use_raw else adata.var
    for k in varm.columns:
        target[k] = varm[k].to_numpy()
    return None


def _filter(adata, axis, min_counts, min_genes_or_cells, max_counts, max_genes_or_cells, inplace, what):
    given = [v is not None for v in (min_counts, min_genes_or_cells, max_counts, max_genes_or_cells)]
    if sum(given) != 1:
        raise ValueError(f"{what}: give exactly one of min_counts, min_{'genes' if axis == 0 else 'cells'}, max_counts, max_{'genes' if axis == 0 else 'cells'}")
    x = matrix(adata)
    m, dtype = _qc(x, [], [])
    if axis == 0:
        number = m["n_genes_by_counts"].astype(np.int64)
        counts = m["total_counts"].astype(dtype)
    else:
        number = m["n_cells_by_counts"].astype(np.int64)
        counts = m["gene_totals"].astype(dtype)
    by_number = min_genes_or_cells is not None or max_genes_or_cells is not None
    values = number if by_number else counts
    keep = np.ones(values.shape[0], dtype=bool)
    lo = min_genes_or_cells if by_number else min_counts
    hi = max_genes_or_cells if by_number else max_counts
    if lo is not None:
        keep &= values >= lo
    if hi is not None:
        keep &= values <= hi
    if not inplace:
        return keep, values
    actual(adata)
    key = ("n_genes" if axis == 0 else "n_cells") if by_number else "n_counts"
    if axis == 0:
        adata.obs[key] = values
        adata._inplace_subset_obs(keep)
    else:
        adata.var[key] = values
        adata._inplace_subset_var(keep)
    return None


def filter_cells(
    adata: AnnData,
    *,
    min_counts: int | None = None,
    min_genes: int | None = None,
    max_counts: int | None = None,
    max_genes: int | None = None,
    inplace: bool = True,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray] | None:
    """Keeps the cells within one bound, as ``scanpy.pp.filter_cells``: adds ``obs["n_genes"]``
    (gene bounds) or ``obs["n_counts"]`` and subsets ``adata`` in place; with
    ``inplace=False`` returns ``(cell_subset, number_per_cell)``."""
    check_backend(backend)
    return _filter(adata, 0, min_counts, min_genes, max_counts, max_genes, inplace, "filter_cells")


def filter_genes(
    adata: AnnData,
    *,
    min_counts: int | None = None,
    min_cells: int | None = None,
    max_counts: int | None = None,
    max_cells: int | None = None,
    inplace: bool = True,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray] | None:
    """Keeps the genes within one bound, as ``scanpy.pp.filter_genes``: adds ``var["n_cells"]``
    or ``var["n_counts"]`` and subsets in place; with ``inplace=False`` returns
    ``(gene_subset, number_per_gene)``."""
    check_backend(backend)
    return _filter(adata, 1, min_counts, min_cells, max_counts, max_cells, inplace, "filter_genes")


def _inplace_values(adata: AnnData, layer: str | None, rows: bool, counts: bool = False):
    """The stored values of X (or a layer) to rewrite in place, checked before anything is
    changed: ``(indptr, indices, data, finish)``. ``rows`` asks for one row per cell (CSR, or a
    C-ordered dense array seen as rows, whose ``indices`` are None); a CSC matrix is then
    rewritten through a CSR copy, which ``finish()`` stores (as scanpy's normalize_total
    does). Integer data become float32, as scanpy does."""
    if layer is None and adata.isbacked:
        raise ValueError("X is backed on disk: load it first (adata = adata.to_memory())")
    x = matrix(adata, layer)
    values = x.data if sp.issparse(x) else x
    (check_counts if counts else check_values)(values, "X" if layer is None else f"layers[{layer!r}]")

    def put(new):
        if layer is None:
            adata.X = new
        else:
            adata.layers[layer] = new

    done = lambda: None  # noqa: E731
    if sp.issparse(x):
        if x.data.dtype.kind in "iub":
            x = x.astype(np.float32)
            put(x)
        if x.format == "csr" or not rows:
            return x.indptr.astype(np.int64), x.indices, x.data, done
        # scanpy's normalize_total leaves a CSC matrix as CSR.
        xr = x.tocsr()
        return xr.indptr.astype(np.int64), xr.indices, xr.data, lambda: put(xr)
    if x.dtype.kind in "iub":
        x = x.astype(np.float32)
        put(x)
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
        put(x)
    n, g = x.shape
    return np.arange(0, n * g + 1, g, dtype=np.int64), None, x.reshape(-1), done


def normalize_total(
    adata: AnnData,
    *,
    target_sum: float | None = None,
    exclude_highly_expressed: bool = False,
    max_fraction: float = 0.05,
    key_added: str | None = None,
    layer: str | None = None,
    inplace: bool = True,
    copy: bool = False,
    backend: str = "auto",
) -> AnnData | None:
    """Scales every cell to ``target_sum`` total counts, as ``scanpy.pp.normalize_total``, in
    place on X's values. Without ``target_sum``, the target is scanpy's median of the totals:
    over all cells for sparse data, over the cells with counts for dense arrays. With
    ``exclude_highly_expressed``, the totals leave out every gene that holds more than
    ``max_fraction`` of some cell's total.

    ``inplace=False`` leaves ``adata`` as it is and returns scanpy's dict: the normalised
    values ``"X"`` and the factors ``"norm_factor"``. The scaling runs on the CPU whatever
    ``backend`` says: it is one pass over memory.
    """
    check_backend(backend)
    if exclude_highly_expressed and not 0 <= max_fraction <= 1:
        raise ValueError("Choose max_fraction between 0 and 1.")
    if not inplace:
        if layer is None and adata.isbacked:
            raise ValueError("X is backed on disk: load it first (adata = adata.to_memory())")
        work = AnnData(X=matrix(adata, layer).copy())
        normalize_total(work, target_sum=target_sum, exclude_highly_expressed=exclude_highly_expressed,
                        max_fraction=max_fraction, key_added="norm_factor", backend=backend)
        return {"X": work.X, "norm_factor": work.obs["norm_factor"].to_numpy()}
    if copy:
        adata = adata.copy()
    actual(adata)
    indptr, indices, data, finish = _inplace_values(adata, layer, rows=True, counts=True)
    if data.dtype not in (np.float32, np.float64):
        raise ValueError(f"X: unsupported dtype {data.dtype}")
    f = _core.normalize_total_f32 if data.dtype == np.float32 else _core.normalize_total_f64
    idx = None if indices is None else np.ascontiguousarray(indices, dtype=np.int32)
    target, counts = f(indptr, idx, adata.n_vars, data, None if target_sum is None else float(target_sum),
                       float(max_fraction) if exclude_highly_expressed else None)
    finish()
    if key_added is not None:
        # scanpy stores the normalisation factor: the count total over the target (0 for a
        # cell without counts, which its division leaves as it is).
        adata.obs[key_added] = counts / data.dtype.type(target)
    return adata if copy else None


def log1p(
    adata: AnnData,
    *,
    base: float | None = None,
    layer: str | None = None,
    copy: bool = False,
    backend: str = "auto",
) -> AnnData | None:
    """``X = log(1 + X)`` (divided by ``log(base)`` when given) in place, as
    ``scanpy.pp.log1p``; records ``uns["log1p"]``."""
    check_backend(backend)
    if copy:
        adata = adata.copy()
    actual(adata)
    _, _, data, finish = _inplace_values(adata, layer, rows=False)
    if data.dtype not in (np.float32, np.float64):
        raise ValueError(f"X: unsupported dtype {data.dtype}")
    (_core.log1p_f32 if data.dtype == np.float32 else _core.log1p_f64)(data)
    if base is not None:
        data /= np.log(base).astype(data.dtype)
    finish()
    adata.uns["log1p"] = {"base": base}
    return adata if copy else None


def highly_variable_genes(
    adata: AnnData,
    *,
    layer: str | None = None,
    n_top_genes: int | None = None,
    min_disp: float = 0.5,
    max_disp: float = np.inf,
    min_mean: float = 0.0125,
    max_mean: float = 3,
    span: float = 0.3,
    n_bins: int = 20,
    flavor: str = "seurat",
    subset: bool = False,
    inplace: bool = True,
    batch_key: str | None = None,
    backend: str = "auto",
) -> pd.DataFrame | None:
    """Highly variable genes, as ``scanpy.pp.highly_variable_genes``: flavors ``seurat`` and
    ``cell_ranger`` on log-normalised data, ``seurat_v3`` on counts (``layer="counts"``), each
    with or without ``batch_key``. Writes ``var["highly_variable"]`` and the flavor's columns,
    and ``uns["hvg"]``.

    With ``n_top_genes``, the genes of the highest normalised dispersions (seurat_v3: variances);
    without it, seurat and cell_ranger keep the genes with ``min_mean < means < max_mean`` and
    ``min_disp < dispersions_norm < max_disp`` (a NaN dispersion counts as 0), and seurat_v3
    takes scanpy's 2,000 genes. ``n_bins`` sets seurat's mean bins (cell_ranger's are
    percentiles, as in scanpy); only scanpy's ``span=0.3`` is implemented.
    """
    check_backend(backend)
    if int(n_bins) < 1:
        raise ValueError("highly_variable_genes: n_bins must be at least 1")
    if span != 0.3:
        raise NotImplementedError("highly_variable_genes: only span=0.3 is implemented")
    cutoffs = None
    if flavor == "seurat_v3" and n_top_genes is None:
        n_top_genes = 2000
    elif n_top_genes is None:
        cutoffs = tuple(float(v) for v in (min_mean, max_mean, min_disp, max_disp))
        if any(np.isnan(cutoffs)):
            raise ValueError("highly_variable_genes: the cut-offs must not be NaN")
    x = matrix(adata, layer)
    parts = csr_parts(x)
    if flavor == "seurat_v3":
        check_counts(parts[2], "X")
    codes = cats = None
    if batch_key is not None:
        if batch_key not in adata.obs.columns:
            raise ValueError(f"batch_key: obs has no column {batch_key!r}")
        b = adata.obs[batch_key].astype("category")
        cats = [str(c) for c in b.cat.categories]
        c = b.cat.codes.to_numpy()
        if (c < 0).any():
            raise ValueError(f"obs[{batch_key!r}] has missing values")
        codes = np.ascontiguousarray(c.astype(np.uint32))
    hv, cols = _core.highly_variable_genes(
        parts, [str(v) for v in adata.var_names], flavor, int(n_top_genes or 0), cutoffs, int(n_bins), codes, cats, backend
    )
    df = pd.DataFrame(index=adata.var_names)
    for name, v in cols:
        df[name] = v
    df["highly_variable"] = hv
    if flavor == "seurat_v3" and "highly_variable_rank" in df.columns:
        df["highly_variable_rank"] = df["highly_variable_rank"].astype(np.float32)
    if not inplace:
        if batch_key is None and flavor in ("seurat", "cell_ranger"):
            # scanpy's returned frame also names each gene's mean bin.
            means = df["means"].to_numpy()
            if flavor == "seurat":
                bins = pd.cut(means, bins=int(n_bins))
            else:
                bins = pd.cut(means, np.r_[-np.inf, np.percentile(means, np.arange(10, 105, 5)), np.inf])
            df.insert(2, "mean_bin", bins)
        if batch_key is not None and cutoffs is not None:
            # scanpy returns this frame in the gene-name order of its per-gene merge.
            df = df.sort_index()
        return df.loc[df["highly_variable"]] if subset else df
    actual(adata)
    adata.uns["hvg"] = {"flavor": flavor}
    for k in df.columns:
        adata.var[k] = df[k].to_numpy()
    if subset:
        adata._inplace_subset_var(df["highly_variable"].to_numpy())
    return None


def scale(
    adata: AnnData,
    *,
    zero_center: bool = True,
    max_value: float | None = None,
    copy: bool = False,
    layer: str | None = None,
    backend: str = "auto",
) -> AnnData | None:
    """``(X - mean) / std`` per gene (ddof 1; a zero std counts as 1), clipped to
    ``max_value``, as ``scanpy.pp.scale``: X becomes a dense array (float64 from sparse data,
    the input's dtype from dense float32 data, as scanpy), ``var["mean"]`` and ``var["std"]``
    record the statistics. Sparse data with ``zero_center=False`` stay sparse, as in scanpy:
    each stored value is divided by its gene's std (in place for CSR; CSC data and integers
    become float64) and capped at ``max_value``.
    """
    check_backend(backend)
    if layer is None and adata.isbacked:
        raise ValueError("X is backed on disk: load it first (adata = adata.to_memory())")
    if copy:
        adata = adata.copy()
    actual(adata)
    x = matrix(adata, layer)
    if sp.issparse(x) and not zero_center:
        return _scale_sparse(adata, x, max_value, layer, backend, copy)
    parts = csr_parts(x)
    mean, std = _core.mean_std(parts, backend)
    out = _core.scale(parts, mean, std, zero_center, None if max_value is None else float(max_value), backend)
    # scanpy's dtype: float64 from sparse data (densified), the input's float dtype from dense.
    if not sp.issparse(x) and x.dtype == np.float32:
        out = out.astype(np.float32)
    _store_scaled(adata, layer, out, mean, std)
    return adata if copy else None


def _store_scaled(adata: AnnData, layer: str | None, x, mean: np.ndarray, std: np.ndarray) -> None:
    """Puts scale's result into X (or the layer) and its statistics into var, a zero std
    recorded as 1, as scanpy records it."""
    std = std.copy()
    std[std == 0] = 1
    if layer is None:
        adata.X = x
    else:
        adata.layers[layer] = x
    adata.var["mean"] = mean
    adata.var["std"] = std


def _scale_sparse(adata: AnnData, x, max_value: float | None, layer: str | None, backend: str, copy: bool):
    """scale(zero_center=False) of a sparse X (scanpy's ``scale_and_clip_csr``)."""
    check_values(x.data, "X" if layer is None else f"layers[{layer!r}]")
    if x.data.dtype.kind in "iub":
        x = x.astype(np.float64)
    elif x.data.dtype not in (np.float32, np.float64):
        raise ValueError(f"X: unsupported dtype {x.data.dtype}")
    mean, std = _core.mean_std(csr_parts(x), backend)
    fmt = x.format
    if fmt != "csr":
        # scanpy scales other formats through their transpose into new float64 values and
        # keeps the format.
        x = x.astype(np.float64).tocsr()
    f = _core.scale_sparse_f32 if x.data.dtype == np.float32 else _core.scale_sparse_f64
    f(np.ascontiguousarray(x.indices, dtype=np.int32), x.data, std, None if max_value is None else float(max_value))
    _store_scaled(adata, layer, x.asformat(fmt), mean, std)
    return adata if copy else None


def pca(
    adata: AnnData,
    n_comps: int | None = None,
    *,
    layer: str | None = None,
    zero_center: bool = True,
    svd_solver: str | None = None,
    random_state: int = 0,
    mask_var: np.ndarray | str | None = "auto",
    use_highly_variable: bool | None = None,
    key_added: str | None = None,
    copy: bool = False,
    backend: str = "auto",
) -> AnnData | None:
    """Principal components, as ``scanpy.pp.pca`` (also ``scanpy.tl.pca``): on the genes of
    ``var["highly_variable"]`` when it exists, by the exact covariance eigendecomposition
    (scanpy's ``covariance_eigh``; ``svd_solver="randomized"`` for the randomized range finder;
    ``arpack`` maps to the exact solver, with which it agrees). Writes ``obsm["X_pca"]``
    (float32), ``varm["PCs"]`` and ``uns["pca"]``; sparse data are centred implicitly.
    ``zero_center=False`` is scanpy's truncated SVD of the uncentred data (exact here, where
    scanpy's default for it is scikit-learn's randomized ``TruncatedSVD``).
    """
    check_backend(backend)
    solver = {None: "covariance_eigh", "arpack": "covariance_eigh", "covariance_eigh": "covariance_eigh",
              "auto": "covariance_eigh", "randomized": "randomized"}.get(svd_solver)
    if solver is None:
        raise ValueError(f"svd_solver must be None, 'arpack', 'covariance_eigh' or 'randomized', not {svd_solver!r}")
    if copy:
        adata = adata.copy()
    actual(adata)
    if use_highly_variable is not None:
        mask_var = "highly_variable" if use_highly_variable else None
    if isinstance(mask_var, str) and mask_var == "auto":
        mask_var = "highly_variable" if "highly_variable" in adata.var.columns else None
    if mask_var is None:
        mask = np.ones(adata.n_vars, dtype=bool)
    elif isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            raise ValueError(f"mask_var: var has no column {mask_var!r}")
        mask = adata.var[mask_var].to_numpy(bool)
    else:
        mask = np.asarray(mask_var, dtype=bool)
    cols = np.flatnonzero(mask)
    n_obs, k = adata.n_obs, cols.size
    m = min(n_obs, k)
    if n_comps is None:
        n_comps = m - 1 if m <= 50 else 50
    x = matrix(adata, layer)
    if sp.issparse(x):
        r = _core.pca_sparse(csr_parts(x), [int(c) for c in cols], int(n_comps), solver, bool(zero_center), backend)
    else:
        check_values(x, "X")
        sub = x if k == x.shape[1] else x[:, cols]
        r = _core.pca_dense(np.ascontiguousarray(sub, dtype=np.float32), int(n_comps), solver, bool(zero_center),
                            backend)
    key_obsm, key_varm, key_uns = ("X_pca", "PCs", "pca") if key_added is None else (key_added,) * 3
    adata.obsm[key_obsm] = r["X_pca"]
    pcs = np.zeros((adata.n_vars, n_comps), dtype=np.float64)
    pcs[cols] = r["components"]
    adata.varm[key_varm] = pcs
    adata.uns[key_uns] = {
        "params": {"zero_center": zero_center, "use_highly_variable": mask_var == "highly_variable",
                   "mask_var": mask_var if isinstance(mask_var, str) else None},
        "variance": r["variance"],
        "variance_ratio": r["variance_ratio"],
    }
    return adata if copy else None


def neighbors(
    adata: AnnData,
    n_neighbors: int = 15,
    n_pcs: int | None = None,
    *,
    use_rep: str | None = None,
    knn: bool = True,
    method: str = "umap",
    metric: str = "euclidean",
    random_state: int = 0,
    key_added: str | None = None,
    copy: bool = False,
    knn_method: str = "auto",
    backend: str = "auto",
) -> AnnData | None:
    """The kNN graph with umap's connectivities, as ``scanpy.pp.neighbors`` (method ``umap``,
    metric ``euclidean`` or ``cosine``): ``obsp["distances"]``, ``obsp["connectivities"]`` and
    ``uns["neighbors"]``.

    The search is exact up to 300,000 cells and NN-descent beyond (``knn_method="exact"`` or
    ``"approx"`` forces one); scanpy uses pynndescent above 4,096 cells, so its graph is the
    approximate one of ours.
    """
    check_backend(backend)
    if not knn or method != "umap" or metric not in ("euclidean", "cosine"):
        raise NotImplementedError("neighbors supports knn=True, method='umap', metric='euclidean' or 'cosine'")
    if copy:
        adata = adata.copy()
    actual(adata)
    if use_rep is None:
        if "X_pca" in adata.obsm:
            rep = adata.obsm["X_pca"]
        elif adata.n_vars <= 50:
            rep = matrix(adata)
            rep = rep.toarray() if sp.issparse(rep) else rep
        else:
            pca(adata, backend=backend)
            rep = adata.obsm["X_pca"]
    elif use_rep == "X":
        rep = matrix(adata)
        rep = rep.toarray() if sp.issparse(rep) else rep
    else:
        if use_rep not in adata.obsm:
            raise ValueError(f"use_rep: obsm has no {use_rep!r}")
        rep = adata.obsm[use_rep]
    rep = np.asarray(rep)
    if n_pcs is not None:
        rep = rep[:, :n_pcs]
    check_values(rep, "representation")
    k, conn, dist = _core.neighbors(
        np.ascontiguousarray(rep, dtype=np.float32), int(n_neighbors), knn_method, metric, int(random_state), backend
    )
    from ._anndata import csr as to_csr

    key = "neighbors" if key_added is None else key_added
    ckey = "connectivities" if key_added is None else f"{key_added}_connectivities"
    dkey = "distances" if key_added is None else f"{key_added}_distances"
    dist = to_csr(dist)
    if metric == "cosine":
        # scanpy's cosine distances come from scikit-learn in float32.
        dist = dist.astype(np.float32)
    adata.obsp[dkey] = dist
    adata.obsp[ckey] = to_csr(conn)
    params = {"n_neighbors": k, "method": "umap", "random_state": random_state, "metric": metric}
    if n_pcs is not None:
        params["n_pcs"] = n_pcs
    if use_rep is not None:
        params["use_rep"] = use_rep
    adata.uns[key] = {"connectivities_key": ckey, "distances_key": dkey, "params": params}
    return adata if copy else None
