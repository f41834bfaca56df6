//! Writing `.h5ad` files that anndata (>= 0.10) reads without warnings.
//!
//! The file is written under a temporary name in the destination folder and renamed into place
//! by [`H5adWriter::finish`]; if writing fails or the writer is dropped early, the temporary file
//! is removed, so a half-written result never appears under the final name. X can be appended in
//! row chunks, so the writer's memory does not grow with the number of cells.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, Group, Location};
use ndarray::{Array1, Array2, s};

use super::encoding as enc;
use super::frame::{Column, Frame};
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

/// Entries per HDF5 chunk of a sparse matrix's arrays (256 KiB of f32).
const SPARSE_CHUNK: usize = 1 << 16;

/// A dense obsm/varm array.
#[derive(Debug, Clone, PartialEq)]
pub enum Dense {
    /// float32 (e.g. `X_pca`, `X_umap`).
    F32(Array2<f32>),
    /// float64.
    F64(Array2<f64>),
}

/// A value in `uns`: scalars, strings, arrays and nested mappings.
#[derive(Debug, Clone, PartialEq)]
pub enum UnsValue {
    /// Integer scalar.
    Int(i64),
    /// Float scalar.
    Float(f64),
    /// Boolean scalar.
    Bool(bool),
    /// String scalar.
    Str(String),
    /// float64 array.
    F64s(Vec<f64>),
    /// float32 array.
    F32s(Vec<f32>),
    /// int64 array.
    I64s(Vec<i64>),
    /// String array.
    Strs(Vec<String>),
    /// A nested mapping, in order.
    Map(Vec<(String, UnsValue)>),
    /// A numpy record array (anndata's `rec-array`): named fields of equal length, stored as
    /// one HDF5 compound dataset (scanpy's `rank_genes_groups` tables).
    Records(Vec<(String, RecordColumn)>),
}

/// One field of a record array.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordColumn {
    /// Strings (numpy object, variable-length UTF-8 in the file).
    Str(Vec<String>),
    /// float32.
    F32(Vec<f32>),
    /// float64.
    F64(Vec<f64>),
}

impl RecordColumn {
    fn len(&self) -> usize {
        match self {
            RecordColumn::Str(v) => v.len(),
            RecordColumn::F32(v) => v.len(),
            RecordColumn::F64(v) => v.len(),
        }
    }
}

/// An in-memory AnnData object to write.
#[derive(Debug, Clone, Default)]
pub struct AnnData {
    /// Cell metadata (its index are the obs_names).
    pub obs: Frame,
    /// Gene metadata (its index are the var_names).
    pub var: Frame,
    /// The main matrix (written as CSR float32), if any.
    pub x: Option<CsrMatrix>,
    /// Extra matrices of the same shape as X.
    pub layers: Vec<(String, CsrMatrix)>,
    /// Per-cell dense arrays (n_obs rows).
    pub obsm: Vec<(String, Dense)>,
    /// Per-gene dense arrays (n_vars rows).
    pub varm: Vec<(String, Dense)>,
    /// Cell x cell sparse matrices.
    pub obsp: Vec<(String, CsrMatrix)>,
    /// Cell x cell sparse matrices with float64 values (kNN distances, as scanpy stores them).
    pub obsp_f64: Vec<(String, CsrMatrix<f64>)>,
    /// Unstructured annotations.
    pub uns: Vec<(String, UnsValue)>,
}

/// Options of the writer.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// gzip level (0-9) for matrices and arrays; `None` writes uncompressed (fastest).
    pub gzip: Option<u8>,
}

/// Writes `ad` to `path` (atomically: temporary file, then rename).
pub fn write_h5ad(path: &Path, ad: &AnnData, opts: WriteOptions) -> Result<()> {
    let mut w = H5adWriter::create(path, ad.var.len(), opts)?;
    if let Some(x) = &ad.x {
        w.append_x(x)?;
    }
    w.finish(ad)
}

/// An `.h5ad` being written; X may be appended in row chunks before [`finish`](Self::finish).
pub struct H5adWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<hdf5::File>,
    opts: WriteOptions,
    n_vars: usize,
    x: Option<SparseAppender>,
}

