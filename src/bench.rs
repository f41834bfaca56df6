//! `cartscope bench`: each pipeline kernel on synthetic data of a chosen size, through the
//! [`Backend`] trait (so GPU times include the host <-> device transfers the pipeline pays),
//! reported as time, GB/s and GFLOP/s, and on a known GPU as a fraction of its peak.
//!
//! Two times per kernel where the backend can time its device ([`Backend::device_timing`]:
//! a GPU with timestamp queries): the host's wall clock around the calls (`seconds`, as the
//! pipeline pays it: uploads, submission, waiting, readback and the host's share included),
//! and, from a second run of the same calls, the time the device spent in the kernels' compute
//! passes (`device_seconds`). The `device_*` rates and fraction of peak come from the device
//! time, and say what the kernels themselves reach; the others from the wall clock.

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
    /// UMAP epochs on the kNN graph of the kNN points (0, or no kNN points: skip it).
    pub umap_epochs: usize,
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
            umap_epochs: 200,
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
    /// Seconds the device spent in the kernels' compute passes (timestamp queries) for the
    /// whole size; None where the backend cannot time its device.
    pub device_seconds: Option<f64>,
    /// GB/s from the device time.
    pub device_gb_per_s: Option<f64>,
    /// GFLOP/s from the device time.
    pub device_gflop_per_s: Option<f64>,
    /// Fraction of peak from the device time (None also when the peak is unknown).
    pub device_fraction_of_peak: Option<f64>,
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
pub(crate) fn peak_of(device: &str) -> Option<(f64, f64)> {
    PEAKS
        .iter()
        .find(|(n, _, _)| device.contains(n))
        .map(|&(_, b, f)| (b, f))
}

/// Deterministic synthetic counts: `rows` cells, `nnz` distinct sorted genes per cell.
pub(crate) fn synthetic_counts(rows: usize, genes: usize, nnz: usize, seed: u64) -> CsrMatrix {
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

fn time(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// What a kernel call moves and computes, for its rates.
struct Work {
    bytes: f64,
    flops: f64,
    /// Fraction of peak from the FLOP rate (else from the bandwidth).
    compute_bound: bool,
}

/// Times kernels on one backend and turns the seconds into rows.
struct Meter<'a> {
    backend: &'a dyn Backend,
    peak: Option<(f64, f64)>,
    on_device: bool,
}

impl Meter<'_> {
    /// Device seconds of `f`, where the backend has them.
    fn device(&self, f: &mut dyn FnMut()) -> Option<f64> {
        if self.on_device {
            self.backend.device_seconds(f)
        } else {
            None
        }
    }

    fn row(&self, kernel: &str, seconds: f64, device_seconds: Option<f64>, w: Work) -> BenchRow {
        let rates = |secs: f64| {
            let gbs = w.bytes / secs / 1e9;
            let gfs = w.flops / secs / 1e9;
            let frac = self
                .peak
                .map(|(b, f)| if w.compute_bound { gfs / f } else { gbs / b });
            (gbs, gfs, frac)
        };
        let (gbs, gfs, frac) = rates(seconds);
        let dev = device_seconds.map(rates);
        BenchRow {
            kernel: kernel.into(),
            seconds,
            gb_per_s: gbs,
            gflop_per_s: gfs,
            fraction_of_peak: frac,
            device_seconds,
            device_gb_per_s: dev.map(|d| d.0),
            device_gflop_per_s: dev.map(|d| d.1),
            device_fraction_of_peak: dev.and_then(|d| d.2),
        }
    }

    /// Times `f` on the host, then (where the backend can) on the device.
    fn measure(&self, kernel: &str, f: &mut dyn FnMut(), w: Work) -> BenchRow {
        let secs = time(f);
        let dev = self.device(f);
        self.row(kernel, secs, dev, w)
    }
}

