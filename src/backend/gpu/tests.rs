//! Every kernel on both backends against a naive f64 reference, and the GPU against the CPU on
//! the same input, with the edge cases the pipeline meets: empty rows, one cell, constant
//! genes, sizes that are not multiples of the workgroup or tile sizes, n < k.
//!
//! The GPU tests run on any adapter, lavapipe included (scripts/setup.sh installs it). With no
//! adapter at all they fail, unless CARTSCOPE_SKIP_GPU_TESTS=1 says to skip them.

use std::sync::{Arc, OnceLock};

use super::{GpuBackend, GpuContext};
use crate::backend::{Backend, CpuBackend, ScaleSpec, Transform};
use crate::matrix::CsrMatrix;

/// The shared GPU backend (one device for all tests), or None when skipping is asked for.
pub(crate) fn gpu() -> Option<GpuBackend> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        GpuContext::new(true)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    });
    match ctx {
        Ok(c) => Some(GpuBackend::with_context(c.clone())),
        Err(e) if std::env::var("CARTSCOPE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1") => {
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!(
            "no GPU adapter ({e}); run scripts/setup.sh (installs lavapipe) or set CARTSCOPE_SKIP_GPU_TESTS=1"
        ),
    }
}

/// Both backends, CPU first.
fn backends() -> Vec<Box<dyn Backend>> {
    let mut v: Vec<Box<dyn Backend>> = vec![Box::new(CpuBackend)];
    if let Some(g) = gpu() {
        v.push(Box::new(g));
    }
    v
}

/// A GPU kernel that failed would have run on the CPU and passed: make sure none did.
fn ran_here(b: &dyn Backend) {
    assert_eq!(b.fallback_reason(), None, "{} fell back", b.name());
}

/// Deterministic pseudo-random numbers in [0, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counts with empty rows (every 7th), one-entry rows (every 11th) and a gene that is never
/// expressed (column 3) and one expressed equally in every cell (column 5 = 2).
fn counts(rows: usize, cols: usize, seed: u64) -> CsrMatrix {
    let mut r = Lcg(seed);
    let mut dense = vec![0.0f32; rows * cols];
    for i in 0..rows {
        if i % 7 == 3 {
            continue;
        }
        for j in 0..cols {
            let v = if i % 11 == 5 {
                if j == 1 { 4.0 } else { 0.0 }
            } else if j == 5 {
                2.0
            } else if j == 3 {
                0.0
            } else if r.next() < 0.3 {
                (r.next() * 40.0).floor() as f32 + 1.0
            } else {
                0.0
            };
            dense[i * cols + j] = v;
        }
    }
    CsrMatrix::from_dense(rows, cols, &dense)
}

fn check_normalize(b: &dyn Backend, m: &CsrMatrix) {
    let mut x = m.clone();
    b.normalize_log1p(&mut x, 1e4);
    for i in 0..m.n_rows {
        let (_, raw) = m.row(i);
        let total = raw.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
        let f = if total == 0.0 { 1.0 } else { total / 1e4 };
        for (&got, &v) in x.row(i).1.iter().zip(raw) {
            let want = (v / f).ln_1p();
            assert!(
                (got - want).abs() <= 2e-6,
                "{}: row {i}: {got} vs {want}",
                b.name()
            );
        }
    }
}

#[test]
fn normalize_log1p_matches_the_reference() {
    for b in backends() {
        check_normalize(b.as_ref(), &counts(333, 300, 1));
        check_normalize(b.as_ref(), &counts(1, 40, 2));
        check_normalize(b.as_ref(), &CsrMatrix::from_dense(2, 3, &[0.0; 6]));
        ran_here(b.as_ref());
    }
}

fn check_moments(b: &dyn Backend, m: &CsrMatrix, transform: Transform) {
    let got = b.gene_moments(m, transform);
    assert_eq!(got.n, m.n_rows as u64);
    let (mut s1, mut s2) = (vec![0.0f64; m.n_cols], vec![0.0f64; m.n_cols]);
    for (&j, &v) in m.indices.iter().zip(&m.data) {
        let x = match transform {
            Transform::Identity => v,
            Transform::Expm1 => v.exp_m1(),
        };
        s1[j as usize] += f64::from(x);
        s2[j as usize] += f64::from(x * x);
    }
    for j in 0..m.n_cols {
        for (g, w, what) in [(got.sum[j], s1[j], "sum"), (got.sum_sq[j], s2[j], "sum_sq")] {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs() + 1e-12,
                "{} {transform:?} {what}[{j}]: {g} vs {w}",
                b.name()
            );
        }
    }
}

