//! Reading `.h5ad` files: the count matrix in row chunks, and the obs/var dataframes.
//!
//! X (or `layers/<name>`, or `raw/X`) may be stored as CSR, CSC or a dense 2-d array, with any
//! integer or float dtype and any HDF5 filter the library knows (gzip built in, LZF registered
//! by the `lzf` feature). Both the current encoding (`encoding-type` attributes) and anndata
//! 0.7's (`h5sparse_format`, `__categories`) are read.
//!
//! **CSC to CSR with bounded memory.** A CSC matrix stores genes as columns, so the entries of
//! a range of cells are scattered over the whole file. A row chunk is built by streaming the
//! CSC `indices`/`data` arrays in blocks of `CSC_BLOCK` entries, keeping the entries whose
//! row falls in the chunk; because columns are visited in order, each output row comes out
//! sorted. Memory is one block plus the output chunk; each chunk costs one pass over the file,
//! so callers read CSC input in few, large chunks.

use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::{Dataset, Group};
use ndarray::s;

use super::encoding as enc;
use super::frame::{Column, Frame};
use super::hdf5_util as h;
use super::{RowReader, Storage, XInfo};
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

/// Entries per block when streaming a CSC matrix.
pub(crate) const CSC_BLOCK: usize = 1 << 22;

/// The `encoding-type` of a group or dataset, if present.
fn encoding_type(path: &Path, loc: &hdf5::Location, field: &str) -> Result<Option<String>> {
    h::attr_string(path, loc, enc::ENCODING_TYPE, field)
}

/// Reads an obs/var dataframe group.
pub(crate) fn read_frame(path: &Path, root: &Group, name: &str) -> Result<Frame> {
    read_frame_and_index(path, root, name).map(|(frame, _)| frame)
}

/// Reads an obs/var dataframe group; also returns the HDF5 path of its index
/// (e.g. `/obs/_index`), for messages about the names.
pub(crate) fn read_frame_and_index(
    path: &Path,
    root: &Group,
    name: &str,
) -> Result<(Frame, String)> {
    let field = format!("/{name}");
    if h::is_dataset(root, name) {
        return Err(Error::invalid(
            path,
            &field,
            "stored as a compound dataset (anndata < 0.7); re-save the file with a current anndata",
        ));
    }
    let g = h::group(path, root, name, &field)?;
    let index_name = h::attr_string(path, &g, enc::INDEX_ATTR, &field)?
        .unwrap_or_else(|| enc::DEFAULT_INDEX.into());
    if index_name.is_empty() {
        return Err(Error::invalid(
            path,
            format!("{field} attribute '{}'", enc::INDEX_ATTR),
            "is empty: it must name the dataset that holds the index",
        ));
    }
    let index_field = format!("{field}/{index_name}");
    let index_ds = h::dataset(path, &g, &index_name, &index_field)?;
    let index = read_string_column(path, &index_field, &index_ds)?;
    let mut frame = Frame::new(index);
    let mut order = h::attr_strings(path, &g, enc::COLUMN_ORDER, &field)?;
    if order.is_empty() {
        // Files written without column-order (hand-made or very old) still list their columns.
        order = g
            .member_names()
            .map_err(|e| Error::hdf5(path, &field, e))?
            .into_iter()
            .filter(|m| *m != index_name && m != enc::LEGACY_CATEGORIES)
            .collect();
    }
    for col in order {
        let cfield = format!("{field}/{col}");
        let c = read_column(path, &g, &col, &cfield)?;
        if c.len() != frame.len() {
            return Err(Error::invalid(
                path,
                &cfield,
                format!(
                    "has {} rows but the index {} has {}",
                    c.len(),
                    index_field,
                    frame.len()
                ),
            ));
        }
        frame.columns.push((col, c));
    }
    Ok((frame, index_field))
}

fn read_string_column(path: &Path, field: &str, ds: &Dataset) -> Result<Vec<String>> {
    match h::num_type(path, field, ds) {
        Ok(_) => Ok(
            h::read_f64(path, field, ds, 0..h::len_1d(path, field, ds)?)?
                .into_iter()
                .map(|v| {
                    if v.fract() == 0.0 {
                        format!("{}", v as i64)
                    } else {
                        v.to_string()
                    }
                })
                .collect(),
        ),
        Err(_) => h::read_strings(path, field, ds),
    }
}