impl std::fmt::Debug for H5adWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5adWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl H5adWriter {
    /// Starts a file for a matrix with `n_vars` genes.
    pub fn create(path: &Path, n_vars: usize, opts: WriteOptions) -> Result<Self> {
        let _crash = crate::crash::writing(path);
        let tmp = temporary_path(path)?;
        let file = create_file(&tmp).map_err(|e| Error::write(path, "/", e))?;
        let w = H5adWriter {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            opts,
            n_vars,
            x: None,
        };
        w.encode(w.root(), enc::ANNDATA, "/")?;
        Ok(w)
    }

    fn root(&self) -> &Group {
        self.file.as_ref().expect("file open until finish")
    }

    fn err(&self, field: &str, e: impl std::fmt::Display) -> Error {
        Error::write(&self.path, field, e)
    }

    fn encode(&self, loc: &Location, (t, v): (&str, &str), field: &str) -> Result<()> {
        self.str_attr(loc, enc::ENCODING_TYPE, t, field)?;
        self.str_attr(loc, enc::ENCODING_VERSION, v, field)
    }

    fn str_attr(&self, loc: &Location, name: &str, value: &str, field: &str) -> Result<()> {
        let v = vlu(value).map_err(|e| self.err(field, e))?;
        loc.new_attr::<VarLenUnicode>()
            .shape(())
            .create(name)
            .and_then(|a| a.write_scalar(&v))
            .map_err(|e| self.err(field, e))
    }

    /// Appends rows to X (CSR float32). All chunks must have `n_vars` columns.
    pub fn append_x(&mut self, m: &CsrMatrix) -> Result<()> {
        let _crash = crate::crash::writing(&self.path);
        crate::crash::element("/X");
        if m.n_cols != self.n_vars {
            return Err(Error::Usage(format!(
                "X chunk has {} columns, expected {}",
                m.n_cols, self.n_vars
            )));
        }
        if self.x.is_none() {
            let g = self
                .root()
                .create_group("X")
                .map_err(|e| self.err("/X", e))?;
            self.x = Some(
                SparseAppender::new(&g, self.opts, self.n_vars, SparseDtypes::AnnData)
                    .map_err(|e| self.err("/X", e))?,
            );
        }
        let x = self.x.as_mut().expect("just created");
        x.append(m).map_err(|e| Error::write(&self.path, "/X", e))
    }

    fn sparse(&self, parent: &Group, name: &str, m: &CsrMatrix, field: &str) -> Result<()> {
        crate::crash::element(field);
        let g = parent.create_group(name).map_err(|e| self.err(field, e))?;
        let mut a = SparseAppender::new(&g, self.opts, m.n_cols, SparseDtypes::AnnData)
            .map_err(|e| self.err(field, e))?;
        a.append(m).map_err(|e| self.err(field, e))?;
        self.finish_sparse(&g, &a, field)
    }

    /// A small CSR matrix with f64 values, written in one piece.
    fn sparse_f64(
        &self,
        parent: &Group,
        name: &str,
        m: &CsrMatrix<f64>,
        field: &str,
    ) -> Result<()> {
        let g = parent.create_group(name).map_err(|e| self.err(field, e))?;
        self.dataset_1d(&g, "data", &m.data, field)?;
        if m.data.len() as u64 <= i32::MAX as u64 {
            let idx: Vec<i32> = m.indices.iter().map(|&j| j as i32).collect();
            let ptr: Vec<i32> = m.indptr.iter().map(|&p| p as i32).collect();
            self.dataset_1d(&g, "indices", &idx, field)?;
            self.dataset_1d(&g, "indptr", &ptr, field)?;
        } else {
            let idx: Vec<i64> = m.indices.iter().map(|&j| i64::from(j)).collect();
            let ptr: Vec<i64> = m.indptr.iter().map(|&p| p as i64).collect();
            self.dataset_1d(&g, "indices", &idx, field)?;
            self.dataset_1d(&g, "indptr", &ptr, field)?;
        }
        self.csr_attrs(&g, m.n_rows, m.n_cols, field)
    }