#[test]
fn gene_moments_match_f64_sums() {
    let mut logm = counts(1000, 257, 3);
    CpuBackend.normalize_log1p(&mut logm, 1e4);
    for b in backends() {
        for t in [Transform::Identity, Transform::Expm1] {
            check_moments(b.as_ref(), &logm, t);
            check_moments(b.as_ref(), &logm.slice_rows(0..1), t);
        }
        check_moments(b.as_ref(), &counts(100, 50, 4), Transform::Identity);
        ran_here(b.as_ref());
    }
}

/// HVG-like scale statistics of `x` for columns `cols` (std 0 -> 1, as the pipeline does).
fn spec_of(x: &CsrMatrix, cols: &[u32]) -> (Vec<f64>, Vec<f64>) {
    let (mean, var) = CpuBackend.gene_moments(x, Transform::Identity).mean_var(1);
    let m: Vec<f64> = cols.iter().map(|&j| mean[j as usize]).collect();
    let s: Vec<f64> = cols
        .iter()
        .map(|&j| var[j as usize].sqrt())
        .map(|s| if s == 0.0 { 1.0 } else { s })
        .collect();
    (m, s)
}

fn check_scaled_gram(
    b: &dyn Backend,
    x: &CsrMatrix,
    stats_of: &CsrMatrix,
    cols: &[u32],
    max_value: Option<f64>,
) {
    let k = cols.len();
    let (mean, std) = spec_of(stats_of, cols);
    let spec = ScaleSpec {
        cols,
        mean: &mean,
        std: &std,
        max_value,
    };
    let block = CpuBackend.scale_dense(x, cols, &mean, &std, max_value);
    let dense = b.scale_dense(x, cols, &mean, &std, max_value);
    for (g, w) in dense.iter().zip(&block) {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{}: scale {g} vs {w}",
            b.name()
        );
    }
    let norms: Vec<f64> = (0..k)
        .map(|a| block.chunks(k).map(|r| r[a] * r[a]).sum::<f64>().sqrt())
        .collect();
    // Start from non-zero sums (the kernels add), through the fused and the dense entry points.
    let (mut g, mut s) = (vec![1.0; k * k], vec![1.0; k]);
    b.scaled_gram(x, &spec, &mut g, &mut s);
    let (mut g2, mut s2) = (vec![1.0; k * k], vec![1.0; k]);
    b.gram_accumulate(&block, k, &mut g2, &mut s2);
    for (g, s) in [(&g, &s), (&g2, &s2)] {
        for a in 0..k {
            let want_s = 1.0 + block.chunks(k).map(|r| r[a]).sum::<f64>();
            let tol = 1e-6 * (1.0 + norms[a] * (x.n_rows as f64).sqrt());
            assert!((s[a] - want_s).abs() <= tol, "{}: colsum[{a}]", b.name());
            for c in 0..k {
                let want = 1.0 + block.chunks(k).map(|r| r[a] * r[c]).sum::<f64>();
                let got = g[a * k + c];
                assert!(
                    (got - want).abs() <= 1e-6 * (1.0 + norms[a] * norms[c]),
                    "{}: gram[{a},{c}] {got} vs {want}",
                    b.name()
                );
            }
        }
    }
}

#[test]
fn scaled_gram_matches_the_f64_product() {
    let mut x = counts(333, 300, 5);
    CpuBackend.normalize_log1p(&mut x, 1e4);
    // 150 columns: two Gram tiles, the second partial; includes the never-expressed (3) and
    // the constant (5) genes.
    let cols: Vec<u32> = (0..300).step_by(2).chain([3, 5]).collect();
    for b in backends() {
        check_scaled_gram(b.as_ref(), &x, &x, &cols, Some(10.0));
        check_scaled_gram(b.as_ref(), &x, &x, &cols[..7], None);
        check_scaled_gram(b.as_ref(), &x.slice_rows(0..1), &x, &cols[..20], Some(1.0));
        // Enough rows that each row split flushes its f32 sums more than once.
        let mut tall = counts(3000, 40, 11);
        CpuBackend.normalize_log1p(&mut tall, 1e4);
        let few: Vec<u32> = (0..40).collect();
        check_scaled_gram(b.as_ref(), &tall, &tall, &few, Some(10.0));
        ran_here(b.as_ref());
    }
}