fn read_column(path: &Path, g: &Group, name: &str, field: &str) -> Result<Column> {
    if h::is_group(g, name) {
        let cg = h::group(path, g, name, field)?;
        let et = encoding_type(path, &cg, field)?.unwrap_or_default();
        let mask = |cg: &Group| -> Result<Vec<bool>> {
            let f = format!("{field}/mask");
            h::read_bool(path, &f, &h::dataset(path, cg, "mask", &f)?)
        };
        let values = |cg: &Group| -> Result<Dataset> {
            h::dataset(path, cg, "values", &format!("{field}/values"))
        };
        return match et.as_str() {
            "categorical" => {
                let cf = format!("{field}/codes");
                let codes_ds = h::dataset(path, &cg, "codes", &cf)?;
                let codes = h::read_i64(path, &cf, &codes_ds, 0..h::len_1d(path, &cf, &codes_ds)?)?;
                let catf = format!("{field}/categories");
                let categories =
                    read_string_column(path, &catf, &h::dataset(path, &cg, "categories", &catf)?)?;
                let ordered = h::attr_bool(path, &cg, "ordered", field)?.unwrap_or(false);
                categorical(path, (&cf, &catf), codes, categories, ordered)
            }
            "nullable-integer" => {
                let vf = format!("{field}/values");
                let v = values(&cg)?;
                let values = h::read_i64(path, &vf, &v, 0..h::len_1d(path, &vf, &v)?)?;
                let mask = same_length_mask(path, field, mask(&cg)?, values.len())?;
                Ok(Column::NullableInt { values, mask })
            }
            "nullable-boolean" => {
                let values = h::read_bool(path, &format!("{field}/values"), &values(&cg)?)?;
                let mask = same_length_mask(path, field, mask(&cg)?, values.len())?;
                Ok(Column::NullableBool { values, mask })
            }
            "nullable-string-array" => {
                let values = h::read_strings(path, &format!("{field}/values"), &values(&cg)?)?;
                let mask = same_length_mask(path, field, mask(&cg)?, values.len())?;
                Ok(Column::NullableStr { values, mask })
            }
            other => Err(Error::invalid(
                path,
                field,
                format!("unsupported column encoding '{other}'"),
            )),
        };
    }
    let ds = h::dataset(path, g, name, field)?;
    // anndata 0.7: integer codes with a `categories` reference to `__categories/<name>`.
    if h::attr(&ds, "categories").is_some() && h::is_group(g, enc::LEGACY_CATEGORIES) {
        let cats_g = h::group(path, g, enc::LEGACY_CATEGORIES, field)?;
        let catf = format!("{field} categories");
        let categories = read_string_column(path, &catf, &h::dataset(path, &cats_g, name, &catf)?)?;
        let codes = h::read_i64(path, field, &ds, 0..h::len_1d(path, field, &ds)?)?;
        let ordered = h::attr_bool(path, &ds, "ordered", field)?.unwrap_or(false);
        return categorical(path, (field, &catf), codes, categories, ordered);
    }
    let n = h::len_1d(path, field, &ds)?;
    match h::num_type(path, field, &ds) {
        Ok(h::NumType::Bool) => Ok(Column::Bool(h::read_bool(path, field, &ds)?)),
        Ok(h::NumType::Float(8)) => Ok(Column::F64(h::read_f64(path, field, &ds, 0..n)?)),
        Ok(h::NumType::Float(_)) => Ok(Column::F32(h::read_f32(path, field, &ds, 0..n)?)),
        Ok(h::NumType::Int(w) | h::NumType::Uint(w))
            if w <= 2 || h::num_type(path, field, &ds)? == h::NumType::Int(4) =>
        {
            Ok(Column::I32(
                h::read_i64(path, field, &ds, 0..n)?
                    .into_iter()
                    .map(|v| v as i32)
                    .collect(),
            ))
        }
        Ok(_) => Ok(Column::I64(h::read_i64(path, field, &ds, 0..n)?)),
        Err(_) => Ok(Column::Str(h::read_strings(path, field, &ds)?)),
    }
}

