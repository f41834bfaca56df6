"""cartscope.run, cartscope.cart, cartscope.read, cartscope.devices and backed input.

``cartscope.run`` is compared with scanpy running reference/scanpy_reference.py's recipe with
the CLI's defaults (src/pipeline/options.rs RunOptions::default): var_names_make_unique, mt =
MT- prefix, QC, filter_cells(min_genes=200), filter_genes(min_cells=3), pct_counts_mt < 20,
normalize_total(1e4), log1p, HVG seurat top 2000, the gene-set scores and the cell cycle,
raw = all genes, scale(max_value=10) of the HVGs, pca(50, arpack), neighbors(15, n_pcs=50),
leiden(1.0, igraph, 2 iterations), umap; markers: t-test on leiden, top 100.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import (
    GENE_SETS,
    SAMPLE,
    assert_unchanged,
    compare_rank_genes_groups,
    cs,
    dense,
    jaccard,
    knn_preservation,
    knn_recall,
    max_abs,
    max_rel,
    max_ulp_f32,
    measured,
    pca_one_minus_r,
    rel_frobenius,
    same_partition,
    sc,
    snapshot,
    trustworthiness,
    wu_path,
)
from sklearn.metrics import adjusted_rand_score

# measured values beside each (CPU backend)
RUN_X_MAX_ULP = 1  # log1p: 1 ulp on 3.9 % of the values (numpy's SIMD log1p vs cartscope's)
RUN_X_ABS = 5e-7  # measured 4.77e-7
RUN_DNORM_ABS = {"sample": 1.5e-6, "wu": 1.5e-6}  # measured 1.19e-6 / 1.13e-6
RUN_PCA_1MR = {"sample": 2e-14, "wu": 2e-13}  # measured 9.0e-15 / 1.66e-13
RUN_PCA_VR_REL = {"sample": 1e-7, "wu": 1e-7}  # measured 5.6e-8 / 6.9e-8
RUN_CONN_FROB = {"sample": 1.5e-6, "wu": 1.5e-6}  # measured 1.26e-6 / 1.37e-6
RUN_SCORE_ABS = 3e-7  # measured 2.3e-7 (gene sets), 1.4e-7 (S/G2M)
RUN_MEAN_COUNTS_REL = 0.0  # var mean_counts, float64 on both sides: measured 0
RUN_DROPOUT_ABS = 0.0  # var pct_dropout_by_counts, float64 on both sides: measured 0
RUN_UMAP_TRUST_DIFF = 0.003  # measured 2.4e-3
RUN_UMAP_PRES_DIFF = 0.006  # measured 2.4e-3
RUN_MARKER_P_REL = 1e-11  # measured 6.6e-12


@pytest.fixture(scope="module")
def sample_run(sample_steps):
    """cartscope.run on the sample, and scanpy's reference recipe (conftest.scanpy_steps):
    (raw input, run result, summary, scanpy all genes, scanpy HVG subset clustered)."""
    raw = ad.read_h5ad(SAMPLE)
    b = raw.copy()
    summary = cs.run(b, backend="cpu")
    return raw, b, summary, sample_steps["hvg"], sample_steps["clustered"], sample_steps["graph"]


@pytest.fixture(scope="module")
def wu_run(wu_steps):
    raw = ad.read_h5ad(wu_path())
    b = raw.copy()
    summary = cs.run(b, backend="cpu")
    return raw, b, summary, wu_steps["hvg"], wu_steps["clustered"], wu_steps["graph"]


SMALL_OPTS = {"n_top_genes": 500, "umap": False, "markers": False}


@pytest.fixture(scope="module")
def small_input():
    """The first 700 cells of the sample, as read."""
    return ad.read_h5ad(SAMPLE)[:700].copy()


@pytest.fixture(scope="module")
def small_run(small_input):
    a = small_input.copy()
    cs.run(a, backend="cpu", **SMALL_OPTS)
    return a


def _compare_run(b, summary, full, hv, graph, key):
    """``graph``: scanpy's neighbors stage. (scanpy 1.11.5's tl.umap rewrites
    obsp["connectivities"] in place: umap-learn zeroes the weights below max / n_epochs in
    the shared data array, so the graph is compared before scanpy's umap.)"""
    # cells and genes kept
    assert b.obs_names.equals(full.obs_names)
    assert b.var_names.equals(full.var_names)
    assert summary["n_cells_after_qc"] == full.n_obs and summary["n_genes_after_filter"] == full.n_vars
    assert summary["n_hvg"] == int(full.var["highly_variable"].sum()) == 2000
    assert summary["backend"] == "cpu" and summary["n_pcs"] == 50
    # X: log-normalised, all genes, CSR float32, same sparsity
    assert sp.issparse(b.X) and b.X.format == "csr" and b.X.dtype == np.float32
    bx, fx = sp.csr_matrix(b.X), sp.csr_matrix(full.X)
    np.testing.assert_array_equal(bx.indptr, fx.indptr)
    np.testing.assert_array_equal(bx.indices, fx.indices)
    u, e = max_ulp_f32(fx, bx), max_abs(fx, bx)
    measured(f"run {key} X ulp/abs", (u, e))
    assert u <= RUN_X_MAX_ULP and e <= RUN_X_ABS
    # scanpy records {"base": None}; the run records {} (base absent: the same meaning for
    # scanpy's readers of uns["log1p"]["base"] via .get)
    assert b.uns["log1p"].get("base") is None
    # QC columns
    for c in ("n_genes_by_counts", "total_counts", "total_counts_mt", "pct_counts_mt", "n_genes"):
        np.testing.assert_array_equal(b.obs[c].to_numpy(), full.obs[c].to_numpy(), err_msg=c)
    for c in ("n_cells_by_counts", "total_counts", "n_cells"):
        np.testing.assert_array_equal(b.var[c].to_numpy(), full.var[c].to_numpy(), err_msg=c)
    e = max_rel(full.var["mean_counts"], b.var["mean_counts"])
    measured(f"run {key} var mean_counts rel", e)
    assert e <= RUN_MEAN_COUNTS_REL
    e = max_abs(full.var["pct_dropout_by_counts"], b.var["pct_dropout_by_counts"])
    measured(f"run {key} var pct_dropout_by_counts abs", e)
    assert e <= RUN_DROPOUT_ABS
    # HVG
    assert jaccard(full.var_names[full.var["highly_variable"]], b.var_names[b.var["highly_variable"]]) == 1.0
    d1, d2 = full.var["dispersions_norm"].to_numpy(np.float64), b.var["dispersions_norm"].to_numpy(np.float64)
    np.testing.assert_array_equal(np.isnan(d1), np.isnan(d2))
    e = float(np.nanmax(np.abs(d1 - d2)))
    measured(f"run {key} dispersions_norm abs", e)
    assert e <= RUN_DNORM_ABS[key]
    # PCA on the HVGs
    assert b.obsm["X_pca"].dtype == np.float32 and b.obsm["X_pca"].shape == hv.obsm["X_pca"].shape
    e = pca_one_minus_r(hv.obsm["X_pca"], b.obsm["X_pca"], 10)
    measured(f"run {key} pca 1-|r|", e)
    assert e <= RUN_PCA_1MR[key]
    e = max_rel(hv.uns["pca"]["variance_ratio"], b.uns["pca"]["variance_ratio"])
    measured(f"run {key} pca variance_ratio rel", e)
    assert e <= RUN_PCA_VR_REL[key]
    assert b.varm["PCs"].shape == (b.n_vars, 50)
    hvmask = b.var["highly_variable"].to_numpy()
    assert (b.varm["PCs"][~hvmask] == 0).all()
    # kNN graph
    assert b.obsp["distances"].dtype == np.float64 and b.obsp["connectivities"].dtype == np.float32
    r = knn_recall(graph.obsp["distances"], b.obsp["distances"])
    measured(f"run {key} knn recall", r)
    assert r == 1.0
    e = rel_frobenius(graph.obsp["connectivities"], b.obsp["connectivities"])
    measured(f"run {key} connectivities rel frobenius", e)
    assert e <= RUN_CONN_FROB[key]
    assert b.uns["neighbors"]["params"]["n_neighbors"] == 15
    # Leiden: the same partition as scanpy's (graphs equal to 1e-6), and scanpy on the run's graph
    ari = adjusted_rand_score(hv.obs["leiden"], b.obs["leiden"])
    measured(f"run {key} leiden ARI", ari)
    assert ari == 1.0
    c = b.copy()
    sc.tl.leiden(c, resolution=1.0, flavor="igraph", n_iterations=2, directed=False, random_state=0, key_added="sl")
    assert same_partition(c.obs["sl"], b.obs["leiden"])


