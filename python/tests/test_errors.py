"""Bad inputs raise the documented exception and leave the AnnData exactly as it was.

cartscope raises ValueError for bad data, keys and names (the core maps its BadInput/Usage
errors to ValueError) and NotImplementedError for the options its docstrings list as not
implemented. Each case snapshots X (type, dtype, values), obs, var, names, uns/obsm/varm/obsp
keys and layers before the call and compares after it.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import assert_unchanged, cs, snapshot


@pytest.fixture(scope="module")
def base(sample_raw):
    a = sample_raw[:300].copy()
    a.obs["grp"] = a.obs["truth_lineage"].astype("category")
    return a


def _fresh(base, kind: str):
    # a string matrix is large (<U32 per value): 50 cells are enough
    a = base[:50].copy() if kind == "strings" else base.copy()
    x = a.X.copy()
    if kind == "negative":
        x.data[5] = -1.0
    elif kind == "nan":
        x.data[5] = np.nan
    elif kind == "inf":
        x.data[5] = np.inf
    elif kind == "nan_dense_fortran":
        x = np.asfortranarray(x.toarray())
        x[0, 0] = np.nan
    elif kind == "negative_int_dense":
        x = x.toarray().astype(np.int32)
        x[0, 0] = -3
    elif kind == "strings":
        x = x.toarray().astype(str)
    elif kind == "complex":
        x = x.astype(np.complex64)
    elif kind == "nan_csc":
        x = x.tocsc()
        x.data[5] = np.nan
    elif kind == "negative_csc":
        x = x.tocsc()
        x.data[5] = -1.0
    elif kind == "index_past_end":
        x.indices[5] = x.shape[1]  # scipy's constructor does not check index values
    elif kind == "negative_index":
        x.indices[5] = -1
    elif kind == "indptr_decreasing":
        x.indptr[3] = x.indptr[4] + 1
    else:
        raise AssertionError(kind)
    a.X = x
    return a


# functions reading counts (non-negative required) and the others
COUNT_FNS = {
    "calculate_qc_metrics": lambda a, t: cs.pp.calculate_qc_metrics(a, qc_vars=["mt"], inplace=True),
    "filter_cells": lambda a, t: cs.pp.filter_cells(a, min_genes=10),
    "filter_genes": lambda a, t: cs.pp.filter_genes(a, min_cells=3),
    "normalize_total": lambda a, t: cs.pp.normalize_total(a, target_sum=1e4),
    "hvg_seurat_v3": lambda a, t: cs.pp.highly_variable_genes(a, n_top_genes=100, flavor="seurat_v3"),
    "run": lambda a, t: cs.run(a, backend="cpu"),
    "annotate": lambda a, t: cs.cart.annotate(a, backend="cpu"),
    "report": lambda a, t: cs.cart.report(a, t / "r.html", backend="cpu"),
}
OTHER_FNS = {
    "log1p": lambda a, t: cs.pp.log1p(a),
    "hvg_seurat": lambda a, t: cs.pp.highly_variable_genes(a, n_top_genes=100),
    "hvg_cell_ranger_batch": lambda a, t: cs.pp.highly_variable_genes(a, n_top_genes=100, flavor="cell_ranger",
                                                                       batch_key="batch"),
    "scale": lambda a, t: cs.pp.scale(a, max_value=10),
    "pca": lambda a, t: cs.pp.pca(a, n_comps=5),
    "score_genes": lambda a, t: cs.tl.score_genes(a, ["CD8A", "CD4", "GZMB"]),
    "rank_genes_groups": lambda a, t: cs.tl.rank_genes_groups(a, "grp"),
    "rank_genes_groups_wilcoxon": lambda a, t: cs.tl.rank_genes_groups(a, "grp", method="wilcoxon"),
}
ALL_FNS = {**COUNT_FNS, **OTHER_FNS}


def _expect_unchanged(a, fn, tmp_path, exc=ValueError, match=None):
    s = snapshot(a)
    with pytest.raises(exc, match=match):
        fn(a, tmp_path)
    assert_unchanged(a, s)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("fn", list(COUNT_FNS))
@pytest.mark.parametrize("kind", ["negative", "negative_int_dense"])
def test_negative_counts(base, tmp_path, fn, kind):
    _expect_unchanged(_fresh(base, kind), COUNT_FNS[fn], tmp_path, match="non-negative")


@pytest.mark.parametrize("fn", list(ALL_FNS))
@pytest.mark.parametrize("kind", ["nan", "inf", "nan_dense_fortran"])
def test_non_finite(base, tmp_path, fn, kind):
    _expect_unchanged(_fresh(base, kind), ALL_FNS[fn], tmp_path, match="NaN or infinite")


@pytest.mark.parametrize("fn", list(ALL_FNS))
@pytest.mark.parametrize("kind", ["strings", "complex"])
def test_non_numeric_dtype(base, tmp_path, fn, kind):
    _expect_unchanged(_fresh(base, kind), ALL_FNS[fn], tmp_path)


@pytest.mark.parametrize("fn", [f for f in ALL_FNS if f not in ("normalize_total", "log1p")])
@pytest.mark.parametrize("kind", ["nan_csc"])
def test_csc_bad_values(base, tmp_path, fn, kind):
    _expect_unchanged(_fresh(base, kind), ALL_FNS[fn], tmp_path)


@pytest.mark.parametrize("fn,kind", [("normalize_total", "nan_csc"), ("normalize_total", "negative_csc"),
                                     ("log1p", "nan_csc")])
def test_csc_bad_values_inplace_steps(base, tmp_path, fn, kind):
    _expect_unchanged(_fresh(base, kind), ALL_FNS[fn], tmp_path)


@pytest.mark.parametrize("fn", [f for f in ALL_FNS if f != "log1p"])
@pytest.mark.parametrize("kind", ["index_past_end", "negative_index", "indptr_decreasing"])
def test_corrupt_csr_structure(base, tmp_path, fn, kind):
    # The library reads scipy's index arrays in place (no copy), so each one is checked first.
    # (log1p maps the stored values alone and reads no index, as scanpy's does.)
    _expect_unchanged(_fresh(base, kind), ALL_FNS[fn], tmp_path)


def test_graph_steps_non_finite(sample_steps, tmp_path):
    a = sample_steps["pca"][:300].copy()
    a.obsm["X_pca"][3, 2] = np.nan
    _expect_unchanged(a, lambda x, t: cs.pp.neighbors(x), tmp_path, match="NaN or infinite")
    g = sample_steps["graph"][:300].copy()
    c = g.obsp["connectivities"].copy()
    c.data[0] = np.nan
    g.obsp["connectivities"] = c
    _expect_unchanged(g, lambda x, t: cs.tl.leiden(x), tmp_path, match="NaN or infinite")
    _expect_unchanged(g, lambda x, t: cs.tl.umap(x), tmp_path, match="NaN or infinite")


# --------------------------------------------------------------------------------------
# missing keys and bad names


MISSING = {
    "groupby": lambda a, t: cs.tl.rank_genes_groups(a, "nope"),
    "rank layer": lambda a, t: cs.tl.rank_genes_groups(a, "grp", layer="nope", use_raw=False),
    "rank use_raw without raw": lambda a, t: cs.tl.rank_genes_groups(a, "grp", use_raw=True),
    "rank method": lambda a, t: cs.tl.rank_genes_groups(a, "grp", method="logreg2"),
    "normalize layer": lambda a, t: cs.pp.normalize_total(a, layer="nope"),
    "log1p layer": lambda a, t: cs.pp.log1p(a, layer="nope"),
    "qc layer": lambda a, t: cs.pp.calculate_qc_metrics(a, layer="nope", inplace=True),
    "qc_vars column": lambda a, t: cs.pp.calculate_qc_metrics(a, qc_vars=["ribo"], inplace=True),
    "hvg layer": lambda a, t: cs.pp.highly_variable_genes(a, n_top_genes=100, layer="counts"),
    "hvg batch_key": lambda a, t: cs.pp.highly_variable_genes(a, n_top_genes=100, batch_key="nope"),
    "hvg flavor": lambda a, t: cs.pp.highly_variable_genes(a, n_top_genes=100, flavor="pearson"),
    "scale layer": lambda a, t: cs.pp.scale(a, layer="nope"),
    "pca mask_var": lambda a, t: cs.pp.pca(a, mask_var="nope"),
    "pca svd_solver": lambda a, t: cs.pp.pca(a, svd_solver="lobpcg"),
    "neighbors use_rep": lambda a, t: cs.pp.neighbors(a, use_rep="X_nope"),
    "leiden without neighbors": lambda a, t: cs.tl.leiden(a),
    "leiden neighbors_key": lambda a, t: cs.tl.leiden(a, neighbors_key="nope"),
    "leiden flavor": lambda a, t: cs.tl.leiden(a, flavor="louvain"),
    "leiden igraph directed": lambda a, t: cs.tl.leiden(a, flavor="igraph", directed=True),
    "umap without neighbors": lambda a, t: cs.tl.umap(a),
    "score_genes no gene present": lambda a, t: cs.tl.score_genes(a, ["NOT_A_GENE"]),
    "score_genes_cell_cycle no G2M gene present": lambda a, t: cs.tl.score_genes_cell_cycle(
        a, s_genes=list(a.var_names[:5]), g2m_genes=["NOT_A_GENE"]),
    "run layer": lambda a, t: cs.run(a, layer="nope"),
    "annotate layer": lambda a, t: cs.cart.annotate(a, layer="nope"),
    "report layer": lambda a, t: cs.cart.report(a, t / "r.html", layer="nope"),
}


@pytest.mark.parametrize("case", list(MISSING))
def test_missing_keys_and_bad_names(base, tmp_path, case):
    _expect_unchanged(base.copy(), MISSING[case], tmp_path)


def test_qc_use_raw_without_raw(base):
    a = base.copy()
    s = snapshot(a)
    try:
        cs.pp.calculate_qc_metrics(a, use_raw=True, inplace=True)
    except ValueError:
        pass
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"raised {type(e).__name__}: {e}, not ValueError") from e
    else:
        raise AssertionError("no error")
    assert_unchanged(a, s)


def test_leiden_missing_obsp_key(base, tmp_path):
    """obsp= names a missing key: KeyError (from AnnData's obsp, as scanpy), nothing changed."""
    _expect_unchanged(base.copy(), lambda a, t: cs.tl.leiden(a, obsp="nope"), tmp_path, exc=KeyError)


BACKEND_FNS = {
    "calculate_qc_metrics": lambda a, b: cs.pp.calculate_qc_metrics(a, inplace=True, backend=b),
    "filter_cells": lambda a, b: cs.pp.filter_cells(a, min_genes=1, backend=b),
    "filter_genes": lambda a, b: cs.pp.filter_genes(a, min_cells=1, backend=b),
    "normalize_total": lambda a, b: cs.pp.normalize_total(a, backend=b),
    "log1p": lambda a, b: cs.pp.log1p(a, backend=b),
    "highly_variable_genes": lambda a, b: cs.pp.highly_variable_genes(a, n_top_genes=10, backend=b),
    "scale": lambda a, b: cs.pp.scale(a, backend=b),
    "pca": lambda a, b: cs.pp.pca(a, backend=b),
    "neighbors": lambda a, b: cs.pp.neighbors(a, backend=b),
    "leiden": lambda a, b: cs.tl.leiden(a, backend=b),
    "umap": lambda a, b: cs.tl.umap(a, backend=b),
    "score_genes": lambda a, b: cs.tl.score_genes(a, ["CD4"], backend=b),
    "rank_genes_groups": lambda a, b: cs.tl.rank_genes_groups(a, "grp", backend=b),
    "run": lambda a, b: cs.run(a, backend=b),
    "annotate": lambda a, b: cs.cart.annotate(a, backend=b),
}


@pytest.mark.parametrize("fn", list(BACKEND_FNS))
@pytest.mark.parametrize("name", ["tpu", "GPU", ""])
def test_bad_backend_name(base, tmp_path, fn, name):
    _expect_unchanged(base.copy(), lambda a, t: BACKEND_FNS[fn](a, name), tmp_path, match="backend must be")


def test_bad_backend_name_report(base, tmp_path):
    _expect_unchanged(base.copy(), lambda a, t: cs.cart.report(a, t / "r.html", backend="cuda"), tmp_path,
                      match="backend must be")


# --------------------------------------------------------------------------------------
# run options and count checks


def _dup_var(a):
    names = a.var_names.tolist()
    names[1] = names[0]
    a.var_names = names
    return a


def _dup_obs(a):
    names = a.obs_names.tolist()
    names[1] = names[0]
    a.obs_names = names
    return a


def _fractional(a):
    a.X.data[0] = 0.5
    return a


RUN_BAD = {
    "unknown option": (lambda a: a, {"n_top_gene": 100}, "unknown field"),
    "non-positive resolution": (lambda a: a, {"resolution": -1.0}, "resolution"),
    "zero n_top_genes": (lambda a: a, {"n_top_genes": 0}, "n-top-genes"),
    "n_neighbors 1": (lambda a: a, {"n_neighbors": 1}, "n-neighbors"),
    "bad option type": (lambda a: a, {"min_genes": "many"}, "options"),
    "non-integer counts": (_fractional, {}, "non-integer"),
    "duplicate var_names": (_dup_var, {}, "var_names are not unique"),
    "duplicate obs_names": (_dup_obs, {}, "obs_names are not unique"),
}


@pytest.mark.parametrize("case", list(RUN_BAD))
@pytest.mark.parametrize("entry", ["run", "annotate"])
def test_run_bad_options(base, tmp_path, case, entry):
    prep, opts, match = RUN_BAD[case]
    a = prep(base.copy())
    fn = (lambda x, t: cs.run(x, backend="cpu", **opts)) if entry == "run" else (
        lambda x, t: cs.cart.annotate(x, backend="cpu", **opts))
    _expect_unchanged(a, fn, tmp_path, match=match)


def test_run_allow_non_integer_passes_values_to_the_core(base):
    # as `cartscope run --allow-non-integer`: non-integer and negative values are warnings
    a = base.copy()
    a.X.data[0] = 0.5
    a.X.data[5] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        cs.run(a.copy(), backend="cpu")
    s = cs.run(a, backend="cpu", allow_non_integer=True)
    assert s["n_cells_in"] == base.n_obs
    assert "X_umap" in a.obsm


def test_run_not_an_anndata():
    with pytest.raises(TypeError):
        cs.run(np.zeros((3, 3)))


# --------------------------------------------------------------------------------------
# options documented as not implemented


NOT_IMPLEMENTED = {
    "hvg span": lambda a: cs.pp.highly_variable_genes(a, flavor="seurat_v3", layer="counts", span=0.5),
    "neighbors metric": lambda a: cs.pp.neighbors(a, metric="manhattan"),
    "leiden leidenalg undirected": lambda a: cs.tl.leiden(a, directed=False),
    "leiden unweighted": lambda a: cs.tl.leiden(a, use_weights=False),
    "umap init_pos": lambda a: cs.tl.umap(a, init_pos="random"),
    "score_genes random_state None": lambda a: cs.tl.score_genes(a, ["CD4"], random_state=None),
}


@pytest.mark.parametrize("case", list(NOT_IMPLEMENTED))
def test_not_implemented(base, tmp_path, case):
    _expect_unchanged(base.copy(), lambda a, t: NOT_IMPLEMENTED[case](a), tmp_path, exc=NotImplementedError)


def test_errors_leave_parent_of_view_alone(base, tmp_path):
    """A failing call on a view leaves the parent untouched."""
    parent = _fresh(base, "nan")
    s = snapshot(parent)
    for fn in ("normalize_total", "log1p", "calculate_qc_metrics", "scale", "pca"):
        with pytest.raises(ValueError):
            ALL_FNS[fn](parent[:100], tmp_path)
    assert_unchanged(parent, s)
    assert sp.issparse(parent.X)