/// A nullable column's mask, which must have one entry per value.
fn same_length_mask(path: &Path, field: &str, mask: Vec<bool>, n: usize) -> Result<Vec<bool>> {
    if mask.len() != n {
        return Err(Error::invalid(
            path,
            format!("{field}/mask"),
            format!("has {} entries but {field}/values has {n}", mask.len()),
        ));
    }
    Ok(mask)
}

/// A categorical column from its codes and categories (`fields` names both): every code is -1
/// (missing) or indexes a category, and the categories are unique, as pandas requires.
fn categorical(
    path: &Path,
    (field, categories_field): (&str, &str),
    codes: Vec<i64>,
    categories: Vec<String>,
    ordered: bool,
) -> Result<Column> {
    let mut seen = std::collections::HashSet::with_capacity(categories.len());
    if let Some(dup) = categories.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(Error::invalid(
            path,
            categories_field,
            format!("category '{dup}' appears twice (categories must be unique)"),
        ));
    }
    let n_cat = categories.len() as i64;
    let codes = codes
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            if c < -1 || c >= n_cat {
                Err(Error::invalid(
                    path,
                    field,
                    format!(
                        "code {c} at row {i} out of range for {n_cat} categories (valid: -1 for missing, 0 to {})",
                        n_cat - 1
                    ),
                ))
            } else {
                Ok(c as i32)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Column::Categorical {
        codes,
        categories,
        ordered,
    })
}

/// Locates the matrix element to read: X, `layers/<layer>` or `raw/X`.
pub(crate) fn matrix_element(
    path: &Path,
    root: &Group,
    layer: Option<&str>,
    use_raw: bool,
) -> Result<String> {
    let element = match (layer, use_raw) {
        (Some(_), true) => {
            return Err(Error::Usage(
                "--layer and --use-raw cannot be combined".into(),
            ));
        }
        (Some(l), false) => format!("layers/{l}"),
        (None, true) => "raw/X".to_string(),
        (None, false) => "X".to_string(),
    };
    if !root.link_exists(&element)
        || (element.contains('/') && !root.link_exists(element.split('/').next().unwrap_or("")))
    {
        let what = if layer.is_some() {
            let names = root
                .group("layers")
                .and_then(|g| g.member_names())
                .unwrap_or_default();
            format!(
                "missing (layers present: {})",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            )
        } else {
            "missing: the file holds no count matrix here (try --layer NAME or --use-raw)"
                .to_string()
        };
        return Err(Error::invalid(path, format!("/{element}"), what));
    }
    Ok(element)
}

/// Opens the matrix at `element` for chunked row reading.
pub(crate) fn open_matrix(
    path: &Path,
    root: &Group,
    element: &str,
) -> Result<(XInfo, Box<dyn RowReader>)> {
    let field = format!("/{element}");
    if h::is_dataset(root, element) {
        let ds = root
            .dataset(element)
            .map_err(|e| Error::hdf5(path, &field, e))?;
        let shape = ds.shape();
        let [n_rows, n_cols] = shape[..] else {
            return Err(Error::invalid(
                path,
                &field,
                format!("dense matrix must be 2-d, found shape {shape:?}"),
            ));
        };
        let dtype = h::num_type(path, &field, &ds)?;
        let info = XInfo {
            element: field.clone(),
            storage: Storage::Dense,
            dtype: dtype.name(),
            n_rows,
            n_cols,
        };
        return Ok((
            info,
            Box::new(DenseReader {
                path: path.to_path_buf(),
                field,
                ds,
                n_cols,
            }),
        ));
    }
    let g = root
        .group(element)
        .map_err(|e| Error::hdf5(path, &field, e))?;
    let (kind, shape) = match encoding_type(path, &g, &field)? {
        Some(et) => (et, h::attr_u64s(path, &g, enc::SHAPE, &field)?),
        None => match h::attr_string(path, &g, enc::LEGACY_SPARSE_FORMAT, &field)? {
            Some(f) => (
                format!("{f}_matrix"),
                h::attr_u64s(path, &g, enc::LEGACY_SPARSE_SHAPE, &field)?,
            ),
            None => {
                return Err(Error::invalid(
                    path,
                    &field,
                    "group has no encoding-type attribute",
                ));
            }
        },
    };
    let Some(shape) = shape else {
        return Err(Error::invalid(
            path,
            format!("{field} attribute 'shape'"),
            "missing",
        ));
    };
    let [n_rows, n_cols] = shape[..] else {
        return Err(Error::invalid(
            path,
            format!("{field} attribute 'shape'"),
            format!("expected 2 values, found {shape:?}"),
        ));
    };
    let (n_rows, n_cols) = (n_rows as usize, n_cols as usize);
    let csr = match kind.as_str() {
        k if k == enc::CSR.0 => true,
        k if k == enc::CSC.0 => false,
        other => {
            return Err(Error::invalid(
                path,
                &field,
                format!("unsupported matrix encoding '{other}'"),
            ));
        }
    };
    let parts = SparseParts::open(
        path,
        &g,
        &field,
        if csr { n_rows } else { n_cols },
        if csr { n_cols } else { n_rows },
    )?;
    let dtype = parts.dtype.clone();
    if csr {
        let info = XInfo {
            element: field,
            storage: Storage::Csr,
            dtype,
            n_rows,
            n_cols,
        };
        Ok((info, Box::new(CsrReader { parts })))
    } else {
        let info = XInfo {
            element: field,
            storage: Storage::Csc,
            dtype,
            n_rows,
            n_cols,
        };
        Ok((info, Box::new(CscReader { parts, n_rows })))
    }
}

