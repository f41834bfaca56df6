"""Tools: scanpy's ``sc.tl`` functions with its names, defaults and keys."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import _core
from ._anndata import actual, check_backend, csr_parts, matrix, uns
from .pp import pca

__all__ = ["pca", "leiden", "umap", "score_genes", "score_genes_cell_cycle", "rank_genes_groups"]


def _graph(adata: AnnData, neighbors_key: str | None, obsp: str | None):
    if obsp is not None:
        g = adata.obsp[obsp]
    else:
        key = neighbors_key or "neighbors"
        if key not in adata.uns:
            raise ValueError(f"no uns[{key!r}]: run cartscope.pp.neighbors first")
        g = adata.obsp[adata.uns[key]["connectivities_key"]]
    g = sp.csr_matrix(g)
    if g.shape[0] != g.shape[1]:
        raise ValueError("the graph is not square")
    return csr_parts(g, what="connectivities")


def leiden(
    adata: AnnData,
    resolution: float = 1,
    *,
    random_state: int = 0,
    key_added: str = "leiden",
    neighbors_key: str | None = None,
    obsp: str | None = None,
    flavor: str = "leidenalg",
    n_iterations: int = -1,
    directed: bool | None = None,
    use_weights: bool = True,
    copy: bool = False,
    backend: str = "auto",
) -> AnnData | None:
    """Leiden clusters of the connectivities, as ``scanpy.tl.leiden``: the same labels for
    the same graph, parameters and ``random_state``, in ``obs[key_added]`` (categorical,
    "0" the largest cluster) with ``uns[key_added]["params"]``.

    Parameters
    ----------
    adata
        AnnData with a neighbour graph (``pp.neighbors``).
    resolution
        Resolution of the quality function (modularity at 1).
    random_state
        Seed: scanpy's ``random_state``, giving scanpy's partition.
    key_added
        obs column (and uns key) of the result.
    neighbors_key, obsp
        Which graph: ``uns[neighbors_key]["connectivities_key"]`` or ``obsp[obsp]``.
    flavor
        ``"leidenalg"`` (scanpy's default: leidenalg's RB-configuration quality on the
        directed graph, one arc per stored entry) or ``"igraph"`` (igraph's
        ``community_leiden`` with modularity on the undirected graph, scanpy's announced
        future default with ``n_iterations=2``).
    n_iterations
        Leiden iterations, each from the previous partition; negative (the default): until an
        iteration moves no node.
    directed
        ``None``: directed for ``"leidenalg"``, undirected for ``"igraph"`` (scanpy's rule).
        ``"igraph"`` with ``directed=True`` raises ``ValueError`` as scanpy does;
        ``"leidenalg"`` on the undirected graph is not implemented.
    use_weights
        Edge weights are the connectivities; ``False`` is not implemented.
    copy
        Work on (and return) a copy.
    backend
        ``"auto"``, ``"cpu"`` or ``"gpu"``; Leiden runs on the CPU in any case.
    """
    check_backend(backend)
    if flavor not in ("igraph", "leidenalg"):
        raise ValueError(f"flavor must be either 'igraph' or 'leidenalg', but {flavor!r} was passed")
    if flavor == "igraph" and directed:
        raise ValueError("Cannot use igraph's leiden implementation with a directed graph.")
    if flavor == "leidenalg" and directed is False:
        raise NotImplementedError("leiden(flavor='leidenalg') runs on the directed graph only")
    if not use_weights:
        raise NotImplementedError("leiden supports use_weights=True only")
    if copy:
        adata = adata.copy()
    actual(adata)
    g = _graph(adata, neighbors_key, obsp)
    membership, n_clusters, _ = _core.leiden(
        g, flavor == "leidenalg", float(resolution), int(n_iterations), int(random_state)
    )
    cats = [str(i) for i in range(n_clusters)]
    adata.obs[key_added] = pd.Categorical.from_codes(membership.astype(np.int64), categories=cats)
    adata.uns[key_added] = {
        "params": {"resolution": resolution, "random_state": random_state, "n_iterations": n_iterations}
    }
    return adata if copy else None


def umap(
    adata: AnnData,
    *,
    min_dist: float = 0.5,
    spread: float = 1.0,
    n_components: int = 2,
    maxiter: int | None = None,
    alpha: float = 1.0,
    gamma: float = 1.0,
    negative_sample_rate: int = 5,
    init_pos: str = "spectral",
    random_state: int = 0,
    a: float | None = None,
    b: float | None = None,
    neighbors_key: str | None = None,
    copy: bool = False,
    backend: str = "auto",
) -> AnnData | None:
    """The UMAP layout of the connectivities, as ``scanpy.tl.umap``: spectral initialisation,
    umap's SGD; ``obsm["X_umap"]`` and ``uns["umap"]["params"]`` (a, b).

    Deterministic for a seed and thread count, but not umap-learn's random stream: the layout
    matches scanpy's in quality (neighbourhood preservation), not coordinate by coordinate.
    ``a`` and ``b``, when both are given, replace the curve fitted from ``min_dist`` and
    ``spread``, as in scanpy. ``init_pos`` other than ``"spectral"`` is not implemented.
    """
    check_backend(backend)
    if init_pos != "spectral":
        raise NotImplementedError("umap supports init_pos='spectral'")
    ab = None if a is None or b is None else (float(a), float(b))
    if copy:
        adata = adata.copy()
    actual(adata)
    g = _graph(adata, neighbors_key, None)
    init = adata.obsm.get("X_pca")
    init = None if init is None else np.ascontiguousarray(init, dtype=np.float32)
    emb, fa, fb = _core.umap(
        g, init, float(min_dist), float(spread), maxiter, int(negative_sample_rate),
        float(alpha), float(gamma), int(n_components), int(random_state), ab, backend,
    )
    adata.obsm["X_umap"] = emb
    adata.uns["umap"] = {"params": {"a": fa, "b": fb}}
    if random_state != 0:
        adata.uns["umap"]["params"]["random_state"] = random_state
    return adata if copy else None


def score_genes(
    adata: AnnData,
    gene_list: Sequence[str],
    *,
    ctrl_size: int = 50,
    gene_pool: Sequence[str] | None = None,
    n_bins: int = 25,
    score_name: str = "score",
    random_state: int | None = 0,
    copy: bool = False,
    use_raw: bool | None = None,
    backend: str = "auto",
) -> AnnData | None:
    """A gene set's score per cell (mean of the set minus the mean of expression-matched
    control genes), as ``scanpy.tl.score_genes``: the same control genes as scanpy for the
    same data, ``gene_pool``, ``n_bins`` and ``random_state`` (numpy's legacy seed), in
    ``obs[score_name]``.

    ``random_state=None`` (scanpy then draws from numpy's global state) is not implemented.
    """
    if copy:
        adata = adata.copy()
    adata.obs[score_name] = _scores(adata, [gene_list], ctrl_size, gene_pool, n_bins, random_state, use_raw,
                                    backend)[0]
    return adata if copy else None


def _scores(adata, gene_lists, ctrl_size, gene_pool, n_bins, random_state, use_raw, backend) -> list[np.ndarray]:
    """score_genes of each list, computed before anything is written into ``adata``."""
    check_backend(backend)
    if random_state is None:
        raise NotImplementedError("score_genes(random_state=None) is not implemented: give a seed")
    if not 0 <= int(random_state) < 2**32:
        raise ValueError("random_state must be between 0 and 2**32 - 1")
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    pool = None if gene_pool is None else [str(g) for g in ([gene_pool] if isinstance(gene_pool, str) else gene_pool)]
    actual(adata)
    use_raw = adata.raw is not None if use_raw is None else use_raw
    x = matrix(adata, use_raw=use_raw)
    names = [str(v) for v in (adata.raw.var_names if use_raw else adata.var_names)]
    parts = csr_parts(x)
    out = []
    for genes in gene_lists:
        genes = [genes] if isinstance(genes, str) else genes
        out.append(_core.score_genes(parts, names, [str(g) for g in genes], int(ctrl_size), pool,
                                     int(n_bins), int(random_state), backend))
    return out


def score_genes_cell_cycle(
    adata: AnnData,
    *,
    s_genes: Sequence[str],
    g2m_genes: Sequence[str],
    copy: bool = False,
    **kwargs,
) -> AnnData | None:
    """Cell-cycle scores and phase, as ``scanpy.tl.score_genes_cell_cycle``: ``score_genes``
    of the S and of the G2/M list with ``ctrl_size`` the shorter list's length, in
    ``obs["S_score"]`` and ``obs["G2M_score"]``, and ``obs["phase"]``: "G2M" where the G2/M
    score is the larger, "G1" where both are negative, "S" otherwise.

    ``kwargs`` go to :func:`score_genes` (``gene_pool``, ``n_bins``, ``random_state``,
    ``use_raw``, ``backend``); nothing is written unless both scores succeed.
    """
    if copy:
        adata = adata.copy()
    kw = {"gene_pool": None, "n_bins": 25, "random_state": 0, "use_raw": None, "backend": "auto"}
    unknown = set(kwargs) - set(kw)
    if unknown:
        raise TypeError(f"score_genes_cell_cycle got unexpected arguments {sorted(unknown)}")
    kw.update(kwargs)
    ctrl_size = min(len(s_genes), len(g2m_genes))
    s, g2m = _scores(adata, [s_genes, g2m_genes], ctrl_size, kw["gene_pool"], kw["n_bins"], kw["random_state"],
                     kw["use_raw"], kw["backend"])
    phase = np.where(g2m > s, "G2M", "S").astype(object)
    phase[(s < 0) & (g2m < 0)] = "G1"
    adata.obs["S_score"] = s
    adata.obs["G2M_score"] = g2m
    adata.obs["phase"] = pd.Series(phase, index=adata.obs_names)
    return adata if copy else None


def rank_genes_groups(
    adata: AnnData,
    groupby: str,
    *,
    mask_var: np.ndarray | str | None = None,
    use_raw: bool | None = None,
    groups: str | Sequence[str] = "all",
    reference: str = "rest",
    n_genes: int | None = None,
    rankby_abs: bool = False,
    pts: bool = False,
    key_added: str | None = None,
    copy: bool = False,
    method: str | None = None,
    corr_method: str = "benjamini-hochberg",
    tie_correct: bool = False,
    layer: str | None = None,
    backend: str = "auto",
) -> AnnData | None:
    """Marker genes of each group against the rest or a reference group, as
    ``scanpy.tl.rank_genes_groups``: methods ``t-test`` (default), ``t-test_overestim_var``
    and ``wilcoxon`` (with ``tie_correct``); ``groups`` (a subset, in its
    order), ``reference``, ``mask_var`` (only the masked genes are ranked), ``pts``
    (``uns[key_added]["pts"]`` and, against the rest,
    ``["pts_rest"]``); ``uns[key_added]`` in scanpy's layout, so ``sc.get.rank_genes_groups_df``
    and ``sc.pl.rank_genes_groups`` read it; ``corr_method`` ``benjamini-hochberg`` or
    ``bonferroni``; ``rankby_abs`` ranks by the absolute score.

    With ``groups="all"``, groups of fewer than two cells are left out (scanpy raises);
    named in ``groups`` or as ``reference``, they raise ``ValueError`` as in scanpy.
    ``logreg`` is not implemented.
    """
    check_backend(backend)
    if corr_method not in ("benjamini-hochberg", "bonferroni"):
        raise ValueError(f"corr_method must be 'benjamini-hochberg' or 'bonferroni', not {corr_method!r}")
    if isinstance(groups, str) and groups != "all":
        raise ValueError("rank_genes_groups: groups is 'all' or a sequence of groups")
    method = "t-test" if method is None else method
    if groupby not in adata.obs.columns:
        raise ValueError(f"groupby: obs has no column {groupby!r}")
    if copy:
        adata = adata.copy()
    actual(adata)
    use_raw = (adata.raw is not None and layer is None) if use_raw is None else use_raw
    x = matrix(adata, layer, use_raw)
    names = adata.raw.var_names if use_raw else adata.var_names
    if mask_var is not None:
        # scanpy ranks only the genes of the mask (a boolean array or a var column).
        if isinstance(mask_var, str):
            if mask_var not in adata.var.columns:
                raise ValueError(f"mask_var: var has no column {mask_var!r}")
            mask_var = adata.var[mask_var].to_numpy()
        mask = np.asarray(mask_var)
        if mask.dtype != bool or mask.shape != (len(names),):
            raise ValueError(f"mask_var: a boolean mask of {len(names)} genes is needed")
        x, names = x[:, mask], names[mask]
    g = adata.obs[groupby]
    g = g if isinstance(g.dtype, pd.CategoricalDtype) else g.astype("category")
    labels = [str(c) for c in g.cat.categories]
    codes = np.ascontiguousarray(g.cat.codes.to_numpy(np.int32))
    chosen = None if isinstance(groups, str) else [str(v) for v in groups]
    ref = None if reference == "rest" else str(reference)
    out, order, fractions, rest = _core.rank_genes_groups(
        csr_parts(x), [str(v) for v in names], groupby, codes, labels, chosen, ref, method, n_genes,
        bool(tie_correct), corr_method, bool(rankby_abs), backend)
    r = uns(out)
    r["params"]["use_raw"] = bool(use_raw)
    if layer is not None:
        r["params"]["layer"] = layer
    if pts:
        index = pd.Index([str(v) for v in names])
        r["pts"] = pd.DataFrame(np.column_stack(fractions), index=index, columns=order)
        if rest is not None:
            r["pts_rest"] = pd.DataFrame(np.column_stack(rest), index=index, columns=order)
    adata.uns[key_added or "rank_genes_groups"] = r
    return adata if copy else None
