//! Stages 6 and 7, scale and PCA: scanpy's `scale(max_value)` statistics on the highly
//! variable genes, then PCA by a Gram matrix accumulated over scaled row chunks, its
//! eigendecomposition and the projection of every cell. The dense scaled matrix never exists
//! whole: each chunk is scaled inside the backend's fused kernels.

use std::path::Path;

use crate::backend::ScaleSpec;
use crate::error::Result;
use crate::io::{H5adWriter, WriteOptions};
use crate::matrix::CsrMatrix;
use crate::tl::pca::{Pca, default_n_comps, pca_by_gram};

use super::RunOptions;
use super::data::{ChunkCtx, FilteredMatrix};
use super::filter::Filtered;
use super::hvg::Hvgs;
use super::stage::Stopwatch;

/// scale's statistics on the highly variable genes (ddof 1, f64; a zero std becomes 1).
pub(crate) struct Scaling {
    /// The HVG columns, in gene order.
    pub cols: Vec<u32>,
    /// Their means.
    pub mean: Vec<f64>,
    /// Their standard deviations.
    pub std: Vec<f64>,
    /// The clip bound (None: `--max-value 0`).
    pub max_value: Option<f64>,
}

impl Scaling {
    /// The kernels' view of the scaling.
    pub(crate) fn spec(&self) -> ScaleSpec<'_> {
        ScaleSpec {
            cols: &self.cols,
            mean: &self.mean,
            std: &self.std,
            max_value: self.max_value,
        }
    }
}

/// The scaling of the highly variable genes.
pub(crate) fn scaling(hvgs: &Hvgs, opts: &RunOptions) -> Scaling {
    let (lmean, lvar) = hvgs.log_moments.mean_var(1);
    let cols = hvgs.columns();
    let mean = cols.iter().map(|&j| lmean[j as usize]).collect();
    let std = cols
        .iter()
        .map(|&j| lvar[j as usize].sqrt())
        .map(|s| if s == 0.0 { 1.0 } else { s })
        .collect();
    Scaling {
        cols,
        mean,
        std,
        max_value: (opts.max_value > 0.0).then_some(opts.max_value),
    }
}

/// When the matrix stays in its file: the highly variable genes of every cell after QC, kept
/// in memory (sparse, cells x HVGs, about 5 % stored) by the pass that scores the cells, which
/// also streams X into the output. PCA's Gram and projection then read this block and never
/// the file again: two passes over the input fewer.
pub(crate) struct HvgBlock {
    /// Filtered gene -> HVG position (None: not an HVG).
    position: Vec<Option<u32>>,
    /// Log-normalised values of the HVGs, columns in `Scaling::cols` order.
    block: CsrMatrix,
    /// The output with X streamed into it, waiting for the rest of the AnnData.
    writer: Option<H5adWriter>,
}

impl HvgBlock {
    /// A block to fill when `f` is re-read from its file (None when it is held in memory);
    /// with `x_out`, X streams into a new `.h5ad` there.
    pub(crate) fn for_reread(
        f: &Filtered,
        scaling: &Scaling,
        opts: &RunOptions,
        x_out: Option<&Path>,
    ) -> Result<Option<Self>> {
        if !f.matrix.is_reread() {
            return Ok(None);
        }
        let mut position = vec![None; f.n_genes()];
        for (a, &j) in scaling.cols.iter().enumerate() {
            position[j as usize] = Some(a as u32);
        }
        let writer = match x_out {
            Some(path) => Some(H5adWriter::create(
                path,
                f.n_genes(),
                WriteOptions { gzip: opts.gzip },
            )?),
            None => None,
        };
        Ok(Some(HvgBlock {
            position,
            block: CsrMatrix::empty(scaling.cols.len()),
            writer,
        }))
    }

    /// Takes one log-normalised chunk of the pass: its HVG values, and X into the output.
    pub(crate) fn push(&mut self, x: &CsrMatrix) -> Result<()> {
        self.block
            .append_rows(&x.select_columns(&self.position, self.block.n_cols));
        if let Some(w) = self.writer.as_mut() {
            w.append_x(x)?;
        }
        Ok(())
    }
}

/// The fitted PCA and every cell's coordinates.
pub(crate) struct Projected {
    /// Loadings, variances.
    pub fit: Pca,
    /// `obsm["X_pca"]`, row-major `cells x n_comps`.
    pub x_pca: Vec<f32>,
    /// When the matrix lives in the input file: the output with X streamed into it by the
    /// scoring pass ([`HvgBlock`]), waiting for the rest of the AnnData.
    pub x_writer: Option<H5adWriter>,
}

/// PCA of the scaled HVG block: Gram accumulation, eigendecomposition, projection. A matrix
/// held in memory is read chunk by chunk; one that stays in its file is read from the `kept`
/// HVG block that the scoring pass filled (with X already streamed into the output).
pub(crate) fn pca(
    f: &mut Filtered,
    scaling: &Scaling,
    ctx: &ChunkCtx<'_>,
    opts: &RunOptions,
    kept: Option<HvgBlock>,
    clock: &Stopwatch,
) -> Result<Projected> {
    let (n, k) = (f.n_cells(), scaling.cols.len());
    let backend = ctx.backend;
    let n_comps = default_n_comps(n, k, opts.n_pcs);
    // The block's columns are the HVGs themselves, in the scaling's order.
    let block_cols: Vec<u32> = (0..k as u32).collect();
    let (mut block, x_writer, spec) = match kept {
        Some(HvgBlock { block, writer, .. }) => {
            assert_eq!(block.n_rows, n, "the scoring pass saw every cell");
            let spec = ScaleSpec {
                cols: &block_cols,
                ..scaling.spec()
            };
            (Some(FilteredMatrix::Memory(block)), writer, spec)
        }
        None => (None, None, scaling.spec()),
    };
    let source = block.as_mut().unwrap_or(&mut f.matrix);
    let (fit, x_pca) = pca_by_gram(
        n,
        &spec,
        n_comps,
        opts.pca_solver,
        true,
        backend,
        &mut |visit| source.for_each_chunk(ctx, visit),
        &|what| clock.note(what),
    )?;
    Ok(Projected {
        fit,
        x_pca,
        x_writer,
    })
}