    fn csr_attrs(&self, g: &Group, n_rows: usize, n_cols: usize, field: &str) -> Result<()> {
        self.encode(g, enc::CSR, field)?;
        let shape = Array1::from(vec![n_rows as i64, n_cols as i64]);
        g.new_attr_builder()
            .with_data(&shape)
            .create(enc::SHAPE)
            .map_err(|e| self.err(field, e))?;
        Ok(())
    }

    fn finish_sparse(&self, g: &Group, a: &SparseAppender, field: &str) -> Result<()> {
        self.csr_attrs(g, a.n_rows, a.n_cols, field)
    }

    fn dataset_1d<T: hdf5::H5Type>(
        &self,
        g: &Group,
        name: &str,
        v: &[T],
        field: &str,
    ) -> Result<Dataset> {
        crate::crash::element(field);
        let mut b = g.new_dataset_builder().with_data(v);
        if let Some(level) = self.opts.gzip
            && !v.is_empty()
        {
            b = b.deflate(level);
        }
        b.create(name).map_err(|e| self.err(field, e))
    }

    fn array<T: hdf5::H5Type>(&self, g: &Group, name: &str, v: &[T], field: &str) -> Result<()> {
        let ds = self.dataset_1d(g, name, v, field)?;
        self.encode(&ds, enc::ARRAY, field)
    }

