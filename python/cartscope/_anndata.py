"""Moving data between AnnData objects and the Rust core (``cartscope._core``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

BACKENDS = ("auto", "cpu", "gpu")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f'backend must be "auto", "cpu" or "gpu", not {backend!r}')
    return backend


def actual(adata: AnnData) -> AnnData:
    """Makes a view an actual AnnData in place (as scanpy does before writing into it)."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"expected an AnnData, got {type(adata).__name__}")
    if adata.is_view:
        adata._init_as_actual(adata.copy())
    return adata


def matrix(adata: AnnData, layer: str | None = None, use_raw: bool = False):
    """The data matrix asked for, in memory (backed X is read), without copying in-memory X."""
    if layer is not None and use_raw:
        raise ValueError("layer and use_raw cannot both be given")
    if use_raw:
        if adata.raw is None:
            raise ValueError("use_raw=True but the AnnData has no .raw")
        x = adata.raw.X
    elif layer is not None:
        if layer not in adata.layers:
            raise ValueError(f"layers[{layer!r}] does not exist (layers: {list(adata.layers)})")
        x = adata.layers[layer]
    else:
        x = adata.X
    if x is None:
        raise ValueError("the AnnData has no X")
    if not isinstance(x, np.ndarray | sp.spmatrix | sp.sparray):
        # backed mode: h5py dataset or anndata's sparse dataset
        x = x.to_memory() if hasattr(x, "to_memory") else np.asarray(x[...])
    return x


def csr_parts(x, *, what: str = "X") -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(indptr int64, indices int32, data float32, n_cols)`` of a matrix for the core: a CSR
    float32 matrix with int32 indices is passed through without copying its values."""
    if isinstance(x, np.ndarray):
        x = sp.csr_matrix(x)
    elif sp.issparse(x):
        if x.format != "csr":
            x = x.tocsr()
    else:
        raise ValueError(f"{what}: expected a numpy array or a scipy sparse matrix, got {type(x).__name__}")
    check_values(x.data, what)
    data = x.data if x.data.dtype == np.float32 else x.data.astype(np.float32)
    indices = x.indices if x.indices.dtype == np.int32 else x.indices.astype(np.int32)
    indptr = x.indptr.astype(np.int64, copy=False)
    return (np.ascontiguousarray(indptr), np.ascontiguousarray(indices), np.ascontiguousarray(data), x.shape[1])


def check_dtype(values: np.ndarray, what: str) -> None:
    if values.dtype.kind not in "fiub":
        raise ValueError(f"{what}: unsupported dtype {values.dtype} (expected numbers)")


def check_values(values: np.ndarray, what: str) -> None:
    check_dtype(values, what)
    if values.dtype.kind == "f" and values.size and not np.isfinite(values).all():
        raise ValueError(f"{what}: contains NaN or infinite values")


def check_counts(values: np.ndarray, what: str) -> None:
    check_values(values, what)
    if values.size and values.min() < 0:
        raise ValueError(f"{what}: counts must be non-negative, found {values.min()}")


def frame_columns(df: pd.DataFrame) -> list[tuple]:
    """obs columns as the core takes them: categorical, text, numbers, booleans."""
    out: list[tuple] = []
    for name, col in df.items():
        name = str(name)
        if isinstance(col.dtype, pd.CategoricalDtype):
            out.append((name, "cat", col.cat.codes.to_numpy(np.int32), [str(c) for c in col.cat.categories]))
        elif pd.api.types.is_bool_dtype(col) and not col.isna().any():
            out.append((name, "bool", col.to_numpy(bool)))
        elif pd.api.types.is_integer_dtype(col) and not col.isna().any():
            out.append((name, "i64", col.to_numpy(np.int64)))
        elif pd.api.types.is_float_dtype(col):
            out.append((name, "f64", col.to_numpy(np.float64)))
        elif pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col):
            out.append((name, "str", ["" if pd.isna(v) else str(v) for v in col]))
    return out


def column(value: Any, n: int):
    """A column from the core as a pandas-ready object."""
    if isinstance(value, tuple) and value[0] == "categorical":
        _, codes, categories, ordered = value
        return pd.Categorical.from_codes(codes, categories=categories, ordered=ordered)
    if isinstance(value, tuple) and value[0] == "masked":
        _, values, mask = value
        if isinstance(values, list):
            s = pd.array(values, dtype="string")
        elif values.dtype == bool:
            s = pd.array(values, dtype="boolean")
        else:
            s = pd.array(values, dtype="Int64")
        s[mask] = pd.NA
        return s
    return value


def frame(parts, index: pd.Index | None = None) -> pd.DataFrame:
    names, cols = parts
    idx = pd.Index(names) if index is None else index
    return pd.DataFrame({k: column(v, len(idx)) for k, v in cols}, index=idx)


def csr(parts) -> sp.csr_matrix:
    """A scipy CSR matrix over the core's arrays (uint32 indices and uint64 row pointers,
    viewed as int32 / int64: no copy of the stored values or indices)."""
    data, indices, indptr, shape = parts
    return sp.csr_matrix((data, indices.view(np.int32), indptr.view(np.int64)), shape=tuple(shape))


def uns(value: Any) -> Any:
    """uns values from the core: nested dicts, arrays, and record arrays."""
    if isinstance(value, dict):
        return {k: uns(v) for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "records":
        fields = value[1]
        arrays = [np.array(v, dtype=object) if isinstance(v, list) else v for _, v in fields]
        return np.rec.fromarrays(arrays, names=[name for name, _ in fields])
    return value
