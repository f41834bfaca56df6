//! AnnData on-disk encoding names and keys, in one place.
//!
//! See anndata's file-format specification; every element carries the string attributes
//! `encoding-type` and `encoding-version`.

/// Attribute naming an element's encoding.
pub const ENCODING_TYPE: &str = "encoding-type";
/// Attribute naming the encoding's version.
pub const ENCODING_VERSION: &str = "encoding-version";

/// Root group.
pub const ANNDATA: (&str, &str) = ("anndata", "0.1.0");
/// obs / var.
pub const DATAFRAME: (&str, &str) = ("dataframe", "0.2.0");
/// Mappings: layers, obsm, varm, obsp, varp, uns and nested dicts.
pub const DICT: (&str, &str) = ("dict", "0.1.0");
/// Dense numeric arrays.
pub const ARRAY: (&str, &str) = ("array", "0.2.0");
/// Variable-length UTF-8 string arrays.
pub const STRING_ARRAY: (&str, &str) = ("string-array", "0.2.0");
/// pandas categoricals.
pub const CATEGORICAL: (&str, &str) = ("categorical", "0.2.0");
/// CSR sparse matrices.
pub const CSR: (&str, &str) = ("csr_matrix", "0.1.0");
/// CSC sparse matrices.
pub const CSC: (&str, &str) = ("csc_matrix", "0.1.0");
/// 0-d numeric scalars.
pub const REC_ARRAY: (&str, &str) = ("rec-array", "0.2.0");
/// A numeric scalar.
pub const NUMERIC_SCALAR: (&str, &str) = ("numeric-scalar", "0.2.0");
/// 0-d strings.
pub const STRING: (&str, &str) = ("string", "0.2.0");
/// Nullable integer column.
pub const NULLABLE_INTEGER: (&str, &str) = ("nullable-integer", "0.1.0");
/// Nullable boolean column.
pub const NULLABLE_BOOLEAN: (&str, &str) = ("nullable-boolean", "0.1.0");
/// Nullable string column.
pub const NULLABLE_STRING: (&str, &str) = ("nullable-string-array", "0.1.0");

/// Dataframe attribute naming the index dataset.
pub const INDEX_ATTR: &str = "_index";
/// Dataframe attribute listing the columns in order.
pub const COLUMN_ORDER: &str = "column-order";
/// Default name of the index dataset.
pub const DEFAULT_INDEX: &str = "_index";
/// Sparse matrix attribute with [rows, cols].
pub const SHAPE: &str = "shape";
/// anndata < 0.7 sparse format attribute ("csr" / "csc").
pub const LEGACY_SPARSE_FORMAT: &str = "h5sparse_format";
/// anndata < 0.7 sparse shape attribute.
pub const LEGACY_SPARSE_SHAPE: &str = "h5sparse_shape";
/// anndata 0.7 categorical storage: `<df>/__categories/<column>`.
pub const LEGACY_CATEGORIES: &str = "__categories";
