//! scanpy's functions on data already in memory: the entry points of the Python bindings
//! (`python/`). Each one runs the code a `cartscope run` runs for the same step (the stage
//! functions of [`crate::pipeline`], the kernels of a [`Backend`]), on a matrix handed over
//! whole instead of read from a file, so a notebook gets the CLI's numbers.
//!
//! Matrices are cells x genes CSR in f32, the dtype the kernels compute in; dense arrays are
//! row-major. Nothing here touches Python.

use std::path::PathBuf;

pub use crate::backend::cpu::Real;
use crate::backend::cpu::{normalize_rows, row_totals};
use crate::backend::{Backend, Moments, ScaleSpec, Transform};
use crate::cart::genesets::GeneSet;
use crate::cart::score::{ControlDraw, ScorePlan, Scorer};
use crate::error::{Error, Result};
use crate::io::{AnnData, Column, CountSource, Frame, UnsValue};
use crate::matrix::CsrMatrix;
use crate::pipeline::data::{ChunkCtx, FilteredMatrix};
use crate::pipeline::filter::{BatchRows, Filtered};
use crate::pipeline::markers::Grouping;
use crate::pipeline::{Job, KnnMethod, RunOptions, RunSummary, hvg, neighbors};
use crate::pp::hvg::{HvgFlavor, HvgPick};
use crate::tl::leiden::{Clustering, LeidenFlavor, LeidenParams};
use crate::tl::markers::{Correction, MarkerMethod};
use crate::tl::pca::{Pca, PcaSolver, fit_gram, pca_by_gram};
use crate::tl::umap::{Umap, UmapParams, umap_on};

/// Rows per chunk of the chunked kernels (the run's default).
const CHUNK_ROWS: usize = 4096;

/// A whole run on an AnnData in memory: what `result.h5ad` would hold, the summary, and the
/// report's HTML when asked for.
pub struct InMemoryRun {
    /// The AnnData after the recipe (only the cells and genes that pass QC).
    pub adata: AnnData,
    /// The run summary (`summary.json`).
    pub summary: RunSummary,
    /// `report.html`, when asked for.
    pub report_html: Option<String>,
}

/// The run of `cartscope run` on `src` (a [`CountSource::from_memory`]), without writing
/// files: the data stay in memory whatever `--max-memory` says, as they already are.
pub fn run(
    src: CountSource,
    opts: &RunOptions,
    backend: &dyn Backend,
    report: bool,
) -> Result<InMemoryRun> {
    let mut opts = opts.clone();
    // The matrix is already in memory: never plan to re-read it.
    opts.max_memory_mib = u64::MAX >> 21;
    let job = Job {
        opts: &opts,
        backend,
        progress: false,
        batch_key: None,
        x_out: None,
        vdj: None,
        clone_group: None,
    };
    let analysis = crate::pipeline::analyse(src, &job)?;
    let report_html = report.then(|| {
        crate::report::render(
            &analysis.adata,
            &analysis.summary,
            analysis.markers.as_ref(),
            &opts,
        )
    });
    Ok(InMemoryRun {
        adata: analysis.adata,
        summary: analysis.summary,
        report_html,
    })
}

/// scanpy's `normalize_total` arguments besides the values.
#[derive(Debug, Clone, Copy, Default)]
pub struct NormalizeTotal {
    /// `target_sum` (None: a median of the totals).
    pub target_sum: Option<f64>,
    /// The values come from a sparse matrix: scanpy's CSR kernel then takes the median over
    /// all totals and compares with `max_fraction` in f64; for dense arrays it takes the
    /// median of the non-zero totals and compares in the values' type.
    pub sparse: bool,
    /// `max_fraction` when `exclude_highly_expressed`.
    pub exclude_highly_expressed: Option<f64>,
}

/// scanpy's `normalize_total` on row-major values in place (`indptr` of the rows; `indices`
/// the columns of a sparse matrix, None for a dense array's rows of `n_cols`): each row
/// divided by `f(total / target)` with the total summed in f64 and rounded to the values'
/// type, as scipy and numpy do. With `exclude_highly_expressed`, the totals leave out every
/// gene that holds more than `max_fraction` of some cell's total. Returns the target used and
/// the totals.
pub fn normalize_total<T: Real>(
    indptr: &[u64],
    indices: Option<&[u32]>,
    n_cols: usize,
    data: &mut [T],
    o: NormalizeTotal,
) -> (f64, Vec<T>) {
    let mut totals = row_totals(indptr, data);
    if let Some(max_fraction) = o.exclude_highly_expressed {
        let column =
            |i: usize, k: usize| indices.map_or(k - indptr[i] as usize, |ix| ix[k] as usize);
        let mut high = vec![false; n_cols];
        for (i, w) in indptr.windows(2).enumerate() {
            let limit = if o.sparse {
                max_fraction * totals[i].to_f64()
            } else {
                // numpy: a float32 array times a Python float stays float32.
                T::from_f64(T::from_f64(max_fraction).to_f64() * totals[i].to_f64()).to_f64()
            };
            for k in w[0] as usize..w[1] as usize {
                if data[k].to_f64() > limit {
                    high[column(i, k)] = true;
                }
            }
        }
        totals = indptr
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let kept = (w[0] as usize..w[1] as usize).filter(|&k| !high[column(i, k)]);
                T::from_f64(kept.map(|k| data[k].to_f64()).sum::<f64>())
            })
            .collect();
    }
    let target = match o.target_sum {
        Some(t) => T::from_f64(t),
        None => median(&totals, !o.sparse),
    };
    normalize_rows(indptr, data, &totals, target, false);
    (target.to_f64(), totals)
}