def test_run_sample(sample_run):
    raw, b, summary, full, hv, graph = sample_run
    assert summary["n_cells_in"] == raw.n_obs and summary["n_genes_in"] == raw.n_vars
    _compare_run(b, summary, full, hv, graph, "sample")


def test_run_sample_scores(sample_run):
    _, b, summary, full, _, _ = sample_run
    for name in GENE_SETS:
        e = max_abs(full.obs[f"{name}_score"], b.obs[f"{name}_score"])
        measured(f"run sample {name}_score abs", e)
        assert e <= RUN_SCORE_ABS
    for col in ("S_score", "G2M_score"):
        e = max_abs(full.obs[col], b.obs[col])
        measured(f"run sample {col} abs", e)
        assert e <= RUN_SCORE_ABS
    np.testing.assert_array_equal(b.obs["phase"].astype(str).to_numpy(), full.obs["phase"].astype(str).to_numpy())
    sets = {g["name"]: g for g in summary["cart"]["gene_sets"]}
    assert set(GENE_SETS) <= set(sets)
    for name, genes in GENE_SETS.items():
        assert sets[name]["genes_used"] == [g for g in genes if g in full.var_names]


def test_run_sample_markers_and_umap(sample_run):
    _, b, _, _, hv, _ = sample_run
    rb = b.uns["rank_genes_groups"]
    assert rb["params"]["groupby"] == "leiden" and rb["params"]["method"] == "t-test"
    c = b.copy()
    del c.uns["rank_genes_groups"]
    sc.tl.rank_genes_groups(c, "leiden", method="t-test", n_genes=100, use_raw=False)
    r = compare_rank_genes_groups(c.uns["rank_genes_groups"], rb)
    measured("run sample markers", r)
    assert r["scores"] == 0 and r["logfoldchanges"] == 0
    assert r["pvals_adj"] <= RUN_MARKER_P_REL and r["pvals"] <= RUN_MARKER_P_REL
    assert len(rb["names"]) == 100
    # UMAP quality against scanpy's umap of its own (equal) graph
    hi = hv.obsm["X_pca"]
    ta, tb = trustworthiness(hi, hv.obsm["X_umap"]), trustworthiness(hi, b.obsm["X_umap"])
    pa, pb = knn_preservation(hi, hv.obsm["X_umap"]), knn_preservation(hi, b.obsm["X_umap"])
    measured("run sample umap trust scanpy/cartscope", (ta, tb))
    measured("run sample umap knn15 scanpy/cartscope", (pa, pb))
    assert abs(ta - tb) <= RUN_UMAP_TRUST_DIFF and abs(pa - pb) <= RUN_UMAP_PRES_DIFF