fn check_project(b: &dyn Backend, x: &CsrMatrix, stats_of: &CsrMatrix, cols: &[u32], c: usize) {
    let k = cols.len();
    let (mean, std) = spec_of(stats_of, cols);
    let spec = ScaleSpec {
        cols,
        mean: &mean,
        std: &std,
        max_value: Some(10.0),
    };
    let mut r = Lcg(9);
    let comps: Vec<f64> = (0..k * c).map(|_| r.next() - 0.5).collect();
    let pmean: Vec<f64> = (0..k).map(|_| r.next() * 0.1).collect();
    let block = CpuBackend.scale_dense(x, cols, &mean, &std, Some(10.0));
    let got = b.scaled_project(x, &spec, &pmean, &comps, c);
    let got2 = b.project(&block, k, &pmean, &comps, c);
    for (i, row) in block.chunks(k).enumerate() {
        let scale: f64 = row.iter().map(|v| v.abs()).sum::<f64>() + 1.0;
        for j in 0..c {
            let want: f64 = (0..k).map(|a| (row[a] - pmean[a]) * comps[a * c + j]).sum();
            for g in [got[i * c + j], got2[i * c + j]] {
                assert!(
                    (g - want).abs() <= 1e-6 * scale,
                    "{}: project[{i},{j}] {g} vs {want}",
                    b.name()
                );
            }
        }
    }
}

#[test]
fn projection_matches_the_f64_product() {
    let mut x = counts(200, 180, 6);
    CpuBackend.normalize_log1p(&mut x, 1e4);
    let cols: Vec<u32> = (0..180).step_by(3).collect();
    for b in backends() {
        check_project(b.as_ref(), &x, &x, &cols, 17);
        check_project(b.as_ref(), &x.slice_rows(0..1), &x, &cols, 3);
        ran_here(b.as_ref());
    }
}

/// Brute-force f64 kNN sorted by (distance, index), self forced to 0.
fn brute_knn(p: &[f32], dim: usize, k: usize) -> Vec<Vec<u32>> {
    let n = p.len() / dim;
    (0..n)
        .map(|i| {
            let mut d: Vec<(f64, u32)> = (0..n)
                .map(|j| {
                    let d2: f64 = (0..dim)
                        .map(|a| (f64::from(p[i * dim + a]) - f64::from(p[j * dim + a])).powi(2))
                        .sum();
                    (if i == j { 0.0 } else { d2 }, j as u32)
                })
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            d.iter().take(k.min(n)).map(|x| x.1).collect()
        })
        .collect()
}

fn check_knn(b: &dyn Backend, n: usize, dim: usize, k: usize, seed: u64) {
    let mut r = Lcg(seed);
    let p: Vec<f32> = (0..n * dim).map(|_| (r.next() * 10.0) as f32).collect();
    let (idx, dist) = b.knn_exact(&p, dim, k);
    let kk = k.min(n);
    assert_eq!(idx.len(), n * kk);
    let want = brute_knn(&p, dim, k);
    for i in 0..n {
        assert_eq!(
            &idx[i * kk..(i + 1) * kk],
            &want[i][..],
            "{}: row {i}",
            b.name()
        );
        assert_eq!(dist[i * kk], 0.0);
        assert!(dist[i * kk..(i + 1) * kk].windows(2).all(|w| w[0] <= w[1]));
    }
    let (ci, cd) = CpuBackend.knn_exact(&p, dim, k);
    assert_eq!(idx, ci, "{} vs cpu", b.name());
    assert_eq!(dist, cd, "{} vs cpu", b.name());
}

#[test]
fn knn_exact_matches_brute_force() {
    for b in backends() {
        check_knn(b.as_ref(), 300, 10, 15, 7);
        check_knn(b.as_ref(), 130, 50, 15, 8);
        check_knn(b.as_ref(), 5, 3, 15, 9);
        check_knn(b.as_ref(), 1, 4, 15, 10);
        ran_here(b.as_ref());
    }
}

