//! Readers and writers: `.h5ad`, 10x Genomics HDF5 (v2 and v3) and 10x MTX directories.
//!
//! [`CountSource::open`] sniffs the format from the content (HDF5 signature and layout, a
//! MatrixMarket banner), never from the file name, and gives every format the same face: a
//! cells x genes matrix read in row chunks as [`CsrMatrix`], with the obs/var dataframes and
//! unique gene names.
//!
//! ```no_run
//! use cartscope::io::{CountSource, ReadOptions};
//! let mut src = CountSource::open("sample.h5ad".as_ref(), &ReadOptions::default())?;
//! for chunk in src.chunks(10_000) {
//!     let (rows, m) = chunk?;
//!     println!("cells {rows:?}: {} stored entries", m.nnz());
//! }
//! # Ok::<(), cartscope::Error>(())
//! ```

pub(crate) mod atomic;
pub mod concat;
pub(crate) mod csv;
pub(crate) mod encoding;
pub mod frame;
pub mod h5ad;
pub mod h5ad_write;
mod hdf5_util;
mod inflate;
pub mod mtx;
pub mod names;
pub mod tenx_h5;
pub mod tenx_write;
pub mod values;
mod vlen;

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;
pub(crate) use atomic::write_atomic;
pub use frame::{Column, Frame};
pub use h5ad_write::{
    AnnData, Dense, H5adWriter, RecordColumn, UnsValue, WriteOptions, write_h5ad,
};

/// The file formats cartscope reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    /// AnnData `.h5ad`.
    #[serde(rename = "h5ad")]
    H5ad,
    /// 10x Genomics HDF5 feature-barcode matrix (v2 or v3).
    #[serde(rename = "10x-h5")]
    TenxH5,
    /// 10x Genomics MatrixMarket directory.
    #[serde(rename = "10x-mtx")]
    TenxMtx,
}

impl Format {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::H5ad => "h5ad",
            Format::TenxH5 => "10x-h5",
            Format::TenxMtx => "10x-mtx",
        }
    }
}

/// How the matrix is stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Compressed sparse rows with cells as rows.
    Csr,
    /// Compressed sparse columns with cells as rows (genes compressed).
    Csc,
    /// A dense 2-d array.
    Dense,
    /// 10x HDF5: CSC with one column per cell, read directly as cells x genes CSR.
    #[serde(rename = "10x-csc")]
    TenxCsc,
    /// MatrixMarket coordinate triplets.
    Coordinate,
}

/// Where the count matrix lives in the file and how it is stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct XInfo {
    /// The element read, e.g. `/X`, `/layers/counts`, `/matrix`, `matrix.mtx.gz`.
    pub element: String,
    /// Storage layout.
    pub storage: Storage,
    /// numpy-style dtype of the stored values.
    pub dtype: String,
    /// Rows (cells) as stored.
    pub n_rows: usize,
    /// Columns (features) as stored, before any feature-type selection.
    pub n_cols: usize,
}

/// Produces consecutive row ranges of a stored matrix.
pub(crate) trait RowReader: Send {
    /// Reads rows `rows` (cells) with all stored columns; indices may be unsorted.
    fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix>;
}

/// What to read from a file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadOptions {
    /// Read `layers/<name>` of an `.h5ad` instead of X.
    pub layer: Option<String>,
    /// Read `raw/X` (with `raw/var`) of an `.h5ad` instead of X.
    pub use_raw: bool,
    /// 10x: keep every feature type, not only "Gene Expression" (scanpy's `gex_only=False`).
    pub all_features: bool,
    /// 10x HDF5 v2 with several genomes: read only this one.
    pub genome: Option<String>,
}

/// A count matrix opened for reading, with its metadata.
pub struct CountSource {
    /// The path given.
    pub path: PathBuf,
    /// Detected format.
    pub format: Format,
    /// The stored matrix.
    pub x: XInfo,
    /// Cell metadata; `obs.index` are the barcodes / obs_names.
    pub obs: Frame,
    /// Gene metadata; `var.index` are unique gene names (symbols where the file has them).
    pub var: Frame,
    /// Where the gene names came from, e.g. `var index`, `var['feature_name']`, `features/name`.
    pub gene_name_source: String,
    /// True when duplicate gene names were made unique.
    pub names_made_unique: bool,
    /// Genomes present (10x), else empty.
    pub genomes: Vec<String>,
    /// Layers present in an `.h5ad` (names), and whether it has `raw/X`.
    pub layers: Vec<String>,
    /// Whether an `.h5ad` has `raw/X`.
    pub has_raw: bool,
    reader: Box<dyn RowReader>,
    /// Stored column -> output column, when only some feature types are kept.
    column_map: Option<Vec<Option<u32>>>,
}