def test_run_qc_dtypes(sample_run):
    _, b, _, full, _, _ = sample_run
    for frame_b, frame_a in ((b.obs, full.obs), (b.var, full.var)):
        for c in ("n_genes_by_counts", "total_counts", "total_counts_mt", "pct_counts_mt", "n_genes",
                  "n_cells_by_counts", "mean_counts", "pct_dropout_by_counts", "n_cells"):
            if c in frame_a:
                assert frame_b[c].dtype == frame_a[c].dtype, (c, frame_b[c].dtype, frame_a[c].dtype)


def test_run_wu(wu_run):
    raw, b, summary, full, hv, graph = wu_run
    assert summary["n_cells_in"] == 200 and summary["n_cells_after_qc"] == 196
    _compare_run(b, summary, full, hv, graph, "wu")


def test_run_view_layer_and_report(small_input, small_run, tmp_path):
    """A view is made actual (its parent untouched); counts from a layer give the same
    result as counts in X; report= writes the HTML."""
    base, ref = small_input, small_run
    parent = ad.read_h5ad(SAMPLE)
    snap = snapshot(parent)
    v = parent[:700]
    cs.run(v, backend="cpu", **SMALL_OPTS)
    assert not v.is_view
    assert_unchanged(parent, snap)
    assert v.obs_names.equals(ref.obs_names) and v.var_names.equals(ref.var_names)
    assert max_abs(v.X, ref.X) == 0
    np.testing.assert_array_equal(v.obsm["X_pca"], ref.obsm["X_pca"])
    assert same_partition(v.obs["leiden"], ref.obs["leiden"])
    # counts in a layer, X holding something else
    lay = base.copy()
    lay.layers["counts"] = lay.X.copy()
    lay.X = lay.X * 0.5
    path = tmp_path / "run.html"
    cs.run(lay, layer="counts", backend="cpu", report=str(path), **SMALL_OPTS)
    assert lay.obs_names.equals(ref.obs_names)
    assert max_abs(lay.X, ref.X) == 0
    np.testing.assert_array_equal(lay.obsm["X_pca"], ref.obsm["X_pca"])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")


