//! `calculate_qc_metrics(qc_vars=["mt"], percent_top=None, log1p=False)`, `filter_cells`,
//! `filter_genes`: per-cell and per-gene counts accumulated chunk by chunk.

use crate::matrix::CsrMatrix;

/// Per-cell QC metrics (scanpy's obs columns).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CellQc {
    /// Genes with a non-zero count (`n_genes_by_counts`).
    pub n_genes_by_counts: Vec<i32>,
    /// Σ counts (`total_counts`), f32 as scanpy stores it for f32 X.
    pub total_counts: Vec<f32>,
    /// Σ counts over mitochondrial genes (`total_counts_mt`).
    pub total_counts_mt: Vec<f32>,
    /// `100 * total_counts_mt / total_counts` (`pct_counts_mt`), NaN for empty cells.
    pub pct_counts_mt: Vec<f32>,
}

/// Per-gene QC metrics (scanpy's var columns).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GeneQc {
    /// Cells with a non-zero count (`n_cells_by_counts`).
    pub n_cells_by_counts: Vec<i32>,
    /// Σ counts (`total_counts`).
    pub total_counts: Vec<f64>,
    /// Cells accumulated.
    pub n_cells: u64,
}

impl GeneQc {
    /// Zeroed metrics for `n_genes` genes.
    pub fn new(n_genes: usize) -> Self {
        GeneQc {
            n_cells_by_counts: vec![0; n_genes],
            total_counts: vec![0.0; n_genes],
            n_cells: 0,
        }
    }

    /// `mean_counts` = total / n, in f64 (scanpy's dtype, whatever X's).
    pub fn mean_counts(&self) -> Vec<f64> {
        self.total_counts
            .iter()
            .map(|t| t / self.n_cells as f64)
            .collect()
    }

    /// `pct_dropout_by_counts` = 100 (1 - n_cells_by_counts / n).
    pub fn pct_dropout(&self) -> Vec<f64> {
        self.n_cells_by_counts
            .iter()
            .map(|&c| 100.0 * (1.0 - f64::from(c) / self.n_cells as f64))
            .collect()
    }
}

/// Folds a chunk of raw counts into the cell and gene metrics. `mito[j]` marks `MT-` genes.
/// Explicit zeros are ignored, as scanpy eliminates them first.
pub(crate) fn accumulate(chunk: &CsrMatrix, mito: &[bool], cells: &mut CellQc, genes: &mut GeneQc) {
    for i in 0..chunk.n_rows {
        let (idx, val) = chunk.row(i);
        let (mut n, mut total, mut mt) = (0i32, 0f64, 0f64);
        for (&j, &v) in idx.iter().zip(val) {
            if v == 0.0 {
                continue;
            }
            n += 1;
            total += f64::from(v);
            if mito[j as usize] {
                mt += f64::from(v);
            }
            genes.n_cells_by_counts[j as usize] += 1;
            genes.total_counts[j as usize] += f64::from(v);
        }
        let (total, mt) = (total as f32, mt as f32);
        cells.n_genes_by_counts.push(n);
        cells.total_counts.push(total);
        cells.total_counts_mt.push(mt);
        cells.pct_counts_mt.push(if total > 0.0 {
            mt / total * 100.0
        } else {
            f32::NAN
        });
    }
    genes.n_cells += chunk.n_rows as u64;
}

/// Number of cells (rows of `chunk` in `keep_rows`) in which each gene is non-zero.
pub(crate) fn cells_per_gene(chunk: &CsrMatrix, keep_rows: &[bool], counts: &mut [i64]) {
    for (i, _) in keep_rows
        .iter()
        .enumerate()
        .take(chunk.n_rows)
        .filter(|(_, k)| **k)
    {
        let (idx, val) = chunk.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            if v != 0.0 {
                counts[j as usize] += 1;
            }
        }
    }
}
