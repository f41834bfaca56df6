//! The GPU backend: the [`Backend`] kernels as WGSL compute shaders (`shaders/`) run through
//! wgpu on Vulkan, Metal or DX12, including software adapters such as lavapipe.
//!
//! Accuracy follows the CPU reference: sums that the CPU takes in f64 are taken on the device
//! as f32 partial sums over short runs, folded into double-single (hi + lo) accumulators, and
//! finished in f64 on the host; the exact kNN search returns candidate lists that the host
//! re-ranks with f64 distances exactly as [`CpuBackend::knn_exact`] does.
//!
//! The trait's kernels cannot fail, so a GPU failure in the middle of a run (device lost, out
//! of memory, a limit exceeded) runs that kernel on the CPU instead, logs a warning, and is
//! reported by [`Backend::fallback_reason`] (written to `summary.json`). It never panics.
//!
//! Kernel time on the device itself (`cartscope bench`): [`GpuContext::device_time`], through
//! [`Backend::device_seconds`], where the adapter offers timestamp queries.

mod context;
mod kernels;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

pub use crate::error::GpuError;
pub use context::{AdapterSummary, BINDING_CAP_ENV, GpuContext, list_adapters};

use super::{Backend, CpuBackend, Moments, ScaleSpec, Transform};
use crate::backend::umap_sgd::{SgdGraph, SgdParams};
use crate::matrix::CsrMatrix;

/// Kernels on a GPU through wgpu.
#[derive(Debug, Clone)]
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    fallback: Arc<Mutex<Option<String>>>,
}

impl GpuBackend {
    /// A backend on the best adapter (see [`GpuContext::new`]).
    pub fn new(accept_software: bool) -> Result<Self, GpuError> {
        Ok(Self::with_context(Arc::new(GpuContext::new(
            accept_software,
        )?)))
    }

    /// A backend on an existing context (tests and benches share one).
    pub fn with_context(ctx: Arc<GpuContext>) -> Self {
        GpuBackend {
            ctx,
            fallback: Arc::new(Mutex::new(None)),
        }
    }

