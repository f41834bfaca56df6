//! Stage 2, filter: scanpy's `filter_cells(min_genes)`, `filter_genes(min_cells)` on the kept
//! cells, then the `pct_counts_mt` filter; obs and var of what is kept, with the QC columns
//! scanpy writes.

use std::path::PathBuf;

use crate::cart::detect::CarChoice;
use crate::error::{Error, Result};
use crate::io::{Column, CountSource, Frame};
use crate::matrix::CsrMatrix;

use super::RunOptions;
use super::data::{FilteredMatrix, subset};
use super::scan::Scanned;

/// The batches of the filtered cells: category names and each cell's category.
pub(crate) struct BatchRows {
    /// Batch names, by code.
    pub categories: Vec<String>,
    /// Each filtered cell's batch code.
    pub codes: Vec<u32>,
}

/// The data after QC filtering.
pub(crate) struct Filtered {
    /// The input's path.
    pub input: PathBuf,
    /// Cells and genes read.
    pub n_in: (usize, usize),
    /// Cells and genes after QC.
    pub n_after: (usize, usize),
    /// The filtered counts (log-normalised once the normalize stage ran).
    pub matrix: FilteredMatrix,
    /// obs of the kept cells with scanpy's QC columns.
    pub obs: Frame,
    /// var of the kept genes with scanpy's QC columns.
    pub var: Frame,
    /// Input row of each kept cell.
    pub keep_cells: Vec<usize>,
    /// Input gene -> kept gene.
    pub col_map: Vec<Option<u32>>,
    /// The filtered raw counts for `layers["counts"]` (`--keep-counts`).
    pub counts_layer: Option<CsrMatrix>,
    /// Each kept cell's batch (a joint run's sample), when HVGs use a batch key.
    pub batches: Option<BatchRows>,
    /// The sample label of every input cell (for the per-sample "cells in" counts).
    pub input_samples: Vec<String>,
    /// The CAR construct feature, when the data have one.
    pub car: Option<CarChoice>,
}

impl Filtered {
    /// Cells after QC.
    pub(crate) fn n_cells(&self) -> usize {
        self.n_after.0
    }

    /// Genes after filter_genes.
    pub(crate) fn n_genes(&self) -> usize {
        self.n_after.1
    }

    /// The CAR feature's column among the kept genes, if it was kept.
    pub(crate) fn car_column(&self) -> Option<usize> {
        let c = self.car.as_ref()?;
        self.col_map[c.index].map(|j| j as usize)
    }
}

