//! 10x Genomics MatrixMarket directories: `matrix.mtx[.gz]` with `features.tsv[.gz]` (Cell
//! Ranger >= 3; columns id, name, feature type) or `genes.tsv[.gz]` (Cell Ranger 2; id, name),
//! and `barcodes.tsv[.gz]`. Compression is detected from the gzip magic bytes.
//!
//! The matrix is genes x cells coordinate triplets, 1-based. MatrixMarket text has no random
//! access, so the directory is parsed once into an in-memory cells x genes CSR (12 bytes per
//! stored entry while sorting), which then serves row chunks like every other format. Datasets
//! too large for that belong in `.h5ad` or 10x `.h5`, which stream.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::frame::{Column, Frame};
use super::tenx_h5::GENE_EXPRESSION;
use super::{CountSource, Format, ReadOptions, RowReader, Storage, XInfo};
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BANNER: &str = "%%MatrixMarket";

fn existing(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    stems
        .iter()
        .flat_map(|s| [dir.join(format!("{s}.gz")), dir.join(s)])
        .find(|p| p.is_file())
}

/// The matrix file of a 10x MTX directory, if present.
pub(crate) fn find_matrix(dir: &Path) -> Option<PathBuf> {
    existing(dir, &["matrix.mtx"])
}

fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut f = File::open(path).map_err(|e| Error::read(path, e))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| Error::read(path, e))?;
    let f = File::open(path).map_err(|e| Error::read(path, e))?;
    Ok(if n == 2 && magic == GZIP_MAGIC {
        Box::new(BufReader::new(MultiGzDecoder::new(f)))
    } else {
        Box::new(BufReader::new(f))
    })
}

/// Whether a file (given its first bytes) is a MatrixMarket matrix, plain or gzipped.
pub(crate) fn is_matrix_market(path: &Path, head: &[u8]) -> bool {
    if head.starts_with(BANNER.as_bytes()) {
        return true;
    }
    if head.starts_with(&GZIP_MAGIC) {
        let mut first = String::new();
        if let Ok(mut r) = open_text(path) {
            let _ = r.read_line(&mut first);
        }
        return first.starts_with(BANNER);
    }
    false
}

/// A read error in words: a gzip stream that ends early is a truncated file.
fn read_error(path: &Path, line: usize, e: &std::io::Error) -> Error {
    let message = match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            "the file ends in the middle of its gzip stream (truncated)".to_string()
        }
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            if e.to_string().contains("deflate") || e.to_string().contains("gzip") =>
        {
            format!("damaged gzip data ({e})")
        }
        _ => e.to_string(),
    };
    Error::invalid(path, format!("line {line}"), message)
}

fn read_tsv(path: &Path) -> Result<Vec<Vec<String>>> {
    let r = open_text(path)?;
    let mut rows = Vec::new();
    for (k, line) in r.lines().enumerate() {
        let line = line.map_err(|e| read_error(path, k + 1, &e))?;
        if line.is_empty() {
            continue;
        }
        rows.push(line.split('\t').map(str::to_string).collect());
    }
    Ok(rows)
}

struct MemReader {
    m: CsrMatrix,
}

impl RowReader for MemReader {
    fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix> {
        Ok(self.m.slice_rows(rows))
    }
}