/// The three arrays of a compressed sparse matrix with its validated `indptr`.
pub(crate) struct SparseParts {
    pub path: PathBuf,
    pub field: String,
    pub data: Dataset,
    pub indices: Dataset,
    pub indptr: Vec<u64>,
    /// Length of the compressed (outer) axis.
    pub n_outer: usize,
    /// Length of the inner axis (bound for indices).
    pub n_inner: usize,
    pub dtype: String,
}

impl SparseParts {
    /// Opens `data`, `indices`, `indptr` in `g` and checks their lengths against the shape.
    pub fn open(
        path: &Path,
        g: &Group,
        field: &str,
        n_outer: usize,
        n_inner: usize,
    ) -> Result<Self> {
        let f = |n: &str| format!("{field}/{n}");
        let data = h::dataset(path, g, "data", &f("data"))?;
        let indices = h::dataset(path, g, "indices", &f("indices"))?;
        let indptr_ds = h::dataset(path, g, "indptr", &f("indptr"))?;
        let dtype = h::num_type(path, &f("data"), &data)?.name();
        let nnz = h::len_1d(path, &f("data"), &data)?;
        let n_idx = h::len_1d(path, &f("indices"), &indices)?;
        if n_idx != nnz {
            return Err(Error::invalid(
                path,
                f("indices"),
                format!("has {n_idx} entries but data has {nnz}"),
            ));
        }
        let n_ptr = h::len_1d(path, &f("indptr"), &indptr_ds)?;
        if n_ptr != n_outer + 1 {
            return Err(Error::invalid(
                path,
                f("indptr"),
                format!(
                    "has {n_ptr} entries but the shape attribute implies {} ({n_outer} + 1)",
                    n_outer + 1
                ),
            ));
        }
        let indptr = h::read_u64(path, &f("indptr"), &indptr_ds, 0..n_ptr)?;
        validate_indptr(path, &f("indptr"), &indptr, nnz as u64)?;
        Ok(SparseParts {
            path: path.to_path_buf(),
            field: field.to_string(),
            data,
            indices,
            indptr,
            n_outer,
            n_inner,
            dtype,
        })
    }

    /// Reads stored entries `range` as (indices, values), checking indices against the bound.
    pub fn read_entries(&self, range: Range<usize>) -> Result<(Vec<u32>, Vec<f32>)> {
        let fi = format!("{}/indices", self.field);
        let bound = self.n_inner as u64;
        let idx = h::read_index_u32(&self.path, &fi, &self.indices, range.clone(), bound)?;
        let data = h::read_f32(
            &self.path,
            &format!("{}/data", self.field),
            &self.data,
            range,
        )?;
        Ok((idx, data))
    }
}