#[test]
fn knn_is_certified_where_f32_keys_misrank() {
    // Tight clusters far from the origin: |p|² ~ 7e6 makes the f32 keys coarser than the
    // distances inside a cluster, so the device's candidate lists miss true neighbours. The
    // certification must notice and give exactly the f64 brute-force answer anyway.
    let (n, dim, k) = (700usize, 7usize, 15usize);
    let mut r = Lcg(11);
    let p: Vec<f32> = (0..n * dim)
        .map(|e| 1000.0 * ((e / dim) % 3) as f32 + (r.next() - 0.5) as f32)
        .collect();
    let want = brute_knn(&p, dim, k);
    let Some(g) = gpu() else { return };
    let cert = crate::backend::cpu::KnnCertifier::new(&p, dim, 1.0);
    let len = k + super::kernels::KNN_MARGIN;
    let (cand, _) =
        super::kernels::knn_candidates(&g.ctx, &p, &cert.norms, dim, len).expect("candidates");
    let missed = (0..n)
        .filter(|&i| {
            let list = &cand[i * len..(i + 1) * len];
            want[i].iter().any(|j| !list.contains(j))
        })
        .count();
    assert!(
        missed > 0,
        "the f32 candidates were exact: the test proves nothing"
    );
    let (idx, _) = g.knn_exact(&p, dim, k);
    for i in 0..n {
        assert_eq!(&idx[i * k..(i + 1) * k], &want[i][..], "row {i}");
    }
    assert_eq!(idx, CpuBackend.knn_exact(&p, dim, k).0);
    ran_here(&g);
}

#[test]
fn knn_candidates_do_not_depend_on_the_candidate_slices() {
    // Points on a coarse integer grid: many duplicates, so many equal f32 keys, which every
    // slicing must break the same way (by index). Lists carried across 64, 128 or 320
    // candidates per dispatch equal the lists of one dispatch, worst keys included.
    let Some(g) = gpu() else { return };
    let (n, dim, len) = (1000usize, 3usize, 23usize);
    let mut r = Lcg(12);
    let p: Vec<f32> = (0..n * dim)
        .map(|_| (r.next() * 4.0).floor() as f32)
        .collect();
    let norms: Vec<f64> = p
        .chunks(dim)
        .map(|x| x.iter().map(|&v| f64::from(v * v)).sum())
        .collect();
    let whole = super::kernels::knn_candidates(&g.ctx, &p, &norms, dim, len).expect("one slice");
    for slice in [64, 128, 320] {
        let sliced = super::kernels::knn_candidates_sliced(&g.ctx, &p, &norms, dim, len, slice)
            .expect("slices");
        assert_eq!(sliced, whole, "{slice} candidates per dispatch");
    }
    // Each list holds distinct, valid indices, and its worst key is finite (n > len).
    for i in 0..n {
        let mut l = whole.0[i * len..(i + 1) * len].to_vec();
        l.sort_unstable();
        l.dedup();
        assert_eq!(l.len(), len);
        assert!(l.iter().all(|&j| (j as usize) < n));
        assert!(whole.1[i] < 1e30);
    }
    ran_here(&g);
}

#[test]
fn knn_keeps_duplicates_self_first_by_index() {
    // Duplicate points are at distance 0 from each other: ties go by index, so self need not
    // come first (as in scanpy), on both backends.
    let p = [1.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0];
    for b in backends() {
        let (idx, dist) = b.knn_exact(&p, 2, 3);
        assert_eq!(&idx[3..6], &[0, 1, 2], "{}", b.name());
        assert_eq!(&dist[3..6], &[0.0, 0.0, 0.0]);
        assert_eq!(&idx[9..12], &[3, 0, 1], "{}", b.name());
        ran_here(b.as_ref());
    }
}

#[test]
fn readback_reuses_its_staging_buffers() {
    let Some(g) = gpu() else { return };
    // A private context: the shared one is used by tests running in parallel.
    let ctx = GpuContext::new(true).expect("context");
    let data: Vec<u32> = (0..5000).collect();
    let buf = ctx.upload(&data);
    assert_eq!(ctx.idle_staging(), 0);
    for (offset, count) in [(0usize, 5000usize), (4, 3), (100, 17), (0, 1)] {
        let got: Vec<u32> = ctx.read(&buf, (offset * 4) as u64, count).expect("read");
        assert_eq!(got, data[offset..offset + count]);
        // One buffer serves every read: taken, then given back.
        assert_eq!(ctx.idle_staging(), 1);
    }
    ran_here(&g);
}

