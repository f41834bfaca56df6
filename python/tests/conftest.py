"""Shared data, scanpy reference runs and comparison helpers for the cartscope test suite.

Every test compares a cartscope function with scanpy 1.11.5 run on a copy of the same
AnnData. The scanpy side of each preprocessing step is computed once per session (the
``*_steps`` fixtures) and each test starts both sides from the same stage, so a difference
never compounds over steps. Tolerances sit just above what was measured on this data (see
the constants in each test module, with the measured value beside each); the ceilings of
docs/algorithms.md section 9 are noted for reference.

Data:
- ``sample_data/P01_infusion.h5ad``: the project's simulated sample, 2000 cells x 3000 genes,
  integer counts (CSR float32).
- ``$CARTSCOPE_REAL_DATA/wu2020_200_v0_11.h5ad``: 200 real T cells (Wu et al. 2020), integer
  counts (CSR float32), 30,727 genes, no MT- genes. A missing file FAILS the tests that use it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import scanpy as sc  # noqa: E402

import cartscope as cs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data" / "P01_infusion.h5ad"
CELL_CYCLE_TSV = ROOT / "data" / "cell_cycle_genes.tsv"

GENE_SETS = {
    "exhaustion": ["PDCD1", "HAVCR2", "LAG3", "TIGIT", "CTLA4", "TOX", "ENTPD1"],
    "memory": ["TCF7", "SELL", "CCR7", "IL7R", "LEF1", "CD27", "CD28"],
    "cytotoxicity": ["PRF1", "IFNG", "GZMK", "GZMB", "NKG7", "GNLY"],
    "proliferation": ["MKI67", "TOP2A", "TYMS", "ZWINT", "TUBA1B"],
}

# Known package bugs: the test states the behaviour scanpy (or cartscope's own docstring)
# gives. strict=True: once the bug is fixed the test XPASSes, which fails the suite, so the
# marker must then be removed. raises=AssertionError: any other error still fails.


def known_bug(reason: str):
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"BUG: {reason}")


def known_discrepancy(reason: str):
    """A documented or deliberate difference from scanpy that the docs disagree about."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"DISCREPANCY: {reason}")


def pytest_configure(config):
    sc.settings.verbosity = 0
    sc.settings.n_jobs = 1
    # scanpy's own notices on the inputs these tests give it on purpose (views, sparse scale)
    config.addinivalue_line("filterwarnings", "ignore:Trying to modify attribute:UserWarning")
    config.addinivalue_line("filterwarnings", "ignore:Received a view of an AnnData:UserWarning")
    config.addinivalue_line("filterwarnings", "ignore:Setting element:UserWarning")
    config.addinivalue_line("filterwarnings", "ignore:zero-centering a sparse array:UserWarning")


# --------------------------------------------------------------------------------------
# data


def wu_path() -> Path:
    cache = os.environ.get("CARTSCOPE_REAL_DATA")
    if not cache:
        pytest.fail("CARTSCOPE_REAL_DATA is not set: the real-data tests need $CARTSCOPE_REAL_DATA/wu2020_200_v0_11.h5ad "
                    "(scripts/setup.sh fetches it and sets the variable)")
    p = Path(cache) / "wu2020_200_v0_11.h5ad"
    if not p.is_file():
        pytest.fail(f"real data missing: {p}")
    return p


def _prepare(a: ad.AnnData) -> ad.AnnData:
    a.var_names_make_unique()
    a.var["mt"] = a.var_names.str.upper().str.startswith("MT-")
    # a deterministic two-batch split (1/3 and 2/3 of the cells) for the batch_key tests
    a.obs["batch"] = pd.Categorical(np.where(np.arange(a.n_obs) % 3 == 0, "b0", "b1"))
    return a


@pytest.fixture(scope="session")
def sample_raw() -> ad.AnnData:
    """The simulated sample as read (do not modify: copy)."""
    assert SAMPLE.is_file(), f"missing {SAMPLE}"
    return _prepare(ad.read_h5ad(SAMPLE))


@pytest.fixture(scope="session")
def wu_raw() -> ad.AnnData:
    """200 real T cells (do not modify: copy)."""
    a = _prepare(ad.read_h5ad(wu_path()))
    x = a.X
    assert sp.issparse(x) and x.dtype == np.float32
    assert np.array_equal(x.data, np.round(x.data)) and x.data.min() >= 0, "wu2020 X is expected to hold counts"
    return a


