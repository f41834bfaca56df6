#!/usr/bin/env python3
"""Generates the reader fixtures in tests/data/ and their expected values.

Run from the repository root with the test venv (scripts/test.sh creates it):

    .venv/bin/python tests/data/make_fixtures.py

Every fixture is small (tens of cells and genes). `expected.json` holds, per good fixture, what a
reader must return (shape, nnz, obs/var names, the dense cells x genes matrix, columns), computed
here from the arrays that were written, with the semantics scanpy uses (10x `gex_only=True`,
`var_names_make_unique`). `bad/` holds malformed inputs that must give exit code 2.
Deterministic: re-running it rewrites identical values.
"""
import gzip
import json
import shutil
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

warnings.filterwarnings("ignore")
OUT = Path(__file__).resolve().parent
RNG = np.random.default_rng(20261124)
GENES = ["CD3E", "CD4", "CD8A", "MT-CO1", "mt-nd1", "TCF7", "PDCD1", "CARD11", "GZMB", "MKI67",
         "CD3E", "SELL", "CD3E-1", "FOXP3", "IL7R", "TOX", "LAG3", "CCR7"]
EXPECTED = {}


def counts(n_obs, n_vars, density=0.3, hi=20):
    m = RNG.integers(1, hi, size=(n_obs, n_vars)) * (RNG.random((n_obs, n_vars)) < density)
    return m.astype(np.int64)


def make_unique(names):
    return list(ad.utils.make_index_unique(pd.Index(names)))


def record(name, dense, obs_names, var_names, nnz, **extra):
    EXPECTED[name] = {
        "n_obs": int(dense.shape[0]), "n_vars": int(dense.shape[1]), "nnz": int(nnz),
        "obs_names": [str(x) for x in obs_names], "var_names": [str(x) for x in var_names],
        "dense": np.asarray(dense, dtype=np.float64).ravel().tolist(), **extra,
    }


def obs_frame(n):
    return pd.DataFrame({
        "sample": pd.Categorical(RNG.choice(["infusion", "day14", "day90"], n)),
        "batch_label": [f"b{i % 3}" for i in range(n)],
        "n_counts_prev": RNG.random(n).astype(np.float64),
        "score32": RNG.random(n).astype(np.float32),
        "int_col": np.arange(n, dtype=np.int64),
        "is_t": RNG.random(n) < 0.5,
        "nullable_int": pd.array([None if i % 4 == 0 else i for i in range(n)], dtype="Int64"),
        "nullable_bool": pd.array([None if i % 5 == 0 else bool(i % 2) for i in range(n)], dtype="boolean"),
        "donor": pd.Categorical([None if i % 6 == 0 else f"d{i % 2}" for i in range(n)]),
    }, index=[f"cell{i:03d}" for i in range(n)])


