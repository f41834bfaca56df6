//! `cartscope bench`: each pipeline kernel on synthetic data of a chosen size, through the
//! [`Backend`] trait (so GPU times include the host <-> device transfers the pipeline pays),
//! reported as time, GB/s and GFLOP/s, and on a known GPU as a fraction of its peak.

use std::time::Instant;

use serde::Serialize;

use crate::backend::{Backend, CpuBackend, ScaleSpec, Transform};
use crate::matrix::CsrMatrix;

/// Sizes of a bench run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Cells streamed through the per-chunk kernels (in chunks of `chunk_rows`).
    pub cells: usize,
    /// Genes (columns) of the synthetic counts.
    pub genes: usize,
    /// Stored entries per cell.
    pub nnz_per_cell: usize,
    /// HVG columns scaled into the Gram matrix.
    pub hvg: usize,
    /// Cells per chunk.
    pub chunk_rows: usize,
    /// Points of the exact kNN search (0: skip it).
    pub knn_points: usize,
    /// Dimensions of the kNN points (PCs).
    pub dim: usize,
    /// Neighbours, self included.
    pub k: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            cells: 65_536,
            genes: 20_000,
            nnz_per_cell: 2_000,
            hvg: 2_000,
            chunk_rows: 8_192,
            knn_points: 50_000,
            dim: 50,
            k: 15,
        }
    }
}

/// One kernel's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Kernel name.
    pub kernel: String,
    /// Seconds for the whole size.
    pub seconds: f64,
    /// Bytes the kernel must move at least (model), per second, in GB/s.
    pub gb_per_s: f64,
    /// Floating-point operations (model) per second, in GFLOP/s.
    pub gflop_per_s: f64,
    /// Fraction of the device's peak bandwidth (memory-bound kernels) or f32 peak (compute-bound
    /// kernels); None when the device's peak is unknown.
    pub fraction_of_peak: Option<f64>,
}

/// Peak memory bandwidth (GB/s) and f32 (non-tensor) GFLOP/s by adapter name, from the vendors'
/// datasheets (NVIDIA H100/H200/A100/L4 product briefs; SXM variants unless named).
const PEAKS: &[(&str, f64, f64)] = &[
    ("H100 PCIe", 2_000.0, 51_000.0),
    ("H100 NVL", 3_900.0, 60_000.0),
    ("H100", 3_350.0, 67_000.0),
    ("H200", 4_800.0, 67_000.0),
    ("A100", 2_039.0, 19_500.0),
    ("L4", 300.0, 30_300.0),
];

/// (GB/s, GFLOP/s) peaks of a device by name, where known.
pub fn peak_of(device: &str) -> Option<(f64, f64)> {
    PEAKS
        .iter()
        .find(|(n, _, _)| device.contains(n))
        .map(|&(_, b, f)| (b, f))
}

