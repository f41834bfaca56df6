//! Stages 6 and 7, scale and PCA: scanpy's `scale(max_value)` statistics on the highly
//! variable genes, then PCA by a Gram matrix accumulated over scaled row chunks, its
//! eigendecomposition and the projection of every cell. The dense scaled matrix never exists
//! whole: each chunk is scaled inside the backend's fused kernels.

use std::path::Path;

use crate::backend::ScaleSpec;
use crate::error::Result;
use crate::io::{H5adWriter, WriteOptions};
use crate::tl::pca::{Pca, default_n_comps, fit_from_gram_with};

use super::RunOptions;
use super::data::ChunkCtx;
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

/// The fitted PCA and every cell's coordinates.
pub(crate) struct Projected {
    /// Loadings, variances.
    pub fit: Pca,
    /// `obsm["X_pca"]`, row-major `cells x n_comps`.
    pub x_pca: Vec<f32>,
    /// When the matrix lives in the input file: the output with X streamed into it by the
    /// projection pass, waiting for the rest of the AnnData.
    pub x_writer: Option<H5adWriter>,
}

/// PCA of the scaled HVG block: Gram accumulation, eigendecomposition, projection. When the
/// matrix is re-read from the file and `x_out` is given, the projection pass also streams X
/// into a new `.h5ad` there.
pub(crate) fn pca(
    f: &mut Filtered,
    scaling: &Scaling,
    ctx: &ChunkCtx<'_>,
    opts: &RunOptions,
    x_out: Option<&Path>,
    clock: &Stopwatch,
) -> Result<Projected> {
    let (n, g, k) = (f.n_cells(), f.n_genes(), scaling.cols.len());
    let spec = scaling.spec();
    let backend = ctx.backend;
    let n_comps = default_n_comps(n, k, opts.n_pcs);
    let mut gram = vec![0.0f64; k * k];
    let mut colsum = vec![0.0f64; k];
    f.matrix.for_each_chunk(ctx, |x| {
        backend.scaled_gram(x, &spec, &mut gram, &mut colsum);
        Ok(())
    })?;
    clock.note("pca gram");
    let fit = fit_from_gram_with(&gram, &colsum, n, n_comps, opts.pca_solver)?;
    clock.note("pca eigh");
    let mut x_writer = match x_out.filter(|_| f.matrix.is_reread()) {
        Some(path) => Some(H5adWriter::create(
            path,
            g,
            WriteOptions { gzip: opts.gzip },
        )?),
        None => None,
    };
    let mut x_pca = Vec::with_capacity(n * n_comps);
    f.matrix.for_each_chunk(ctx, |x| {
        x_pca.extend(
            backend
                .scaled_project(x, &spec, &fit.mean, &fit.components, n_comps)
                .into_iter()
                .map(|v| v as f32),
        );
        if let Some(w) = x_writer.as_mut() {
            w.append_x(x)?;
        }
        Ok(())
    })?;
    Ok(Projected {
        fit,
        x_pca,
        x_writer,
    })
}
