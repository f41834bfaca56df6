//! 10x Genomics HDF5 feature-barcode matrices (Cell Ranger `*_feature_bc_matrix.h5`).
//!
//! - **v3** (Cell Ranger >= 3): `/matrix/{data,indices,indptr,shape,barcodes}` and
//!   `/matrix/features/{id,name,feature_type,genome,...}`. Several genomes share one matrix;
//!   feature types (Gene Expression, Antibody Capture, CRISPR Guide Capture, ...) are kept in
//!   `var["feature_types"]`.
//! - **v2** (Cell Ranger 2): one group per genome, `/<genome>/{data,indices,indptr,shape,
//!   barcodes,genes,gene_names}`. With several genomes over the same barcodes, their genes are
//!   placed side by side (as Cell Ranger 3 does in one matrix) with `var["genome"]` telling them
//!   apart; `--genome` reads one.
//!
//! The matrix is stored CSC with one column per cell, which is exactly CSR of cells x genes:
//! row chunks read without any transposition. As scanpy's `read_10x_h5` (`gex_only=True`), only
//! "Gene Expression" features are kept unless `all_features` is set.

use std::ops::Range;
use std::path::Path;

use hdf5::{File, Group};

use super::frame::{Column, Frame};
use super::h5ad::{CsrReader, SparseParts};
use super::hdf5_util as h;
use super::{CountSource, Format, ReadOptions, RowReader, Storage, XInfo};
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

/// The feature type scanpy keeps with `gex_only=True`.
pub(crate) const GENE_EXPRESSION: &str = "Gene Expression";

/// Whether an HDF5 file has the layout of a 10x matrix.
pub(crate) fn looks_like(file: &File) -> bool {
    if h::is_group(file, "matrix") && file.group("matrix").is_ok_and(|g| g.link_exists("indptr")) {
        return true;
    }
    let members = file.member_names().unwrap_or_default();
    !members.is_empty()
        && members.iter().all(|m| {
            h::is_group(file, m)
                && file
                    .group(m)
                    .is_ok_and(|g| g.link_exists("indptr") && g.link_exists("genes"))
        })
}

fn shape_of(path: &Path, g: &Group, field: &str) -> Result<(usize, usize)> {
    let f = format!("{field}/shape");
    let ds = h::dataset(path, g, "shape", &f)?;
    let v = h::read_u64(path, &f, &ds, 0..h::len_1d(path, &f, &ds)?)?;
    match v[..] {
        [features, barcodes] => Ok((features as usize, barcodes as usize)),
        _ => Err(Error::invalid(
            path,
            f,
            format!("expected [features, barcodes], found {v:?}"),
        )),
    }
}

fn strings(path: &Path, g: &Group, name: &str, field: &str, expect: usize) -> Result<Vec<String>> {
    let f = format!("{field}/{name}");
    let v = h::read_strings(path, &f, &h::dataset(path, g, name, &f)?)?;
    if v.len() != expect {
        return Err(Error::invalid(
            path,
            f,
            format!("has {} entries but shape implies {expect}", v.len()),
        ));
    }
    Ok(v)
}

/// Opens a 10x HDF5 file.
pub fn open(path: &Path, opts: &ReadOptions) -> Result<CountSource> {
    let file = h::open_file(path)?;
    if h::is_group(&file, "matrix") {
        open_v3(path, &file, opts)
    } else {
        open_v2(path, &file, opts)
    }
}