# --------------------------------------------------------------------------------------
# cart.annotate / cart.report


def test_run_leiden_flavor(small_input, small_run):
    """run(leiden_flavor="leidenalg"): scanpy's default sc.tl.leiden on the run's own graph,
    labels and params alike; the default stays the reference recipe's igraph flavor."""
    a = small_input.copy()
    cs.run(a, backend="cpu", leiden_flavor="leidenalg", **SMALL_OPTS)
    assert a.uns["leiden"]["params"]["n_iterations"] == -1
    assert small_run.uns["leiden"]["params"]["n_iterations"] == 2
    c = a.copy()
    sc.tl.leiden(c, key_added="sl")
    np.testing.assert_array_equal(c.obs["sl"].astype(str).to_numpy(), a.obs["leiden"].astype(str).to_numpy())
    assert dict(c.uns["sl"]["params"]) == dict(a.uns["leiden"]["params"])
    with pytest.raises(ValueError, match="louvain"):
        cs.run(small_input.copy(), leiden_flavor="louvain")


def test_annotate_columns_match_run(small_input, small_run):
    raw, b = small_input, small_run
    a = raw.copy()
    assert cs.cart.annotate(a, backend="cpu", n_top_genes=500) is None
    assert a.shape == raw.shape  # not subset
    new = [c for c in a.obs.columns if c not in raw.obs.columns]
    for c in ("n_genes_by_counts", "pct_counts_mt", "car_positive", "exhaustion_score", "S_score", "phase",
              "t_cell", "cd4_cd8", "phenotype"):
        assert c in new, c
    assert "leiden" not in a.obs  # clustering skipped
    passed = a.obs_names.isin(b.obs_names)
    assert passed.sum() == b.n_obs
    sub = a.obs.loc[b.obs_names]
    for c in new:
        x, y = sub[c], b.obs[c]
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            np.testing.assert_array_equal(x.to_numpy(np.float64), y.to_numpy(np.float64), err_msg=c)
        else:
            np.testing.assert_array_equal(x.astype(str).to_numpy(), y.astype(str).to_numpy(), err_msg=c)
        assert a.obs.loc[~passed, c].isna().all(), c  # cells failing QC: missing


def test_annotate_keeps_input_columns(small_input):
    a = small_input.copy()
    before = a.obs.copy()
    cs.cart.annotate(a, backend="cpu", n_top_genes=500)
    pd.testing.assert_frame_equal(a.obs[before.columns], before)


def test_report_writes_html_and_leaves_adata(small_input, tmp_path):
    a = small_input.copy()
    snap = snapshot(a)
    path = tmp_path / "r.html"
    assert cs.cart.report(a, path, backend="cpu", n_top_genes=500) is None
    assert path.is_file() and path.stat().st_size > 10_000
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text[-200:]
    assert_unchanged(a, snap)
    assert not list(tmp_path.glob(".report-*"))  # no temporary file left


# --------------------------------------------------------------------------------------
# read


@pytest.mark.parametrize("which", ["sample", "wu"])
def test_read_matches_anndata(which):
    path = SAMPLE if which == "sample" else wu_path()
    r = cs.read(path)
    a = ad.read_h5ad(path)
    assert sp.issparse(r.X) and r.X.format == "csr" and r.X.dtype == np.float32
    assert r.shape == a.shape
    assert r.obs_names.equals(a.obs_names) and r.var_names.equals(a.var_names)
    assert max_abs(r.X, a.X.astype(np.float32)) == 0
    assert (sp.csr_matrix(r.X) != sp.csr_matrix(a.X)).nnz == 0
    assert list(r.obs.columns) == list(a.obs.columns)
    for c in a.obs.columns:
        x, y = a.obs[c], r.obs[c]
        np.testing.assert_array_equal(x.isna().to_numpy(), y.isna().to_numpy(), err_msg=c)
        m = ~x.isna().to_numpy()
        np.testing.assert_array_equal(x[m].astype(str).to_numpy(), y[m].astype(str).to_numpy(), err_msg=c)
    for c in a.var.columns:
        np.testing.assert_array_equal(a.var[c].astype(str).to_numpy(), r.var[c].astype(str).to_numpy(), err_msg=c)


def test_read_missing_file(tmp_path):
    with pytest.raises(ValueError):
        cs.read(tmp_path / "nope.h5ad")
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError):
        cs.read(bad)


# --------------------------------------------------------------------------------------
# devices