/// Checks that `indptr` starts at 0, never decreases and ends at `nnz`.
pub(crate) fn validate_indptr(path: &Path, field: &str, indptr: &[u64], nnz: u64) -> Result<()> {
    if indptr.first().copied().unwrap_or(0) != 0 {
        return Err(Error::invalid(
            path,
            field,
            format!("must start at 0, starts at {}", indptr[0]),
        ));
    }
    if let Some(k) = indptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(Error::invalid(
            path,
            field,
            format!(
                "is not non-decreasing: entry {} is {} but entry {} is {}",
                k,
                indptr[k],
                k + 1,
                indptr[k + 1]
            ),
        ));
    }
    let last = indptr.last().copied().unwrap_or(0);
    if last != nnz {
        return Err(Error::invalid(
            path,
            field,
            format!("ends at {last} but data holds {nnz} entries"),
        ));
    }
    Ok(())
}

/// Reads row ranges of a CSR matrix (or of a 10x CSC matrix read as its transpose).
pub(crate) struct CsrReader {
    pub parts: SparseParts,
}

impl RowReader for CsrReader {
    fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix> {
        let p = &self.parts;
        let lo = p.indptr[rows.start];
        let hi = p.indptr[rows.end];
        let (indices, data) = p.read_entries(lo as usize..hi as usize)?;
        Ok(CsrMatrix {
            n_rows: rows.len(),
            n_cols: p.n_inner,
            indptr: p.indptr[rows.start..=rows.end]
                .iter()
                .map(|x| x - lo)
                .collect(),
            indices,
            data,
        })
    }
}

struct CscReader {
    parts: SparseParts,
    n_rows: usize,
}

impl RowReader for CscReader {
    fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix> {
        let p = &self.parts;
        let n_cols = p.n_outer;
        let mut per_row: Vec<Vec<(u32, f32)>> = vec![Vec::new(); rows.len()];
        let mut col = 0usize;
        while col < n_cols {
            // A block of whole columns holding at most CSC_BLOCK entries (at least one column).
            let start = p.indptr[col];
            let mut end_col = col + 1;
            while end_col < n_cols && p.indptr[end_col + 1] - start <= CSC_BLOCK as u64 {
                end_col += 1;
            }
            let (idx, val) = p.read_entries(start as usize..p.indptr[end_col] as usize)?;
            for j in col..end_col {
                let r = (p.indptr[j] - start) as usize..(p.indptr[j + 1] - start) as usize;
                for (&i, &v) in idx[r.clone()].iter().zip(&val[r]) {
                    let i = i as usize;
                    if rows.contains(&i) {
                        per_row[i - rows.start].push((j as u32, v));
                    }
                }
            }
            col = end_col;
        }
        let _ = self.n_rows;
        let mut m = CsrMatrix::empty(n_cols);
        for r in per_row {
            for (j, v) in r {
                m.indices.push(j);
                m.data.push(v);
            }
            m.indptr.push(m.data.len() as u64);
        }
        m.n_rows = rows.len();
        Ok(m)
    }
}

struct DenseReader {
    path: PathBuf,
    field: String,
    ds: Dataset,
    n_cols: usize,
}

impl RowReader for DenseReader {
    fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix> {
        let e = |err: hdf5::Error| Error::hdf5(&self.path, &self.field, err);
        let t = h::num_type(&self.path, &self.field, &self.ds)?;
        let sel = s![rows.start..rows.end, ..];
        let values: Vec<f32> = match t {
            h::NumType::Float(4) => self
                .ds
                .read_slice_2d::<f32, _>(sel)
                .map_err(e)?
                .iter()
                .copied()
                .collect(),
            h::NumType::Float(_) => self
                .ds
                .read_slice_2d::<f64, _>(sel)
                .map_err(e)?
                .iter()
                .map(|&v| v as f32)
                .collect(),
            h::NumType::Int(_) => self
                .ds
                .read_slice_2d::<i64, _>(sel)
                .map_err(e)?
                .iter()
                .map(|&v| v as f32)
                .collect(),
            h::NumType::Uint(_) => self
                .ds
                .read_slice_2d::<u64, _>(sel)
                .map_err(e)?
                .iter()
                .map(|&v| v as f32)
                .collect(),
            h::NumType::Bool => {
                return Err(Error::invalid(
                    &self.path,
                    &self.field,
                    "boolean matrix cannot hold counts",
                ));
            }
        };
        Ok(CsrMatrix::from_dense(rows.len(), self.n_cols, &values))
    }
}