/// numpy's median (mean of the two middle values, in the values' type) of the totals, or of
/// the non-zero ones (`nonzero`); 0 when none is left.
fn median<T: Real>(totals: &[T], nonzero: bool) -> T {
    let mut v: Vec<f64> = totals
        .iter()
        .map(|t| t.to_f64())
        .filter(|&t| !nonzero || t > 0.0)
        .collect();
    if v.is_empty() {
        return T::from_f64(0.0);
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        T::from_f64(v[m])
    } else {
        // numpy's mean of two f32 values is taken in f32.
        T::from_f64(v[m - 1])
            .add(T::from_f64(v[m]))
            .div(T::from_f64(2.0))
    }
}

/// scanpy's `scale(zero_center=False)` on a sparse matrix's stored values in place: each
/// value divided by its gene's `std` in f64 (a zero std counts as 1) and capped at
/// `max_value`, then rounded to the values' type, as scanpy's `scale_and_clip_csr`.
/// `indices` are the values' columns.
pub fn scale_sparse<T: Real>(indices: &[u32], data: &mut [T], std: &[f64], max_value: Option<f64>) {
    use rayon::prelude::*;
    data.par_iter_mut().zip(indices).for_each(|(v, &j)| {
        let s = std[j as usize];
        let x = v.to_f64() / if s == 0.0 { 1.0 } else { s };
        *v = T::from_f64(max_value.map_or(x, |m| if x < m { x } else { m }));
    });
}

/// `log1p` of every value, in place, in the values' type (numpy's `np.log1p`).
pub fn log1p<T: Real>(data: &mut [T]) {
    use rayon::prelude::*;
    data.par_chunks_mut(1 << 14).for_each(T::ln_1p_all);
}

/// scanpy's `calculate_qc_metrics` on counts: per-cell and per-gene sums in f64.
pub struct QcMetrics {
    /// Genes with a positive count, per cell.
    pub n_genes_by_counts: Vec<i64>,
    /// Total counts per cell.
    pub total_counts: Vec<f64>,
    /// `pct_counts_in_top_{n}_genes` per cell, one vector per `percent_top` entry.
    pub pct_top: Vec<Vec<f64>>,
    /// Per `qc_vars` mask: total counts of the masked genes per cell.
    pub qc_totals: Vec<Vec<f64>>,
    /// Cells with a positive count, per gene.
    pub n_cells_by_counts: Vec<i64>,
    /// Total counts per gene.
    pub gene_totals: Vec<f64>,
}