def test_devices():
    d = cs.devices()
    assert isinstance(d, list) and [x["request"] for x in d] == ["cpu", "auto", "gpu"]
    cpu = d[0]
    assert cpu["backend"] == "cpu" and isinstance(cpu["device"], str) and cpu["fallback_reason"] is None
    for x in d:
        if x["backend"] is None:
            assert isinstance(x["error"], str) and x["error"]
        else:
            assert x["backend"] in ("cpu", "gpu")
            assert {"device", "driver", "fallback_reason"} <= set(x)
    auto = d[1]
    if auto["backend"] == "cpu":
        assert auto["fallback_reason"]  # auto says why it fell back
    assert isinstance(cs.__version__, str) and cs.__version__


# --------------------------------------------------------------------------------------
# backed AnnData (read-only steps)


def test_backed_hvg_and_cart(tmp_path):
    b = ad.read_h5ad(SAMPLE, backed="r")
    try:
        # seurat_v3 on counts, not in place: reads X into memory
        h_backed = cs.pp.highly_variable_genes(b, flavor="seurat_v3", n_top_genes=1000, inplace=False)
        m = ad.read_h5ad(SAMPLE)
        h_mem = cs.pp.highly_variable_genes(m, flavor="seurat_v3", n_top_genes=1000, inplace=False)
        pd.testing.assert_frame_equal(h_backed, h_mem)
        h_sc = sc.pp.highly_variable_genes(m, flavor="seurat_v3", n_top_genes=1000, inplace=False)
        j = jaccard(h_sc.index[h_sc["highly_variable"]], h_backed.index[h_backed["highly_variable"]])
        measured("hvg seurat_v3 backed (raw counts) jaccard", j)
        assert j >= 0.991  # raw counts of all 3000 genes: measured 0.9920 (doc: >= 0.99)
        path = tmp_path / "backed.html"
        cs.cart.report(b, path, backend="cpu", n_top_genes=300, umap=False, markers=False)
        assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
        assert b.isbacked
    finally:
        b.file.close()


def test_backed_run_fails_cleanly():
    """run() subsets in place, which a backed AnnData cannot do: a ValueError, nothing changed."""
    b = ad.read_h5ad(SAMPLE, backed="r")
    try:
        obs = b.obs.copy()
        with pytest.raises(ValueError):
            cs.run(b, backend="cpu", n_top_genes=300, umap=False, markers=False)
        assert b.isbacked and b.shape == (2000, 3000)
        pd.testing.assert_frame_equal(b.obs, obs)
        assert "X_pca" not in b.obsm and "pca" not in b.uns
    finally:
        b.file.close()


@pytest.mark.parametrize("fn", ["normalize_total", "log1p"])
def test_backed_inplace_steps_raise(fn):
    b = ad.read_h5ad(SAMPLE, backed="r")
    try:
        x0 = dense(b.X[:50])
        try:
            getattr(cs.pp, fn)(b)
        except (ValueError, NotImplementedError):
            assert "log1p" not in b.uns
            return
        # no error: then X must have been transformed
        assert not np.array_equal(dense(b.X[:50]), x0), "X unchanged and no error raised"
    finally:
        b.file.close()


def test_ctrl_c_returns_at_once_stops_the_computation_and_changes_nothing():
    """A KeyboardInterrupt during a long call (here the whole recipe on 18,000 cells, about
    3.5 s) ends the call within a fraction of a second, stops the computation's thread (it
    does not run on in the background) and leaves the AnnData as it was."""
    import _thread
    import signal
    import threading
    import time

    parts = [ad.read_h5ad(SAMPLE) for _ in range(3)]
    for i, p in enumerate(parts):
        p.obs_names = [f"{n}-{i}" for n in p.obs_names]
    a = ad.concat(parts)
    a.var_names_make_unique()
    before = snapshot(a)
    # Python's own Ctrl-C handler, as in a notebook or a terminal: a process started in the
    # background of a non-interactive shell inherits SIGINT ignored, and then has none.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.05, _thread.interrupt_main)
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            cs.run(a, backend="cpu")
        elapsed = time.perf_counter() - t0
        timer.join()
        while cs._core._running() and time.perf_counter() - t0 < 10:
            time.sleep(0.005)
        stopped = time.perf_counter() - t0
    finally:
        signal.signal(signal.SIGINT, previous)
    # measured 0.04-0.05 s for both on 2 cores
    assert elapsed < 0.6, elapsed
    assert stopped < 0.6, stopped
    assert_unchanged(a, before)