/// Opens a 10x MTX directory (or the directory of a given `matrix.mtx[.gz]`).
pub fn open(path: &Path, opts: &ReadOptions) -> Result<CountSource> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let matrix_path = if path.is_dir() {
        find_matrix(&dir).ok_or_else(|| Error::UnknownFormat {
            path: dir.clone(),
            reason: "no matrix.mtx[.gz]".into(),
        })?
    } else {
        path.to_path_buf()
    };
    let (feature_path, v3) = match existing(&dir, &["features.tsv"]) {
        Some(p) => (p, true),
        None => match existing(&dir, &["genes.tsv"]) {
            Some(p) => (p, false),
            None => {
                return Err(Error::invalid(
                    &dir,
                    "features.tsv",
                    "missing: neither features.tsv[.gz] nor genes.tsv[.gz] found",
                ));
            }
        },
    };
    let barcode_path = existing(&dir, &["barcodes.tsv"]).ok_or_else(|| {
        Error::invalid(&dir, "barcodes.tsv", "missing: no barcodes.tsv[.gz] found")
    })?;
    let features = read_tsv(&feature_path)?;
    let barcodes: Vec<String> = read_tsv(&barcode_path)?
        .into_iter()
        .map(|mut r| r.swap_remove(0))
        .collect();
    let ids: Vec<String> = features.iter().map(|r| r[0].clone()).collect();
    let names: Vec<String> = features
        .iter()
        .map(|r| r.get(1).unwrap_or(&r[0]).clone())
        .collect();
    let types: Option<Vec<String>> = if v3 && features.iter().all(|r| r.len() >= 3) {
        Some(features.iter().map(|r| r[2].clone()).collect())
    } else {
        None
    };
    super::names::check_cell_names(&barcode_path, "column 1", &barcodes)?;
    let m = parse_matrix(
        &matrix_path,
        (&feature_path, features.len()),
        (&barcode_path, barcodes.len()),
    )?;
    let mut var = Frame::new(names);
    var.set("gene_ids", Column::Str(ids));
    if let Some(t) = &types {
        var.set("feature_types", Column::Str(t.clone()));
    }
    let keep: Vec<bool> = match &types {
        Some(t) if !opts.all_features && t.iter().any(|x| x == GENE_EXPRESSION) => {
            t.iter().map(|x| x == GENE_EXPRESSION).collect()
        }
        _ => vec![true; var.len()],
    };
    let column_map = if keep.iter().all(|&k| k) {
        None
    } else {
        let mut next = 0u32;
        Some(
            keep.iter()
                .map(|&k| k.then(|| (next, next += 1).0))
                .collect::<Vec<_>>(),
        )
    };
    let kept: Vec<usize> = (0..var.len()).filter(|&j| keep[j]).collect();
    let var = if column_map.is_some() {
        var.take(&kept)
    } else {
        var
    };
    let file_name = matrix_path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let x = XInfo {
        element: file_name,
        storage: Storage::Coordinate,
        dtype: if m.data.iter().all(|v| v.fract() == 0.0) {
            "int".into()
        } else {
            "float".into()
        },
        n_rows: m.n_rows,
        n_cols: m.n_cols,
    };
    Ok(CountSource {
        path: path.to_path_buf(),
        format: Format::TenxMtx,
        x,
        obs: Frame::new(barcodes),
        var,
        gene_name_source: if v3 {
            "features.tsv column 2".into()
        } else {
            "genes.tsv column 2".into()
        },
        names_made_unique: false,
        genomes: Vec::new(),
        layers: Vec::new(),
        has_raw: false,
        reader: Box::new(MemReader { m }),
        column_map,
    })
}

/// The file name of `p`, for messages.
fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Parses a genes x cells MatrixMarket coordinate file into cells x genes CSR; `features` and
/// `barcodes` are the files that name its rows and columns, with their lengths.
pub(crate) fn parse_matrix(
    path: &Path,
    (feature_file, n_features): (&Path, usize),
    (barcode_file, n_barcodes): (&Path, usize),
) -> Result<CsrMatrix> {
    let mut r = open_text(path)?;
    let mut line = String::new();
    let mut line_no = 0usize;
    let next_line =
        |r: &mut Box<dyn BufRead>, line: &mut String, line_no: &mut usize| -> Result<bool> {
            line.clear();
            *line_no += 1;
            if (*line_no).is_multiple_of(1 << 20) {
                // A long parse is progress, not a stall (crash::progress).
                crate::crash::progress();
            }
            let n = r
                .read_line(line)
                .map_err(|e| read_error(path, *line_no, &e))?;
            Ok(n > 0)
        };
    if !next_line(&mut r, &mut line, &mut line_no)? {
        return Err(Error::invalid(path, "header", "empty file"));
    }
    let banner: Vec<String> = line
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let pattern = match banner.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["%%matrixmarket", "matrix", "coordinate", field, "general"] => match field {
            "integer" | "real" | "double" => false,
            "pattern" => true,
            other => {
                return Err(Error::invalid(
                    path,
                    "header",
                    format!("unsupported field type '{other}'"),
                ));
            }
        },
        _ => {
            return Err(Error::invalid(
                path,
                "header",
                format!(
                    "expected '%%MatrixMarket matrix coordinate integer general', found '{}'",
                    line.trim_end()
                ),
            ));
        }
    };
    // Comments, then the size line.
    loop {
        if !next_line(&mut r, &mut line, &mut line_no)? {
            return Err(Error::invalid(path, "size line", "missing"));
        }
        if !line.starts_with('%') && !line.trim().is_empty() {
            break;
        }
    }
    let size_line = line_no;
    let dims: Vec<u64> = line
        .split_whitespace()
        .map(|t| t.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::invalid(
                path,
                format!("line {size_line}"),
                format!("bad size line '{}'", line.trim_end()),
            )
        })?;
    let [rows, cols, nnz] = dims[..] else {
        return Err(Error::invalid(
            path,
            format!("line {size_line}"),
            "size line needs rows, columns and entries",
        ));
    };
    for (declared, listed, what, file) in [
        (rows, n_features, "features", feature_file),
        (cols, n_barcodes, "barcodes", barcode_file),
    ] {
        if declared != listed as u64 {
            return Err(Error::invalid(
                path,
                format!("line {size_line}"),
                format!(
                    "the size line declares {declared} {what} but {} lists {listed}",
                    file_name(file)
                ),
            ));
        }
    }
    let mut triplets: Vec<(u32, u32, f32)> = Vec::with_capacity(nnz.min(1 << 20) as usize);
    while next_line(&mut r, &mut line, &mut line_no)? {
        let t = line.trim();
        if t.is_empty() || t.starts_with('%') {
            continue;
        }
        if triplets.len() as u64 == nnz {
            return Err(Error::invalid(
                path,
                format!("line {line_no}"),
                format!("more entries than the {nnz} the header declares"),
            ));
        }
        triplets.push(parse_entry(path, line_no, t, pattern, (rows, cols))?);
    }
    if (triplets.len() as u64) != nnz {
        return Err(Error::invalid(
            path,
            "entries",
            format!(
                "header declares {nnz} entries but the file has {}",
                triplets.len()
            ),
        ));
    }
    let m = cells_by_genes(triplets, n_barcodes, n_features);
    if let Some((cell, gene)) = first_duplicate(&m) {
        return Err(Error::invalid(
            path,
            "entries",
            format!(
                "entry ({}, {}) is listed more than once (coordinates must be unique)",
                gene + 1,
                cell + 1
            ),
        ));
    }
    Ok(m)
}