#[test]
fn chunk_loops_reuse_pooled_buffers_and_match_the_cpu() {
    let Some(shared) = gpu() else { return };
    // A private context, so that the allocation count is this test's alone.
    let ctx = Arc::new(GpuContext::new(true).expect("context"));
    let g = GpuBackend::with_context(ctx.clone());
    let cols: Vec<u32> = (0..180).step_by(2).collect();
    // Scale statistics of the whole matrix, as the pipeline takes them.
    let mut stats = counts(400, 180, 20);
    CpuBackend.normalize_log1p(&mut stats, 1e4);
    // The largest chunk first, then smaller ones: later chunks run in buffers an earlier,
    // larger chunk filled, so stale data past a chunk's end (or accumulators not zeroed) would
    // show in their results; the last chunk repeats the first size.
    let mut after_first = 0;
    for (c, rows) in [400usize, 333, 250, 97, 1, 400].into_iter().enumerate() {
        let raw = counts(rows, 180, 20 + c as u64);
        check_normalize(&g, &raw);
        let mut x = raw.clone();
        CpuBackend.normalize_log1p(&mut x, 1e4);
        for t in [Transform::Identity, Transform::Expm1] {
            check_moments(&g, &x, t);
        }
        check_scaled_gram(&g, &x, &stats, &cols, Some(10.0));
        check_project(&g, &x, &stats, &cols, 17);
        check_knn(&g, rows, 10, 15, 30 + c as u64);
        if c == 0 {
            after_first = ctx.pool_allocations();
        }
    }
    assert!(after_first > 0);
    assert_eq!(
        ctx.pool_allocations(),
        after_first,
        "chunks after the first allocated device buffers"
    );
    ran_here(&g);
    ran_here(&shared);
}

#[test]
fn gpu_backend_names_its_device() {
    if let Some(g) = gpu() {
        assert_eq!(g.name(), "gpu");
        assert!(!g.device().is_empty());
        assert!(g.driver().is_some());
        assert_eq!(g.fallback_reason(), None);
    }
}

/// A graph of `n` points in two chains of `n / 2` (each point joined to the 4 nearest indices
/// of its chain, weights falling with the index gap), the chains joined by one edge, and
/// `isolated` points without edges at the end; its SGD schedule and a layout on [0, 10].
fn sgd_case(
    n: usize,
    isolated: usize,
    dim: usize,
) -> (crate::backend::umap_sgd::SgdGraph, Vec<f32>) {
    let total = n + isolated;
    let (mut indptr, mut indices, mut weights) = (vec![0usize], Vec::new(), Vec::new());
    for i in 0..total {
        for j in 0..total {
            let (ci, cj) = (i < n / 2, j < n / 2);
            let gap = i.abs_diff(j);
            let w = if i >= n || j >= n || i == j {
                0.0
            } else if ci == cj && gap <= 4 {
                1.0 / gap as f64
            } else if (i, j) == (0, n - 1) || (i, j) == (n - 1, 0) {
                0.3
            } else {
                0.0
            };
            if w > 0.0 {
                indices.push(j as u32);
                weights.push(w);
            }
        }
        indptr.push(indices.len());
    }
    let g = crate::backend::umap_sgd::Graph {
        indptr,
        indices,
        weights,
    };
    let mut rng = Lcg(11);
    let init = (0..total * dim)
        .map(|_| (10.0 * rng.next()) as f32)
        .collect();
    (crate::backend::umap_sgd::SgdGraph::new(&g), init)
}

fn sgd_params(n_epochs: usize) -> crate::backend::umap_sgd::SgdParams {
    let (a, b) = crate::tl::umap::find_ab_params(1.0, 0.5);
    crate::backend::umap_sgd::SgdParams {
        a: a as f32,
        b: b as f32,
        gamma: 1.0,
        negative_sample_rate: 5.0,
        learning_rate: 1.0,
        n_epochs,
        seed: 3,
    }
}

#[test]
fn umap_epochs_on_the_gpu_follow_the_cpu_step_by_step() {
    // Same schedule, same negative samples: after an epoch the layouts differ only by the
    // device's exp2/log2 against the CPU's polynomials and the order the pushes are summed in
    // (measured on lavapipe: at most 1.1e-5 on coordinates in [0, 10]), for every dimension
    // the kernel takes, sizes that are not multiples of the workgroup and points without edges
    // (which must not move). Later epochs amplify such differences where points nearly
    // coincide (the repulsion goes as 1 / (0.001 + d^2)), so one epoch is the step compared.
    let Some(gpu) = gpu() else { return };
    let p = sgd_params(200);
    // Nothing is sampled in epoch 0; epoch 1 moves every point with edges.
    const EPOCHS: usize = 2;
    for (n, isolated, dim) in [(200, 0, 2), (131, 3, 1), (97, 2, 3), (64, 0, 4)] {
        let (g, init) = sgd_case(n, isolated, dim);
        let mut cpu = init.clone();
        let mut state = crate::backend::umap_sgd::SgdState::new(&g, dim);
        for epoch in 0..EPOCHS {
            crate::backend::umap_sgd::optimize_epoch(&g, &mut state, &mut cpu, dim, &p, epoch);
        }
        let dev = super::kernels::umap_epochs(&gpu.ctx, &g, &init, dim, &p, EPOCHS).unwrap();
        let mut moved = 0;
        for i in 0..(n + isolated) * dim {
            assert!(
                (dev[i] - cpu[i]).abs() <= 1e-4,
                "n {n} dim {dim} coordinate {i}: gpu {} cpu {}",
                dev[i],
                cpu[i]
            );
            moved += usize::from(cpu[i] != init[i]);
            if i >= n * dim {
                assert_eq!(dev[i], init[i], "an isolated point moved");
            }
        }
        assert!(moved >= n * dim * 9 / 10, "{moved} of {} moved", n * dim);
    }
    ran_here(&gpu);
}

