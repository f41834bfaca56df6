#!/usr/bin/env python3
"""Loads an .h5ad written by cartscope with anndata, warnings as errors, and compares every
element with the values cartscope meant to write (a JSON file beside it).

Usage: check_written.py FILE.h5ad EXPECTED.json   (exit 0 when identical)
"""
import json
import sys
import warnings

import numpy as np
import pandas as pd

warnings.simplefilter("error")
import anndata as ad  # noqa: E402


def main():
    path, exp_path = sys.argv[1], sys.argv[2]
    exp = json.load(open(exp_path))
    a = ad.read_h5ad(path)
    assert a.shape == tuple(exp["shape"]), (a.shape, exp["shape"])
    assert list(a.obs_names) == exp["obs_names"]
    assert list(a.var_names) == exp["var_names"]
    X = a.X
    assert X.format == "csr" and X.dtype == np.float32, (type(X), X.dtype)
    # scipy's kernels (scanpy QC's eliminate_zeros) need one index dtype for both arrays.
    assert X.indices.dtype == X.indptr.dtype, (X.indices.dtype, X.indptr.dtype)
    X.eliminate_zeros()
    np.testing.assert_array_equal(X.toarray().ravel(), np.array(exp["X"], dtype=np.float32))
    for name, col in exp["obs"].items():
        s = a.obs[name]
        kind = col["kind"]
        if kind == "category":
            assert str(s.dtype) == "category", (name, s.dtype)
            assert list(s.cat.categories) == col["categories"]
            assert [None if isinstance(v, float) else v for v in s.astype(object).tolist()] == col["values"]
        elif kind == "bool":
            assert s.dtype == bool, (name, s.dtype)
            assert s.tolist() == col["values"]
        elif kind == "string":
            assert s.tolist() == col["values"], name
        elif kind == "Int64":
            assert str(s.dtype) == "Int64", (name, s.dtype)
            assert [None if pd.isna(v) else int(v) for v in s.astype(object).tolist()] == col["values"]
        else:
            assert str(s.dtype) == kind, (name, s.dtype, kind)
            np.testing.assert_array_equal(s.to_numpy(), np.array(col["values"], dtype=kind))
    for name, vals in exp["layers"].items():
        np.testing.assert_array_equal(a.layers[name].toarray().ravel(), np.array(vals, dtype=np.float32))
    for group in ("obsm", "varm"):
        for name, spec in exp[group].items():
            arr = getattr(a, group)[name]
            assert str(arr.dtype) == spec["dtype"], (group, name, arr.dtype)
            np.testing.assert_array_equal(arr.ravel(), np.array(spec["values"], dtype=spec["dtype"]))
    for name, vals in exp["obsp"].items():
        m = a.obsp[name]
        assert m.format == "csr"
        np.testing.assert_array_equal(m.toarray().ravel(), np.array(vals, dtype=np.float32))
    for name, vals in exp["obsp_f64"].items():
        m = a.obsp[name]
        assert m.format == "csr" and m.dtype == np.float64, (name, m.dtype)
        assert m.indices.dtype == m.indptr.dtype
        np.testing.assert_array_equal(m.toarray().ravel(), np.array(vals, dtype=np.float64))
    uns = a.uns
    assert uns["neighbors"]["params"]["n_neighbors"] == 15
    assert uns["neighbors"]["params"]["method"] == "umap"
    assert uns["neighbors"]["connectivities_key"] == "connectivities"
    np.testing.assert_allclose(uns["pca"]["variance_ratio"], exp["uns_variance_ratio"])
    assert uns["flag"] is True or uns["flag"] == np.True_
    assert list(uns["names"]) == ["a", "b"]
    assert float(uns["pi"]) == 3.25
    print("ok")


if __name__ == "__main__":
    main()