    fn strings(&self, g: &Group, name: &str, v: &[String], field: &str) -> Result<()> {
        let data = v
            .iter()
            .map(|s| vlu(s))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(field, e))?;
        let ds = self.dataset_1d(g, name, &data, field)?;
        self.encode(&ds, enc::STRING_ARRAY, field)
    }

    fn frame(&self, name: &str, f: &Frame) -> Result<()> {
        let field = format!("/{name}");
        let g = self
            .root()
            .create_group(name)
            .map_err(|e| self.err(&field, e))?;
        self.encode(&g, enc::DATAFRAME, &field)?;
        self.str_attr(&g, enc::INDEX_ATTR, enc::DEFAULT_INDEX, &field)?;
        if f.columns.is_empty() {
            // anndata writes an empty float64 array here, and reads nothing else for "no columns".
            g.new_attr::<f64>()
                .shape([0])
                .create(enc::COLUMN_ORDER)
                .map_err(|e| self.err(&field, e))?;
        } else {
            let names = f
                .columns
                .iter()
                .map(|(n, _)| vlu(n))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.err(&field, e))?;
            g.new_attr_builder()
                .with_data(&names)
                .create(enc::COLUMN_ORDER)
                .map_err(|e| self.err(&field, e))?;
        }
        self.strings(&g, enc::DEFAULT_INDEX, &f.index, &format!("{field}/_index"))?;
        for (cname, col) in &f.columns {
            if cname == enc::DEFAULT_INDEX {
                return Err(Error::Usage(format!(
                    "{field}: column name '_index' is reserved"
                )));
            }
            self.column(&g, cname, col, &format!("{field}/{cname}"))?;
        }
        Ok(())
    }

    fn column(&self, g: &Group, name: &str, col: &Column, field: &str) -> Result<()> {
        match col {
            Column::Str(v) => self.strings(g, name, v, field),
            Column::F64(v) => self.array(g, name, v, field),
            Column::F32(v) => self.array(g, name, v, field),
            Column::I64(v) => self.array(g, name, v, field),
            Column::I32(v) => self.array(g, name, v, field),
            Column::Bool(v) => self.array(g, name, v, field),
            Column::Categorical {
                codes,
                categories,
                ordered,
            } => {
                let cg = g.create_group(name).map_err(|e| self.err(field, e))?;
                self.encode(&cg, enc::CATEGORICAL, field)?;
                cg.new_attr::<bool>()
                    .shape(())
                    .create("ordered")
                    .and_then(|a| a.write_scalar(ordered))
                    .map_err(|e| self.err(field, e))?;
                self.strings(&cg, "categories", categories, field)?;
                // anndata stores codes in the smallest signed integer type that fits.
                let n = categories.len();
                if n < i8::MAX as usize {
                    let c: Vec<i8> = codes.iter().map(|&c| c as i8).collect();
                    self.array(&cg, "codes", &c, field)
                } else if n < i16::MAX as usize {
                    let c: Vec<i16> = codes.iter().map(|&c| c as i16).collect();
                    self.array(&cg, "codes", &c, field)
                } else {
                    self.array(&cg, "codes", codes, field)
                }
            }
            Column::NullableInt { values, mask } => {
                let cg = self.nullable_group(g, name, enc::NULLABLE_INTEGER, mask, field)?;
                self.array(&cg, "values", values, field)
            }
            Column::NullableBool { values, mask } => {
                let cg = self.nullable_group(g, name, enc::NULLABLE_BOOLEAN, mask, field)?;
                self.array(&cg, "values", values, field)
            }
            Column::NullableStr { values, mask } => {
                let cg = self.nullable_group(g, name, enc::NULLABLE_STRING, mask, field)?;
                self.strings(&cg, "values", values, field)
            }
        }
    }

    fn nullable_group(
        &self,
        g: &Group,
        name: &str,
        encoding: (&str, &str),
        mask: &[bool],
        field: &str,
    ) -> Result<Group> {
        let cg = g.create_group(name).map_err(|e| self.err(field, e))?;
        self.encode(&cg, encoding, field)?;
        self.array(&cg, "mask", mask, field)?;
        Ok(cg)
    }

    fn dense(&self, g: &Group, name: &str, d: &Dense, field: &str) -> Result<()> {
        crate::crash::element(field);
        let empty = match d {
            Dense::F32(a) => a.is_empty(),
            Dense::F64(a) => a.is_empty(),
        };
        let mut b = g.new_dataset_builder();
        if let Some(level) = self.opts.gzip.filter(|_| !empty) {
            b = b.deflate(level);
        }
        let ds = match d {
            Dense::F32(a) => b.with_data(a).create(name),
            Dense::F64(a) => b.with_data(a).create(name),
        }
        .map_err(|e| self.err(field, e))?;
        self.encode(&ds, enc::ARRAY, field)
    }

    fn mapping(&self, name: &str) -> Result<Group> {
        let field = format!("/{name}");
        let g = self
            .root()
            .create_group(name)
            .map_err(|e| self.err(&field, e))?;
        self.encode(&g, enc::DICT, &field)?;
        Ok(g)
    }

    fn uns_value(&self, g: &Group, name: &str, v: &UnsValue, field: &str) -> Result<()> {
        let scalar = |ds: std::result::Result<Dataset, hdf5::Error>, encoding| -> Result<()> {
            let ds = ds.map_err(|e| self.err(field, e))?;
            self.encode(&ds, encoding, field)
        };
        match v {
            UnsValue::Int(x) => scalar(
                g.new_dataset::<i64>()
                    .shape(())
                    .create(name)
                    .and_then(|d| d.write_scalar(x).map(|_| d)),
                enc::NUMERIC_SCALAR,
            ),
            UnsValue::Float(x) => scalar(
                g.new_dataset::<f64>()
                    .shape(())
                    .create(name)
                    .and_then(|d| d.write_scalar(x).map(|_| d)),
                enc::NUMERIC_SCALAR,
            ),
            UnsValue::Bool(x) => scalar(
                g.new_dataset::<bool>()
                    .shape(())
                    .create(name)
                    .and_then(|d| d.write_scalar(x).map(|_| d)),
                enc::NUMERIC_SCALAR,
            ),
            UnsValue::Str(s) => {
                let v = vlu(s).map_err(|e| self.err(field, e))?;
                scalar(
                    g.new_dataset::<VarLenUnicode>()
                        .shape(())
                        .create(name)
                        .and_then(|d| d.write_scalar(&v).map(|_| d)),
                    enc::STRING,
                )
            }
            UnsValue::F64s(a) => self.array(g, name, a, field),
            UnsValue::F32s(a) => self.array(g, name, a, field),
            UnsValue::I64s(a) => self.array(g, name, a, field),
            UnsValue::Strs(a) => self.strings(g, name, a, field),
            UnsValue::Records(fields) => {
                let ds = write_records(g, name, fields).map_err(|e| self.err(field, e))?;
                self.encode(&ds, enc::REC_ARRAY, field)
            }
            UnsValue::Map(items) => {
                let sub = g.create_group(name).map_err(|e| self.err(field, e))?;
                self.encode(&sub, enc::DICT, field)?;
                for (k, v) in items {
                    self.uns_value(&sub, k, v, &format!("{field}/{k}"))?;
                }
                Ok(())
            }
        }
    }

    /// Writes everything but X from `ad`, closes the file and renames it into place.
    /// `ad.x` is ignored here: X comes from [`append_x`](Self::append_x).
    pub fn finish(mut self, ad: &AnnData) -> Result<()> {
        let _crash = crate::crash::writing(&self.path);
        // Every group handle lives inside write_elements, so none outlives the file.
        self.write_elements(ad)?;
        self.x = None;
        let file = self.file.take().expect("open");
        file.close().map_err(|e| Error::write(&self.path, "/", e))?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| Error::write(&self.path, "rename", e))?;
        Ok(())
    }

    fn write_elements(&self, ad: &AnnData) -> Result<()> {
        let (n_obs, n_vars) = (ad.obs.len(), ad.var.len());
        if n_vars != self.n_vars {
            return Err(Error::Usage(format!(
                "var has {n_vars} rows but the writer was created for {}",
                self.n_vars
            )));
        }
        if let Some(x) = &self.x {
            if x.n_rows != n_obs {
                return Err(Error::Usage(format!(
                    "X has {} rows but obs has {n_obs}",
                    x.n_rows
                )));
            }
            let g = self.root().group("X").map_err(|e| self.err("/X", e))?;
            self.finish_sparse(&g, x, "/X")?;
        }
        self.frame("obs", &ad.obs)?;
        self.frame("var", &ad.var)?;
        let layers = self.mapping("layers")?;
        for (name, m) in &ad.layers {
            check_shape(
                &format!("layer '{name}'"),
                (m.n_rows, m.n_cols),
                (n_obs, n_vars),
            )?;
            self.sparse(&layers, name, m, &format!("/layers/{name}"))?;
        }
        for (group, items, rows) in [("obsm", &ad.obsm, n_obs), ("varm", &ad.varm, n_vars)] {
            let g = self.mapping(group)?;
            for (name, d) in items {
                let r = match d {
                    Dense::F32(a) => a.nrows(),
                    Dense::F64(a) => a.nrows(),
                };
                if r != rows {
                    return Err(Error::Usage(format!(
                        "{group}['{name}'] has {r} rows, expected {rows}"
                    )));
                }
                self.dense(&g, name, d, &format!("/{group}/{name}"))?;
            }
        }
        let obsp = self.mapping("obsp")?;
        for (name, m) in &ad.obsp {
            check_shape(
                &format!("obsp['{name}']"),
                (m.n_rows, m.n_cols),
                (n_obs, n_obs),
            )?;
            self.sparse(&obsp, name, m, &format!("/obsp/{name}"))?;
        }
        for (name, m) in &ad.obsp_f64 {
            check_shape(
                &format!("obsp['{name}']"),
                (m.n_rows, m.n_cols),
                (n_obs, n_obs),
            )?;
            self.sparse_f64(&obsp, name, m, &format!("/obsp/{name}"))?;
        }
        self.mapping("varp")?;
        let uns = self.mapping("uns")?;
        for (k, v) in &ad.uns {
            self.uns_value(&uns, k, v, &format!("/uns/{k}"))?;
        }
        Ok(())
    }
}