def scanpy_steps(raw: ad.AnnData, *, n_top_genes: int = 2000, n_comps: int = 50, umap: bool = True) -> dict:
    """scanpy's recipe of reference/scanpy_reference.py (the CLI's defaults), step by step;
    each stage is a separate AnnData (copy before changing it):

    - "filtered": QC, filter_cells(min_genes=200), filter_genes(min_cells=3), pct_counts_mt <
      20; counts in X and layers["counts"]
    - "lognorm": normalize_total(1e4) + log1p
    - "hvg": + highly_variable_genes(seurat, n_top_genes), the gene-set scores and the cell
      cycle (all genes)
    - "hvg_subset": the HVGs, raw = "hvg"
    - "scaled": scale(max_value=10); "pca": pca(n_comps, arpack); "graph": neighbors(15)
    - "clustered": leiden(1.0, igraph, 2 iterations, seed 0) [+ umap]
    """
    st: dict[str, ad.AnnData] = {}
    a = raw.copy()
    sc.pp.calculate_qc_metrics(a, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    sc.pp.filter_cells(a, min_genes=200)
    sc.pp.filter_genes(a, min_cells=3)
    a = a[a.obs["pct_counts_mt"] < 20].copy()
    a.layers["counts"] = a.X.copy()
    st["filtered"] = a.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    st["lognorm"] = a.copy()
    sc.pp.highly_variable_genes(a, flavor="seurat", n_top_genes=n_top_genes)
    for name, genes in GENE_SETS.items():
        present = [g for g in genes if g in a.var_names]
        if present:
            sc.tl.score_genes(a, present, score_name=f"{name}_score", random_state=0)
    s_genes, g2m_genes = cell_cycle_genes()
    if any(g in a.var_names for g in s_genes) and any(g in a.var_names for g in g2m_genes):
        sc.tl.score_genes_cell_cycle(a, s_genes=s_genes, g2m_genes=g2m_genes)
    st["hvg"] = a.copy()
    a.raw = a
    a = a[:, a.var["highly_variable"]].copy()
    st["hvg_subset"] = a.copy()
    sc.pp.scale(a, max_value=10)
    st["scaled"] = a.copy()
    sc.pp.pca(a, n_comps=n_comps, svd_solver="arpack")
    st["pca"] = a.copy()
    sc.pp.neighbors(a, n_neighbors=15, n_pcs=n_comps)
    st["graph"] = a.copy()
    sc.tl.leiden(a, resolution=1.0, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    if umap:
        sc.tl.umap(a)
    st["clustered"] = a
    return st


@pytest.fixture(scope="session")
def sample_steps(sample_raw) -> dict:
    return scanpy_steps(sample_raw)


@pytest.fixture(scope="session")
def wu_steps(wu_raw) -> dict:
    return scanpy_steps(wu_raw, umap=False)


@pytest.fixture(scope="session")
def small_raw(sample_raw) -> ad.AnnData:
    """The first 400 cells of the sample: small inputs for the software-GPU backend."""
    return sample_raw[:400].copy()


@pytest.fixture(scope="session")
def small_steps(small_raw) -> dict:
    return scanpy_steps(small_raw, n_top_genes=1000, n_comps=30, umap=False)


# --------------------------------------------------------------------------------------
# comparison helpers


def measured(name: str, value) -> None:
    """Records a measured discrepancy (appended to $CARTSCOPE_MEASURE_LOG when set), so the
    numbers behind each tolerance can be re-read after a run."""
    path = os.environ.get("CARTSCOPE_MEASURE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{name}\t{value!r}\n")


def dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def max_abs(a, b) -> float:
    a, b = dense(a), dense(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def max_rel(a, b, floor: float = 1e-300) -> float:
    """max |a - b| / max(|a|, floor), NaN positions required to be equal (and skipped)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    na, nb = np.isnan(a), np.isnan(b)
    assert np.array_equal(na, nb), f"NaN in different places: {int((na != nb).sum())}"
    ok = ~na
    if not ok.any():
        return 0.0
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), floor)))


def max_ulp_f32(a, b) -> int:
    """Largest distance in float32 units in the last place between two arrays of float32."""
    a = np.ascontiguousarray(dense(a), dtype=np.float32).ravel()
    b = np.ascontiguousarray(dense(b), dtype=np.float32).ravel()
    ia = a.view(np.int32).astype(np.int64)
    ib = b.view(np.int32).astype(np.int64)
    # map to a monotonic integer line (negative floats reversed)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return int(np.max(np.abs(ia - ib))) if a.size else 0


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b)


def pca_one_minus_r(xa: np.ndarray, xb: np.ndarray, k: int = 10) -> float:
    """max over the first k components of 1 - |Pearson r| of the scores."""
    worst = 0.0
    for i in range(k):
        r = np.corrcoef(xa[:, i].astype(np.float64), xb[:, i].astype(np.float64))[0, 1]
        worst = max(worst, 1.0 - abs(r))
    return worst


def knn_sets(d: sp.spmatrix) -> list[set]:
    d = sp.csr_matrix(d)
    return [set(d.indices[d.indptr[i]:d.indptr[i + 1]].tolist()) for i in range(d.shape[0])]


def knn_recall(d_ref, d_test) -> float:
    ra, rb = knn_sets(d_ref), knn_sets(d_test)
    return float(np.mean([len(x & y) / max(len(x), 1) for x, y in zip(ra, rb, strict=True)]))


def shared_distance_rel(d_ref, d_test) -> float:
    a, b = sp.csr_matrix(d_ref), sp.csr_matrix(d_test)
    both = (a != 0).multiply(b != 0).nonzero()
    x = np.asarray(a[both]).ravel()
    y = np.asarray(b[both]).ravel()
    return float(np.max(np.abs(x - y) / x))


def rel_frobenius(p_ref, p_test) -> float:
    p_ref, p_test = sp.csr_matrix(p_ref, dtype=np.float64), sp.csr_matrix(p_test, dtype=np.float64)
    return float(sp.linalg.norm(p_ref - p_test) / sp.linalg.norm(p_ref))


def same_partition(a, b) -> bool:
    """The two labelings are identical up to renaming the clusters."""
    t = pd.crosstab(pd.Series(np.asarray(a)), pd.Series(np.asarray(b)))
    return bool(((t.to_numpy() > 0).sum(axis=0) == 1).all() and ((t.to_numpy() > 0).sum(axis=1) == 1).all())


def compare_rank_genes_groups(ra: dict, rb: dict, key=lambda s: s) -> dict:
    """Compares two ``uns["rank_genes_groups"]`` (scanpy's ``ra``, cartscope's ``rb``).

    Per group: the scores must be the same float32 values position by position (both are
    sorted by score), and the gene order identical except for permutations inside runs of
    exactly equal scores (scanpy orders ties through argpartition/argsort, i.e. arbitrarily;
    docs/algorithms.md section 10 allows this). A tie run cut by the ``n_genes`` boundary may
    hold different genes. Fold changes and p-values are compared gene by gene.

    Returns the worst differences: max relative error of scores, logfoldchanges, pvals,
    pvals_adj (relative with a 1e-300 floor), and the number of permuted positions. ``key``
    is what the genes are sorted by (``np.abs`` for ``rankby_abs``); the signed scores are then
    also compared gene by gene.
    """
    groups = ra["names"].dtype.names
    assert rb["names"].dtype.names == groups, (rb["names"].dtype.names, groups)
    for k in ("scores", "logfoldchanges", "pvals", "pvals_adj"):
        assert rb[k].dtype == ra[k].dtype, (k, rb[k].dtype, ra[k].dtype)
    out = {"scores": 0.0, "logfoldchanges": 0.0, "pvals": 0.0, "pvals_adj": 0.0, "permuted": 0, "compared": 0}
    for g in groups:
        na, nb = np.asarray(ra["names"][g]).astype(str), np.asarray(rb["names"][g]).astype(str)
        signed_a, signed_b = np.asarray(ra["scores"][g]), np.asarray(rb["scores"][g])
        sa, sb = key(signed_a), key(signed_b)
        assert len(na) == len(nb), (g, len(na), len(nb))
        out["scores"] = max(out["scores"], max_rel(sa, sb))
        # runs of equal scanpy scores
        n = len(sa)
        i = 0
        while i < n:
            j = i + 1
            while j < n and sa[j] == sa[i]:
                j += 1
            if j < n:  # a complete run: the same genes
                assert set(na[i:j]) == set(nb[i:j]), (
                    f"group {g!r}: positions {i}..{j - 1} (score {sa[i]}) hold {sorted(na[i:j])} in scanpy, "
                    f"{sorted(nb[i:j])} in cartscope")
            elif j - i == 1:
                assert na[i] == nb[i], (g, i, na[i], nb[i])
            i = j
        out["permuted"] += int((na != nb).sum())
        pos_b = {name: p for p, name in enumerate(nb)}
        common = [(p, pos_b[name]) for p, name in enumerate(na) if name in pos_b]
        ia = np.array([p for p, _ in common])
        ib = np.array([q for _, q in common])
        out["compared"] += len(common)
        out["scores"] = max(out["scores"], max_rel(signed_a[ia], signed_b[ib]))
        for k in ("logfoldchanges", "pvals", "pvals_adj"):
            x = np.asarray(ra[k][g])[ia]
            y = np.asarray(rb[k][g])[ib]
            out[k] = max(out[k], max_rel(x, y))
    return out


def snapshot(a: ad.AnnData) -> dict:
    """Everything a failed call must leave alone."""
    x = a.X
    return {
        "X_type": type(x),
        "X_dtype": x.dtype,
        "X": x.copy(),
        "shape": a.shape,
        "obs": a.obs.copy(),
        "var": a.var.copy(),
        "obs_names": a.obs_names.copy(),
        "var_names": a.var_names.copy(),
        "uns": sorted(a.uns.keys()),
        "obsm": sorted(a.obsm.keys()),
        "varm": sorted(a.varm.keys()),
        "obsp": sorted(a.obsp.keys()),
        "layers": {k: v.copy() for k, v in a.layers.items()},
        "is_view": a.is_view,
    }


def assert_unchanged(a: ad.AnnData, s: dict) -> None:
    assert a.shape == s["shape"]
    assert type(a.X) is s["X_type"], f"X changed type: {s['X_type'].__name__} -> {type(a.X).__name__}"
    assert a.X.dtype == s["X_dtype"], f"X changed dtype: {s['X_dtype']} -> {a.X.dtype}"
    x0, x1 = s["X"], a.X
    if sp.issparse(x0):
        # the stored arrays themselves: densifying would trust indices a test may have corrupted
        assert x0.format == x1.format, f"X changed format: {x0.format} -> {x1.format}"
        assert np.array_equal(x0.indptr, x1.indptr) and np.array_equal(x0.indices, x1.indices), \
            "X structure changed"
        x0, x1 = x0.data, x1.data
    else:
        x0, x1 = dense(x0), dense(x1)
    assert np.array_equal(x0, x1, equal_nan=x0.dtype.kind in "fc"), "X values changed"
    pd.testing.assert_frame_equal(a.obs, s["obs"])
    pd.testing.assert_frame_equal(a.var, s["var"])
    assert a.obs_names.equals(s["obs_names"]) and a.var_names.equals(s["var_names"])
    assert sorted(a.uns.keys()) == s["uns"], (sorted(a.uns.keys()), s["uns"])
    assert sorted(a.obsm.keys()) == s["obsm"]
    assert sorted(a.varm.keys()) == s["varm"]
    assert sorted(a.obsp.keys()) == s["obsp"]
    assert sorted(a.layers.keys()) == sorted(s["layers"])
    for k, v in s["layers"].items():
        assert type(a.layers[k]) is type(v) and np.array_equal(dense(a.layers[k]), dense(v))
    assert a.is_view == s["is_view"]


def trustworthiness(hi: np.ndarray, lo: np.ndarray, k: int = 15) -> float:
    from sklearn.manifold import trustworthiness as tw

    return float(tw(hi, lo, n_neighbors=k))


def knn_preservation(hi: np.ndarray, lo: np.ndarray, k: int = 15) -> float:
    from sklearn.neighbors import NearestNeighbors

    a = NearestNeighbors(n_neighbors=k + 1).fit(hi).kneighbors(hi, return_distance=False)[:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(lo).kneighbors(lo, return_distance=False)[:, 1:]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def cell_cycle_genes() -> tuple[list[str], list[str]]:
    rows = [ln.split("\t") for ln in CELL_CYCLE_TSV.read_text().splitlines() if ln and not ln.startswith("#")][1:]
    return [g for p, g in rows if p == "S"], [g for p, g in rows if p == "G2M"]


__all__ = ["ad", "cs", "sc", "np", "pd", "sp"]