#[test]
fn umap_on_the_gpu_is_deterministic() {
    // Every epoch of a full run, twice: identical bits; through the backend, no fallback.
    let Some(gpu) = gpu() else { return };
    let (g, init) = sgd_case(300, 1, 2);
    let p = sgd_params(60);
    let mut first = init.clone();
    gpu.umap_optimize(&g, &mut first, 2, &p);
    let mut second = init.clone();
    gpu.umap_optimize(&g, &mut second, 2, &p);
    assert_eq!(first, second);
    assert!(first.iter().all(|v| v.is_finite()));
    assert_ne!(first, init);
    ran_here(&gpu);
}

#[test]
fn umap_parts_hold_whole_points_within_the_edge_bound() {
    use super::kernels::umap_parts;
    let (g, _) = sgd_case(300, 3, 2);
    let n = g.n_vertices;
    for max_edges in [9, 10, 37, 1000, 100_000] {
        let parts = umap_parts(&g.head_ptr, max_edges).unwrap();
        // Consecutive, covering every point once, each within the bound and as long as it can be.
        assert_eq!(parts.first().unwrap().points.start, 0);
        assert_eq!(parts.last().unwrap().points.end, n);
        for (i, part) in parts.iter().enumerate() {
            let (p0, p1) = (part.points.start, part.points.end);
            assert_eq!(part.edges, g.head_ptr[p0]..g.head_ptr[p1]);
            assert!(part.edges.len() <= max_edges, "{max_edges}: {part:?}");
            if let Some(next) = parts.get(i + 1) {
                assert_eq!(next.points.start, p1);
                assert!(
                    g.head_ptr[p1 + 1] - g.head_ptr[p0] > max_edges,
                    "{part:?} could grow"
                );
            }
        }
        assert_eq!(parts.len() == 1, max_edges >= g.tail.len(), "{max_edges}");
    }
    // A point with more edges than a part holds: an error naming it, not a split point.
    let err = umap_parts(&g.head_ptr, 3).unwrap_err().to_string();
    assert!(err.contains("umap edges of point 0"), "{err}");
    assert!(umap_parts(&[0], 5).unwrap().is_empty());
}

#[test]
fn umap_epochs_in_parts_give_the_one_part_layout_bit_for_bit() {
    // The per-edge arrays split across bindings (one part per point at the smallest bound):
    // every tail still adds its moves in edge order, so the layout is the same bits.
    let Some(gpu) = gpu() else { return };
    let p = sgd_params(200);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (n, isolated, dim, bounds) in [(300, 2, 2, [40, 400]), (131, 3, 3, [9, 100])] {
        let (g, init) = sgd_case(n, isolated, dim);
        let one = super::kernels::umap_epochs(&gpu.ctx, &g, &init, dim, &p, 30).unwrap();
        assert_ne!(one, init);
        for max_edges in bounds {
            let k = super::kernels::umap_parts(&g.head_ptr, max_edges)
                .unwrap()
                .len();
            assert!(k >= 3, "{max_edges}: {k} parts");
            let split =
                super::kernels::umap_epochs_in_parts(&gpu.ctx, &g, &init, dim, &p, 30, max_edges)
                    .unwrap();
            assert_eq!(bits(&split), bits(&one), "n {n} dim {dim}, {k} parts");
        }
    }
}

/// A GPU backend on its own context whose storage bindings are capped at `bytes` (adapters
/// offer 128 MiB to 4 GiB), so that every chunk loop takes many chunks at test sizes; None where
/// GPU tests are skipped.
fn capped(bytes: u64) -> Option<GpuBackend> {
    gpu()?;
    let mut ctx = GpuContext::new(true).expect("the adapter opened for gpu()");
    ctx.limits.max_storage_buffer_binding_size = bytes;
    assert_eq!(ctx.max_binding(), bytes);
    Some(GpuBackend::with_context(Arc::new(ctx)))
}