/// A matrix element's shape must be the one its slot implies.
fn check_shape(what: &str, got: (usize, usize), want: (usize, usize)) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} is {}x{}, expected {}x{}",
            got.0, got.1, want.0, want.1
        )))
    }
}

impl Drop for H5adWriter {
    fn drop(&mut self) {
        let _crash = crate::crash::writing(&self.path);
        // Handles inside the file first: libhdf5 1.10 crashes closing a dataset whose file a
        // failed write (a full disk) has already closed.
        self.x = None;
        if let Some(f) = self.file.take() {
            drop(f);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Creates an HDF5 file whose close releases it at once, even if a handle inside it were
/// still alive, so that the rename that follows never publishes a file still being written.
pub(crate) fn create_file(path: &Path) -> hdf5::Result<hdf5::File> {
    hdf5::File::with_options()
        .with_fapl(|p| p.fclose_degree(hdf5::file::FileCloseDegree::Strong))
        .create(path)
}

/// The temporary name an output is written under before it is renamed to `path`: a hidden
/// file in the same folder, so the rename is atomic.
pub(crate) fn temporary_path(path: &Path) -> Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{}: not a file name", path.display())))?;
    Ok(dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes `fields` as a 1-d compound dataset, packed in field order, as h5py writes a numpy
/// record array whose string fields are objects (variable-length UTF-8 strings).
fn write_records(
    g: &Group,
    name: &str,
    fields: &[(String, RecordColumn)],
) -> hdf5::Result<Dataset> {
    use hdf5::types::{CompoundField, CompoundType, FloatSize, TypeDescriptor};
    use hdf5_sys::h5d::H5Dwrite;
    use hdf5_sys::h5p::H5P_DEFAULT;
    use hdf5_sys::h5s::H5S_ALL;
    use std::ffi::CString;
    const PTR: usize = std::mem::size_of::<*const std::ffi::c_char>();
    let n = fields.first().map_or(0, |(_, c)| c.len());
    if fields.is_empty() || fields.iter().any(|(_, c)| c.len() != n) {
        return Err(hdf5::Error::from(
            "record array fields must be non-empty and of one length",
        ));
    }
    let mut members = Vec::with_capacity(fields.len());
    let mut size = 0;
    for (i, (field, col)) in fields.iter().enumerate() {
        let (ty, width) = match col {
            RecordColumn::Str(_) => (TypeDescriptor::VarLenUnicode, PTR),
            RecordColumn::F32(_) => (TypeDescriptor::Float(FloatSize::U4), 4),
            RecordColumn::F64(_) => (TypeDescriptor::Float(FloatSize::U8), 8),
        };
        members.push(CompoundField::new(field, ty, size, i));
        size += width;
    }
    let td = TypeDescriptor::Compound(CompoundType {
        fields: members,
        size,
    });
    let ds = g
        .new_dataset_builder()
        .empty_as(&td)
        .shape(n)
        .create(name)?;
    if n == 0 {
        return Ok(ds);
    }
    // The strings stay alive (and their pointers valid) until H5Dwrite has copied them.
    let mut keep: Vec<CString> = Vec::new();
    let mut buf = vec![0u8; n * size];
    let mut offset = 0;
    for (_, col) in fields {
        match col {
            RecordColumn::Str(v) => {
                for (r, s) in v.iter().enumerate() {
                    let c = CString::new(s.as_str()).map_err(|_| {
                        hdf5::Error::from(format!("string {s:?} contains a NUL byte"))
                    })?;
                    let ptr = c.as_ptr() as usize;
                    buf[r * size + offset..][..PTR].copy_from_slice(&ptr.to_ne_bytes());
                    keep.push(c);
                }
                offset += PTR;
            }
            RecordColumn::F32(v) => {
                for (r, x) in v.iter().enumerate() {
                    buf[r * size + offset..][..4].copy_from_slice(&x.to_ne_bytes());
                }
                offset += 4;
            }
            RecordColumn::F64(v) => {
                for (r, x) in v.iter().enumerate() {
                    buf[r * size + offset..][..8].copy_from_slice(&x.to_ne_bytes());
                }
                offset += 8;
            }
        }
    }
    let mem = hdf5::Datatype::from_descriptor(&td)?;
    // SAFETY: `buf` holds n records of `size` bytes laid out as `td` (packed, native byte
    // order), the memory type given; its string slots point into `keep`, alive until after
    // the call. The call holds the hdf5 crate's global lock (the library is not thread-safe).
    let status = hdf5::sync::sync(|| unsafe {
        H5Dwrite(
            ds.id(),
            mem.id(),
            H5S_ALL,
            H5S_ALL,
            H5P_DEFAULT,
            buf.as_ptr().cast(),
        )
    });
    drop(keep);
    if status < 0 {
        return Err(hdf5::Error::from("H5Dwrite of a record array failed"));
    }
    Ok(ds)
}

pub(crate) fn vlu(s: &str) -> std::result::Result<VarLenUnicode, String> {
    s.parse::<VarLenUnicode>()
        .map_err(|e| format!("string {s:?} cannot be stored: {e}"))
}

/// How the arrays of a compressed sparse matrix are typed on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SparseDtypes {
    /// anndata: float32 data, int32 indices, int64 indptr.
    AnnData,
    /// 10x Genomics: int32 counts, int64 indices and indptr.
    Tenx,
}

/// Resizable `data`/`indices`/`indptr` datasets of a compressed sparse group, grown chunk by
/// chunk.
///
/// scipy's sparse kernels need `indices` and `indptr` of one dtype (scanpy's QC fails on a
/// mix), so anndata output starts with both int32, as scipy writes small matrices, and widens
/// both to int64 once the stored entries pass 2^31 - 1: `indptr` (one entry per row) is
/// rewritten and `indices` copied block by block into an int64 dataset. 10x output is int64
/// throughout, as Cell Ranger writes it.
pub(crate) struct SparseAppender {
    group: Group,
    opts: WriteOptions,
    data: Dataset,
    indices: Dataset,
    indptr: Dataset,
    dtypes: SparseDtypes,
    /// Whether indices and indptr are int64.
    wide: bool,
    /// Stored entries an int32 index can address.
    index_limit: u64,
    pub(crate) n_rows: usize,
    pub(crate) n_cols: usize,
    nnz: u64,
}

fn sparse_dataset(
    name: &str,
    opts: WriteOptions,
    b: hdf5::DatasetBuilderEmpty,
) -> hdf5::Result<Dataset> {
    let b = b.chunk(SPARSE_CHUNK);
    let b = match opts.gzip {
        Some(level) => b.shuffle().deflate(level),
        None => b,
    };
    b.shape(0..).create(name)
}

impl SparseAppender {
    pub(crate) fn new(
        g: &Group,
        opts: WriteOptions,
        n_cols: usize,
        dtypes: SparseDtypes,
    ) -> hdf5::Result<Self> {
        Self::with_index_limit(g, opts, n_cols, dtypes, i32::MAX as u64)
    }

    pub(crate) fn with_index_limit(
        g: &Group,
        opts: WriteOptions,
        n_cols: usize,
        dtypes: SparseDtypes,
        index_limit: u64,
    ) -> hdf5::Result<Self> {
        let wide = dtypes == SparseDtypes::Tenx || n_cols as u64 > index_limit;
        let data = match dtypes {
            SparseDtypes::AnnData => sparse_dataset("data", opts, g.new_dataset::<f32>())?,
            SparseDtypes::Tenx => sparse_dataset("data", opts, g.new_dataset::<i32>())?,
        };
        let (indices, indptr) = if wide {
            (
                sparse_dataset("indices", opts, g.new_dataset::<i64>())?,
                sparse_dataset("indptr", opts, g.new_dataset::<i64>())?,
            )
        } else {
            (
                sparse_dataset("indices", opts, g.new_dataset::<i32>())?,
                sparse_dataset("indptr", opts, g.new_dataset::<i32>())?,
            )
        };
        indptr.resize(1)?;
        indptr.write_slice(&[0i64], s![0..1])?;
        Ok(SparseAppender {
            group: g.clone(),
            opts,
            data,
            indices,
            indptr,
            dtypes,
            wide,
            index_limit,
            n_rows: 0,
            n_cols,
            nnz: 0,
        })
    }

    /// Rewrites indices and indptr as int64 (once, when int32 no longer addresses the entries).
    fn widen(&mut self) -> hdf5::Result<()> {
        const BLOCK: usize = 1 << 24;
        let g = &self.group;
        let ptr: Vec<i64> = self.indptr.read_raw::<i64>()?;
        let idx64 = sparse_dataset("indices_int64", self.opts, g.new_dataset::<i64>())?;
        let n = self.nnz as usize;
        idx64.resize(n)?;
        for a in (0..n).step_by(BLOCK) {
            let b = (a + BLOCK).min(n);
            let block: Vec<i64> = self.indices.read_slice_1d::<i64, _>(s![a..b])?.to_vec();
            idx64.write_slice(&block, s![a..b])?;
        }
        g.unlink("indices")?;
        g.unlink("indptr")?;
        g.relink("indices_int64", "indices")?;
        let ptr64 = sparse_dataset("indptr", self.opts, g.new_dataset::<i64>())?;
        ptr64.resize(ptr.len())?;
        ptr64.write_slice(&ptr, s![0..ptr.len()])?;
        self.indices = g.dataset("indices")?;
        self.indptr = ptr64;
        self.wide = true;
        Ok(())
    }

    pub(crate) fn append(&mut self, m: &CsrMatrix) -> hdf5::Result<()> {
        let old = self.nnz as usize;
        let new = old + m.data.len();
        if !self.wide && new as u64 > self.index_limit {
            self.widen()?;
        }
        if new > old {
            self.data.resize(new)?;
            self.indices.resize(new)?;
            match self.dtypes {
                SparseDtypes::AnnData => self.data.write_slice(&m.data, s![old..new])?,
                SparseDtypes::Tenx => {
                    let counts: Vec<i32> = m.data.iter().map(|&v| v as i32).collect();
                    self.data.write_slice(&counts, s![old..new])?;
                }
            }
            if self.wide {
                let idx: Vec<i64> = m.indices.iter().map(|&j| i64::from(j)).collect();
                self.indices.write_slice(&idx, s![old..new])?;
            } else {
                let idx: Vec<i32> = m.indices.iter().map(|&j| j as i32).collect();
                self.indices.write_slice(&idx, s![old..new])?;
            }
        }
        let (r0, r1) = (self.n_rows + 1, self.n_rows + 1 + m.n_rows);
        if m.n_rows > 0 {
            let ptr: Vec<i64> = m.indptr[1..]
                .iter()
                .map(|&p| (p + self.nnz) as i64)
                .collect();
            self.indptr.resize(r1)?;
            if self.wide {
                self.indptr.write_slice(&ptr, s![r0..r1])?;
            } else {
                let ptr32: Vec<i32> = ptr.iter().map(|&p| p as i32).collect();
                self.indptr.write_slice(&ptr32, s![r0..r1])?;
            }
        }
        self.nnz = new as u64;
        self.n_rows += m.n_rows;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_and_indptr_widen_together_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.h5ad");
        let m = CsrMatrix::from_dense(
            6,
            4,
            &[
                1., 0., 2., 0., 0., 3., 0., 4., 5., 6., 0., 0., 0., 0., 7., 8., 9., 0., 0., 1., 2.,
                3., 4., 5.,
            ],
        );
        let file = create_file(&path).unwrap();
        let g = file.create_group("X").unwrap();
        let mut a = SparseAppender::with_index_limit(
            &g,
            WriteOptions::default(),
            4,
            SparseDtypes::AnnData,
            7,
        )
        .unwrap();
        a.append(&m.slice_rows(0..2)).unwrap();
        assert!(!a.wide);
        assert_eq!(a.indices.dtype().unwrap().size(), 4);
        a.append(&m.slice_rows(2..4)).unwrap();
        assert!(a.wide, "8 entries exceed the limit of 7");
        a.append(&m.slice_rows(4..6)).unwrap();
        for ds in ["indices", "indptr"] {
            assert_eq!(
                g.dataset(ds).unwrap().dtype().unwrap().size(),
                8,
                "{ds} is int64"
            );
        }
        drop(a);
        drop(g);
        file.close().unwrap();
        // Read the arrays back through the reader's own validation.
        let parts = crate::io::h5ad::SparseParts::open(
            &path,
            &hdf5::File::open(&path).unwrap().group("X").unwrap(),
            "/X",
            6,
            4,
        )
        .unwrap();
        assert_eq!(parts.indptr, m.indptr);
        let (idx, val) = parts.read_entries(0..m.indices.len()).unwrap();
        assert_eq!((idx, val), (m.indices.clone(), m.data.clone()));
    }
}