/// The label of cells when obs has no `sample` column: the input's file name without its
/// extension.
pub(crate) fn default_sample(input: &std::path::Path) -> String {
    input.file_stem().map_or_else(
        || "sample".to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Each input cell's batch from obs column `key` (categorical, or text in order of
/// appearance).
pub(crate) fn batch_codes(src: &CountSource, key: &str) -> Result<(Vec<String>, Vec<u32>)> {
    let col = src
        .obs
        .column(key)
        .ok_or_else(|| Error::invalid(&src.path, format!("obs/{key}"), "no such column"))?;
    let not_text = || {
        Error::invalid(
            &src.path,
            format!("obs/{key}"),
            "a batch key must be text without missing values",
        )
    };
    let (codes, categories) = match col {
        Column::Categorical {
            codes, categories, ..
        } => (codes.clone(), categories.clone()),
        other => {
            let v = other.as_strings().ok_or_else(not_text)?;
            let v: Vec<String> = v.into_iter().collect::<Option<_>>().ok_or_else(not_text)?;
            match Column::categorical_from(&v) {
                Column::Categorical {
                    codes, categories, ..
                } => (codes, categories),
                _ => {
                    return Err(Error::Internal(
                        "categorical_from made no categorical".into(),
                    ));
                }
            }
        }
    };
    let codes = codes
        .iter()
        .map(|&c| u32::try_from(c))
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| {
            Error::invalid(
                &src.path,
                format!("obs/{key}"),
                "a batch key must not have missing values",
            )
        })?;
    Ok((categories, codes))
}

/// Applies the QC thresholds of `opts` to the scanned input. `batches` are every input
/// cell's batch (names, codes) when HVGs use a batch key.
pub(crate) fn apply(
    scanned: Scanned,
    batches: Option<(Vec<String>, Vec<u32>)>,
    opts: &RunOptions,
) -> Result<Filtered> {
    let Scanned {
        src,
        mito,
        cells,
        genes,
        n_cells_per_gene,
        counts,
        car,
    } = scanned;
    let (n_in, g_in) = (src.n_obs(), src.n_vars());
    let keep_genes: Vec<usize> = (0..g_in)
        .filter(|&j| n_cells_per_gene[j] >= i64::from(opts.min_cells))
        .collect();
    let keep_mask: Vec<bool> = (0..n_in)
        .map(|i| {
            cells.n_genes_by_counts[i] >= opts.min_genes as i32
                && cells.pct_counts_mt[i] < opts.max_pct_mt
        })
        .collect();
    let keep_cells: Vec<usize> = (0..n_in).filter(|&i| keep_mask[i]).collect();
    if keep_cells.len() < 3 || keep_genes.len() < 2 {
        return Err(Error::Invalid {
            path: src.path.clone(),
            field: src.x.element.clone(),
            message: format!(
                "too few cells or genes pass QC ({} cells, {} genes); thresholds: min_genes {}, min_cells {}, pct_counts_mt < {}",
                keep_cells.len(),
                keep_genes.len(),
                opts.min_genes,
                opts.min_cells,
                opts.max_pct_mt
            ),
        });
    }
    let mut col_map = vec![None; g_in];
    for (new, &j) in keep_genes.iter().enumerate() {
        col_map[j] = Some(new as u32);
    }
    let g = keep_genes.len();
    let batches = batches.map(|(categories, codes)| BatchRows {
        categories,
        codes: keep_cells.iter().map(|&i| codes[i]).collect(),
    });
    if counts.is_none() && opts.keep_counts {
        return Err(Error::Usage(
            "--keep-counts needs the data in memory; raise --max-memory or drop --keep-counts"
                .into(),
        ));
    }
    let mut obs = src.obs.take(&keep_cells);
    qc_obs_columns(&mut obs, &cells, &keep_cells);
    let mut var = src.var.take(&keep_genes);
    qc_var_columns(&mut var, &mito, &genes, &n_cells_per_gene, &keep_genes);
    let input = src.path.clone();
    let input_samples = crate::cart::summary::sample_labels(&src.obs, &default_sample(&src.path));
    let (matrix, counts_layer) = match counts {
        Some(c) => {
            let filtered = subset(&c, &keep_cells, &col_map, g);
            drop(c);
            let layer = opts.keep_counts.then(|| filtered.clone());
            (FilteredMatrix::Memory(filtered), layer)
        }
        None => (
            FilteredMatrix::reread(src, keep_mask, col_map.clone(), g),
            None,
        ),
    };
    Ok(Filtered {
        input,
        n_in: (n_in, g_in),
        n_after: (keep_cells.len(), g),
        matrix,
        obs,
        var,
        keep_cells,
        col_map,
        counts_layer,
        batches,
        input_samples,
        car,
    })
}

/// obs QC columns of the kept cells, as `calculate_qc_metrics` and `filter_cells` name them.
fn qc_obs_columns(obs: &mut Frame, cells: &crate::pp::qc::CellQc, keep: &[usize]) {
    let pick_i32 = |v: &[i32]| Column::I32(keep.iter().map(|&i| v[i]).collect());
    let pick_f32 = |v: &[f32]| Column::F32(keep.iter().map(|&i| v[i]).collect());
    obs.set("n_genes_by_counts", pick_i32(&cells.n_genes_by_counts));
    obs.set("total_counts", pick_f32(&cells.total_counts));
    obs.set("total_counts_mt", pick_f32(&cells.total_counts_mt));
    obs.set("pct_counts_mt", pick_f32(&cells.pct_counts_mt));
    obs.set(
        "n_genes",
        Column::I64(
            keep.iter()
                .map(|&i| i64::from(cells.n_genes_by_counts[i]))
                .collect(),
        ),
    );
}

/// var QC columns of the kept genes, as `calculate_qc_metrics` and `filter_genes` name them.
fn qc_var_columns(
    var: &mut Frame,
    mito: &[bool],
    genes: &crate::pp::qc::GeneQc,
    n_cells_per_gene: &[i64],
    keep: &[usize],
) {
    // scanpy's dtypes: int64 counts of cells, float64 means and dropout percentages.
    let on_genes_f64 = |v: Vec<f64>| Column::F64(keep.iter().map(|&j| v[j]).collect());
    var.set("mt", Column::Bool(keep.iter().map(|&j| mito[j]).collect()));
    var.set(
        "n_cells_by_counts",
        Column::I64(
            keep.iter()
                .map(|&j| i64::from(genes.n_cells_by_counts[j]))
                .collect(),
        ),
    );
    var.set("mean_counts", on_genes_f64(genes.mean_counts()));
    var.set("pct_dropout_by_counts", on_genes_f64(genes.pct_dropout()));
    var.set(
        "total_counts",
        Column::F32(keep.iter().map(|&j| genes.total_counts[j] as f32).collect()),
    );
    var.set(
        "n_cells",
        Column::I64(keep.iter().map(|&j| n_cells_per_gene[j]).collect()),
    );
}
