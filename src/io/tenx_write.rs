//! Writing 10x Genomics formats: the HDF5 v3 feature-barcode matrix and the MTX directory.
//!
//! Both are streamed in row (cell) chunks and written under a temporary name, renamed into
//! place when complete. Strings in the HDF5 file are fixed-length byte strings as Cell Ranger
//! writes them, so scanpy's `read_10x_h5` decodes them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use ndarray::Array1;

use super::h5ad_write::{SparseAppender, SparseDtypes, WriteOptions, temporary_path};
use super::hdf5_util::write_fixed_strings;
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

/// The per-feature columns of a 10x matrix.
#[derive(Debug, Clone, Default)]
pub struct TenxFeatures {
    /// Feature IDs (Ensembl IDs for genes).
    pub ids: Vec<String>,
    /// Feature names (gene symbols).
    pub names: Vec<String>,
    /// Feature types ("Gene Expression", "Antibody Capture", ...).
    pub types: Vec<String>,
    /// Genome of each feature.
    pub genome: Vec<String>,
}

/// A 10x HDF5 (v3 layout) file being written.
pub struct TenxH5Writer {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<hdf5::File>,
    /// Closed before the file, always (see `Drop`).
    x: Option<SparseAppender>,
}

impl TenxH5Writer {
    /// Starts a file for `n_features` features.
    pub fn create(path: &Path, n_features: usize, opts: WriteOptions) -> Result<Self> {
        let _crash = crate::crash::writing(path);
        let tmp = temporary_path(path)?;
        let e = |err: hdf5::Error| Error::write(path, "/matrix", err);
        let file = super::h5ad_write::create_file(&tmp).map_err(e)?;
        let g = file.create_group("matrix").map_err(e)?;
        let x = SparseAppender::new(&g, opts, n_features, SparseDtypes::Tenx).map_err(e)?;
        Ok(TenxH5Writer {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            x: Some(x),
        })
    }

    /// Appends cells (rows of `m`, integer counts).
    pub fn append(&mut self, m: &CsrMatrix) -> Result<()> {
        let _crash = crate::crash::writing(&self.path);
        self.x
            .as_mut()
            .expect("open until finish")
            .append(m)
            .map_err(|e| Error::write(&self.path, "/matrix", e))
    }

    /// Writes barcodes and features, then renames the file into place.
    pub fn finish(mut self, barcodes: &[String], features: &TenxFeatures) -> Result<()> {
        let _crash = crate::crash::writing(&self.path);
        let path = self.path.clone();
        let e = |err: hdf5::Error| Error::write(&path, "/matrix", err);
        let x = self.x.take().expect("open until finish");
        let (n_rows, n_cols) = (x.n_rows, x.n_cols);
        drop(x);
        if barcodes.len() != n_rows || features.names.len() != n_cols {
            return Err(Error::Usage(format!(
                "10x writer: {} barcodes and {} features for a {n_rows}x{n_cols} matrix",
                barcodes.len(),
                features.names.len(),
            )));
        }
        let file = self.file.take().expect("open until finish");
        {
            let g = file.group("matrix").map_err(e)?;
            write_fixed_strings(&g, "barcodes", barcodes).map_err(e)?;
            let shape = Array1::from(vec![n_cols as i32, n_rows as i32]);
            g.new_dataset_builder()
                .with_data(&shape)
                .create("shape")
                .map_err(e)?;
            let fg = g.create_group("features").map_err(e)?;
            write_fixed_strings(&fg, "_all_tag_keys", &["genome".to_string()]).map_err(e)?;
            write_fixed_strings(&fg, "feature_type", &features.types).map_err(e)?;
            write_fixed_strings(&fg, "genome", &features.genome).map_err(e)?;
            write_fixed_strings(&fg, "id", &features.ids).map_err(e)?;
            write_fixed_strings(&fg, "name", &features.names).map_err(e)?;
        }
        file.close().map_err(e)?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|err| Error::write(&self.path, "rename", err))
    }
}

