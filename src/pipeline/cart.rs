//! Stage 5, CAR-T: the gene-set scores (scanpy's `score_genes` on all genes after
//! filter_genes, as the reference pipeline scores them after HVG selection), the cell-cycle
//! phase (scanpy's `score_genes_cell_cycle`, same data), the marker values of the cell calls,
//! and the CAR status of every cell after QC.

use crate::cart::genesets::GeneSet;
use crate::cart::{CartCells, CellAccumulator};
use crate::error::Result;
use crate::matrix::CsrMatrix;

use super::RunOptions;
use super::data::ChunkCtx;
use super::filter::Filtered;
use super::hvg::Hvgs;

/// Scores `gene_sets` and calls every cell after QC, one pass over the log-normalised matrix;
/// `also` sees every chunk of the same pass (a matrix that stays in its file fills the HVG
/// block and streams X out here, [`super::pca::HvgBlock`]).
pub(crate) fn score_and_call(
    f: &mut Filtered,
    hvgs: &Hvgs,
    gene_sets: &[GeneSet],
    ctx: &ChunkCtx<'_>,
    opts: &RunOptions,
    mut also: impl FnMut(&CsrMatrix) -> Result<()>,
) -> Result<CartCells> {
    let (means, _) = hvgs.log_moments.mean_var(1);
    let mut acc = CellAccumulator::new(&f.var.index, &means, gene_sets, opts.cart.cell_cycle);
    f.matrix.for_each_chunk(ctx, |x| {
        acc.push(x);
        also(x)
    })?;
    let car = f.car.as_ref().map(|c| {
        let counts = f.keep_cells.iter().map(|&i| c.counts[i]).collect();
        (c.name.clone(), counts, opts.cart.car_min_counts)
    });
    Ok(acc.finish(car))
}