/// One entry line `ROW COL [VALUE]` (1-based genes x cells) as (cell, gene, value), checked
/// against the declared `(rows, cols)`.
fn parse_entry(
    path: &Path,
    line_no: usize,
    t: &str,
    pattern: bool,
    (rows, cols): (u64, u64),
) -> Result<(u32, u32, f32)> {
    let mut it = t.split_whitespace();
    let bad = || {
        Error::invalid(
            path,
            format!("line {line_no}"),
            format!("malformed entry '{t}'"),
        )
    };
    let i: u64 = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let j: u64 = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let v: f64 = if pattern {
        1.0
    } else {
        it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?
    };
    if i == 0 || j == 0 {
        return Err(Error::invalid(
            path,
            format!("line {line_no}"),
            format!("entry ({i}, {j}): coordinates start at 1"),
        ));
    }
    if i > rows || j > cols {
        return Err(Error::invalid(
            path,
            format!("line {line_no}"),
            format!("entry ({i}, {j}) outside the declared {rows} x {cols} matrix"),
        ));
    }
    Ok(((j - 1) as u32, (i - 1) as u32, v as f32))
}

/// The first (cell, gene) stored twice, in cell order.
fn first_duplicate(m: &CsrMatrix) -> Option<(usize, u32)> {
    let mut last_cell = vec![usize::MAX; m.n_cols];
    for cell in 0..m.n_rows {
        let r = m.indptr[cell] as usize..m.indptr[cell + 1] as usize;
        for &g in &m.indices[r] {
            if std::mem::replace(&mut last_cell[g as usize], cell) == cell {
                return Some((cell, g));
            }
        }
    }
    None
}

/// (cell, gene, value) triplets as cells x genes CSR: a counting sort by cell whose stable
/// order keeps each cell's genes in file order.
fn cells_by_genes(
    triplets: Vec<(u32, u32, f32)>,
    n_barcodes: usize,
    n_features: usize,
) -> CsrMatrix {
    let mut indptr = vec![0u64; n_barcodes + 1];
    for &(c, _, _) in &triplets {
        indptr[c as usize + 1] += 1;
    }
    for k in 0..n_barcodes {
        indptr[k + 1] += indptr[k];
    }
    let mut pos: Vec<u64> = indptr[..n_barcodes].to_vec();
    let mut indices = vec![0u32; triplets.len()];
    let mut data = vec![0f32; triplets.len()];
    for (c, g, v) in triplets {
        let p = pos[c as usize] as usize;
        indices[p] = g;
        data[p] = v;
        pos[c as usize] += 1;
    }
    CsrMatrix {
        n_rows: n_barcodes,
        n_cols: n_features,
        indptr,
        indices,
        data,
    }
}
