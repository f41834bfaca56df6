//! The one seam that matters: every numeric kernel of the pipeline runs on a [`Backend`].
//!
//! Stages in [`crate::pp`] and [`crate::tl`] call these kernel-level operations on row chunks
//! and never know which implementation runs. [`CpuBackend`] (rayon, f64 accumulation) is the
//! readable reference; [`GpuBackend`] (wgpu + WGSL) implements the same trait. The CPU kernels
//! that are more than a loop live in their own modules: NN-descent (`nndescent`) and UMAP's
//! SGD epochs ([`umap_sgd`]), the defaults of [`Backend::knn_approx`] and
//! [`Backend::umap_optimize`].

pub mod cmath;
pub mod cpu;
pub mod gpu;
pub(crate) mod nndescent;
mod select;
pub mod umap_sgd;

pub use cpu::CpuBackend;
pub use gpu::GpuBackend;
pub use select::{BackendChoice, Selected, select_backend};

use crate::matrix::CsrMatrix;
use umap_sgd::{SgdGraph, SgdParams};

/// Per-gene running sums of a chunk, for means and variances (scanpy's `mean_var`).
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// Σx per gene.
    pub sum: Vec<f64>,
    /// Σx² per gene, each x² formed in f32 before it is added (as scipy does for f32 data).
    pub sum_sq: Vec<f64>,
    /// Rows accumulated.
    pub n: u64,
}

impl Moments {
    /// Zeroed sums for `n_genes` genes.
    pub fn new(n_genes: usize) -> Self {
        Moments {
            sum: vec![0.0; n_genes],
            sum_sq: vec![0.0; n_genes],
            n: 0,
        }
    }

    /// Adds another chunk's sums.
    pub fn merge(&mut self, other: &Moments) {
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&other.sum_sq) {
            *a += b;
        }
        self.n += other.n;
    }

    /// Means and variances with `ddof` (scanpy: one-pass `(E[x²] - E[x]²) n/(n-ddof)`).
    pub fn mean_var(&self, ddof: u64) -> (Vec<f64>, Vec<f64>) {
        let n = self.n as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let var = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| (sq / n - m * m) * n / (n - ddof as f64))
            .collect();
        (mean, var)
    }
}

/// A value transform applied before accumulating moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// The stored values.
    Identity,
    /// `expm1(x)` in f32 (seurat HVG on log data).
    Expm1,
}

/// How the dense HVG block is formed from a log-normalised chunk (scanpy `scale`): the columns
/// `cols` in that order, each `(x - mean) / std`, clipped to `[-max_value, max_value]`.
#[derive(Debug, Clone, Copy)]
pub struct ScaleSpec<'a> {
    /// Columns of the chunk (the HVGs), in output order.
    pub cols: &'a [u32],
    /// Per-column mean (ddof 1 statistics, f64).
    pub mean: &'a [f64],
    /// Per-column standard deviation (zero replaced by 1).
    pub std: &'a [f64],
    /// Clip bound; None keeps every value.
    pub max_value: Option<f64>,
}

/// Kernel-level operations of the pipeline.
pub trait Backend: Send + Sync {
    /// Short name written to the outputs (`cpu`, `gpu`).
    fn name(&self) -> &'static str;

    /// The device the kernels run on.
    fn device(&self) -> String;

    /// The driver of the device, where there is one (GPU backends).
    fn driver(&self) -> Option<String> {
        None
    }

    /// Why some work ran elsewhere than on this backend (e.g. a GPU kernel that failed and ran
    /// on the CPU instead); None when everything ran here.
    fn fallback_reason(&self) -> Option<String> {
        None
    }

    /// Whether [`Backend::device_seconds`] can time this backend's kernels on its device;
    /// Err says why not.
    fn device_timing(&self) -> Result<(), String> {
        Err(format!("the {} backend has no device timer", self.name()))
    }

    /// Runs `f` and returns the seconds the device spent executing the kernels `f` called on
    /// this backend (GPU: compute passes between timestamp queries, without transfers,
    /// submission or waiting). None, without running `f`, where [`Backend::device_timing`]
    /// is an Err; None after running it if the timestamps could not be read.
    fn device_seconds(&self, f: &mut dyn FnMut()) -> Option<f64> {
        let _ = f;
        None
    }