def h5ad_fixtures():
    n, genes = 24, GENES + ["CAR"]
    m = counts(n, len(genes))
    a = ad.AnnData(X=sp.csr_matrix(m.astype(np.float32)), obs=obs_frame(n),
                   var=pd.DataFrame({"gene_ids": [f"ENSG{i:05d}" for i in range(len(genes))]}, index=genes))
    a.write_h5ad(OUT / "csr_f32_gzip.h5ad", compression="gzip")
    record("csr_f32_gzip.h5ad", m, a.obs_names, make_unique(genes), np.count_nonzero(m),
           obs_columns=list(a.obs.columns), car_features=["CAR"], n_mito=2, raw_counts=True)

    # CSC int32 counts, LZF, int64 indices.
    m2 = counts(30, 12)
    X = sp.csc_matrix(m2.astype(np.int32))
    X.indices = X.indices.astype(np.int64)
    X.indptr = X.indptr.astype(np.int64)
    b = ad.AnnData(X=X, obs=pd.DataFrame(index=[f"c{i}" for i in range(30)]),
                   var=pd.DataFrame(index=GENES[:12]))
    b.write_h5ad(OUT / "csc_i32_lzf.h5ad", compression="lzf")
    record("csc_i32_lzf.h5ad", m2, b.obs_names, make_unique(GENES[:12]), X.nnz, raw_counts=True)

    # Dense float64.
    m3 = counts(10, 8)
    c = ad.AnnData(X=m3.astype(np.float64), obs=pd.DataFrame(index=[f"d{i}" for i in range(10)]),
                   var=pd.DataFrame(index=GENES[:8]))
    c.write_h5ad(OUT / "dense_f64.h5ad")
    record("dense_f64.h5ad", m3, c.obs_names, GENES[:8], np.count_nonzero(m3), raw_counts=True)

    # Log-normalised X with counts in a layer and in raw; uint16 layer.
    m4 = counts(16, 10)
    logn = np.log1p(m4 / np.maximum(m4.sum(1, keepdims=True), 1) * 1e4).astype(np.float32)
    d = ad.AnnData(X=sp.csr_matrix(logn), obs=pd.DataFrame(index=[f"e{i}" for i in range(16)]),
                   var=pd.DataFrame(index=GENES[:10]))
    d.layers["counts"] = sp.csr_matrix(m4.astype(np.uint16))
    d.raw = ad.AnnData(X=sp.csr_matrix(m4.astype(np.float32)), var=pd.DataFrame(index=GENES[:10]))
    d.write_h5ad(OUT / "layers_raw.h5ad", compression="gzip")
    record("layers_raw.h5ad", m4, d.obs_names, make_unique(GENES[:10]), np.count_nonzero(m4),
           layers=["counts"], has_raw=True, x_raw_counts=False)

    # CELLxGENE style: Ensembl IDs in the index, symbols (with duplicates) in feature_name.
    m5 = counts(12, len(GENES))
    ids = [f"ENSG{i:011d}" for i in range(len(GENES))]
    e = ad.AnnData(X=sp.csr_matrix(m5.astype(np.float32)), obs=pd.DataFrame(index=[f"f{i}" for i in range(12)]),
                   var=pd.DataFrame({"feature_name": pd.Categorical(GENES)}, index=ids))
    e.write_h5ad(OUT / "feature_name.h5ad")
    record("feature_name.h5ad", m5, e.obs_names, make_unique(GENES), np.count_nonzero(m5),
           gene_ids=ids, n_mito=2)


def legacy_07():
    """anndata 0.7 layout: h5sparse attributes and __categories, no encoding on columns."""
    m = counts(9, 6)
    X = sp.csr_matrix(m.astype(np.float32))
    with h5py.File(OUT / "legacy_07.h5ad", "w") as f:
        g = f.create_group("X")
        g.attrs["h5sparse_format"] = "csr"
        g.attrs["h5sparse_shape"] = np.array(X.shape)
        g["data"], g["indices"], g["indptr"] = X.data, X.indices, X.indptr
        str_dt = h5py.string_dtype()
        for name, index in [("obs", [f"l{i}" for i in range(9)]), ("var", GENES[:6])]:
            df = f.create_group(name)
            df.attrs["_index"] = "index"
            df.attrs["column-order"] = np.array(["group"] if name == "obs" else [], dtype=object if name == "obs" else float)
            df.attrs["encoding-type"] = "dataframe"
            df.attrs["encoding-version"] = "0.1.0"
            df.create_dataset("index", data=np.array(index, dtype=object), dtype=str_dt)
            if name == "obs":
                cats = df.create_group("__categories")
                cats.create_dataset("group", data=np.array(["A", "B"], dtype=object), dtype=str_dt)
                codes = df.create_dataset("group", data=np.array([0, 1, 1, 0, -1, 0, 1, 1, 0], dtype=np.int8))
                codes.attrs["categories"] = cats["group"].ref
    record("legacy_07.h5ad", m, [f"l{i}" for i in range(9)], GENES[:6], X.nnz, obs_columns=["group"])