#[test]
fn every_kernel_runs_within_a_small_binding_limit() {
    // 128 KiB bindings (the smallest that holds a Gram accumulator, 128 x 128 x 8 bytes):
    // normalize and the moments in a dozen batches, the scaled block in 24, the kNN search in 5 x 5
    // query and candidate slices, UMAP's edges in 5 parts; nothing falls back to the CPU,
    // everything meets the references of the uncapped tests, and UMAP's layout is the uncapped
    // context's bit for bit.
    const CAP: u64 = 128 << 10;
    let Some(small) = capped(CAP) else { return };
    let Some(full) = gpu() else { return };
    let m = counts(6000, 257, 41);
    assert!(m.nnz() * 4 > 10 * CAP);
    check_normalize(&small, &m);
    let mut logm = m.clone();
    CpuBackend.normalize_log1p(&mut logm, 1e4);
    check_moments(&small, &logm, Transform::Expm1);
    let few: Vec<u32> = (0..40).collect();
    check_scaled_gram(&small, &logm, &logm, &few, Some(10.0));
    check_project(&small, &logm, &logm, &few, 17);
    check_knn(&small, 1500, 8, 15, 5);
    let (g, init) = sgd_case(6000, 2, 2);
    let parts = super::kernels::umap_parts(&g.head_ptr, CAP as usize / 12).unwrap();
    assert_eq!(parts.len(), 5);
    let p = sgd_params(30);
    let (mut a, mut b) = (init.clone(), init.clone());
    small.umap_optimize(&g, &mut a, 2, &p);
    full.umap_optimize(&g, &mut b, 2, &p);
    assert_ne!(a, init);
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    ran_here(&small);
    ran_here(&full);
}

#[test]
fn umap_on_the_gpu_takes_empty_and_tiny_graphs() {
    let Some(gpu) = gpu() else { return };
    let p = sgd_params(20);
    // No points; one point; points without any edge: nothing moves.
    for (n, isolated) in [(0, 0), (0, 1), (0, 5), (2, 0)] {
        let (g, init) = sgd_case(n, isolated, 2);
        let mut e = init.clone();
        gpu.umap_optimize(&g, &mut e, 2, &p);
        let mut c = init.clone();
        CpuBackend.umap_optimize(&g, &mut c, 2, &p);
        assert_eq!(e.len(), init.len());
        if n == 0 {
            assert_eq!(e, init);
        }
        for (x, y) in e.iter().zip(&c) {
            assert!((x - y).abs() <= 1e-4, "{n} + {isolated}: {x} vs {y}");
        }
    }
    ran_here(&gpu);
}

/// Tiny bench sizes: every kernel, a few chunks.
fn tiny_bench() -> crate::bench::BenchOptions {
    crate::bench::BenchOptions {
        cells: 600,
        genes: 400,
        nnz_per_cell: 40,
        hvg: 64,
        chunk_rows: 256,
        knn_points: 300,
        dim: 8,
        k: 5,
        umap_epochs: 10,
    }
}

/// The shared GPU backend where its adapter offers timestamp queries, which its context must
/// then have enabled. None (the test is skipped, and says so) where GPU tests are skipped or
/// the adapter has no timestamp queries: there the timing tests cannot check what they promise,
/// and the untimed path is checked on every adapter by
/// `without_timestamp_queries_nothing_is_timed_and_the_bench_says_so`.
fn timed_gpu() -> Option<GpuBackend> {
    let g = gpu()?;
    let ctx = g.context();
    if !ctx.adapter.timestamp_query {
        eprintln!(
            "skipping a device timing test: {} offers no timestamp queries",
            ctx.adapter.name
        );
        return None;
    }
    assert!(
        ctx.timestamps(),
        "{} offers timestamp queries but the context did not enable them",
        ctx.adapter.name
    );
    assert_eq!(g.device_timing(), Ok(()));
    Some(g)
}