/// Runs every kernel on `backend` and returns one row per kernel. Where the backend can time
/// its device, each kernel's calls run a second time under [`Backend::device_seconds`] (the
/// wall-clock run stays free of timestamp queries).
pub fn run(backend: &dyn Backend, o: &BenchOptions) -> Vec<BenchRow> {
    let meter = Meter {
        backend,
        peak: peak_of(&backend.device()),
        on_device: backend.device_timing().is_ok(),
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
    let streaming = |flops: f64| Work {
        bytes: nnz * 8.0,
        flops,
        compute_bound: false,
    };

    // The copy of the chunk that normalize_log1p overwrites stays outside the host timing.
    let mut secs = 0.0;
    for _ in 0..reps {
        let mut x = chunk.clone();
        secs += time(&mut || backend.normalize_log1p(&mut x, 1e4));
    }
    let dev = meter.device(&mut || {
        for _ in 0..reps {
            let mut x = chunk.clone();
            backend.normalize_log1p(&mut x, 1e4);
        }
    });
    out.push(meter.row("normalize_log1p", secs, dev, streaming(nnz * 4.0)));

    let mut moments = || {
        for _ in 0..reps {
            std::hint::black_box(backend.gene_moments(&logc, Transform::Expm1));
        }
    };
    out.push(meter.measure("gene_moments_expm1", &mut moments, streaming(nnz * 4.0)));

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
    let mut gram = || {
        for _ in 0..reps {
            backend.scaled_gram(&logc, &spec, &mut g, &mut cs);
        }
    };
    // SGEMM convention: 2 n k² for XᵀX (the kernel computes half of it and mirrors).
    let work = Work {
        bytes: nnz * 8.0,
        flops: 2.0 * cells * (k * k) as f64,
        compute_bound: true,
    };
    out.push(meter.measure("scaled_gram", &mut gram, work));

    let c = 50usize;
    let comps: Vec<f64> = (0..k * c).map(|i| ((i % 17) as f64 - 8.0) / 17.0).collect();
    let mut project = || {
        for _ in 0..reps {
            std::hint::black_box(backend.scaled_project(&logc, &spec, &m, &comps, c));
        }
    };
    let work = Work {
        bytes: nnz * 8.0 + cells * c as f64 * 8.0,
        flops: 2.0 * cells * (k * c) as f64,
        compute_bound: true,
    };
    out.push(meter.measure("scaled_project", &mut project, work));

    if o.knn_points > 0 {
        let (row, pts, graph) = knn_row(&meter, o);
        out.push(row);
        if o.umap_epochs > 0 {
            out.push(umap_row(&meter, o, &pts, &graph));
        }
    }
    out
}

/// `len` deterministic pseudo-random values in [0, 10) from `seed`.
fn uniform_values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) as f32) / (1u64 << 24) as f32 * 10.0
        })
        .collect()
}

/// The exact kNN search of `o.knn_points` pseudo-random points; with the points and their
/// neighbours (indices, distances).
fn knn_row(meter: &Meter<'_>, o: &BenchOptions) -> (BenchRow, Vec<f32>, (Vec<u32>, Vec<f64>)) {
    let n = o.knn_points;
    let pts = uniform_values(n * o.dim, 12345);
    let mut found = None;
    let mut knn = || {
        found = Some(meter.backend.knn_exact(&pts, o.dim, o.k));
    };
    let work = Work {
        bytes: (n * o.dim * 4) as f64,
        flops: 2.0 * (n as f64) * (n as f64) * o.dim as f64,
        compute_bound: true,
    };
    let row = meter.measure(&format!("knn_exact_{}d_k{}", o.dim, o.k), &mut knn, work);
    let found = found.expect("measure runs the search");
    (row, pts, found)
}

/// `o.umap_epochs` of UMAP's SGD (2-D, scanpy's a and b) on a fuzzy graph of the kNN points'
/// neighbours, from a fixed pseudo-random layout. The graph is umap-like, not umap's own (the
/// pipeline's lies a layer above): each kNN edge in both directions, weight
/// `exp(-(d - d_nearest) / mean)` over the row, the larger where both directions exist. The work
/// model counts samples: each positive and negative sample reads two points and the head
/// writes its own (12 bytes a sample in 2-D) and takes about 30 operations; UMAP is bound by
/// its random reads, so the fraction of peak is of the bandwidth.
fn umap_row(
    meter: &Meter<'_>,
    o: &BenchOptions,
    pts: &[f32],
    (idx, dist): &(Vec<u32>, Vec<f64>),
) -> BenchRow {
    use crate::backend::umap_sgd::{Graph, SgdGraph, SgdParams};
    let n = pts.len() / o.dim;
    let k = o.k.min(n);
    let mut pairs: Vec<(u32, u32, f64)> = Vec::with_capacity(2 * n * k);
    for (i, (row, d)) in idx.chunks(k).zip(dist.chunks(k)).enumerate() {
        let beyond: Vec<f64> = d[1..].iter().map(|&x| (x - d[1]).max(0.0)).collect();
        let mean = (beyond.iter().sum::<f64>() / beyond.len().max(1) as f64).max(1e-12);
        for (&j, &b) in row[1..].iter().zip(&beyond) {
            let w = (-b / mean).exp();
            pairs.push((i as u32, j, w));
            pairs.push((j, i as u32, w));
        }
    }
    pairs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.total_cmp(&a.2)));
    pairs.dedup_by_key(|p| (p.0, p.1));
    let mut indptr = vec![0usize; n + 1];
    for p in &pairs {
        indptr[p.0 as usize + 1] += 1;
    }
    for i in 0..n {
        indptr[i + 1] += indptr[i];
    }
    let graph = SgdGraph::new(&Graph {
        indptr,
        indices: pairs.iter().map(|p| p.1).collect(),
        weights: pairs.iter().map(|p| p.2).collect(),
    });
    let p = SgdParams {
        a: 0.583_03,
        b: 1.334_17,
        gamma: 1.0,
        negative_sample_rate: 5.0,
        learning_rate: 1.0,
        n_epochs: o.umap_epochs,
        seed: 0,
    };
    let init = uniform_values(n * 2, 99);
    let mut run = || {
        let mut e = init.clone();
        meter.backend.umap_optimize(&graph, &mut e, 2, &p);
        std::hint::black_box(e);
    };
    // Positive samples: each edge rate (w / max w) times per epoch; 5 negatives each.
    let positive: f64 =
        graph.rate.iter().map(|&r| f64::from(r)).sum::<f64>() * o.umap_epochs as f64;
    let samples = positive * 6.0;
    let work = Work {
        bytes: samples * 12.0,
        flops: samples * 30.0,
        compute_bound: false,
    };
    meter.measure(&format!("umap_{}_epochs", o.umap_epochs), &mut run, work)
}