    /// The device context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Runs `gpu`; on failure logs it, remembers the first reason and runs `cpu` instead.
    fn or_cpu<T>(
        &self,
        kernel: &str,
        gpu: impl FnOnce() -> Result<T, GpuError>,
        cpu: impl FnOnce() -> T,
    ) -> T {
        match gpu() {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("GPU {kernel} failed, running it on the CPU: {e}");
                if let Ok(mut slot) = self.fallback.lock() {
                    slot.get_or_insert_with(|| format!("{kernel}: {e}"));
                }
                cpu()
            }
        }
    }

    /// The Gram kernel on `source`, added to `gram`/`colsum` only once complete (so a
    /// fallback never adds twice); on failure `cpu` does the update instead.
    fn gram_or_cpu(
        &self,
        what: &'static str,
        source: &kernels::DenseSource<'_>,
        gram: &mut [f64],
        colsum: &mut [f64],
        cpu: impl FnOnce(&mut [f64], &mut [f64]),
    ) {
        let (mut g, mut s) = (vec![0.0; gram.len()], vec![0.0; colsum.len()]);
        match kernels::gram(&self.ctx, source, &mut g, &mut s) {
            Ok(()) => {
                add(gram, &g);
                add(colsum, &s);
            }
            Err(e) => self.or_cpu(what, || Err(e), || cpu(gram, colsum)),
        }
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn device(&self) -> String {
        self.ctx.describe()
    }

    fn driver(&self) -> Option<String> {
        Some(self.ctx.adapter.driver.clone())
    }

    fn fallback_reason(&self) -> Option<String> {
        self.fallback.lock().ok().and_then(|s| s.clone())
    }

    fn device_timing(&self) -> Result<(), String> {
        if self.ctx.timestamps() {
            Ok(())
        } else {
            Err(format!(
                "{} does not offer timestamp queries",
                self.ctx.adapter.name
            ))
        }
    }

    fn device_seconds(&self, f: &mut dyn FnMut()) -> Option<f64> {
        if !self.ctx.timestamps() {
            return None;
        }
        self.ctx.device_time(f).1
    }

    fn normalize_log1p(&self, chunk: &mut CsrMatrix, target_sum: f32) {
        // The device writes the chunk only once every batch ran, so the fallback starts from
        // the raw counts.
        if let Err(e) = kernels::normalize_log1p(&self.ctx, chunk, target_sum) {
            self.or_cpu(
                "normalize_log1p",
                || Err(e),
                || CpuBackend.normalize_log1p(chunk, target_sum),
            );
        }
    }

    fn gene_moments(&self, chunk: &CsrMatrix, transform: Transform) -> Moments {
        self.or_cpu(
            "gene_moments",
            || kernels::gene_moments(&self.ctx, chunk, transform),
            || CpuBackend.gene_moments(chunk, transform),
        )
    }

    fn scale_dense(
        &self,
        chunk: &CsrMatrix,
        cols: &[u32],
        mean: &[f64],
        std: &[f64],
        max_value: Option<f64>,
    ) -> Vec<f64> {
        let spec = ScaleSpec {
            cols,
            mean,
            std,
            max_value,
        };
        self.or_cpu(
            "scale_dense",
            || kernels::scale_dense(&self.ctx, chunk, &spec),
            || CpuBackend.scale_dense(chunk, cols, mean, std, max_value),
        )
    }

    fn gram_accumulate(&self, block: &[f64], k: usize, gram: &mut [f64], colsum: &mut [f64]) {
        self.gram_or_cpu(
            "gram_accumulate",
            &kernels::DenseSource::Dense(block, k),
            gram,
            colsum,
            |gram, colsum| CpuBackend.gram_accumulate(block, k, gram, colsum),
        );
    }

    fn project(&self, block: &[f64], k: usize, mean: &[f64], comps: &[f64], c: usize) -> Vec<f64> {
        self.or_cpu(
            "project",
            || {
                kernels::project(
                    &self.ctx,
                    &kernels::DenseSource::Dense(block, k),
                    mean,
                    comps,
                    c,
                )
            },
            || CpuBackend.project(block, k, mean, comps, c),
        )
    }

    fn knn_exact(&self, points: &[f32], dim: usize, k: usize) -> (Vec<u32>, Vec<f64>) {
        self.or_cpu(
            "knn_exact",
            || kernels::knn_exact(&self.ctx, points, dim, k),
            || CpuBackend.knn_exact(points, dim, k),
        )
    }

    fn clipped_sums(&self, chunk: &CsrMatrix, clip: &[f64]) -> (Vec<f64>, Vec<f64>) {
        // seurat_v3's clipped sums are one light pass over the raw counts, taken once per run:
        // they stay on the CPU.
        CpuBackend.clipped_sums(chunk, clip)
    }

    fn scaled_gram(
        &self,
        chunk: &CsrMatrix,
        spec: &ScaleSpec<'_>,
        gram: &mut [f64],
        colsum: &mut [f64],
    ) {
        self.gram_or_cpu(
            "scaled_gram",
            &kernels::DenseSource::Csr(chunk, spec),
            gram,
            colsum,
            |gram, colsum| CpuBackend.scaled_gram(chunk, spec, gram, colsum),
        );
    }

    fn scaled_project(
        &self,
        chunk: &CsrMatrix,
        spec: &ScaleSpec<'_>,
        pca_mean: &[f64],
        comps: &[f64],
        c: usize,
    ) -> Vec<f64> {
        self.or_cpu(
            "scaled_project",
            || {
                kernels::project(
                    &self.ctx,
                    &kernels::DenseSource::Csr(chunk, spec),
                    pca_mean,
                    comps,
                    c,
                )
            },
            || CpuBackend.scaled_project(chunk, spec, pca_mean, comps, c),
        )
    }

    fn umap_optimize(&self, g: &SgdGraph, embedding: &mut [f32], dim: usize, p: &SgdParams) {
        // The device returns the layout only once every epoch ran, so the fallback starts from
        // the initial layout.
        match kernels::umap_epochs(&self.ctx, g, embedding, dim, p, p.n_epochs) {
            Ok(out) => embedding.copy_from_slice(&out),
            Err(e) => self.or_cpu(
                "umap_optimize",
                || Err(e),
                || CpuBackend.umap_optimize(g, embedding, dim, p),
            ),
        }
    }
}

fn add(acc: &mut [f64], v: &[f64]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}