/// Per-cell and per-gene QC metrics of raw counts, as scanpy's `calculate_qc_metrics` defines
/// them (stored zeros do not count as expressed).
pub fn qc_metrics<T: Real>(
    indptr: &[u64],
    indices: &[u32],
    data: &[T],
    n_genes: usize,
    qc_vars: &[Vec<bool>],
    percent_top: &[usize],
) -> QcMetrics {
    use rayon::prelude::*;
    let per_cell: Vec<(i64, f64, Vec<f64>, Vec<f64>)> = indptr
        .par_windows(2)
        .map(|w| {
            let (a, b) = (w[0] as usize, w[1] as usize);
            let vals: Vec<f64> = data[a..b].iter().map(|v| v.to_f64()).collect();
            let total: f64 = vals.iter().sum();
            let n = vals.iter().filter(|&&v| v > 0.0).count() as i64;
            let mut sorted = vals.clone();
            sorted.sort_by(|x, y| y.total_cmp(x));
            let top = percent_top
                .iter()
                .map(|&k| {
                    let s: f64 = sorted.iter().take(k).sum();
                    if total > 0.0 {
                        100.0 * s / total
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            let qc = qc_vars
                .iter()
                .map(|mask| {
                    indices[a..b]
                        .iter()
                        .zip(&vals)
                        .filter(|(j, _)| mask[**j as usize])
                        .map(|(_, v)| v)
                        .sum()
                })
                .collect();
            (n, total, top, qc)
        })
        .collect();
    let mut n_cells_by_counts = vec![0i64; n_genes];
    let mut gene_totals = vec![0.0f64; n_genes];
    for (&j, v) in indices.iter().zip(data) {
        let v = v.to_f64();
        gene_totals[j as usize] += v;
        n_cells_by_counts[j as usize] += i64::from(v > 0.0);
    }
    let pct_top = (0..percent_top.len())
        .map(|t| per_cell.iter().map(|c| c.2[t]).collect())
        .collect();
    let qc_totals = (0..qc_vars.len())
        .map(|q| per_cell.iter().map(|c| c.3[q]).collect())
        .collect();
    QcMetrics {
        n_genes_by_counts: per_cell.iter().map(|c| c.0).collect(),
        total_counts: per_cell.iter().map(|c| c.1).collect(),
        pct_top,
        qc_totals,
        n_cells_by_counts,
        gene_totals,
    }
}

/// A filtered matrix held in memory, as the stages take it.
fn filtered(x: CsrMatrix, var_names: Vec<String>, batches: Option<BatchRows>) -> Filtered {
    let (n, g) = (x.n_rows, x.n_cols);
    Filtered {
        input: PathBuf::from("AnnData"),
        n_in: (n, g),
        n_after: (n, g),
        matrix: FilteredMatrix::Memory(x),
        obs: Frame::new(vec![String::new(); n]),
        var: Frame::new(var_names),
        keep_cells: (0..n).collect(),
        col_map: (0..g as u32).map(Some).collect(),
        counts_layer: None,
        batches,
        input_samples: Vec::new(),
        car: None,
    }
}

fn ctx(backend: &dyn Backend) -> ChunkCtx<'_> {
    ChunkCtx {
        backend,
        rows: CHUNK_ROWS,
        target_sum: 1e4,
    }
}

/// The genes `highly_variable_genes` selects, and the var columns of its flavor.
pub struct HvgSelection {
    /// `var["highly_variable"]`.
    pub highly_variable: Vec<bool>,
    /// The flavor's other var columns, in scanpy's order.
    pub var_columns: Vec<(String, Column)>,
}

/// scanpy's `highly_variable_genes(flavor, n_top_genes or the cut-offs, n_bins, batch_key)`: `x` is
/// log-normalised (seurat, cell_ranger) or raw counts (seurat_v3, which takes only
/// [`HvgPick::Top`]); `batches` are the batch names and each cell's code.
pub fn highly_variable_genes(
    x: CsrMatrix,
    var_names: Vec<String>,
    flavor: HvgFlavor,
    pick: HvgPick,
    n_bins: usize,
    batches: Option<(Vec<String>, Vec<u32>)>,
    backend: &dyn Backend,
) -> Result<HvgSelection> {
    let batches = batches.map(|(categories, codes)| BatchRows { categories, codes });
    let mut f = filtered(x, var_names, batches);
    let (n_top_genes, hvg_cutoffs) = match pick {
        HvgPick::Top(n) => (n, None),
        HvgPick::Cutoffs(_) if flavor == HvgFlavor::SeuratV3 => {
            return Err(Error::Usage(
                "highly_variable_genes: seurat_v3 selects n_top_genes, it has no cut-offs".into(),
            ));
        }
        HvgPick::Cutoffs(c) => (RunOptions::default().n_top_genes, Some(c)),
    };
    let opts = RunOptions {
        hvg_flavor: flavor,
        n_top_genes,
        hvg_cutoffs,
        hvg_n_bins: n_bins,
        ..RunOptions::default()
    };
    opts.validate()?;
    let c = ctx(backend);
    let on_counts = hvg::on_raw_counts(&mut f, &c, &opts)?;
    let hvgs = hvg::select(&mut f, on_counts, &c, &opts)?;
    Ok(HvgSelection {
        highly_variable: hvgs.selection.highly_variable,
        var_columns: hvgs.selection.var_columns,
    })
}

/// Calls `f` on the whole of `x` on the CPU (its kernels split rows themselves; no copy), on
/// row chunks of it elsewhere (a GPU's buffers are bounded).
fn for_each_block(x: &CsrMatrix, backend: &dyn Backend, mut f: impl FnMut(&CsrMatrix)) {
    if backend.name() == "cpu" {
        return f(x);
    }
    for a in (0..x.n_rows).step_by(CHUNK_ROWS) {
        f(&x.slice_rows(a..(a + CHUNK_ROWS).min(x.n_rows)));
    }
}

/// Per-gene mean and standard deviation (ddof 1, f64) of `x`, on the backend.
pub fn mean_std(x: &CsrMatrix, backend: &dyn Backend) -> (Vec<f64>, Vec<f64>) {
    let mut m = Moments::new(x.n_cols);
    for_each_block(x, backend, |b| {
        m.merge(&backend.gene_moments(b, Transform::Identity));
    });
    let (mean, var) = m.mean_var(1);
    (mean, var.into_iter().map(f64::sqrt).collect())
}

/// scanpy's `scale(zero_center, max_value)` of the columns `spec.cols` of `x` into the
/// row-major dense `out` (`x.n_rows x cols.len()`, f64 as scanpy densifies sparse data):
/// `(x - mean) / std` (a zero std counts as 1), or `x / std` without centring, clipped to
/// `spec.max_value`.
pub fn scale_into(
    x: &CsrMatrix,
    spec: &ScaleSpec<'_>,
    zero_center: bool,
    backend: &dyn Backend,
    out: &mut [f64],
) {
    let std: Vec<f64> = spec
        .std
        .iter()
        .map(|&s| if s == 0.0 { 1.0 } else { s })
        .collect();
    let zeros = vec![0.0; spec.mean.len()];
    let mean = if zero_center { spec.mean } else { &zeros[..] };
    let k = spec.cols.len();
    for a in (0..x.n_rows).step_by(CHUNK_ROWS) {
        let b = (a + CHUNK_ROWS).min(x.n_rows);
        let chunk = x.slice_rows(a..b);
        let block = backend.scale_dense(&chunk, spec.cols, mean, &std, spec.max_value);
        out[a * k..b * k].copy_from_slice(&block);
    }
}

/// PCA of the dense row-major `x` (`n x k`) as scanpy's `pca` computes it: the Gram matrix
/// accumulated on the backend chunk by chunk, its eigendecomposition, the projection; without
/// `zero_center`, scanpy's truncated SVD of the uncentred data ([`fit_gram`]).
pub fn pca_dense(
    x: &[f32],
    k: usize,
    n_comps: usize,
    solver: PcaSolver,
    zero_center: bool,
    backend: &dyn Backend,
) -> Result<(Pca, Vec<f32>)> {
    let n = x.len() / k.max(1);
    let mut gram = vec![0.0f64; k * k];
    let mut colsum = vec![0.0f64; k];
    let block = |a: usize, b: usize| -> Vec<f64> {
        x[a * k..b * k].iter().map(|&v| f64::from(v)).collect()
    };
    for a in (0..n).step_by(CHUNK_ROWS) {
        let b = (a + CHUNK_ROWS).min(n);
        backend.gram_accumulate(&block(a, b), k, &mut gram, &mut colsum);
    }
    let fit = fit_gram(&gram, &colsum, n, n_comps, solver, zero_center)?;
    let mut x_pca = Vec::with_capacity(n * n_comps);
    for a in (0..n).step_by(CHUNK_ROWS) {
        let b = (a + CHUNK_ROWS).min(n);
        let p = backend.project(&block(a, b), k, &fit.mean, &fit.components, n_comps);
        x_pca.extend(p.into_iter().map(|v| v as f32));
    }
    Ok((fit, x_pca))
}

/// PCA of the columns `cols` of a sparse `x`, centred implicitly or not at all (scanpy's `pca` on sparse
/// data): the same Gram route over densified chunks.
pub fn pca_sparse(
    x: &CsrMatrix,
    cols: &[u32],
    n_comps: usize,
    solver: PcaSolver,
    zero_center: bool,
    backend: &dyn Backend,
) -> Result<(Pca, Vec<f32>)> {
    let k = cols.len();
    let (zero, one) = (vec![0.0; k], vec![1.0; k]);
    let spec = ScaleSpec {
        cols,
        mean: &zero,
        std: &one,
        max_value: None,
    };
    let mut pass = |visit: &mut dyn FnMut(&CsrMatrix) -> Result<()>| {
        for a in (0..x.n_rows).step_by(CHUNK_ROWS) {
            visit(&x.slice_rows(a..(a + CHUNK_ROWS).min(x.n_rows)))?;
        }
        Ok(())
    };
    pca_by_gram(
        x.n_rows,
        &spec,
        n_comps,
        solver,
        zero_center,
        backend,
        &mut pass,
        &|_| {},
    )
}

/// The distance `neighbors` ranks by (scanpy's `metric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Metric {
    /// Euclidean distance (scanpy's default).
    #[default]
    Euclidean,
    /// Cosine distance `1 - cos(u, v)`.
    Cosine,
}

/// scanpy's `neighbors(n_neighbors, metric)` on the row-major `points` (`n x dim`): the kNN
/// search the run would pick for `method` (exact, or NN-descent above the run's size
/// threshold), umap's connectivities and the distance matrix. Returns the k used (scanpy caps
/// it at `1 + n / 2` when it exceeds `n`), connectivities and distances. The cosine metric
/// searches the rows scaled to unit length (their Euclidean order is the cosine order) and
/// turns each distance `d` into `1 - (|u|^2 + |v|^2 - d^2) / 2` (`d^2 / 2` for unit rows; a zero
/// row, whose cosine scikit-learn takes as 0, is at distance 1 from every other).
#[allow(clippy::too_many_arguments)]
pub fn neighbors(
    points: &[f32],
    dim: usize,
    n_neighbors: usize,
    method: KnnMethod,
    metric: Metric,
    seed: u64,
    backend: &dyn Backend,
) -> (usize, CsrMatrix, CsrMatrix<f64>) {
    let n = points.len() / dim.max(1);
    let k = if n_neighbors > n {
        1 + n / 2
    } else {
        n_neighbors
    };
    let unit = (metric == Metric::Cosine).then(|| unit_rows(points, dim));
    let search = unit.as_ref().map_or(points, |(u, _)| &u[..]);
    let (idx, mut dist) = if neighbors::is_approximate(method, backend, n) {
        backend.knn_approx(search, dim, k, seed)
    } else {
        backend.knn_exact(search, dim, k)
    };
    if let Some((_, norm2)) = &unit {
        for (slot, d) in dist.iter_mut().enumerate() {
            let (i, j) = (slot / k.max(1), idx[slot] as usize);
            let c = 1.0 - (norm2[i] + norm2[j] - *d * *d) / 2.0;
            *d = if i == j { 0.0 } else { c.clamp(0.0, 2.0) };
        }
    }
    let conn = crate::tl::neighbors::connectivities(&idx, &dist, k);
    let (indptr, indices, data) = crate::tl::neighbors::distance_matrix(&idx, &dist, k);
    let distances = CsrMatrix {
        n_rows: n,
        n_cols: n,
        indptr,
        indices,
        data,
    };
    (k, conn, distances)
}

/// Each row of `points` scaled to unit length (in f64, stored as f32; zero rows stay zero)
/// and the squared length of each stored row.
fn unit_rows(points: &[f32], dim: usize) -> (Vec<f32>, Vec<f64>) {
    let mut unit = vec![0.0f32; points.len()];
    let mut norm2 = Vec::with_capacity(points.len() / dim.max(1));
    for (row, out) in points.chunks(dim.max(1)).zip(unit.chunks_mut(dim.max(1))) {
        let len = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        if len > 0.0 {
            for (o, &v) in out.iter_mut().zip(row) {
                *o = (f64::from(v) / len) as f32;
            }
        }
        norm2.push(out.iter().map(|&v| f64::from(v) * f64::from(v)).sum());
    }
    (unit, norm2)
}

/// scanpy's `leiden(flavor)` on a weighted adjacency.
pub fn leiden(
    adj: &CsrMatrix,
    flavor: LeidenFlavor,
    resolution: f64,
    n_iterations: i64,
    seed: u64,
) -> Clustering {
    let params = LeidenParams {
        resolution,
        n_iterations,
        seed,
    };
    flavor.run(adj, &params)
}

/// scanpy's `umap` on the connectivities, initialised as umap-learn does (spectral, with the
/// PCA coordinates for disconnected components when given).
pub fn umap(
    conn: &CsrMatrix,
    data: Option<(&[f32], usize)>,
    params: &UmapParams,
    backend: &dyn Backend,
) -> Result<Umap> {
    umap_on(backend, conn, data, params)
}

/// scanpy's `score_genes(gene_list, ctrl_size, gene_pool, n_bins, random_state)` on
/// log-normalised `x` (`draw.pool` holds no indices here: `gene_pool` names them). Genes of
/// the list (and of the pool) that are not in `var_names` are skipped, as scanpy does; none
/// present is an error.
pub fn score_genes(
    x: &CsrMatrix,
    var_names: &[String],
    gene_list: &[String],
    gene_pool: Option<&[String]>,
    draw: ControlDraw,
    backend: &dyn Backend,
) -> Result<Vec<f64>> {
    let pos: std::collections::HashMap<&str, usize> = var_names
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let (genes, _) = crate::cart::present(&pos, gene_list);
    if genes.is_empty() {
        return Err(Error::Usage(
            "score_genes: no gene of gene_list is in var_names".into(),
        ));
    }
    let pool = match gene_pool {
        None => None,
        Some(names) => {
            // pandas' Index.intersection: the pool's order, each gene once.
            let mut seen = vec![false; var_names.len()];
            let pool: Vec<usize> = names
                .iter()
                .filter_map(|n| pos.get(n.as_str()).copied())
                .filter(|&j| !std::mem::replace(&mut seen[j], true))
                .collect();
            if pool.is_empty() {
                return Err(Error::Usage(
                    "score_genes: no gene of gene_pool is in var_names".into(),
                ));
            }
            // scanpy looks the listed genes up among the pool's bins (a KeyError there).
            if let Some(&j) = genes.iter().find(|&&j| !seen[j]) {
                return Err(Error::Usage(format!(
                    "score_genes: gene_list's {:?} is not in gene_pool",
                    var_names[j]
                )));
            }
            Some(pool)
        }
    };
    let (means, _) = mean_std(x, backend);
    let plan = ScorePlan::drawn(&means, genes, &ControlDraw { pool, ..draw });
    let mut scorer = Scorer::new(vec![plan], x.n_cols);
    scorer.push(x);
    Ok(scorer.finish().remove(0))
}

/// What [`rank_genes_groups`] compares: scanpy's `groupby`, `groups`, `reference`, `method`,
/// `n_genes`, `tie_correct`, `corr_method` and `rankby_abs`.
#[derive(Debug, Clone)]
pub struct RankQuery {
    /// The obs column (`params["groupby"]`).
    pub groupby: String,
    /// Each cell's group (-1: none) among `labels`.
    pub codes: Vec<i32>,
    /// The groups' labels, in category order.
    pub labels: Vec<String>,
    /// The groups to rank, in this order (None: all, in category order).
    pub groups: Option<Vec<String>>,
    /// The group each is compared with (None: the rest of the cells).
    pub reference: Option<String>,
    /// The test.
    pub method: MarkerMethod,
    /// Genes kept per group (None: all).
    pub n_genes: Option<usize>,
    /// Tie correction of the Wilcoxon test.
    pub tie_correct: bool,
    /// The p-values' correction.
    pub correction: Correction,
    /// Rank by the absolute score.
    pub rankby_abs: bool,
}

/// The result of [`rank_genes_groups`].
pub struct RankedGenes {
    /// `uns["rank_genes_groups"]` in scanpy's layout.
    pub uns: UnsValue,
    /// scanpy's `groups_order`: the groups ranked, then the reference when it is not one of
    /// them.
    pub groups_order: Vec<String>,
    /// scanpy's `pts`: per group of `groups_order`, the fraction of its cells expressing
    /// each gene.
    pub pts: Vec<Vec<f64>>,
    /// scanpy's `pts_rest` (against the rest only): per group, the fraction of the other
    /// cells expressing each gene.
    pub pts_rest: Option<Vec<Vec<f64>>>,
}

/// scanpy's `rank_genes_groups` on log-normalised `x`. Groups of fewer than two cells are left
/// out when all groups are ranked; named in `groups`, or as the reference, they are an error,
/// as in scanpy.
pub fn rank_genes_groups(
    x: CsrMatrix,
    var_names: Vec<String>,
    q: RankQuery,
    backend: &dyn Backend,
) -> Result<RankedGenes> {
    let g = x.n_cols;
    let sizes = {
        let mut s = vec![0usize; q.labels.len()];
        q.codes
            .iter()
            .filter_map(|&c| usize::try_from(c).ok())
            .for_each(|c| s[c] += 1);
        s
    };
    let (order, reference) = groups_order(&q, &sizes)?;
    let mut f = filtered(x, var_names, None);
    let opts = RunOptions {
        markers_method: q.method,
        markers_n_genes: q.n_genes.unwrap_or(g).min(g),
        markers_tie_correct: q.tie_correct,
        markers_corr_method: q.correction,
        markers_rankby_abs: q.rankby_abs,
        ..RunOptions::default()
    };
    let grouping = Grouping {
        column: q.groupby.clone(),
        codes: q.codes,
        labels: q.labels,
        reference,
    };
    let mut m = crate::pipeline::markers::rank(&mut f, &[grouping], &ctx(backend), &opts)?;
    let t = &mut m.tables[0];
    // The groups asked for, in their order, without the reference.
    let ranked: Vec<_> = order.iter().filter(|&&k| Some(k) != reference).collect();
    let mut groups = std::mem::take(&mut t.groups);
    t.groups = ranked
        .iter()
        .filter_map(|&&k| {
            let p = groups.iter().position(|gm| gm.group == t.labels[k])?;
            Some(groups.swap_remove(p))
        })
        .collect();
    let n_cells: usize = f.n_cells();
    let fraction = |nnz: &[u64], cells: usize| -> Vec<f64> {
        nnz.iter().map(|&z| z as f64 / cells as f64).collect()
    };
    let total = crate::tl::markers::gene_totals(&t.nnz, g);
    let pts = order
        .iter()
        .map(|&k| fraction(&t.nnz[k * g..(k + 1) * g], t.sizes[k]))
        .collect();
    let pts_rest = reference.is_none().then(|| {
        order
            .iter()
            .map(|&k| {
                let rest: Vec<u64> = (0..g).map(|j| total[j] - t.nnz[k * g + j]).collect();
                fraction(&rest, n_cells - t.sizes[k])
            })
            .collect()
    });
    let groups_order = order.iter().map(|&k| t.labels[k].clone()).collect();
    let uns = crate::pipeline::assemble::uns_markers(&m, &f.var.index)
        .into_iter()
        .next()
        .map(|(_, v)| v)
        .ok_or_else(|| {
            Error::Usage(format!(
                "rank_genes_groups: no group of {:?} has two or more cells",
                q.groupby
            ))
        })?;
    Ok(RankedGenes {
        uns,
        groups_order,
        pts,
        pts_rest,
    })
}

/// scanpy's `groups_order` (indices into the labels: the groups asked for, then the reference
/// when it is not one of them) and the reference's index, with its checks.
fn groups_order(q: &RankQuery, sizes: &[usize]) -> Result<(Vec<usize>, Option<usize>)> {
    let index = |what: &str, name: &str| {
        q.labels.iter().position(|l| l == name).ok_or_else(|| {
            Error::Usage(format!(
                "rank_genes_groups: {what} {name:?} is not a group of {:?} (groups: {})",
                q.groupby,
                q.labels.join(", ")
            ))
        })
    };
    let reference = q
        .reference
        .as_deref()
        .map(|r| index("reference", r))
        .transpose()?;
    let mut order: Vec<usize> = match &q.groups {
        None => (0..q.labels.len()).collect(),
        Some(names) => names
            .iter()
            .map(|n| index("group", n))
            .collect::<Result<_>>()?,
    };
    if let Some(r) = reference.filter(|r| !order.contains(r)) {
        order.push(r);
    }
    let named = order
        .iter()
        .filter(|&&k| q.groups.is_some() || Some(k) == reference);
    if let Some(&k) = named.into_iter().find(|&&k| sizes[k] < 2) {
        return Err(Error::Usage(format!(
            "rank_genes_groups: group {:?} of {:?} has fewer than two cells",
            q.labels[k], q.groupby
        )));
    }
    if reference.is_some() && order.len() < 2 {
        return Err(Error::Usage(
            "rank_genes_groups: the reference needs at least one other group to compare".into(),
        ));
    }
    Ok((order, reference))
}

/// The CAR-T gene sets of a run (`--gene-sets` file or the built-in ones).
pub fn gene_sets(opts: &RunOptions) -> Result<Vec<GeneSet>> {
    crate::cart::genesets::load(opts.cart.gene_sets.as_deref(), opts.cart.gene_sets_mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense() -> NormalizeTotal {
        NormalizeTotal::default()
    }

    #[test]
    fn normalize_total_targets_the_median_of_non_zero_totals_in_the_values_type() {
        // Totals 4, 6, 0 and 3: the median of the non-zero ones is 4 (dense arrays), of all
        // of them 3.5 (sparse matrices, as scanpy's CSR kernel).
        let indptr = [0u64, 2, 4, 4, 5];
        let mut data = [1.0f32, 3.0, 2.0, 4.0, 3.0];
        let (target, totals) = normalize_total(&indptr, None, 0, &mut data, dense());
        assert_eq!((target, totals), (4.0, vec![4.0, 6.0, 0.0, 3.0]));
        let f = 6.0f32 / 4.0;
        assert_eq!(data, [1.0, 3.0, 2.0 / f, 4.0 / f, 3.0 / (3.0f32 / 4.0)]);
        let mut sparse = [1.0f32, 3.0, 2.0, 4.0, 3.0];
        let o = NormalizeTotal {
            sparse: true,
            ..dense()
        };
        let columns = [0u32, 1, 0, 1, 1];
        assert_eq!(
            normalize_total(&indptr, Some(&columns), 2, &mut sparse, o).0,
            3.5
        );
        // An even count of totals: numpy's mean of the middle two.
        let mut d2 = [1.0f64, 2.0];
        assert_eq!(
            normalize_total(&[0, 1, 2], None, 1, &mut d2, dense()).0,
            1.5
        );
        // A given target, and a log1p after it.
        let mut d3 = [2.0f32, 2.0];
        let o = NormalizeTotal {
            target_sum: Some(10.0),
            ..dense()
        };
        normalize_total(&[0, 2], None, 2, &mut d3, o);
        log1p(&mut d3);
        assert_eq!(d3, [5.0f32.ln_1p(); 2]);
    }

    #[test]
    fn cosine_neighbours_rank_by_angle_and_store_one_minus_cos() {
        // (1, 0) and (10, 1) are close in angle but far apart; (0, 2) is at 90 degrees.
        let points = [1.0f32, 0.0, 10.0, 1.0, 0.0, 2.0, 0.9, 0.5];
        let (k, _, d) = neighbors(
            &points,
            2,
            2,
            KnnMethod::Exact,
            Metric::Cosine,
            0,
            &crate::backend::CpuBackend,
        );
        assert_eq!(k, 2);
        let row = |i: usize| {
            let r = d.indptr[i] as usize..d.indptr[i + 1] as usize;
            (d.indices[r.clone()].to_vec(), d.data[r].to_vec())
        };
        let (idx, dist) = row(0);
        let cos = |a: [f64; 2], b: [f64; 2]| {
            (a[0] * b[0] + a[1] * b[1]) / (a[0].hypot(a[1]) * b[0].hypot(b[1]))
        };
        assert_eq!(idx, [1], "the nearest in angle, not in space");
        assert!((dist[0] - (1.0 - cos([1.0, 0.0], [10.0, 1.0]))).abs() < 1e-7);
        let (idx, dist) = row(2);
        assert_eq!(idx, [3]);
        assert!((dist[0] - (1.0 - cos([0.0, 2.0], [0.9, 0.5]))).abs() < 1e-7);
    }

    #[test]
    fn sparse_scaling_divides_in_f64_and_caps_without_a_floor() {
        // Column 1 has std 0 (counts as 1); negative values are not clipped (no centring).
        let mut data = [3.0f32, -7.0, 5.0, 1.0];
        let std = [3.0, 0.0];
        scale_sparse(&[0, 1, 0, 0], &mut data, &std, Some(1.5));
        assert_eq!(data, [1.0, -7.0, 1.5, (1.0f64 / 3.0) as f32]);
        let mut data = [5.0f64];
        scale_sparse(&[0], &mut data, &std, None);
        assert_eq!(data, [5.0 / 3.0]);
    }

    #[test]
    fn highly_expressed_genes_leave_every_total() {
        // Three cells x three genes (dense rows): gene 2 holds more than half of cell 0's
        // total, so it leaves every cell's total, even where it is small.
        let indptr = [0u64, 3, 6, 9];
        let mut data = [1.0f64, 1.0, 8.0, 4.0, 4.0, 1.0, 2.0, 2.0, 1.0];
        let o = NormalizeTotal {
            target_sum: Some(1.0),
            exclude_highly_expressed: Some(0.5),
            ..dense()
        };
        let (_, totals) = normalize_total(&indptr, None, 3, &mut data, o);
        assert_eq!(totals, vec![2.0, 8.0, 4.0]);
        assert_eq!(data[..3], [0.5, 0.5, 4.0]);
        // At exactly the fraction a gene stays: 4 of 8 is not above 0.5.
        let mut data = [4.0f64, 4.0];
        let o = NormalizeTotal {
            exclude_highly_expressed: Some(0.5),
            sparse: true,
            ..dense()
        };
        let (_, totals) = normalize_total(&[0, 2], Some(&[0, 1]), 2, &mut data, o);
        assert_eq!(totals, vec![8.0]);
    }

    #[test]
    fn qc_metrics_count_positive_values_and_top_shares() {
        // Cell 0: 5, 3, 2 (and a stored zero); cell 1: nothing. Gene 3 is "mt".
        let indptr = [0u64, 4, 4];
        let indices = [0u32, 1, 2, 3];
        let data = [5.0f32, 0.0, 2.0, 3.0];
        let mt = vec![false, false, false, true];
        let m = qc_metrics(&indptr, &indices, &data, 4, &[mt], &[1, 2]);
        assert_eq!(m.n_genes_by_counts, [3, 0]);
        assert_eq!(m.total_counts, [10.0, 0.0]);
        assert_eq!(m.pct_top[0][0], 50.0);
        assert_eq!(m.pct_top[1][0], 80.0);
        assert!(m.pct_top[0][1].is_nan());
        assert_eq!(m.qc_totals[0], [3.0, 0.0]);
        assert_eq!(m.n_cells_by_counts, [1, 0, 1, 1]);
        assert_eq!(m.gene_totals, [5.0, 0.0, 2.0, 3.0]);
    }

    #[test]
    fn a_source_in_memory_checks_its_matrix_like_a_file() {
        let frame = |n: usize| Frame::new((0..n).map(|i| format!("c{i}")).collect());
        let m = |data: Vec<f32>| CsrMatrix {
            n_rows: 1,
            n_cols: 2,
            indptr: vec![0, 2],
            indices: vec![1, 0],
            data,
        };
        let err = |r: Result<CountSource>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err(CountSource::from_memory(
                "a",
                m(vec![1.0, 1.0]),
                frame(2),
                frame(2)
            ))
            .contains("obs has 2 rows")
        );
        let mut broken = m(vec![1.0, 1.0]);
        broken.indptr = vec![0, 3];
        assert!(
            err(CountSource::from_memory("a", broken, frame(1), frame(2)))
                .contains("ends at 3 but data holds 2 entries")
        );
        // Values are the run's scan to judge, as a file's are.
        let run_err = |data: Vec<f32>| {
            let src = CountSource::from_memory("a", m(data), frame(1), frame(2)).unwrap();
            let e = run(
                src,
                &RunOptions::default(),
                &crate::backend::CpuBackend,
                false,
            );
            e.err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(run_err(vec![1.0, -1.0]).contains("negative value"));
        assert!(run_err(vec![1.0, f32::NAN]).contains("non-finite value"));
        let mut src = CountSource::from_memory("a", m(vec![1.0, 2.0]), frame(1), frame(2)).unwrap();
        // Rows come back canonical (indices sorted).
        let x = src.read_all().unwrap();
        assert_eq!((x.indices, x.data), (vec![0, 1], vec![2.0, 1.0]));
    }
}
