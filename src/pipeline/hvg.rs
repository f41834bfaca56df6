//! Stage 4, highly variable genes: scanpy's `highly_variable_genes` for each flavor (seurat and
//! cell_ranger on the log data, seurat_v3 on the raw counts), with or without a batch key. Each
//! flavor builds the var columns scanpy writes for it. The same pass takes the moments of the
//! log data that `scale` and the gene-set scores use.

use crate::backend::{Moments, Transform};
use crate::cart;
use crate::error::{Error, Result};
use crate::io::Column;
use crate::pp::hvg::{BatchStats, HvgFlavor, highly_variable_genes, highly_variable_genes_batched};
use crate::pp::seurat_v3;

use super::RunOptions;
use super::data::ChunkCtx;
use super::filter::{BatchRows, Filtered};

/// One flavor's choice of genes and the var columns it writes.
pub(crate) struct Selection {
    /// `var["highly_variable"]`.
    pub highly_variable: Vec<bool>,
    /// The flavor's other var columns, in scanpy's order.
    pub var_columns: Vec<(String, Column)>,
    /// Higher is more variable; picks the gene that replaces the CAR when it is kept out.
    pub ranking: Vec<f64>,
}

/// The highly variable genes and the per-gene moments of the log-normalised data.
pub(crate) struct Hvgs {
    /// The selection.
    pub selection: Selection,
    /// Σx, Σx² of the log-normalised data per gene (scale, gene-set scores).
    pub log_moments: Moments,
}

impl Hvgs {
    /// The selected genes' columns, in gene order.
    pub(crate) fn columns(&self) -> Vec<u32> {
        let hv = &self.selection.highly_variable;
        (0..hv.len() as u32).filter(|&j| hv[j as usize]).collect()
    }
}

/// seurat_v3 works on the raw counts: with that flavor, its selection is made before the
/// normalize stage; None for the other flavors.
pub(crate) fn on_raw_counts(
    f: &mut Filtered,
    ctx: &ChunkCtx<'_>,
    opts: &RunOptions,
) -> Result<Option<Selection>> {
    if opts.hvg_flavor != HvgFlavor::SeuratV3 {
        return Ok(None);
    }
    let (n, g) = (f.n_cells(), f.n_genes());
    let selection = match f.batches.take() {
        None => seurat_v3_plain(f, ctx, opts.n_top_genes, (n, g))?,
        Some(b) => {
            let s = seurat_v3_batched(f, &b, ctx, opts.n_top_genes, g);
            f.batches = Some(b);
            s?
        }
    };
    Ok(Some(selection))
}

/// Selects the highly variable genes of the log-normalised matrix (or takes seurat_v3's
/// selection `on_counts`), and keeps the CAR out of them unless `car_in_hvg`.
pub(crate) fn select(
    f: &mut Filtered,
    on_counts: Option<Selection>,
    ctx: &ChunkCtx<'_>,
    opts: &RunOptions,
) -> Result<Hvgs> {
    let g = f.n_genes();
    let transform = if opts.hvg_flavor == HvgFlavor::Seurat {
        Transform::Expm1
    } else {
        Transform::Identity
    };
    // Moments of X serve scaling (and HVG when no transform is needed); expm1 moments only
    // for seurat. One pass takes both.
    let mut lmom = Moments::new(g);
    let mut hmom = (transform != Transform::Identity).then(|| Moments::new(g));
    let backend = ctx.backend;
    f.matrix.for_each_chunk(ctx, |x| {
        match hmom.as_mut() {
            Some(h) => {
                let (raw, transformed) = backend.gene_moments_pair(x, transform);
                lmom.merge(&raw);
                h.merge(&transformed);
            }
            None => lmom.merge(&backend.gene_moments(x, Transform::Identity)),
        }
        Ok(())
    })?;
    let mut selection = match (on_counts, f.batches.take()) {
        (Some(s), batches) => {
            f.batches = batches;
            s
        }
        (None, Some(b)) => {
            let s = batched(f, &b, ctx, transform, opts);
            f.batches = Some(b);
            s?
        }
        (None, None) => {
            let (mean, var) = hmom.as_ref().unwrap_or(&lmom).mean_var(1);
            plain(&mean, &var, opts)?
        }
    };
    if let Some(j) = f.car_column().filter(|_| !opts.cart.car_in_hvg) {
        cart::exclude_from_hvg(&mut selection.highly_variable, &selection.ranking, j);
    }
    if !selection.highly_variable.contains(&true) {
        return Err(Error::Usage(match opts.hvg_cutoffs {
            Some(c) => format!(
                "highly_variable_genes: no gene lies within the cut-offs (hvg_cutoffs: {} < means < {}, {} < dispersions_norm < {}); widen them or set n_top_genes instead",
                c.min_mean, c.max_mean, c.min_disp, c.max_disp
            ),
            None => "highly_variable_genes selected no gene".to_string(),
        }));
    }
    Ok(Hvgs {
        selection,
        log_moments: lmom,
    })
}

