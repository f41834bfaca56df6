"""cartscope.tl against scanpy.tl on copies of the same AnnData (the same graph for Leiden
and UMAP). Tolerances sit just above the measured values given beside them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from conftest import (
    GENE_SETS,
    cell_cycle_genes,
    compare_rank_genes_groups,
    cs,
    knn_preservation,
    max_abs,
    max_rel,
    measured,
    same_partition,
    sc,
    trustworthiness,
)
from sklearn.metrics import adjusted_rand_score

# UMAP quality against scanpy's on the same graph (doc: within 0.02)
# UMAP's trustworthiness depends on the random stream: on the sample, scanpy's own seeds 0-5
# span 0.6714-0.6768 and cartscope's 0.6733-0.6772. So cartscope's value must lie within the
# range of scanpy's seeds 0-3 widened by this (a single scanpy seed was compared before; it
# passed at 3.6e-4 only for the stream of that build).
UMAP_TRUST_DIFF = 0.001
UMAP_SCANPY_SEEDS = range(4)
UMAP_PRES_DIFF = 0.003  # kNN(15) preservation: measured 8.4e-4
UMAP_AB_REL = 1e-6  # a, b fitted from min_dist/spread: measured 3.7e-7
UMAP_AB_TRUST_MEAN_DIFF = 0.002  # a=1.2, b=0.7, means over seeds 0-3: measured 0.0015
# score_genes (doc: 1e-6 with the same control genes)
SCORE_ABS = 3e-7  # measured 2.85e-7 (sample, CSR); dense 0
SCORE_ABS_WU = 4e-7  # measured 3.5e-7 (wu2020)
# rank_genes_groups (doc: scores/logfoldchanges 1e-5 rel, pvals_adj 1e-6 rel)
RANK_SCORES_REL = 0.0  # identical float32 values (measured 0)
RANK_LFC_REL = 0.0  # identical float32 values (measured 0)
# pvals and pvals_adj: measured t-test 1.83e-12, overestim_var 1.5e-12, wilcoxon 2.6e-14
RANK_P_REL = {"t-test": 3e-12, "t-test_overestim_var": 3e-12, "wilcoxon": 5e-14}


# --------------------------------------------------------------------------------------
# Leiden on the same graph


@pytest.mark.parametrize("resolution,seed", [(1.0, 0), (0.5, 0), (2.0, 3)])
def test_leiden_on_scanpy_graph(sample_steps, resolution, seed):
    a = sample_steps["graph"].copy()
    b = a.copy()
    sc.tl.leiden(a, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    assert cs.tl.leiden(b, resolution=resolution, flavor="igraph", n_iterations=2, random_state=seed) is None
    ari = adjusted_rand_score(a.obs["leiden"], b.obs["leiden"])
    measured(f"leiden scanpy graph res={resolution} seed={seed} ARI", ari)
    assert ari == 1.0 and same_partition(a.obs["leiden"], b.obs["leiden"])
    assert b.obs["leiden"].dtype == "category"
    assert b.obs["leiden"].nunique() == a.obs["leiden"].nunique() > 1
    # clusters named by size, "0" the largest
    sizes = b.obs["leiden"].value_counts(sort=False)  # in category order "0", "1", ...
    assert list(b.obs["leiden"].cat.categories) == [str(i) for i in range(len(sizes))]
    assert (np.diff(sizes.to_numpy()) <= 0).all()
    assert b.uns["leiden"]["params"] == {"resolution": resolution, "random_state": seed, "n_iterations": 2}


@pytest.mark.parametrize("seed", [0, 3])
def test_leiden_until_stable(sample_steps, wu_steps, seed):
    """n_iterations=-1: igraph iterates until an iteration moves no node; the same
    partition as scanpy's, after more iterations than the default two."""
    for steps in (sample_steps, wu_steps):
        a = steps["graph"].copy()
        b = a.copy()
        sc.tl.leiden(a, flavor="igraph", n_iterations=-1, directed=False, random_state=seed)
        cs.tl.leiden(b, flavor="igraph", n_iterations=-1, random_state=seed)
        assert same_partition(a.obs["leiden"], b.obs["leiden"])
        assert b.uns["leiden"]["params"]["n_iterations"] == -1
    two = steps["graph"].copy()
    cs.tl.leiden(two, flavor="igraph", n_iterations=2, random_state=seed)
    measured(f"leiden until stable seed={seed} ARI vs two iterations",
             adjusted_rand_score(two.obs["leiden"], b.obs["leiden"]))