/// Deterministic synthetic counts: `rows` cells, `nnz` distinct sorted genes per cell.
pub fn synthetic_counts(rows: usize, genes: usize, nnz: usize, seed: u64) -> CsrMatrix {
    let nnz = nnz.min(genes);
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut m = CsrMatrix::empty(genes);
    let stride = genes / nnz.max(1);
    for _ in 0..rows {
        let off = (next() as usize) % stride.max(1);
        for j in 0..nnz {
            m.indices.push((j * stride + off) as u32);
            m.data.push((next() % 20 + 1) as f32);
        }
        m.indptr.push(m.indices.len() as u64);
    }
    m.n_rows = rows;
    m
}

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Runs every kernel on `backend` and returns one row per kernel.
pub fn run(backend: &dyn Backend, o: &BenchOptions) -> Vec<BenchRow> {
    let peak = peak_of(&backend.device());
    let row = |kernel: &str, seconds: f64, bytes: f64, flops: f64, compute_bound: bool| {
        let gbs = bytes / seconds / 1e9;
        let gfs = flops / seconds / 1e9;
        BenchRow {
            kernel: kernel.into(),
            seconds,
            gb_per_s: gbs,
            gflop_per_s: gfs,
            fraction_of_peak: peak.map(|(b, f)| if compute_bound { gfs / f } else { gbs / b }),
        }
    };
    let mut out = Vec::new();
    let chunk = synthetic_counts(o.chunk_rows.min(o.cells.max(1)), o.genes, o.nnz_per_cell, 7);
    let reps = o.cells.div_ceil(chunk.n_rows.max(1));
    let nnz = chunk.nnz() as f64 * reps as f64;
    let cells = (chunk.n_rows * reps) as f64;
    let mut logc = chunk.clone();
    CpuBackend.normalize_log1p(&mut logc, 1e4);
    // Warm-up: pipelines and allocations outside the timings.
    let mut w = chunk.slice_rows(0..chunk.n_rows.min(64));
    backend.normalize_log1p(&mut w, 1e4);

    let mut secs = 0.0;
    for _ in 0..reps {
        let mut x = chunk.clone();
        secs += time(|| backend.normalize_log1p(&mut x, 1e4));
    }
    out.push(row("normalize_log1p", secs, nnz * 8.0, nnz * 4.0, false));

    let secs = time(|| {
        for _ in 0..reps {
            std::hint::black_box(backend.gene_moments(&logc, Transform::Expm1));
        }
    });
    out.push(row("gene_moments_expm1", secs, nnz * 8.0, nnz * 4.0, false));

    let k = o.hvg.min(o.genes);
    let cols: Vec<u32> = (0..k as u32)
        .map(|j| j * (o.genes / k.max(1)) as u32)
        .collect();
    let (mean, var) = CpuBackend
        .gene_moments(&logc, Transform::Identity)
        .mean_var(1);
    let m: Vec<f64> = cols.iter().map(|&j| mean[j as usize]).collect();
    let sd: Vec<f64> = cols
        .iter()
        .map(|&j| var[j as usize].sqrt())
        .map(|s| if s > 0.0 { s } else { 1.0 })
        .collect();
    let spec = ScaleSpec {
        cols: &cols,
        mean: &m,
        std: &sd,
        max_value: Some(10.0),
    };
    let (mut g, mut cs) = (vec![0.0; k * k], vec![0.0; k]);
    let secs = time(|| {
        for _ in 0..reps {
            backend.scaled_gram(&logc, &spec, &mut g, &mut cs);
        }
    });
    // SGEMM convention: 2 n k² for XᵀX (the kernel computes half of it and mirrors).
    out.push(row(
        "scaled_gram",
        secs,
        nnz * 8.0,
        2.0 * cells * (k * k) as f64,
        true,
    ));

    let c = 50usize;
    let comps: Vec<f64> = (0..k * c).map(|i| ((i % 17) as f64 - 8.0) / 17.0).collect();
    let secs = time(|| {
        for _ in 0..reps {
            std::hint::black_box(backend.scaled_project(&logc, &spec, &m, &comps, c));
        }
    });
    out.push(row(
        "scaled_project",
        secs,
        nnz * 8.0 + cells * c as f64 * 8.0,
        2.0 * cells * (k * c) as f64,
        true,
    ));

    if o.knn_points > 0 {
        let n = o.knn_points;
        let mut s = 12345u64;
        let pts: Vec<f32> = (0..n * o.dim)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((s >> 40) as f32) / (1u64 << 24) as f32 * 10.0
            })
            .collect();
        let secs = time(|| {
            std::hint::black_box(backend.knn_exact(&pts, o.dim, o.k));
        });
        out.push(row(
            &format!("knn_exact_{}d_k{}", o.dim, o.k),
            secs,
            (n * o.dim * 4) as f64,
            2.0 * (n as f64) * (n as f64) * o.dim as f64,
            true,
        ));
    }
    out
}

/// The rows as an aligned text table.
pub fn to_text(device: &str, rows: &[BenchRow]) -> String {
    let mut s = format!(
        "device: {device}\n{:<24} {:>10} {:>10} {:>12} {:>9}\n",
        "kernel", "seconds", "GB/s", "GFLOP/s", "of peak"
    );
    for r in rows {
        let frac = r
            .fraction_of_peak
            .map_or("n/a".to_string(), |f| format!("{:.1}%", f * 100.0));
        s.push_str(&format!(
            "{:<24} {:>10.4} {:>10.1} {:>12.1} {:>9}\n",
            r.kernel, r.seconds, r.gb_per_s, r.gflop_per_s, frac
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_match_by_name_most_specific_first() {
        assert_eq!(peak_of("NVIDIA H100 80GB HBM3"), Some((3_350.0, 67_000.0)));
        assert_eq!(peak_of("NVIDIA H100 PCIe"), Some((2_000.0, 51_000.0)));
        assert_eq!(peak_of("llvmpipe (LLVM 15.0.6, 256 bits)"), None);
    }

    #[test]
    fn bench_runs_small_on_the_cpu() {
        let o = BenchOptions {
            cells: 300,
            genes: 500,
            nnz_per_cell: 50,
            hvg: 40,
            chunk_rows: 128,
            knn_points: 200,
            dim: 8,
            k: 5,
        };
        let rows = run(&CpuBackend, &o);
        assert_eq!(rows.len(), 5);
        assert!(rows.iter().all(|r| r.seconds > 0.0 && r.gflop_per_s > 0.0));
        assert!(rows.iter().all(|r| r.fraction_of_peak.is_none()));
    }
}