/// seurat or cell_ranger without a batch key, from the genes' means and variances.
fn plain(mean: &[f64], var: &[f64], opts: &RunOptions) -> Result<Selection> {
    let h = highly_variable_genes(mean, var, opts.hvg_flavor, opts.hvg_pick(), opts.hvg_n_bins)?;
    let ranking = h.dispersions_norm.iter().map(|&x| f64::from(x)).collect();
    Ok(Selection {
        highly_variable: h.highly_variable,
        var_columns: vec![
            ("means".to_string(), Column::F64(h.means)),
            ("dispersions".to_string(), Column::F64(h.dispersions)),
            (
                "dispersions_norm".to_string(),
                Column::F32(h.dispersions_norm),
            ),
        ],
        ranking,
    })
}

/// seurat or cell_ranger with a batch key: per batch moments, scanpy's per-batch selection
/// and its merge by the number of batches that select a gene.
fn batched(
    f: &mut Filtered,
    b: &BatchRows,
    ctx: &ChunkCtx<'_>,
    transform: Transform,
    opts: &RunOptions,
) -> Result<Selection> {
    let stats = batch_stats(f, b, ctx, transform)?;
    let h = highly_variable_genes_batched(
        &stats,
        &f.var.index,
        opts.hvg_flavor,
        opts.hvg_pick(),
        opts.hvg_n_bins,
    )?;
    let ranking = h.order.iter().map(|&p| -(p as f64)).collect();
    Ok(Selection {
        highly_variable: h.hvg.highly_variable,
        var_columns: vec![
            ("means".to_string(), Column::F64(h.hvg.means)),
            ("dispersions".to_string(), Column::F64(h.hvg.dispersions)),
            (
                "dispersions_norm".to_string(),
                Column::F32(h.hvg.dispersions_norm),
            ),
            (
                "highly_variable_nbatches".to_string(),
                Column::I64(h.nbatches),
            ),
            (
                "highly_variable_intersection".to_string(),
                Column::Bool(h.intersection),
            ),
        ],
        ranking,
    })
}

/// The gene moments of each batch (by code) under `transform`, one pass over the chunks;
/// `also` sees each batch's run of rows too.
fn per_batch_moments(
    f: &mut Filtered,
    b: &BatchRows,
    ctx: &ChunkCtx<'_>,
    transform: Transform,
    mut also: impl FnMut(usize, &crate::matrix::CsrMatrix),
) -> Result<Vec<Moments>> {
    let g = f.n_genes();
    let mut moments: Vec<Moments> = (0..b.categories.len()).map(|_| Moments::new(g)).collect();
    let backend = ctx.backend;
    f.matrix.for_each_batch_run(ctx, &b.codes, |k, part| {
        moments[k].merge(&backend.gene_moments(part, transform));
        also(k, part);
        Ok(())
    })?;
    Ok(moments)
}

/// Per-batch moments of the log-normalised matrix under `transform`, and which genes each
/// batch expresses (a positive value in one of its cells, scanpy's `filter_genes(min_cells=1)`);
/// batches left without cells are skipped, as scanpy drops unused categories when it subsets.
fn batch_stats(
    f: &mut Filtered,
    b: &BatchRows,
    ctx: &ChunkCtx<'_>,
    transform: Transform,
) -> Result<Vec<BatchStats>> {
    let g = f.n_genes();
    let mut expressed = vec![vec![false; g]; b.categories.len()];
    let moments = per_batch_moments(f, b, ctx, transform, |k, part| {
        for (&j, &v) in part.indices.iter().zip(&part.data) {
            if v > 0.0 {
                expressed[k][j as usize] = true;
            }
        }
    })?;
    Ok(moments
        .into_iter()
        .zip(expressed)
        .filter(|(m, _)| m.n > 0)
        .map(|(m, expressed)| {
            let (mean, var) = m.mean_var(1);
            BatchStats {
                mean,
                var,
                expressed,
            }
        })
        .collect())
}