@pytest.mark.parametrize("resolution,seed", [(1.0, 0), (1.0, 4), (2.0, 1), (0.5, 0)])
def test_leiden_default_flavor_is_scanpys(sample_steps, wu_steps, resolution, seed):
    """scanpy's default sc.tl.leiden (leidenalg, directed graph, until stable): the same
    labels, cluster names included, and the same uns params."""
    for steps in (sample_steps, wu_steps):
        a = steps["graph"].copy()
        b = a.copy()
        sc.tl.leiden(a, resolution=resolution, random_state=seed)
        cs.tl.leiden(b, resolution=resolution, random_state=seed)
        assert list(b.obs["leiden"].cat.categories) == list(a.obs["leiden"].cat.categories)
        np.testing.assert_array_equal(b.obs["leiden"].to_numpy(), a.obs["leiden"].to_numpy())
        assert b.uns["leiden"]["params"] == a.uns["leiden"]["params"]
        assert a.obs["leiden"].nunique() > 1


def test_leiden_on_cartscope_graph(sample_steps):
    """scanpy run on cartscope's own kNN graph gives cartscope's partition."""
    b = sample_steps["pca"].copy()
    cs.pp.neighbors(b, n_neighbors=15, n_pcs=50)
    a = b.copy()
    sc.tl.leiden(a, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    cs.tl.leiden(b, flavor="igraph", n_iterations=2)
    assert adjusted_rand_score(a.obs["leiden"], b.obs["leiden"]) == 1.0
    assert same_partition(a.obs["leiden"], b.obs["leiden"])


def test_leiden_wu_and_obsp_key(wu_steps):
    a = wu_steps["graph"].copy()
    b = a.copy()
    sc.tl.leiden(a, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    cs.tl.leiden(b, obsp="connectivities", key_added="cl", flavor="igraph", n_iterations=2)
    assert same_partition(a.obs["leiden"], b.obs["cl"]) and a.obs["leiden"].nunique() > 2


def test_leiden_view(sample_steps):
    base = sample_steps["graph"].copy()
    va, vb = base[:1500], base[:1500]
    sc.tl.leiden(va, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    cs.tl.leiden(vb, flavor="igraph", n_iterations=2)
    assert not vb.is_view and "leiden" not in base.obs
    assert same_partition(va.obs["leiden"], vb.obs["leiden"])


# --------------------------------------------------------------------------------------
# UMAP: quality, not coordinates


def test_umap_quality(sample_steps):
    a = sample_steps["clustered"]  # scanpy's umap on scanpy's graph
    b = sample_steps["graph"].copy()
    assert cs.tl.umap(b) is None
    xb = b.obsm["X_umap"]
    assert xb.shape == (b.n_obs, 2) and xb.dtype == a.obsm["X_umap"].dtype == np.float32
    assert np.isfinite(xb).all()
    hi = a.obsm["X_pca"]
    ta, tb = trustworthiness(hi, a.obsm["X_umap"]), trustworthiness(hi, xb)
    pa, pb = knn_preservation(hi, a.obsm["X_umap"]), knn_preservation(hi, xb)
    measured("umap trustworthiness scanpy/cartscope", (ta, tb))
    measured("umap knn15 preservation scanpy/cartscope", (pa, pb))
    seeds = []
    for s in UMAP_SCANPY_SEEDS:
        r = sample_steps["graph"].copy()
        sc.tl.umap(r, random_state=s)
        seeds.append(trustworthiness(hi, r.obsm["X_umap"]))
    measured("umap trustworthiness scanpy seeds", seeds)
    assert min(seeds) - UMAP_TRUST_DIFF <= tb <= max(seeds) + UMAP_TRUST_DIFF, (seeds, tb)
    assert abs(pa - pb) <= UMAP_PRES_DIFF, (pa, pb)
    for k in ("a", "b"):
        e = max_rel([a.uns["umap"]["params"][k]], [b.uns["umap"]["params"][k]])
        measured(f"umap {k} rel", e)
        assert e <= UMAP_AB_REL
    # deterministic for a seed
    c = sample_steps["graph"].copy()
    cs.tl.umap(c)
    np.testing.assert_array_equal(c.obsm["X_umap"], xb)


def test_umap_given_a_b(sample_steps):
    """a and b given: scanpy's curve replaced, the same values in uns, and layouts of the
    same quality as scanpy's with those a and b (means over four seeds each: one seed's
    trustworthiness varies by 0.005 for either program)."""
    hi = sample_steps["clustered"].obsm["X_pca"]
    quality = {"scanpy": ([], []), "cartscope": ([], [])}
    for name, mod in (("scanpy", sc), ("cartscope", cs)):
        for s in UMAP_SCANPY_SEEDS:
            r = sample_steps["graph"].copy()
            mod.tl.umap(r, a=1.2, b=0.7, random_state=s)
            assert r.uns["umap"]["params"]["a"] == 1.2 and r.uns["umap"]["params"]["b"] == 0.7
            quality[name][0].append(trustworthiness(hi, r.obsm["X_umap"]))
            quality[name][1].append(knn_preservation(hi, r.obsm["X_umap"]))
    measured("umap a=1.2 b=0.7 trustworthiness, knn15 per seed", quality)
    (ta, pa), (tb, pb) = ([np.mean(v) for v in quality[k]] for k in ("scanpy", "cartscope"))
    assert abs(ta - tb) <= UMAP_AB_TRUST_MEAN_DIFF and abs(pa - pb) <= UMAP_PRES_DIFF, (ta, tb, pa, pb)
    default = sample_steps["graph"].copy()
    cs.tl.umap(default, random_state=UMAP_SCANPY_SEEDS[-1])
    assert max_abs(default.obsm["X_umap"], r.obsm["X_umap"]) > 0.1
    with pytest.raises(ValueError):
        cs.tl.umap(sample_steps["graph"].copy(), a=-1.0, b=1.0)


# --------------------------------------------------------------------------------------
# score_genes


@pytest.mark.parametrize("name", list(GENE_SETS))
@pytest.mark.parametrize("ctrl_size", [50, 100])
def test_score_genes(sample_steps, name, ctrl_size):
    a = sample_steps["lognorm"].copy()
    b = a.copy()
    genes = [g for g in GENE_SETS[name] if g in a.var_names]
    assert len(genes) >= 4
    sc.tl.score_genes(a, genes, ctrl_size=ctrl_size, score_name="s", random_state=0)
    assert cs.tl.score_genes(b, genes, ctrl_size=ctrl_size, score_name="s") is None
    assert b.obs["s"].dtype == a.obs["s"].dtype == np.float64
    e = max_abs(a.obs["s"], b.obs["s"])
    measured(f"score_genes {name} ctrl={ctrl_size} abs", e)
    assert e <= SCORE_ABS, e


@pytest.mark.parametrize("random_state,n_bins,pool", [(7, 25, False), (123456789, 10, False), (3, 25, True)])
def test_score_genes_draw_arguments(sample_steps, random_state, n_bins, pool):
    """random_state (numpy's legacy seed), n_bins and a gene_pool (a shuffled half of the
    genes plus the listed ones and names absent from the data): scanpy's control genes."""
    a = sample_steps["lognorm"].copy()
    b = a.copy()
    genes = [g for g in GENE_SETS["exhaustion"] if g in a.var_names]
    kw = dict(ctrl_size=20, n_bins=n_bins, random_state=random_state, score_name="s")
    if pool:
        rng = np.random.default_rng(1)
        names = list(rng.permutation(a.var_names.to_numpy())[: a.n_vars // 2])
        kw["gene_pool"] = names + [g for g in genes if g not in names] + ["NOT_A_GENE"]
    sc.tl.score_genes(a, genes, **kw)
    cs.tl.score_genes(b, genes, **kw)
    e = max_abs(a.obs["s"], b.obs["s"])
    measured(f"score_genes seed={random_state} n_bins={n_bins} pool={pool} abs", e)
    assert e <= SCORE_ABS, e
    c = sample_steps["lognorm"].copy()
    sc.tl.score_genes(c, genes, score_name="s")
    assert max_abs(c.obs["s"], b.obs["s"]) > 1e-4, "the arguments change the control genes"


@pytest.mark.parametrize("random_state", [0, 5])
def test_score_genes_cell_cycle(sample_steps, random_state):
    """score_genes_cell_cycle with the Tirosh lists: ctrl_size = 43, genes missing from the
    data dropped (the sample carries only 4 of them); the same scores and phases as scanpy."""
    s_genes, g2m_genes = cell_cycle_genes()
    a = sample_steps["lognorm"].copy()
    b = a.copy()
    sc.tl.score_genes_cell_cycle(a, s_genes=s_genes, g2m_genes=g2m_genes, random_state=random_state)
    assert cs.tl.score_genes_cell_cycle(b, s_genes=s_genes, g2m_genes=g2m_genes, random_state=random_state) is None
    for col in ("S_score", "G2M_score"):
        e = max_abs(a.obs[col], b.obs[col])
        measured(f"score_genes_cell_cycle {col} seed={random_state} abs", e)
        assert e <= SCORE_ABS
    assert (b.obs["phase"] == a.obs["phase"]).all()
    assert set(b.obs["phase"]) == {"G1", "S", "G2M"}


def test_score_genes_dense_and_use_raw(sample_steps):
    a = sample_steps["hvg_subset"].copy()  # X: HVGs, raw: all genes (log-normalised)
    b = a.copy()
    genes = GENE_SETS["memory"]
    sc.tl.score_genes(a, genes, score_name="s")  # use_raw=None: raw when present
    cs.tl.score_genes(b, genes, score_name="s")
    e = max_abs(a.obs["s"], b.obs["s"])
    measured("score_genes use_raw abs", e)
    assert e <= SCORE_ABS
    c = sample_steps["lognorm"].copy()
    c.X = c.X.toarray()
    d = c.copy()
    sc.tl.score_genes(c, genes, score_name="s")
    cs.tl.score_genes(d, genes, score_name="s")
    e = max_abs(c.obs["s"], d.obs["s"])
    measured("score_genes dense abs", e)
    assert e <= SCORE_ABS


def test_score_genes_view(sample_steps):
    base = sample_steps["lognorm"].copy()
    va, vb = base[:1200], base[:1200]
    sc.tl.score_genes(va, GENE_SETS["exhaustion"], score_name="s")
    cs.tl.score_genes(vb, GENE_SETS["exhaustion"], score_name="s")
    assert not vb.is_view and "s" not in base.obs
    e = max_abs(va.obs["s"], vb.obs["s"])
    measured("score_genes view abs", e)
    assert e <= SCORE_ABS


def test_score_genes_wu(wu_steps):
    a = wu_steps["lognorm"].copy()
    b = a.copy()
    genes = [g for g in GENE_SETS["cytotoxicity"] + GENE_SETS["memory"] if g in a.var_names]
    sc.tl.score_genes(a, genes, score_name="s", random_state=0)
    cs.tl.score_genes(b, genes, score_name="s")
    e = max_abs(a.obs["s"], b.obs["s"])
    measured("score_genes wu abs", e)
    assert e <= SCORE_ABS_WU


# --------------------------------------------------------------------------------------
# rank_genes_groups


def _check_rank(ra, rb, method, label):
    r = compare_rank_genes_groups(ra, rb)
    measured(f"rank_genes_groups {label}", r)
    assert r["scores"] <= RANK_SCORES_REL, r
    assert r["logfoldchanges"] <= RANK_LFC_REL, r
    assert r["pvals"] <= RANK_P_REL[method], r
    assert r["pvals_adj"] <= RANK_P_REL[method], r
    for k in ("groupby", "reference", "method", "use_raw", "corr_method"):
        assert rb["params"][k] == ra["params"][k], (k, rb["params"][k], ra["params"][k])
    return r


METHODS = [("t-test", False), ("t-test_overestim_var", False), ("wilcoxon", False), ("wilcoxon", True)]


@pytest.mark.parametrize("method,tie_correct", METHODS)
def test_rank_genes_groups(sample_steps, method, tie_correct):
    a = sample_steps["lognorm"].copy()
    a.obs["grp"] = a.obs["truth_cell_type"].astype("category")
    b = a.copy()
    sc.tl.rank_genes_groups(a, "grp", method=method, tie_correct=tie_correct, n_genes=100)
    assert cs.tl.rank_genes_groups(b, "grp", method=method, tie_correct=tie_correct, n_genes=100) is None
    r = _check_rank(a.uns["rank_genes_groups"], b.uns["rank_genes_groups"], method,
                    f"sample {method} tie_correct={tie_correct}")
    assert r["compared"] >= 0.99 * 100 * len(a.obs["grp"].cat.categories)


@pytest.mark.parametrize("method", ["t-test", "wilcoxon"])
def test_rank_genes_groups_wu_leiden_use_raw(wu_steps, method):
    """Real data, grouped by Leiden, values from .raw (scanpy's default use_raw when raw exists)."""
    a = wu_steps["clustered"].copy()
    b = a.copy()
    sc.tl.rank_genes_groups(a, "leiden", method=method, n_genes=100)
    cs.tl.rank_genes_groups(b, "leiden", method=method, n_genes=100)
    assert b.uns["rank_genes_groups"]["params"]["use_raw"] is True
    _check_rank(a.uns["rank_genes_groups"], b.uns["rank_genes_groups"], method, f"wu leiden {method}")


def test_rank_genes_groups_singlet_group(wu_steps):
    """A group of one cell: scanpy raises; cartscope leaves it out, which equals scanpy's
    groups=[...] without it (docs/algorithms.md section 10)."""
    a = wu_steps["lognorm"].copy()
    counts = a.obs["cluster_orig"].value_counts()
    singles = list(counts.index[counts < 2])
    assert singles, "wu2020 has a one-cell cluster"
    with pytest.raises(ValueError):
        sc.tl.rank_genes_groups(a.copy(), "cluster_orig", method="t-test")
    b = a.copy()
    keep = [str(g) for g in a.obs["cluster_orig"].cat.categories if g not in singles]
    sc.tl.rank_genes_groups(a, "cluster_orig", groups=keep, method="t-test", n_genes=50)
    cs.tl.rank_genes_groups(b, "cluster_orig", method="t-test", n_genes=50)
    _check_rank(a.uns["rank_genes_groups"], b.uns["rank_genes_groups"], "t-test", "wu singlet")


def test_rank_genes_groups_dense_layer_view(sample_steps):
    base = sample_steps["lognorm"].copy()
    base.layers["log"] = base.X.toarray()
    base.obs["grp"] = base.obs["truth_lineage"].astype("category")
    va, vb = base[:1500], base[:1500]
    sc.tl.rank_genes_groups(va, "grp", layer="log", use_raw=False, method="t-test", n_genes=30)
    cs.tl.rank_genes_groups(vb, "grp", layer="log", use_raw=False, method="t-test", n_genes=30)
    assert not vb.is_view and "rank_genes_groups" not in base.uns
    _check_rank(va.uns["rank_genes_groups"], vb.uns["rank_genes_groups"], "t-test", "dense layer view")


@pytest.mark.parametrize("method,tie_correct", METHODS)
def test_rank_genes_groups_reference_and_groups(sample_steps, method, tie_correct):
    """groups (a subset, in the order given, the reference not among them) and a reference
    group: each group against the reference's cells only (Wilcoxon ranks over the two
    groups), and pts without pts_rest."""
    a = sample_steps["lognorm"].copy()
    a.obs["grp"] = a.obs["truth_cell_type"].astype("category")
    cats = [str(c) for c in a.obs["grp"].cat.categories]
    chosen, ref = [cats[2], cats[0], cats[3]], cats[1]
    b = a.copy()
    kw = dict(groups=chosen, reference=ref, method=method, tie_correct=tie_correct, n_genes=100, pts=True)
    sc.tl.rank_genes_groups(a, "grp", **kw)
    cs.tl.rank_genes_groups(b, "grp", **kw)
    ra, rb = a.uns["rank_genes_groups"], b.uns["rank_genes_groups"]
    assert rb["names"].dtype.names == tuple(chosen)
    r = _check_rank(ra, rb, method, f"sample reference {method} tie_correct={tie_correct}")
    assert r["compared"] >= 0.99 * 100 * len(chosen)
    assert "pts_rest" not in ra and "pts_rest" not in rb
    assert list(rb["pts"].columns) == list(ra["pts"].columns) == chosen + [ref]
    pd.testing.assert_frame_equal(rb["pts"], ra["pts"], check_exact=True)


def test_rank_genes_groups_groups_against_rest_with_pts(sample_steps):
    """A subset of groups against the rest (every cell outside the group, chosen or not);
    pts and pts_rest equal scanpy's."""
    a = sample_steps["lognorm"].copy()
    a.obs["grp"] = a.obs["truth_cell_type"].astype("category")
    cats = [str(c) for c in a.obs["grp"].cat.categories]
    b = a.copy()
    kw = dict(groups=[cats[-1], cats[0]], method="wilcoxon", n_genes=50, pts=True)
    sc.tl.rank_genes_groups(a, "grp", **kw)
    cs.tl.rank_genes_groups(b, "grp", **kw)
    ra, rb = a.uns["rank_genes_groups"], b.uns["rank_genes_groups"]
    assert rb["names"].dtype.names == (cats[-1], cats[0])
    _check_rank(ra, rb, "wilcoxon", "sample groups vs rest")
    for k in ("pts", "pts_rest"):
        pd.testing.assert_frame_equal(rb[k], ra[k], check_exact=True)
    # pts over all groups too
    a2, b2 = sample_steps["lognorm"].copy(), sample_steps["lognorm"].copy()
    for x in (a2, b2):
        x.obs["grp"] = x.obs["truth_cell_type"].astype("category")
    sc.tl.rank_genes_groups(a2, "grp", n_genes=10, pts=True)
    cs.tl.rank_genes_groups(b2, "grp", n_genes=10, pts=True)
    for k in ("pts", "pts_rest"):
        pd.testing.assert_frame_equal(b2.uns["rank_genes_groups"][k], a2.uns["rank_genes_groups"][k],
                                      check_exact=True)


@pytest.mark.parametrize("layout", ["csr", "dense"])
def test_rank_genes_groups_mask_var(sample_steps, layout):
    """mask_var: only the masked genes are ranked (and corrected for), as a var column or an
    array; pts over the masked genes."""
    a = sample_steps["lognorm"].copy()
    if layout == "dense":
        a.X = a.X.toarray()
    a.obs["grp"] = a.obs["truth_cell_type"].astype("category")
    a.var["keep"] = np.random.default_rng(2).random(a.n_vars) < 0.4
    b = a.copy()
    sc.tl.rank_genes_groups(a, "grp", mask_var="keep", method="wilcoxon", n_genes=50, pts=True)
    cs.tl.rank_genes_groups(b, "grp", mask_var="keep", method="wilcoxon", n_genes=50, pts=True)
    ra, rb = a.uns["rank_genes_groups"], b.uns["rank_genes_groups"]
    _check_rank(ra, rb, "wilcoxon", f"mask_var {layout}")
    names = {str(n) for g in rb["names"].dtype.names for n in rb["names"][g]}
    assert names <= set(a.var_names[a.var["keep"]])
    pd.testing.assert_frame_equal(rb["pts"], ra["pts"], check_exact=True)
    c = a.copy()
    cs.tl.rank_genes_groups(c, "grp", mask_var=a.var["keep"].to_numpy(), method="wilcoxon", n_genes=50)
    assert compare_rank_genes_groups(rb, c.uns["rank_genes_groups"])["permuted"] == 0


@pytest.mark.parametrize("method", ["t-test", "wilcoxon"])
def test_rank_genes_groups_bonferroni_rankby_abs(sample_steps, method):
    """corr_method="bonferroni" and rankby_abs (genes ordered by |score|, scores signed)."""
    a = sample_steps["lognorm"].copy()
    a.obs["grp"] = a.obs["truth_cell_type"].astype("category")
    b = a.copy()
    kw = dict(method=method, corr_method="bonferroni", rankby_abs=True, n_genes=60)
    sc.tl.rank_genes_groups(a, "grp", **kw)
    cs.tl.rank_genes_groups(b, "grp", **kw)
    ra, rb = a.uns["rank_genes_groups"], b.uns["rank_genes_groups"]
    r = compare_rank_genes_groups(ra, rb, key=np.abs)
    measured(f"rank_genes_groups bonferroni rankby_abs {method}", r)
    assert r["scores"] <= RANK_SCORES_REL and r["logfoldchanges"] <= RANK_LFC_REL, r
    assert r["pvals_adj"] <= RANK_P_REL[method], r
    assert rb["params"]["corr_method"] == ra["params"]["corr_method"] == "bonferroni"
    assert any((np.asarray(rb["scores"][g]) < 0).any() for g in rb["scores"].dtype.names)


@pytest.mark.parametrize("kw", [{"reference": "nope"}, {"groups": ["nope"]}, {"groups": "one"},
                                {"corr_method": "holm"}, {"mask_var": "nope"}, {"mask_var": np.ones(3, bool)}])
def test_rank_genes_groups_bad_groups(sample_steps, kw):
    a = sample_steps["lognorm"].copy()
    a.obs["grp"] = a.obs["truth_cell_type"].astype("category")
    before = set(a.uns)
    with pytest.raises(ValueError):
        cs.tl.rank_genes_groups(a, "grp", **kw)
    assert set(a.uns) == before