#[test]
fn device_time_of_a_kernel_is_positive_and_within_its_wall_time() {
    let Some(g) = timed_gpu() else { return };
    let ctx = g.context().clone();
    let m = counts(3000, 257, 41);
    let mut plain = m.clone();
    g.normalize_log1p(&mut plain, 1e4);

    let mut x = m.clone();
    let t = std::time::Instant::now();
    let ((), dev) = ctx.device_time(|| g.normalize_log1p(&mut x, 1e4));
    let wall = t.elapsed().as_secs_f64();
    let dev = dev.expect("timestamps read back");
    eprintln!("normalize_log1p 3000 x 257: device {dev:.6} s, wall {wall:.6} s");
    assert!(dev > 0.0, "device time {dev}");
    assert!(
        dev <= wall,
        "device time {dev} s above the wall time {wall} s"
    );
    // Timing changes nothing computed.
    let bits = |m: &CsrMatrix| m.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&x), bits(&plain));

    // No compute pass, no device time (a readback alone is not a kernel).
    let (_, none) = ctx.device_time(|| g.gene_moments(&CsrMatrix::empty(10), Transform::Identity));
    assert_eq!(none, Some(0.0));

    // Nested calls on one context: the outer time is the sum of the inner ones. UMAP records
    // three passes per epoch, 25 epochs per submission, so its submissions span many query
    // sets (four passes each under test).
    let (graph, emb) = sgd_case(400, 3, 2);
    let p = sgd_params(30);
    let t = std::time::Instant::now();
    let ((a, b), outer) = ctx.device_time(|| {
        let (_, a) = ctx.device_time(|| g.gene_moments(&x, Transform::Expm1));
        let mut e = emb.clone();
        let (_, b) = ctx.device_time(|| g.umap_optimize(&graph, &mut e, 2, &p));
        (a.unwrap(), b.unwrap())
    });
    let wall = t.elapsed().as_secs_f64();
    let outer = outer.unwrap();
    eprintln!("moments {a:.6} s + umap {b:.6} s = {outer:.6} s on the device, wall {wall:.6} s");
    assert!(a > 0.0 && b > 0.0, "{a:e} {b:e} {:?}", g.fallback_reason());
    assert!(
        (outer - (a + b)).abs() <= 1e-9 * outer,
        "{outer} != {a} + {b}"
    );
    assert!(outer <= wall);
    // A device time belongs to its thread: another thread's work meanwhile is not counted.
    let (_, solo) = ctx.device_time(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut y = m.clone();
                g.normalize_log1p(&mut y, 1e4);
            })
            .join()
            .unwrap();
        });
    });
    assert_eq!(solo, Some(0.0));
    ran_here(&g);
}

#[test]
fn bench_on_the_gpu_reports_host_and_device_times() {
    let Some(g) = timed_gpu() else { return };
    let rows = crate::bench::run(&g, &tiny_bench());
    let text = crate::bench::to_text(&g.device(), &rows, &g.device_timing());
    eprintln!("{text}");
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert!(r.seconds > 0.0, "{}: host time {}", r.kernel, r.seconds);
        let d = r.device_seconds.expect("device time");
        assert!(d > 0.0, "{}: device time {d}", r.kernel);
        assert!(r.device_gb_per_s.unwrap() > 0.0 && r.device_gflop_per_s.unwrap() > 0.0);
    }
    assert!(text.contains("device ms"), "{text}");
    assert!(!text.contains("unavailable"), "{text}");
    ran_here(&g);
}

#[test]
fn without_timestamp_queries_nothing_is_timed_and_the_bench_says_so() {
    // A private context without timestamp queries, whatever the adapter offers: what an
    // adapter without them gets, checked on every adapter.
    let Some(shared) = gpu() else { return };
    let ctx = Arc::new(GpuContext::without_timestamps().expect("context"));
    let g = GpuBackend::with_context(ctx.clone());
    assert!(!ctx.timestamps());
    let reason = g.device_timing().expect_err("no device timing");
    assert!(reason.contains("timestamp queries"), "{reason}");
    assert_eq!(g.device_seconds(&mut || panic!("must not run")), None);
    // The closure still runs, and computes what the timed context computes.
    let m = counts(300, 57, 42);
    let (mut x, mut want) = (m.clone(), m.clone());
    let ((), t) = ctx.device_time(|| g.normalize_log1p(&mut x, 1e4));
    assert_eq!(t, None);
    shared.normalize_log1p(&mut want, 1e4);
    assert_eq!(x.data, want.data);
    // The bench reports host times only, and says why.
    let rows = crate::bench::run(&g, &tiny_bench());
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert!(r.seconds > 0.0, "{}: host time {}", r.kernel, r.seconds);
        assert!(
            r.device_seconds.is_none() && r.device_gb_per_s.is_none(),
            "{}",
            r.kernel
        );
    }
    let text = crate::bench::to_text(&g.device(), &rows, &g.device_timing());
    assert!(
        text.contains(&format!("device timing: unavailable ({reason}")),
        "{text}"
    );
    assert!(!text.contains("device ms"), "{text}");
    ran_here(&g);
    ran_here(&shared);
}