/// seurat_v3's var columns: `means`, `variances`, `variances_norm`, `highly_variable_rank`
/// and, with a batch key, `highly_variable_nbatches`.
fn seurat_v3_selection(
    fit_means: Vec<f64>,
    fit_variances: Vec<f64>,
    (norm, rank, highly_variable): (Vec<f64>, Vec<f32>, Vec<bool>),
    nbatches: Option<Vec<i64>>,
) -> Selection {
    let mut var_columns = vec![
        ("means".to_string(), Column::F64(fit_means)),
        ("variances".to_string(), Column::F64(fit_variances)),
        ("variances_norm".to_string(), Column::F64(norm.clone())),
        ("highly_variable_rank".to_string(), Column::F32(rank)),
    ];
    if let Some(nb) = nbatches {
        var_columns.push(("highly_variable_nbatches".to_string(), Column::I64(nb)));
    }
    Selection {
        highly_variable,
        var_columns,
        ranking: norm,
    }
}

/// seurat_v3 without a batch key: moments, the LOESS fit, clipped sums, the selection.
fn seurat_v3_plain(
    f: &mut Filtered,
    ctx: &ChunkCtx<'_>,
    n_top_genes: usize,
    (n, g): (usize, usize),
) -> Result<Selection> {
    let backend = ctx.backend;
    let mut m = Moments::new(g);
    f.matrix.for_each_chunk(ctx, |x| {
        m.merge(&backend.gene_moments(x, Transform::Identity));
        Ok(())
    })?;
    let (mu, var) = m.mean_var(1);
    let fit = seurat_v3::fit(&mu, &var, 0.3);
    let clip = seurat_v3::clip_values(&fit, n);
    let (mut s1, mut s2) = (vec![0.0f64; g], vec![0.0f64; g]);
    f.matrix.for_each_chunk(ctx, |x| {
        let (a, b) = backend.clipped_sums(x, &clip);
        s1.iter_mut().zip(a).for_each(|(t, v)| *t += v);
        s2.iter_mut().zip(b).for_each(|(t, v)| *t += v);
        Ok(())
    })?;
    let chosen = seurat_v3::select(&fit, n, &s1, &s2, n_top_genes);
    Ok(seurat_v3_selection(fit.means, fit.variances, chosen, None))
}

/// seurat_v3 with a batch key: per batch moments, a LOESS fit on them, clip values at the
/// batch's size and clipped sums; scanpy's merge over the batches.
fn seurat_v3_batched(
    f: &mut Filtered,
    b: &BatchRows,
    ctx: &ChunkCtx<'_>,
    n_top_genes: usize,
    g: usize,
) -> Result<Selection> {
    let nb = b.categories.len();
    let moments = per_batch_moments(f, b, ctx, Transform::Identity, |_, _| {})?;
    let mut all = Moments::new(g);
    moments.iter().for_each(|m| all.merge(m));
    let (means, variances) = all.mean_var(1);
    let mut fits: Vec<Option<(seurat_v3::SeuratV3, Vec<f64>)>> = moments
        .iter()
        .map(|m| {
            (m.n > 0).then(|| {
                let (mu, var) = m.mean_var(1);
                let fit = seurat_v3::fit(&mu, &var, 0.3);
                let clip = seurat_v3::clip_values(&fit, m.n as usize);
                (fit, clip)
            })
        })
        .collect();
    let mut sums = vec![(vec![0.0f64; g], vec![0.0f64; g]); nb];
    let backend = ctx.backend;
    f.matrix.for_each_batch_run(ctx, &b.codes, |k, part| {
        if let Some((_, clip)) = &fits[k] {
            let (a, q) = backend.clipped_sums(part, clip);
            sums[k].0.iter_mut().zip(a).for_each(|(t, v)| *t += v);
            sums[k].1.iter_mut().zip(q).for_each(|(t, v)| *t += v);
        }
        Ok(())
    })?;
    // Batches in np.unique's order (sorted labels), those without cells left out.
    let mut order: Vec<usize> = (0..nb).filter(|&k| fits[k].is_some()).collect();
    order.sort_by(|&x, &y| b.categories[x].cmp(&b.categories[y]));
    let per_batch: Vec<seurat_v3::Batch> = order
        .iter()
        .filter_map(|&k| {
            let (fit, _) = fits[k].take()?;
            let (clipped_sum, clipped_sq) = std::mem::take(&mut sums[k]);
            Some(seurat_v3::Batch {
                fit,
                n: moments[k].n as usize,
                clipped_sum,
                clipped_sq,
            })
        })
        .collect();
    let (norm, rank, nbatches, highly_variable) =
        seurat_v3::select_batched(&per_batch, n_top_genes);
    Ok(seurat_v3_selection(
        means,
        variances,
        (norm, rank, highly_variable),
        Some(nbatches),
    ))
}