    /// scanpy `normalize_total(target_sum)` + `log1p` of a raw-count chunk, in place:
    /// `x / f32(t_i / target)` then `ln(1 + x)`, all in f32; rows with `t_i = 0` stay 0.
    fn normalize_log1p(&self, chunk: &mut CsrMatrix, target_sum: f32);

    /// Per-gene Σx and Σx² of a chunk (after `transform`), implicit zeros included in `n`.
    fn gene_moments(&self, chunk: &CsrMatrix, transform: Transform) -> Moments;

    /// [`Backend::gene_moments`] of the stored values and of `transform` of them, both from
    /// one pass where a backend can (the default makes two calls).
    fn gene_moments_pair(&self, chunk: &CsrMatrix, transform: Transform) -> (Moments, Moments) {
        (
            self.gene_moments(chunk, Transform::Identity),
            self.gene_moments(chunk, transform),
        )
    }

    /// The columns `cols` (in that order) of a chunk as a dense row-major block, each
    /// `(x - mean) / std` then clipped to `[-max_value, max_value]`.
    fn scale_dense(
        &self,
        chunk: &CsrMatrix,
        cols: &[u32],
        mean: &[f64],
        std: &[f64],
        max_value: Option<f64>,
    ) -> Vec<f64>;

    /// `gram += blockᵀ block` and `colsum += Σ rows` for a dense row-major block with `k` columns.
    fn gram_accumulate(&self, block: &[f64], k: usize, gram: &mut [f64], colsum: &mut [f64]);

    /// `(block - mean) · comps` for a row-major block (`k` columns) and `comps` (k x c, row-major).
    fn project(&self, block: &[f64], k: usize, mean: &[f64], comps: &[f64], c: usize) -> Vec<f64>;

    /// Exact k nearest neighbours (Euclidean) of every point among all points, self included
    /// at distance 0: row-major `n x k` indices and distances, sorted by (distance, index).
    fn knn_exact(&self, points: &[f32], dim: usize, k: usize) -> (Vec<u32>, Vec<f64>);

    /// Per-gene `Σ min(x, clip_j)` and `Σ min(x, clip_j)²` over stored entries (seurat_v3).
    fn clipped_sums(&self, chunk: &CsrMatrix, clip: &[f64]) -> (Vec<f64>, Vec<f64>);

    /// `gram += XᵀX`, `colsum += Σ rows` of the scaled dense HVG block `X` of a chunk. The
    /// default forms the block with [`Backend::scale_dense`]; a backend may fuse the two.
    fn scaled_gram(
        &self,
        chunk: &CsrMatrix,
        spec: &ScaleSpec<'_>,
        gram: &mut [f64],
        colsum: &mut [f64],
    ) {
        let block = self.scale_dense(chunk, spec.cols, spec.mean, spec.std, spec.max_value);
        self.gram_accumulate(&block, spec.cols.len(), gram, colsum);
    }

    /// `(X - 1 pca_meanᵀ) · comps` for the scaled dense HVG block `X` of a chunk (`comps`:
    /// `cols.len() x c`, row-major); the default composes [`Backend::scale_dense`] and
    /// [`Backend::project`].
    fn scaled_project(
        &self,
        chunk: &CsrMatrix,
        spec: &ScaleSpec<'_>,
        pca_mean: &[f64],
        comps: &[f64],
        c: usize,
    ) -> Vec<f64> {
        let block = self.scale_dense(chunk, spec.cols, spec.mean, spec.std, spec.max_value);
        self.project(&block, spec.cols.len(), pca_mean, comps, c)
    }

    /// Approximate k nearest neighbours (same layout as [`Backend::knn_exact`]); NN-descent
    /// on the CPU unless a backend has something better.
    fn knn_approx(&self, points: &[f32], dim: usize, k: usize, seed: u64) -> (Vec<u32>, Vec<f64>) {
        let n = points.len() / dim.max(1);
        nndescent::knn(
            points,
            dim,
            k,
            nndescent::NnDescentParams::for_size(n, seed),
        )
    }

    /// umap's SGD epochs on `embedding` (row-major `n x dim`, the initial layout in, the final
    /// one out), deterministic for a seed on a given backend; the CPU's parallel Rust loop
    /// unless a backend has its own.
    fn umap_optimize(&self, g: &SgdGraph, embedding: &mut [f32], dim: usize, p: &SgdParams) {
        umap_sgd::optimize_layout(g, embedding, dim, p);
    }
}