def unsorted_indices():
    """CSR whose column indices are shuffled within rows (valid; readers must sort them)."""
    m = counts(8, 9, density=0.5)
    X = sp.csr_matrix(m.astype(np.float32))
    for i in range(X.shape[0]):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        perm = RNG.permutation(hi - lo) + lo
        X.indices[lo:hi] = X.indices[perm]
        X.data[lo:hi] = X.data[perm]
    X.has_sorted_indices = False
    with h5py.File(OUT / "unsorted.h5ad", "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        g = f.create_group("X")
        g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        g.attrs["shape"] = np.array(X.shape)
        g["data"], g["indices"], g["indptr"] = X.data, X.indices, X.indptr
        for name, index in [("obs", [f"u{i}" for i in range(8)]), ("var", GENES[:9])]:
            df = f.create_group(name)
            df.attrs["encoding-type"], df.attrs["encoding-version"] = "dataframe", "0.2.0"
            df.attrs["_index"] = "_index"
            df.attrs["column-order"] = np.array([], dtype=float)
            df.create_dataset("_index", data=np.array(index, dtype=object), dtype=h5py.string_dtype())
    assert not all(np.all(np.diff(X.indices[X.indptr[i]:X.indptr[i + 1]]) > 0) for i in range(8))
    record("unsorted.h5ad", m, [f"u{i}" for i in range(8)], GENES[:9], X.nnz)


def tenx_v3():
    names = ["CD3E", "CD4", "MT-CO1", "CD3E", "FMC63-28Z", "mm10_Cd3e", "CD3_TotalSeqB", "CD4_TotalSeqB"]
    types = ["Gene Expression"] * 6 + ["Antibody Capture"] * 2
    genomes = ["GRCh38"] * 5 + ["mm10"] + [""] * 2
    n_cells = 14
    m = counts(n_cells, len(names))  # cells x features
    csc = sp.csc_matrix(m.T.astype(np.int32))  # features x cells, stored as 10x does
    bc = [f"AAACCTGA{i:04d}-1" for i in range(n_cells)]
    with h5py.File(OUT / "tenx_v3.h5", "w") as f:
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=np.array(bc, dtype="S"))
        g.create_dataset("data", data=csc.data, compression="gzip")
        g.create_dataset("indices", data=csc.indices.astype(np.int64), compression="gzip")
        g.create_dataset("indptr", data=csc.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
        fg = g.create_group("features")
        fg.create_dataset("_all_tag_keys", data=np.array([b"genome"], dtype="S"))
        fg.create_dataset("feature_type", data=np.array(types, dtype="S"))
        fg.create_dataset("genome", data=np.array(genomes, dtype="S"))
        fg.create_dataset("id", data=np.array([f"ID{i}" for i in range(len(names))], dtype="S"))
        fg.create_dataset("name", data=np.array(names, dtype="S"))
    gex = [i for i, t in enumerate(types) if t == "Gene Expression"]
    record("tenx_v3.h5", m[:, gex], bc, make_unique([names[i] for i in gex]), np.count_nonzero(m[:, gex]),
           car_features=["FMC63-28Z"], genomes=["GRCh38", "mm10"], n_mito=1)
    EXPECTED["tenx_v3.h5"]["all_features"] = {
        "n_vars": len(names), "nnz": int(np.count_nonzero(m)), "dense": m.astype(float).ravel().tolist()}


def tenx_v2():
    n_cells = 11
    bc = [f"TTTGTCAT{i:04d}-1" for i in range(n_cells)]
    parts = {"hg19": ["CD3E", "CD8A", "MT-ND1"], "mm10": ["Cd3e", "mt-Nd1"]}
    dense = []
    for fname, genome_list in [("tenx_v2.h5", ["hg19"]), ("tenx_v2_two_genomes.h5", ["hg19", "mm10"])]:
        with h5py.File(OUT / fname, "w") as f:
            blocks = []
            for gname in genome_list:
                genes = parts[gname]
                m = counts(n_cells, len(genes))
                blocks.append(m)
                csc = sp.csc_matrix(m.T.astype(np.int32))
                g = f.create_group(gname)
                g.create_dataset("barcodes", data=np.array(bc, dtype="S"))
                g.create_dataset("data", data=csc.data)
                g.create_dataset("indices", data=csc.indices)
                g.create_dataset("indptr", data=csc.indptr)
                g.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
                g.create_dataset("genes", data=np.array([f"ENS_{x}" for x in genes], dtype="S"))
                g.create_dataset("gene_names", data=np.array(genes, dtype="S"))
        full = np.hstack(blocks)
        names = sum((parts[gname] for gname in genome_list), [])
        record(fname, full, bc, names, np.count_nonzero(full), genomes=genome_list)
        dense.append(full)


def write_text(path, lines, gz):
    data = "".join(line + "\n" for line in lines).encode()
    if gz:
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(data)
    else:
        path.write_bytes(data)


def mtx(dirname, m, features, barcodes, gz, feature_file, header="%%MatrixMarket matrix coordinate integer general",
        nnz_override=None):
    d = OUT / dirname
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    coo = sp.coo_matrix(m.T)  # genes x cells
    order = np.lexsort((coo.row, coo.col))
    entries = [f"{coo.row[k] + 1} {coo.col[k] + 1} {coo.data[k]}" for k in order]
    nnz = len(entries) if nnz_override is None else nnz_override
    lines = [header, "%metadata_json: {}", f"{m.shape[1]} {m.shape[0]} {nnz}"] + entries
    sfx = ".gz" if gz else ""
    write_text(d / f"matrix.mtx{sfx}", lines, gz)
    write_text(d / f"{feature_file}{sfx}", ["\t".join(f) for f in features], gz)
    write_text(d / f"barcodes.tsv{sfx}", barcodes, gz)
    return d


def mtx_fixtures():
    n_cells = 13
    bc = [f"GGGCATCC{i:04d}-1" for i in range(n_cells)]
    feats = [("ENSG1", "CD3E", "Gene Expression"), ("ENSG2", "CD8A", "Gene Expression"),
             ("ENSG3", "MT-CO2", "Gene Expression"), ("ENSG4", "CD8A", "Gene Expression"),
             ("CAR", "CAR", "Gene Expression"), ("AB1", "CD8_TotalSeqC", "Antibody Capture")]
    m = counts(n_cells, len(feats))
    mtx("mtx_v3", m, feats, bc, True, "features.tsv")
    gex = [0, 1, 2, 3, 4]
    record("mtx_v3", m[:, gex], bc, make_unique([feats[i][1] for i in gex]), np.count_nonzero(m[:, gex]),
           car_features=["CAR"], n_mito=1)
    genes = [("ENSG1", "CD3E"), ("ENSG2", "GZMB"), ("ENSG3", "MT-ND2")]
    m2 = counts(7, 3)
    mtx("mtx_v2", m2, genes, bc[:7], False, "genes.tsv")
    record("mtx_v2", m2, bc[:7], [g[1] for g in genes], np.count_nonzero(m2))


def bad_fixtures():
    bad = OUT / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir()
    src = OUT / "csr_f32_gzip.h5ad"

    def copy(name, edit):
        p = bad / name
        shutil.copy(src, p)
        with h5py.File(p, "r+") as f:
            edit(f)

    copy("no_x.h5ad", lambda f: f.__delitem__("X"))
    copy("shape_mismatch.h5ad", lambda f: f["X"].attrs.__setitem__("shape", np.array([30, 19])))

    def index_oob(f):
        idx = f["X/indices"][...]
        idx[3] = 500
        del f["X/indices"]
        f["X"].create_dataset("indices", data=idx)
    copy("index_out_of_range.h5ad", index_oob)

    def indptr_dec(f):
        p = f["X/indptr"][...]
        p[5], p[6] = p[6], p[5] - 1
        del f["X/indptr"]
        f["X"].create_dataset("indptr", data=p)
    copy("indptr_decreasing.h5ad", indptr_dec)

    def set_value(v):
        def edit(f):
            d = f["X/data"][...]
            d[7] = v
            del f["X/data"]
            f["X"].create_dataset("data", data=d)
        return edit
    copy("negative.h5ad", set_value(-3.0))
    copy("nan.h5ad", set_value(np.nan))
    copy("non_integer.h5ad", set_value(2.5))

    z = ad.AnnData(X=sp.csr_matrix((0, 5), dtype=np.float32), var=pd.DataFrame(index=GENES[:5]))
    z.write_h5ad(bad / "zero_cells.h5ad")
    z = ad.AnnData(X=sp.csr_matrix((5, 0), dtype=np.float32), obs=pd.DataFrame(index=[f"z{i}" for i in range(5)]))
    z.write_h5ad(bad / "zero_genes.h5ad")

    def invalid_utf8(f):
        names = [n.encode() for n in f["obs/_index"].asstr()[...]]
        names[2] = b"cell\xff\xfe"
        del f["obs/_index"]
        ds = f["obs"].create_dataset("_index", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
        ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "string-array", "0.2.0"
    copy("invalid_utf8.h5ad", invalid_utf8)

    raw = src.read_bytes()
    (bad / "truncated.h5ad").write_bytes(raw[: len(raw) // 2])
    (bad / "not_hdf5.h5ad").write_bytes(b"cell,gene,count\nA,CD3E,1\n")
    m = counts(4, 3)
    feats = [("E1", "A", "Gene Expression"), ("E2", "B", "Gene Expression"), ("E3", "C", "Gene Expression")]
    bcs = [f"b{i}" for i in range(4)]
    d = mtx("bad/mtx_bad_header", m, feats, bcs, False, "features.tsv",
            header="%%MatrixMarket matrix array integer general")
    d = mtx("bad/mtx_bad_count", m, feats, bcs, True, "features.tsv", nnz_override=int(np.count_nonzero(m)) + 2)


def replace(g, name, data, **kw):
    """Replaces dataset `name` of group `g` by `data`, keeping its attributes."""
    attrs = dict(g[name].attrs)
    del g[name]
    ds = g.create_dataset(name, data=data, **kw)
    for k, v in attrs.items():
        ds.attrs[k] = v


def replace_strings(g, name, values):
    replace(g, name, np.array(values, dtype=object), dtype=h5py.string_dtype())


def write_index_only_frame(f, name, index):
    """An obs/var dataframe group with only its index."""
    df = f.create_group(name)
    df.attrs["encoding-type"], df.attrs["encoding-version"] = "dataframe", "0.2.0"
    df.attrs["_index"] = "_index"
    df.attrs["column-order"] = np.array([], dtype=float)
    ds = df.create_dataset("_index", data=np.array(index, dtype=object), dtype=h5py.string_dtype())
    ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "string-array", "0.2.0"


def small_h5ad_cases(bad):
    """Each a copy of one small valid .h5ad (6 cells x 5 genes) with one thing broken."""
    rng = np.random.default_rng(20261125)
    n, genes = 6, GENES[:5]
    m = (rng.integers(1, 9, size=(n, len(genes))) * (rng.random((n, len(genes))) < 0.6)).astype(np.float32)
    m[:, 0] += 1  # every cell has counts
    obs = pd.DataFrame({
        "sample": pd.Categorical(["infusion", "day14", "day90", "day14", "infusion", "day90"]),
        "batch_label": [f"b{i % 2}" for i in range(n)],
        "nullable_int": pd.array([None, 1, 2, 3, None, 5], dtype="Int64"),
    }, index=[f"cell{i:03d}" for i in range(n)])
    var = pd.DataFrame(index=genes)
    base = bad / "small_base.h5ad"
    ad.AnnData(X=sp.csr_matrix(m), obs=obs, var=var).write_h5ad(base)

    def case(name, edit):
        p = bad / name
        shutil.copy(base, p)
        with h5py.File(p, "r+") as f:
            edit(f)

    def obs_fewer_rows(f):
        del f["obs"]
        write_index_only_frame(f, "obs", [f"cell{i:03d}" for i in range(n - 1)])
    case("obs_fewer_rows.h5ad", obs_fewer_rows)

    def var_more_genes(f):
        del f["var"]
        write_index_only_frame(f, "var", GENES[:len(genes) + 2])
    case("var_more_genes.h5ad", var_more_genes)

    def code_out_of_range(f):
        codes = f["obs/sample/codes"][...]
        codes[3] = 7
        replace(f["obs/sample"], "codes", codes)
    case("categorical_code_out_of_range.h5ad", code_out_of_range)

    case("categorical_duplicate_categories.h5ad",
         lambda f: replace_strings(f["obs/sample"], "categories", ["day14", "day90", "day14"]))

    def set_name(k, value):
        def edit(f):
            names = list(f["obs/_index"].asstr()[...])
            names[k] = value
            replace_strings(f["obs"], "_index", names)
        return edit
    case("obs_index_duplicate.h5ad", set_name(4, "cell001"))
    case("obs_index_empty_name.h5ad", set_name(2, ""))
    case("obs_index_attr_empty.h5ad", lambda f: f["obs"].attrs.__setitem__("_index", ""))
    case("obs_index_missing.h5ad", lambda f: f["obs"].attrs.__setitem__("_index", "barcode"))
    case("no_obs.h5ad", lambda f: f.__delitem__("obs"))
    def string_column_wrong_length(f):
        # anndata stores this column as a categorical; a plain string-array is just as valid.
        del f["obs/batch_label"]
        ds = f["obs"].create_dataset("batch_label", data=np.array([f"b{i % 2}" for i in range(n - 1)], dtype=object),
                                     dtype=h5py.string_dtype())
        ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "string-array", "0.2.0"
    case("string_column_wrong_length.h5ad", string_column_wrong_length)
    case("nullable_mask_length.h5ad",
         lambda f: replace(f["obs/nullable_int"], "mask", f["obs/nullable_int/mask"][: n - 1]))
    case("indices_data_length.h5ad", lambda f: replace(f["X"], "indices", f["X/indices"][:-1]))

    def indptr_edit(k, delta):
        def edit(f):
            p = f["X/indptr"][...]
            p[k] += delta
            replace(f["X"], "indptr", p)
        return edit
    case("indptr_end_mismatch.h5ad", indptr_edit(-1, 3))
    case("indptr_start_nonzero.h5ad", indptr_edit(0, 1))

    def dense_3d(f):
        del f["X"]
        f.create_dataset("X", data=m.reshape(n, len(genes), 1))
    case("dense_3d.h5ad", dense_3d)
    case("unsupported_encoding.h5ad", lambda f: f["X"].attrs.__setitem__("encoding-type", "coo_matrix"))
    base.unlink()


def small_tenx_cases(bad):
    """Each a small 10x v3 .h5 (5 cells x 4 features) with one thing broken."""
    rng = np.random.default_rng(20261126)
    names = ["CD3E", "CD4", "MT-CO1", "GZMB"]
    bc = [f"ACGTACGT{i:04d}-1" for i in range(5)]
    csc = sp.csc_matrix((rng.integers(1, 9, size=(4, 5)) * (rng.random((4, 5)) < 0.6)).astype(np.int32))

    def case(name, barcodes=bc, features=names):
        with h5py.File(bad / name, "w") as f:
            g = f.create_group("matrix")
            g.create_dataset("barcodes", data=np.array(barcodes, dtype="S"))
            g.create_dataset("data", data=csc.data)
            g.create_dataset("indices", data=csc.indices.astype(np.int64))
            g.create_dataset("indptr", data=csc.indptr.astype(np.int64))
            g.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
            fg = g.create_group("features")
            fg.create_dataset("feature_type", data=np.array(["Gene Expression"] * len(features), dtype="S"))
            fg.create_dataset("genome", data=np.array(["GRCh38"] * len(features), dtype="S"))
            fg.create_dataset("id", data=np.array([f"ID{i}" for i in range(len(features))], dtype="S"))
            fg.create_dataset("name", data=np.array(features, dtype="S"))
    case("tenx_barcodes_count.h5", barcodes=bc[:-1])
    case("tenx_features_count.h5", features=names + ["CD8A"])
    case("tenx_duplicate_barcode.h5", barcodes=bc[:3] + [bc[1]] + bc[4:])


def mtx_text_cases(bad):
    """10x MTX directories written line by line, each with one thing broken."""
    feats = ["E1\tA\tGene Expression", "E2\tB\tGene Expression", "E3\tC\tGene Expression"]
    bcs = [f"b{i}" for i in range(4)]
    header = "%%MatrixMarket matrix coordinate integer general"
    good = ["1 1 2", "3 1 1", "2 2 5", "1 3 1", "3 4 7"]

    def case(name, entries=good, features=feats, barcodes=bcs, gz=False, size=None):
        d = bad / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        size = size or f"{len(feats)} {len(bcs)} {len(entries)}"
        sfx = ".gz" if gz else ""
        write_text(d / f"matrix.mtx{sfx}", [header, size] + entries, gz)
        write_text(d / f"features.tsv{sfx}", features, gz)
        if barcodes is not None:
            write_text(d / f"barcodes.tsv{sfx}", barcodes, gz)
        return d
    case("mtx_zero_coordinate", entries=good[:2] + ["0 2 4"] + good[2:])
    case("mtx_out_of_range", entries=good[:2] + ["4 2 4"] + good[2:])
    case("mtx_duplicate_entry", entries=good + ["2 2 1"])
    case("mtx_malformed_entry", entries=good[:3] + ["1 4 many"] + good[3:])
    case("mtx_barcodes_count", barcodes=bcs[:-1])
    case("mtx_features_count", features=feats + ["E4\tD\tGene Expression"])
    case("mtx_duplicate_barcode", barcodes=bcs[:3] + ["b1"])
    case("mtx_missing_barcodes", barcodes=None)
    d = case("mtx_empty_matrix")
    (d / "matrix.mtx").write_bytes(b"")
    # Truncated gzip: enough entries that the cut falls inside the stream, past the header.
    rng = np.random.default_rng(20261127)
    many_bcs = [f"TTAGGC{i:04d}-1" for i in range(40)]
    many = [f"{g + 1} {c + 1} {rng.integers(1, 30)}" for c in range(40) for g in range(3) if rng.random() < 0.7]
    for name, cut in [("mtx_truncated_gz", "matrix.mtx.gz"), ("mtx_truncated_barcodes_gz", "barcodes.tsv.gz")]:
        d = bad / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        write_text(d / "matrix.mtx.gz", [header, f"3 40 {len(many)}"] + many, True)
        write_text(d / "features.tsv.gz", feats, True)
        write_text(d / "barcodes.tsv.gz", many_bcs, True)
        raw = (d / cut).read_bytes()
        (d / cut).write_bytes(raw[: len(raw) * 2 // 3])


def text_cases(bad):
    """Gene-set, config and manifest files for the commands that take them."""
    (bad / "gmt_set_without_genes.gmt").write_bytes(
        b"ifn\tinterferon response\tISG15\tIFI6\ntcell\tT cells\t\t\n")
    # Genes separated by spaces in the description column: no gene column at all.
    (bad / "gmt_no_gene_column.gmt").write_bytes(b"exhaustion\tPDCD1 HAVCR2 LAG3 TOX\n")
    (bad / "config_wrong_type.toml").write_bytes(b'n_top_genes = "2000"\n')
    (bad / "config_wrong_type_in_table.toml").write_bytes(b"seed = 1\n\n[cart]\ncar_min_counts = 1.5\n")
    # Accepted: a UTF-8 byte-order mark and CRLF line ends, as spreadsheet programs save CSV.
    (OUT / "manifest_bom_crlf.csv").write_bytes(
        "\ufeffsample_id,path,patient,timepoint,day,tissue\r\n"
        "S1,sample.h5ad,P7,infusion,0,\"blood, peripheral\"\r\n".encode("utf-8"))


def main():
    h5ad_fixtures()
    legacy_07()
    unsorted_indices()
    tenx_v3()
    tenx_v2()
    mtx_fixtures()
    bad_fixtures()
    small_h5ad_cases(OUT / "bad")
    small_tenx_cases(OUT / "bad")
    mtx_text_cases(OUT / "bad")
    text_cases(OUT / "bad")
    (OUT / "expected.json").write_text(json.dumps(EXPECTED, indent=0, sort_keys=True) + "\n")
    print(f"wrote {len(EXPECTED)} fixtures to {OUT}")


if __name__ == "__main__":
    main()