/// The rows as an aligned text table. With device times (every row has one): the host's
/// seconds, the device's milliseconds, and rates and fraction of peak from the device time,
/// labelled so; without: the host's seconds and rates, and a line saying why device timing
/// is unavailable (`device_timing`, from [`Backend::device_timing`]).
pub fn to_text(device: &str, rows: &[BenchRow], device_timing: &Result<(), String>) -> String {
    let pct = |f: Option<f64>| f.map_or("n/a".to_string(), |f| format!("{:.1}%", f * 100.0));
    let mut s = format!("device: {device}\n");
    let timed = !rows.is_empty() && rows.iter().all(|r| r.device_seconds.is_some());
    if timed {
        s.push_str(
            "times: host s = wall clock around the calls (transfers, submission, readback \
             included); device ms = the kernels' compute passes on the device (timestamp \
             queries); dev GB/s, dev GFLOP/s and dev peak from the device time\n",
        );
        s.push_str(&format!(
            "{:<24} {:>10} {:>11} {:>10} {:>12} {:>9}\n",
            "kernel", "host s", "device ms", "dev GB/s", "dev GFLOP/s", "dev peak"
        ));
        for r in rows {
            s.push_str(&format!(
                "{:<24} {:>10.4} {:>11.3} {:>10.1} {:>12.1} {:>9}\n",
                r.kernel,
                r.seconds,
                r.device_seconds.unwrap_or(f64::NAN) * 1e3,
                r.device_gb_per_s.unwrap_or(f64::NAN),
                r.device_gflop_per_s.unwrap_or(f64::NAN),
                pct(r.device_fraction_of_peak)
            ));
        }
        return s;
    }
    let why = match device_timing {
        Ok(()) => "the timestamps could not be read".to_string(),
        Err(e) => e.clone(),
    };
    s.push_str(&format!(
        "device timing: unavailable ({why}); times and rates from the host's wall clock\n"
    ));
    s.push_str(&format!(
        "{:<24} {:>10} {:>10} {:>12} {:>9}\n",
        "kernel", "seconds", "GB/s", "GFLOP/s", "of peak"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<24} {:>10.4} {:>10.1} {:>12.1} {:>9}\n",
            r.kernel,
            r.seconds,
            r.gb_per_s,
            r.gflop_per_s,
            pct(r.fraction_of_peak)
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
            umap_epochs: 20,
        };
        let rows = run(&CpuBackend, &o);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[5].kernel, "umap_20_epochs");
        assert!(rows.iter().all(|r| r.seconds > 0.0 && r.gflop_per_s > 0.0));
        assert!(rows.iter().all(|r| r.fraction_of_peak.is_none()));
        // The CPU has no device timer: host times only, and the table says so.
        assert!(rows.iter().all(|r| r.device_seconds.is_none()
            && r.device_gb_per_s.is_none()
            && r.device_fraction_of_peak.is_none()));
        let timing = CpuBackend.device_timing();
        assert_eq!(
            timing,
            Err("the cpu backend has no device timer".to_string())
        );
        let text = to_text("cpu", &rows, &timing);
        assert!(
            text.contains("device timing: unavailable (the cpu backend has no device timer)"),
            "{text}"
        );
        assert!(!text.contains("device ms"), "{text}");
    }

    fn timed_row(seconds: f64, device_seconds: f64) -> BenchRow {
        BenchRow {
            kernel: "k".into(),
            seconds,
            gb_per_s: 1.0 / seconds,
            gflop_per_s: 2.0 / seconds,
            fraction_of_peak: None,
            device_seconds: Some(device_seconds),
            device_gb_per_s: Some(1.0 / device_seconds),
            device_gflop_per_s: Some(2.0 / device_seconds),
            device_fraction_of_peak: Some(0.25),
        }
    }

    #[test]
    fn the_table_shows_both_times_and_labels_the_device_rates() {
        let text = to_text("gpu", &[timed_row(2.0, 0.5)], &Ok(()));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("times: host s = wall clock"), "{text}");
        let head: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            head,
            [
                "kernel", "host", "s", "device", "ms", "dev", "GB/s", "dev", "GFLOP/s", "dev",
                "peak"
            ]
        );
        let row: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(row, ["k", "2.0000", "500.000", "2.0", "4.0", "25.0%"]);
        // JSON: the host fields keep their names and meaning, the device ones are added.
        let v = serde_json::to_value(timed_row(2.0, 0.5)).unwrap();
        assert_eq!(v["seconds"], 2.0);
        assert_eq!(v["gb_per_s"], 0.5);
        assert_eq!(v["device_seconds"], 0.5);
        assert_eq!(v["device_gflop_per_s"], 4.0);
    }
}