impl std::fmt::Debug for CountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountSource")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("n_obs", &self.n_obs())
            .field("n_vars", &self.n_vars())
            .finish()
    }
}

const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Sniffs the format of `path` from its content.
pub(crate) fn sniff(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|e| Error::read(path, e))?;
    if meta.is_dir() {
        return if mtx::find_matrix(path).is_some() {
            Ok(Format::TenxMtx)
        } else {
            Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                reason:
                    "directory holds no matrix.mtx or matrix.mtx.gz (a 10x MTX directory needs one)"
                        .into(),
            })
        };
    }
    if !meta.is_file() {
        return Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let mut head = Vec::with_capacity(2056);
    std::fs::File::open(path)
        .and_then(|f| f.take(2056).read_to_end(&mut head))
        .map_err(|e| Error::read(path, e))?;
    // HDF5 files may carry a user block: the signature sits at 0, 512, 1024 or 2048.
    let is_hdf5 = [0usize, 512, 1024, 2048]
        .iter()
        .any(|&o| head.get(o..o + 8) == Some(&HDF5_SIGNATURE[..]));
    if is_hdf5 {
        let file = hdf5_util::open_file(path)?;
        return if tenx_h5::looks_like(&file) {
            Ok(Format::TenxH5)
        } else if file.link_exists("obs") || file.link_exists("X") || file.link_exists("var") {
            Ok(Format::H5ad)
        } else {
            Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                reason: "HDF5 file is neither an AnnData .h5ad (no /X, /obs, /var) nor a 10x matrix (no /matrix)"
                    .into(),
            })
        };
    }
    if mtx::is_matrix_market(path, &head) {
        return Ok(Format::TenxMtx);
    }
    Err(Error::UnknownFormat {
        path: path.to_path_buf(),
        reason: "not an HDF5 file (.h5ad or 10x .h5) nor a MatrixMarket matrix".into(),
    })
}

impl CountSource {
    /// Opens `path`, whatever its format, for chunked reading.
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<CountSource> {
        let _crash = crate::crash::reading(path);
        crate::crash::inject_test_fault(path);
        let format = sniff(path)?;
        if format != Format::H5ad && (opts.layer.is_some() || opts.use_raw) {
            return Err(Error::Usage(format!(
                "--layer and --use-raw apply to .h5ad input; {} is {}",
                path.display(),
                format.as_str()
            )));
        }
        let mut src = match format {
            Format::H5ad => open_h5ad(path, opts)?,
            Format::TenxH5 => tenx_h5::open(path, opts)?,
            Format::TenxMtx => mtx::open(path, opts)?,
        };
        if src.obs.is_empty() {
            return Err(Error::invalid(
                path,
                &src.x.element,
                "the matrix has zero cells",
            ));
        }
        if src.var.is_empty() {
            return Err(Error::invalid(
                path,
                &src.x.element,
                "the matrix has zero genes",
            ));
        }
        src.names_made_unique = names::make_unique(&mut src.var.index);
        Ok(src)
    }

    /// Number of cells.
    pub fn n_obs(&self) -> usize {
        self.obs.len()
    }

    /// Number of genes (after any feature-type selection).
    pub fn n_vars(&self) -> usize {
        self.var.len()
    }

    /// Reads cells `rows` as a CSR chunk: indices sorted, duplicates summed, columns restricted
    /// to the selected features.
    pub fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix> {
        if rows.start > rows.end || rows.end > self.n_obs() {
            return Err(Error::Usage(format!(
                "row range {rows:?} outside 0..{}",
                self.n_obs()
            )));
        }
        let _crash = crate::crash::reading(&self.path);
        crate::crash::element(&self.x.element);
        let mut m = self.reader.read_rows(rows)?;
        m.canonicalize();
        if let Some(map) = &self.column_map {
            m = m.select_columns(map, self.var.len());
        }
        Ok(m)
    }

    /// Iterates over the matrix in chunks of `chunk_rows` cells.
    pub fn chunks(
        &mut self,
        chunk_rows: usize,
    ) -> impl Iterator<Item = Result<(Range<usize>, CsrMatrix)>> + '_ {
        let n = self.n_obs();
        let step = chunk_rows.max(1);
        (0..n).step_by(step).map(move |a| {
            let r = a..(a + step).min(n);
            self.read_rows(r.clone()).map(|m| (r, m))
        })
    }

    /// Reads the whole matrix into memory.
    pub fn read_all(&mut self) -> Result<CsrMatrix> {
        self.read_rows(0..self.n_obs())
    }
}

/// The rows of a matrix already in memory (an AnnData handed over by the Python bindings).
struct MemoryReader(CsrMatrix);

impl RowReader for MemoryReader {
    fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix> {
        Ok(self.0.slice_rows(rows))
    }
}