impl Drop for TenxH5Writer {
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

/// A 10x MTX directory being written (`matrix.mtx.gz`, `features.tsv.gz`, `barcodes.tsv.gz`).
///
/// MatrixMarket puts the entry count in the header, before the entries; the entries are
/// streamed into a gzip member of their own and the header member is written in front of them
/// at the end (a multi-member gzip file, as `zcat` and every gzip reader accept).
pub struct MtxWriter {
    dir: PathBuf,
    tmp: PathBuf,
    body: Option<GzEncoder<BufWriter<File>>>,
    level: Compression,
    n_rows: usize,
    n_cols: usize,
    nnz: u64,
}

impl MtxWriter {
    /// Starts a directory for `n_features` features.
    pub fn create(dir: &Path, n_features: usize, opts: WriteOptions) -> Result<Self> {
        let tmp = temporary_path(dir)?;
        let io = |err: std::io::Error| Error::write(dir, "matrix.mtx.gz", err);
        std::fs::create_dir_all(&tmp).map_err(io)?;
        let level = Compression::new(u32::from(opts.gzip.unwrap_or(6)));
        let body = File::create(tmp.join("entries.part")).map_err(io)?;
        Ok(MtxWriter {
            dir: dir.to_path_buf(),
            tmp,
            body: Some(GzEncoder::new(BufWriter::new(body), level)),
            level,
            n_rows: 0,
            n_cols: n_features,
            nnz: 0,
        })
    }

    /// Appends cells (rows of `m`).
    pub fn append(&mut self, m: &CsrMatrix) -> Result<()> {
        let body = self.body.as_mut().expect("open until finish");
        let mut line = String::new();
        for i in 0..m.n_rows {
            let (idx, val) = m.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                use std::fmt::Write as _;
                line.clear();
                let _ = writeln!(line, "{} {} {}", j + 1, self.n_rows + i + 1, v);
                body.write_all(line.as_bytes())
                    .map_err(|e| Error::write(&self.dir, "matrix.mtx.gz", e))?;
            }
        }
        self.n_rows += m.n_rows;
        self.nnz += m.nnz();
        Ok(())
    }

    fn gz_lines(&self, name: &str, lines: impl Iterator<Item = String>) -> Result<()> {
        let io = |err: std::io::Error| Error::write(&self.dir, name, err);
        let mut w = GzEncoder::new(
            BufWriter::new(File::create(self.tmp.join(name)).map_err(io)?),
            self.level,
        );
        for l in lines {
            w.write_all(l.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
                .map_err(io)?;
        }
        w.finish().and_then(|mut b| b.flush()).map_err(io)
    }

    /// Writes the header, features and barcodes, then renames the directory into place.
    pub fn finish(mut self, barcodes: &[String], features: &TenxFeatures) -> Result<()> {
        let io = |err: std::io::Error| Error::write(&self.dir, "matrix.mtx.gz", err);
        let body = self.body.take().expect("open");
        body.finish().and_then(|mut b| b.flush()).map_err(io)?;
        let header = format!(
            "%%MatrixMarket matrix coordinate integer general\n%metadata_json: {{\"software_version\": \"cartscope-{}\"}}\n{} {} {}\n",
            env!("CARGO_PKG_VERSION"),
            self.n_cols,
            self.n_rows,
            self.nnz
        );
        let mut out = GzEncoder::new(Vec::new(), self.level);
        out.write_all(header.as_bytes()).map_err(io)?;
        let mut matrix = File::create(self.tmp.join("matrix.mtx.gz")).map_err(io)?;
        matrix.write_all(&out.finish().map_err(io)?).map_err(io)?;
        let mut part = File::open(self.tmp.join("entries.part")).map_err(io)?;
        std::io::copy(&mut part, &mut matrix).map_err(io)?;
        std::fs::remove_file(self.tmp.join("entries.part")).map_err(io)?;
        let f = features;
        self.gz_lines(
            "features.tsv.gz",
            (0..f.names.len()).map(|j| format!("{}\t{}\t{}", f.ids[j], f.names[j], f.types[j])),
        )?;
        self.gz_lines("barcodes.tsv.gz", barcodes.iter().cloned())?;
        if self.dir.exists() {
            // Replace an earlier MTX output, never a folder holding anything else.
            let foreign = std::fs::read_dir(&self.dir)
                .map_err(io)?
                .filter_map(|e| e.ok())
                .any(|e| {
                    ![
                        "matrix.mtx.gz",
                        "features.tsv.gz",
                        "barcodes.tsv.gz",
                        "truth.csv.gz",
                    ]
                    .contains(&e.file_name().to_string_lossy().as_ref())
                });
            if foreign {
                return Err(Error::Usage(format!(
                    "{}: exists and holds files other than a 10x MTX output; choose another path",
                    self.dir.display()
                )));
            }
            std::fs::remove_dir_all(&self.dir).map_err(io)?;
        }
        std::fs::rename(&self.tmp, &self.dir).map_err(io)?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for MtxWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