fn open_v3(path: &Path, file: &File, opts: &ReadOptions) -> Result<CountSource> {
    let field = "/matrix";
    let g = h::group(path, file, "matrix", field)?;
    let (n_features, n_barcodes) = shape_of(path, &g, field)?;
    let parts = SparseParts::open(path, &g, field, n_barcodes, n_features)?;
    let barcodes = strings(path, &g, "barcodes", field, n_barcodes)?;
    super::names::check_cell_names(path, "/matrix/barcodes", &barcodes)?;
    let ff = "/matrix/features";
    let fg = h::group(path, &g, "features", ff)?;
    let names = strings(path, &fg, "name", ff, n_features)?;
    let mut var = Frame::new(names);
    var.set(
        "gene_ids",
        Column::Str(strings(path, &fg, "id", ff, n_features)?),
    );
    let types = strings(path, &fg, "feature_type", ff, n_features)?;
    var.set("feature_types", Column::Str(types.clone()));
    let genomes_col = if fg.link_exists("genome") {
        Some(strings(path, &fg, "genome", ff, n_features)?)
    } else {
        None
    };
    if let Some(gc) = &genomes_col {
        var.set("genome", Column::Str(gc.clone()));
    }
    // Any further per-feature datasets (probe sets, pattern, read, sequence, ...).
    for extra in fg.member_names().unwrap_or_default() {
        if ["name", "id", "feature_type", "genome", "_all_tag_keys"].contains(&extra.as_str())
            || !h::is_dataset(&fg, &extra)
        {
            continue;
        }
        if let Ok(v) = strings(path, &fg, &extra, ff, n_features) {
            var.set(extra, Column::Str(v));
        }
    }
    let mut genomes: Vec<String> = Vec::new();
    for gname in genomes_col.iter().flatten() {
        if !genomes.contains(gname) {
            genomes.push(gname.clone());
        }
    }
    let keep: Vec<bool> = (0..n_features)
        .map(|j| {
            let type_ok = opts.all_features || types[j] == GENE_EXPRESSION;
            let genome_ok = match (&opts.genome, &genomes_col) {
                (Some(want), Some(gc)) => &gc[j] == want,
                _ => true,
            };
            type_ok && genome_ok
        })
        .collect();
    if let Some(want) = &opts.genome
        && !genomes.contains(want)
    {
        return Err(Error::Usage(format!(
            "{}: genome '{want}' not present (genomes: {})",
            path.display(),
            genomes.join(", ")
        )));
    }
    let dtype = parts.dtype.clone();
    let x = XInfo {
        element: field.into(),
        storage: Storage::TenxCsc,
        dtype,
        n_rows: n_barcodes,
        n_cols: n_features,
    };
    let reader: Box<dyn RowReader> = Box::new(CsrReader { parts });
    finish(
        path,
        x,
        Frame::new(barcodes),
        var,
        keep,
        genomes,
        reader,
        "features/name",
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    path: &Path,
    x: XInfo,
    obs: Frame,
    var: Frame,
    mut keep: Vec<bool>,
    genomes: Vec<String>,
    reader: Box<dyn RowReader>,
    gene_name_source: &str,
) -> Result<CountSource> {
    if !keep.iter().any(|&k| k) && !var.is_empty() {
        tracing::warn!(
            "{}: no 'Gene Expression' features; keeping all features",
            path.display()
        );
        keep = vec![true; var.len()];
    }
    let column_map = if keep.iter().all(|&k| k) {
        None
    } else {
        let mut next = 0u32;
        Some(
            keep.iter()
                .map(|&k| {
                    k.then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect::<Vec<_>>(),
        )
    };
    let idx: Vec<usize> = (0..var.len()).filter(|&j| keep[j]).collect();
    let var = if column_map.is_some() {
        var.take(&idx)
    } else {
        var
    };
    Ok(CountSource {
        path: path.to_path_buf(),
        format: Format::TenxH5,
        x,
        obs,
        var,
        gene_name_source: gene_name_source.into(),
        names_made_unique: false,
        genomes,
        layers: Vec::new(),
        has_raw: false,
        reader,
        column_map,
    })
}

/// Cell Ranger 2 with several genomes: the genomes' genes side by side over the same cells.
struct HStackReader {
    parts: Vec<CsrReader>,
}

impl RowReader for HStackReader {
    fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix> {
        let mut it = self.parts.iter_mut();
        let first = it.next().expect("at least one genome");
        let mut m = first.read_rows(rows.clone())?;
        for p in it {
            m = m.hstack(&p.read_rows(rows.clone())?);
        }
        Ok(m)
    }
}

fn open_v2(path: &Path, file: &File, opts: &ReadOptions) -> Result<CountSource> {
    let all: Vec<String> = file.member_names().map_err(|e| Error::hdf5(path, "/", e))?;
    let chosen: Vec<String> = match &opts.genome {
        Some(g) if all.contains(g) => vec![g.clone()],
        Some(g) => {
            return Err(Error::Usage(format!(
                "{}: genome '{g}' not present (genomes: {})",
                path.display(),
                all.join(", ")
            )));
        }
        None => all.clone(),
    };
    let mut readers = Vec::new();
    let mut barcodes: Option<Vec<String>> = None;
    let mut var: Option<Frame> = None;
    let mut dtype = String::new();
    let mut n_cols = 0;
    for gname in &chosen {
        let field = format!("/{gname}");
        let g = h::group(path, file, gname, &field)?;
        let (n_genes, n_barcodes) = shape_of(path, &g, &field)?;
        let parts = SparseParts::open(path, &g, &field, n_barcodes, n_genes)?;
        dtype = parts.dtype.clone();
        let bc = strings(path, &g, "barcodes", &field, n_barcodes)?;
        super::names::check_cell_names(path, &format!("{field}/barcodes"), &bc)?;
        match &barcodes {
            None => barcodes = Some(bc),
            Some(prev) if *prev != bc => {
                return Err(Error::Usage(format!(
                    "{}: genomes {} have different barcodes; choose one with --genome",
                    path.display(),
                    chosen.join(", ")
                )));
            }
            Some(_) => {}
        }
        let ids = strings(path, &g, "genes", &field, n_genes)?;
        let names = if g.link_exists("gene_names") {
            strings(path, &g, "gene_names", &field, n_genes)?
        } else {
            ids.clone()
        };
        let mut f = Frame::new(names);
        f.set("gene_ids", Column::Str(ids));
        f.set("genome", Column::Str(vec![gname.clone(); n_genes]));
        var = Some(match var {
            None => f,
            Some(mut acc) => {
                acc.index.extend(f.index);
                for ((_, a), (_, b)) in acc.columns.iter_mut().zip(f.columns) {
                    if let (Column::Str(a), Column::Str(b)) = (a, b) {
                        a.extend(b);
                    }
                }
                acc
            }
        });
        n_cols += n_genes;
        readers.push(CsrReader { parts });
    }
    let barcodes = barcodes.unwrap_or_default();
    let var = var.unwrap_or_default();
    let x = XInfo {
        element: if chosen.len() == 1 {
            format!("/{}", chosen[0])
        } else {
            "/".into()
        },
        storage: Storage::TenxCsc,
        dtype,
        n_rows: barcodes.len(),
        n_cols,
    };
    let keep = vec![true; var.len()];
    let reader: Box<dyn RowReader> = Box::new(HStackReader { parts: readers });
    finish(
        path,
        x,
        Frame::new(barcodes),
        var,
        keep,
        all,
        reader,
        "gene_names",
    )
}