impl CountSource {
    /// A source over a count matrix already in memory, with its obs and var (an AnnData from
    /// Python): `name` stands for the file in messages and is the default sample label. The
    /// matrix structure is checked as a file's is (shape against obs and var, row pointers,
    /// index range) and its rows canonicalised; its values are checked by the run's scan, as a
    /// file's are (`allow_non_integer` included).
    pub fn from_memory(
        name: &str,
        mut x: CsrMatrix,
        obs: Frame,
        var: Frame,
    ) -> Result<CountSource> {
        let path = PathBuf::from(name);
        let bad = |reason: String| Err(Error::invalid(&path, "X", &reason));
        if x.n_rows != obs.len() || x.n_cols != var.len() || x.indptr.len() != x.n_rows + 1 {
            return bad(format!(
                "X is {} x {} ({} row pointers) but obs has {} rows and var {}",
                x.n_rows,
                x.n_cols,
                x.indptr.len(),
                obs.len(),
                var.len()
            ));
        }
        if x.indices.len() != x.data.len() {
            return bad("indices and data differ in length".into());
        }
        h5ad::validate_indptr(&path, "X/indptr", &x.indptr, x.data.len() as u64)?;
        if crate::matrix::max_par(&x.indices).is_some_and(|m| m as usize >= x.n_cols) {
            return bad(format!("a column index is outside 0..{}", x.n_cols));
        }
        if obs.is_empty() {
            return bad("the matrix has zero cells".into());
        }
        if var.is_empty() {
            return bad("the matrix has zero genes".into());
        }
        x.canonicalize();
        let xinfo = XInfo {
            element: "X".into(),
            storage: Storage::Csr,
            dtype: "float32".into(),
            n_rows: x.n_rows,
            n_cols: x.n_cols,
        };
        let mut src = CountSource {
            path,
            format: Format::H5ad,
            x: xinfo,
            obs,
            var,
            gene_name_source: "var index".into(),
            names_made_unique: false,
            genomes: Vec::new(),
            layers: Vec::new(),
            has_raw: false,
            reader: Box::new(MemoryReader(x)),
            column_map: None,
        };
        src.names_made_unique = names::make_unique(&mut src.var.index);
        Ok(src)
    }
}

fn open_h5ad(path: &Path, opts: &ReadOptions) -> Result<CountSource> {
    let file = hdf5_util::open_file(path)?;
    let element = h5ad::matrix_element(path, &file, opts.layer.as_deref(), opts.use_raw)?;
    let (obs, obs_index) = h5ad::read_frame_and_index(path, &file, "obs")?;
    let mut var = if opts.use_raw {
        h5ad::read_frame(path, &file, "raw/var")?
    } else {
        h5ad::read_frame(path, &file, "var")?
    };
    let (x, reader) = h5ad::open_matrix(path, &file, &element)?;
    if x.n_rows != obs.len() {
        return Err(Error::invalid(
            path,
            &x.element,
            format!("has {} rows but /obs has {} cells", x.n_rows, obs.len()),
        ));
    }
    if x.n_cols != var.len() {
        let vf = if opts.use_raw { "/raw/var" } else { "/var" };
        return Err(Error::invalid(
            path,
            &x.element,
            format!("has {} columns but {vf} has {} genes", x.n_cols, var.len()),
        ));
    }
    names::check_cell_names(path, &obs_index, &obs.index)?;
    let gene_name_source = choose_gene_names(&mut var);
    let layers = file
        .group("layers")
        .and_then(|g| g.member_names())
        .unwrap_or_default();
    let has_raw = file.link_exists("raw") && file.group("raw").is_ok_and(|g| g.link_exists("X"));
    Ok(CountSource {
        path: path.to_path_buf(),
        format: Format::H5ad,
        x,
        obs,
        var,
        gene_name_source,
        names_made_unique: false,
        genomes: Vec::new(),
        layers,
        has_raw,
        reader,
        column_map: None,
    })
}

/// Columns that hold gene symbols when the var index holds IDs (CELLxGENE, scanpy's
/// `gene_symbols=` convention).
pub(crate) const SYMBOL_COLUMNS: [&str; 2] = ["gene_symbols", "feature_name"];

/// Uses a symbol column for the var index when there is one, keeping the old index (usually
/// Ensembl IDs) as `gene_ids`. Returns where the names came from.
fn choose_gene_names(var: &mut Frame) -> String {
    for col in SYMBOL_COLUMNS {
        let Some(symbols) = var.column(col).and_then(Column::as_strings) else {
            continue;
        };
        let ids = std::mem::take(&mut var.index);
        var.index = symbols
            .into_iter()
            .zip(&ids)
            .map(|(s, id)| s.unwrap_or_else(|| id.clone()))
            .collect();
        if var.column("gene_ids").is_none() {
            var.set("gene_ids", Column::Str(ids));
        }
        return format!("var['{col}']");
    }
    "var index".to_string()
}
