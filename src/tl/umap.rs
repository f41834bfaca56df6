//! `sc.tl.umap()`: umap-learn's `simplicial_set_embedding` on `obsp["connectivities"]` with
//! scanpy's defaults (ALGORITHMS.md section 6): min_dist 0.5, spread 1, a/b fitted as
//! `find_ab_params` does, 500 epochs up to 10,000 cells and 200 above, edges below
//! max/n_epochs dropped, spectral initialisation (scaled to 10, N(0, 1e-4) noise, rescaled to
//! [0, 10]), 5 negative samples per positive one, learning rate 1 decaying linearly, gradients
//! clipped at 4. Output f32, as scanpy stores `obsm["X_umap"]`.
//!
//! **Deterministic parallel SGD.** umap's single-threaded loop updates each point the moment
//! an edge is sampled (scanpy runs it with `parallel=False`); its parallel mode is Hogwild and
//! not reproducible. Here every epoch reads the embedding as it stood at the start of the
//! epoch: the edges of one head point are processed in order by one thread, moving that point
//! step by step exactly as umap moves `current`; the equal and opposite moves of the tail
//! points (`move_other`) are left in per-edge slots grouped by tail and summed afterwards in
//! edge order, point by point. The negative samples of one positive sample push the point from
//! where that sample left it, summed (umap moves it after each; computing them together lets
//! them run side by side in vector lanes, and each push is small). Negative samples come from a
//! counter-based hash of (seed, epoch, edge, draw), and the sampling schedule is umap's
//! per-edge clocks in closed form ([`samples_by`], [`negatives_by`]). So the result depends on
//! the seed only, never on the number of threads or the instruction set (the AVX2 build does
//! the same IEEE operations, without FMA), and an epoch is a function of (graph, rates,
//! negative counts, embedding, params, seed, epoch) that a GPU kernel reproduces
//! ([`optimize_epoch`], `shaders/umap.wgsl`). The CPU walks two runs of head points side by
//! side: each point's samples form a chain of dependent steps, and two independent chains keep
//! the processor busy.
//!
//! **Spectral initialisation.** The smallest non-trivial eigenvectors of the normalised
//! Laplacian `I - D^-1/2 A D^-1/2` are the largest of `D^-1/2 A D^-1/2` orthogonal to
//! `D^1/2 1`; they are found by Rayleigh-Ritz on a restarted Krylov basis (start vector all
//! ones, as umap's eigsh call; tolerance 1e-4 on the residual), densely for small graphs. A
//! graph in several pieces is laid out as umap's `multi_component_layout` does: each piece's
//! own spectral layout (random for pieces of fewer than 4 points) scaled to half the distance
//! to the nearest other piece, around a meta position per piece. umap puts up to four pieces at
//! +-unit vectors, as here; beyond that it embeds the pieces' centroids spectrally with affinity
//! `exp(-d^2)`, which underflows to the identity at PCA distances (tens), so the centroids are
//! placed by their own top two principal axes instead.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::backend::{Backend, CpuBackend};
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;
use crate::rng::{pcg_hash, splitmix};

/// Parameters of [`umap`]; the defaults are scanpy's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UmapParams {
    /// Effective minimum distance between embedded points.
    pub min_dist: f64,
    /// Scale of embedded points.
    pub spread: f64,
    /// Epochs; `None`: 500 for at most 10,000 points, else 200.
    pub n_epochs: Option<usize>,
    /// Negative samples per positive sample.
    pub negative_sample_rate: usize,
    /// Initial learning rate (alpha).
    pub learning_rate: f64,
    /// Weight of the repulsive term (gamma).
    pub repulsion_strength: f64,
    /// Output dimensions.
    pub n_components: usize,
    /// Random seed (scanpy's `random_state`).
    pub seed: u64,
}

impl Default for UmapParams {
    fn default() -> Self {
        UmapParams {
            min_dist: 0.5,
            spread: 1.0,
            n_epochs: None,
            negative_sample_rate: 5,
            learning_rate: 1.0,
            repulsion_strength: 1.0,
            n_components: 2,
            seed: 0,
        }
    }
}

/// The layout and the curve parameters it was optimised with.
#[derive(Debug, Clone, PartialEq)]
pub struct Umap {
    /// Row-major `n x n_components`.
    pub embedding: Vec<f32>,
    /// Curve parameter a.
    pub a: f64,
    /// Curve parameter b.
    pub b: f64,
    /// Epochs run.
    pub n_epochs: usize,
}

/// umap's `find_ab_params`: least-squares fit of `1 / (1 + a x^(2b))` to the curve that is 1
/// below `min_dist` and `exp(-(x - min_dist) / spread)` above, on 300 points of [0, 3 spread]
/// (scipy's `curve_fit` from (1, 1); here Levenberg-Marquardt with the exact Jacobian, which
/// reaches the same minimum).
pub fn find_ab_params(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let cost = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| (1.0 / (1.0 + a * x.powf(2.0 * b)) - y).powi(2))
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut lambda = 1e-3;
    let mut c = cost(a, b);
    for _ in 0..500 {
        // Normal equations J^T J and J^T r of the residuals f(x) - y.
        let (mut jaa, mut jab, mut jbb, mut ga, mut gb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let den = 1.0 + a * p;
            let r = 1.0 / den - y;
            let da = -p / (den * den);
            let db = -a * p * 2.0 * x.ln() / (den * den);
            jaa += da * da;
            jab += da * db;
            jbb += db * db;
            ga += da * r;
            gb += db * r;
        }
        let mut improved = false;
        for _ in 0..30 {
            let (m11, m22) = (jaa * (1.0 + lambda), jbb * (1.0 + lambda));
            let det = m11 * m22 - jab * jab;
            if det == 0.0 || !det.is_finite() {
                lambda *= 10.0;
                continue;
            }
            let sa = -(m22 * ga - jab * gb) / det;
            let sb = -(m11 * gb - jab * ga) / det;
            let (na, nb) = (a + sa, b + sb);
            let nc = cost(na, nb);
            if nc.is_finite() && nc < c {
                let done = (c - nc) <= 1e-15 * c.max(1e-300)
                    && sa.abs() <= 1e-12 * a.abs()
                    && sb.abs() <= 1e-12 * b.abs();
                (a, b, c) = (na, nb, nc);
                lambda = (lambda / 10.0).max(1e-12);
                improved = !done;
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

/// umap's default epochs: 500 for graphs of at most 10,000 points, else 200.
pub fn default_epochs(n: usize) -> usize {
    if n <= 10_000 { 500 } else { 200 }
}

/// The UMAP layout of the graph `conn` (symmetric fuzzy simplicial set, every stored entry an
/// edge) on the CPU. `data` (row-major, `dim` columns, e.g. X_pca) places disconnected pieces.
pub fn umap(conn: &CsrMatrix, data: Option<(&[f32], usize)>, params: &UmapParams) -> Result<Umap> {
    umap_on(&CpuBackend, conn, data, params)
}

/// [`umap`] with the SGD epochs on `backend` ([`Backend::umap_optimize`]).
pub fn umap_on(
    backend: &dyn Backend,
    conn: &CsrMatrix,
    data: Option<(&[f32], usize)>,
    params: &UmapParams,
) -> Result<Umap> {
    let n = conn.n_rows;
    let dim = params.n_components;
    if !(1..=MAX_COMPONENTS).contains(&dim) {
        return Err(Error::Usage(format!(
            "umap n_components must be 1 to {MAX_COMPONENTS}, not {dim}"
        )));
    }
    let (a, b) = find_ab_params(params.spread, params.min_dist);
    let n_epochs = params.n_epochs.unwrap_or_else(|| default_epochs(n)).max(1);
    let graph = prune(conn, n_epochs);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(params.seed ^ 0x0A11_CE55));
    let started = std::time::Instant::now();
    let init = spectral_layout(&graph, dim, data, &mut rng);
    tracing::debug!(
        "umap spectral init: {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let mut embedding = scale_init(&init, n, dim, &mut rng);
    let sgd = SgdGraph::new(&graph);
    let sgd_params = SgdParams {
        a: a as f32,
        b: b as f32,
        gamma: params.repulsion_strength as f32,
        negative_sample_rate: params.negative_sample_rate.max(1) as f32,
        learning_rate: params.learning_rate as f32,
        n_epochs,
        seed: params.seed,
    };
    backend.umap_optimize(&sgd, &mut embedding, dim, &sgd_params);
    tracing::debug!(
        "umap {n_epochs} epochs on {} edges: {:.3} s in all",
        sgd.tail.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(Umap {
        embedding,
        a,
        b,
        n_epochs,
    })
}

/// A symmetric weighted graph in CSR with f64 weights.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Row pointers.
    pub indptr: Vec<usize>,
    /// Column of each entry.
    pub indices: Vec<u32>,
    /// Weight of each entry.
    pub weights: Vec<f64>,
}

impl Graph {
    fn n(&self) -> usize {
        self.indptr.len() - 1
    }
}

/// Drops entries below `max / n_epochs` (they would be sampled less than once) and zeros.
fn prune(conn: &CsrMatrix, n_epochs: usize) -> Graph {
    let max = conn.data.iter().fold(0f32, |m, &v| m.max(v));
    let cut = max / n_epochs as f32;
    let mut indptr = Vec::with_capacity(conn.n_rows + 1);
    indptr.push(0);
    let (mut indices, mut weights) = (Vec::new(), Vec::new());
    for i in 0..conn.n_rows {
        let (idx, val) = conn.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            // umap compares in the graph's float32.
            if v >= cut && v > 0.0 {
                indices.push(j);
                weights.push(f64::from(v));
            }
        }
        indptr.push(indices.len());
    }
    Graph {
        indptr,
        indices,
        weights,
    }
}

/// umap's initial scaling: the layout times 10 / max|layout|, plus N(0, 1e-4) noise (in f32),
/// then every column mapped to [0, 10].
fn scale_init(init: &[f64], n: usize, dim: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
    let max = init.iter().fold(0f64, |m, &v| m.max(v.abs()));
    let expansion = if max > 0.0 { 10.0 / max } else { 1.0 };
    let mut e: Vec<f32> = init
        .iter()
        .map(|&v| {
            let noise: f64 = StandardNormal.sample(rng);
            (v * expansion) as f32 + (noise * 1e-4) as f32
        })
        .collect();
    for d in 0..dim {
        let (lo, hi) = (0..n).fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), i| {
            (lo.min(e[i * dim + d]), hi.max(e[i * dim + d]))
        });
        let range = hi - lo;
        for i in 0..n {
            let v = &mut e[i * dim + d];
            *v = if range > 0.0 {
                10.0 * (*v - lo) / range
            } else {
                0.0
            };
        }
    }
    e
}

/// Connected components: label of each point (in order of first point) and their count.
fn components(g: &Graph) -> (Vec<u32>, usize) {
    let n = g.n();
    let mut label = vec![u32::MAX; n];
    let mut count = 0u32;
    let mut stack = Vec::new();
    for s in 0..n {
        if label[s] != u32::MAX {
            continue;
        }
        label[s] = count;
        stack.push(s);
        while let Some(v) = stack.pop() {
            for &u in &g.indices[g.indptr[v]..g.indptr[v + 1]] {
                if label[u as usize] == u32::MAX {
                    label[u as usize] = count;
                    stack.push(u as usize);
                }
            }
        }
        count += 1;
    }
    (label, count as usize)
}

/// umap's `spectral_layout` (row-major `n x dim`, f64), with `multi_component_layout` for a
/// graph in several pieces.
pub fn spectral_layout(
    g: &Graph,
    dim: usize,
    data: Option<(&[f32], usize)>,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<f64> {
    let n = g.n();
    let (label, k) = components(g);
    if k <= 1 {
        return spectral_or_random(g, dim, 10.0, rng);
    }
    let meta = meta_layout(&label, k, dim, data);
    let mut out = vec![0.0f64; n * dim];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &c) in label.iter().enumerate() {
        members[c as usize].push(i);
    }
    for (c, nodes) in members.iter().enumerate() {
        let centre = &meta[c * dim..(c + 1) * dim];
        let nearest = (0..k)
            .filter(|&o| o != c)
            .map(|o| {
                (0..dim)
                    .map(|d| (meta[o * dim + d] - centre[d]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .filter(|&d| d > 0.0)
            .fold(f64::INFINITY, f64::min);
        let range = if nearest.is_finite() {
            nearest / 2.0
        } else {
            1.0
        };
        let sub = subgraph(g, nodes, &label, c as u32);
        let layout = spectral_or_random(&sub, dim, range, rng);
        for (r, &i) in nodes.iter().enumerate() {
            for d in 0..dim {
                out[i * dim + d] = layout[r * dim + d] + centre[d];
            }
        }
    }
    out
}

/// The induced subgraph on `nodes` (all of component `c`).
fn subgraph(g: &Graph, nodes: &[usize], label: &[u32], c: u32) -> Graph {
    let mut local = vec![u32::MAX; g.n()];
    for (r, &i) in nodes.iter().enumerate() {
        local[i] = r as u32;
    }
    let mut indptr = vec![0usize];
    let (mut indices, mut weights) = (Vec::new(), Vec::new());
    for &i in nodes {
        for e in g.indptr[i]..g.indptr[i + 1] {
            let j = g.indices[e] as usize;
            if label[j] == c {
                indices.push(local[j]);
                weights.push(g.weights[e]);
            }
        }
        indptr.push(indices.len());
    }
    Graph {
        indptr,
        indices,
        weights,
    }
}

/// Positions of the pieces: +-unit vectors for up to 2 dim pieces (umap's choice), else the
/// pieces' centroids in `data` on their top principal axes (or a circle without data),
/// scaled to max |coordinate| 1.
fn meta_layout(label: &[u32], k: usize, dim: usize, data: Option<(&[f32], usize)>) -> Vec<f64> {
    let mut meta = vec![0.0f64; k * dim];
    if k <= 2 * dim {
        for c in 0..k {
            let axis = c % k.div_ceil(2);
            let sign = if c < k.div_ceil(2) { 1.0 } else { -1.0 };
            if axis < dim {
                meta[c * dim + axis] = sign;
            }
        }
        return meta;
    }
    let Some((x, p)) = data.filter(|(x, p)| *p > 0 && x.len() == label.len() * p) else {
        for c in 0..k {
            let t = std::f64::consts::TAU * c as f64 / k as f64;
            meta[c * dim] = t.cos();
            if dim > 1 {
                meta[c * dim + 1] = t.sin();
            }
        }
        return meta;
    };
    let mut centroid = vec![0.0f64; k * p];
    let mut size = vec![0usize; k];
    for (i, &c) in label.iter().enumerate() {
        size[c as usize] += 1;
        for d in 0..p {
            centroid[c as usize * p + d] += f64::from(x[i * p + d]);
        }
    }
    for c in 0..k {
        for d in 0..p {
            centroid[c * p + d] /= size[c].max(1) as f64;
        }
    }
    let mean: Vec<f64> = (0..p)
        .map(|d| (0..k).map(|c| centroid[c * p + d]).sum::<f64>() / k as f64)
        .collect();
    let cov = faer::Mat::<f64>::from_fn(p, p, |a, b| {
        (0..k)
            .map(|c| (centroid[c * p + a] - mean[a]) * (centroid[c * p + b] - mean[b]))
            .sum()
    });
    if let Ok(evd) = cov.self_adjoint_eigen(faer::Side::Lower) {
        let u = evd.U();
        for c in 0..k {
            for d in 0..dim.min(p) {
                let axis = p - 1 - d;
                meta[c * dim + d] = (0..p)
                    .map(|a| (centroid[c * p + a] - mean[a]) * u[(a, axis)])
                    .sum();
            }
        }
    }
    let max = meta.iter().fold(0f64, |m, &v| m.max(v.abs()));
    if max > 0.0 {
        meta.iter_mut().for_each(|v| *v /= max);
    }
    meta
}

/// The spectral layout of a connected graph scaled to max |coordinate| `range`, or uniform
/// noise in [-range, range] for graphs too small to have `dim` non-trivial eigenvectors.
fn spectral_or_random(g: &Graph, dim: usize, range: f64, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    let n = g.n();
    let random = |rng: &mut Xoshiro256PlusPlus| -> Vec<f64> {
        (0..n * dim)
            .map(|_| rng.random_range(-range..range))
            .collect()
    };
    if n < 2 * dim || n <= dim + 1 {
        return random(rng);
    }
    match normalized_laplacian_eigvecs(g, dim, DENSE_EIGEN_BELOW) {
        Some(v) => {
            let max = v.iter().fold(0f64, |m, &x| m.max(x.abs()));
            if max > 0.0 && max.is_finite() {
                v.iter().map(|&x| x * range / max).collect()
            } else {
                random(rng)
            }
        }
        None => random(rng),
    }
}

/// Graphs up to this size get a dense eigendecomposition.
const DENSE_EIGEN_BELOW: usize = 600;

/// Eigenvectors of the `dim` smallest non-trivial eigenvalues of the normalised Laplacian of a
/// connected graph, as unit-norm columns of a row-major `n x dim` matrix (dense up to
/// `dense_below` points, else Krylov).
fn normalized_laplacian_eigvecs(g: &Graph, dim: usize, dense_below: usize) -> Option<Vec<f64>> {
    let n = g.n();
    let degree: Vec<f64> = (0..n)
        .map(|i| g.weights[g.indptr[i]..g.indptr[i + 1]].iter().sum())
        .collect();
    if degree.iter().any(|&d| d <= 0.0) {
        return None;
    }
    let inv_sqrt: Vec<f64> = degree.iter().map(|&d| 1.0 / d.sqrt()).collect();
    // Entries of D^-1/2 A D^-1/2.
    let norm_w: Vec<f64> = (0..n)
        .flat_map(|i| {
            let (g, inv_sqrt) = (&g, &inv_sqrt);
            (g.indptr[i]..g.indptr[i + 1])
                .map(move |e| g.weights[e] * inv_sqrt[i] * inv_sqrt[g.indices[e] as usize])
        })
        .collect();
    let total: f64 = degree.iter().sum();
    let trivial: Vec<f64> = degree.iter().map(|&d| (d / total).sqrt()).collect();
    let vectors = if n <= dense_below {
        dense_top(g, &norm_w, &trivial, dim)?
    } else {
        let matvec = |x: &[f64], y: &mut [f64]| {
            y.par_iter_mut().enumerate().for_each(|(i, yi)| {
                *yi = (g.indptr[i]..g.indptr[i + 1])
                    .map(|e| norm_w[e] * x[g.indices[e] as usize])
                    .sum();
            });
        };
        krylov_top(n, matvec, &trivial, dim)?
    };
    let mut out = vec![0.0f64; n * dim];
    for (d, v) in vectors.iter().enumerate() {
        for i in 0..n {
            out[i * dim + d] = v[i];
        }
    }
    Some(out)
}

/// Top `want` eigenvectors of the dense `D^-1/2 A D^-1/2` other than `trivial`.
fn dense_top(g: &Graph, norm_w: &[f64], trivial: &[f64], want: usize) -> Option<Vec<Vec<f64>>> {
    let n = g.n();
    let mut m = faer::Mat::<f64>::zeros(n, n);
    for i in 0..n {
        for e in g.indptr[i]..g.indptr[i + 1] {
            m[(i, g.indices[e] as usize)] += norm_w[e];
        }
    }
    // Moving the trivial eigenvalue (1) to -2 leaves the wanted ones on top.
    for i in 0..n {
        for j in 0..n {
            m[(i, j)] -= 3.0 * trivial[i] * trivial[j];
        }
    }
    let evd = m.self_adjoint_eigen(faer::Side::Lower).ok()?;
    let u = evd.U();
    Some(
        (0..want)
            .map(|c| (0..n).map(|i| u[(i, n - 1 - c)]).collect())
            .collect(),
    )
}

/// Dot product with four running sums (independent chains, so it runs at the processor's
/// throughput rather than its add latency).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// `v` minus its projections on `lock` and every basis vector, twice (classical Gram-Schmidt
/// with reorthogonalisation: the coefficients of one sweep are independent dot products, taken
/// in parallel).
fn orthogonalize(v: &mut [f64], lock: &[f64], basis: &[Vec<f64>]) {
    for _ in 0..2 {
        let mut against: Vec<&[f64]> = vec![lock];
        against.extend(basis.iter().map(Vec::as_slice));
        let coeff: Vec<f64> = against.par_iter().map(|b| dot(v, b)).collect();
        v.par_chunks_mut(4096).enumerate().for_each(|(c, part)| {
            let (off, len) = (c * 4096, part.len());
            for (b, &k) in against.iter().zip(&coeff) {
                for (x, y) in part.iter_mut().zip(&b[off..off + len]) {
                    *x -= k * y;
                }
            }
        });
    }
}

/// Largest `want` eigenvectors of a symmetric operator in the complement of the unit vector
/// `lock`: Rayleigh-Ritz on a Krylov basis of up to 64 vectors, restarted with the best Ritz
/// vectors and the residual of the first unconverged one, until residuals are below 1e-4.
fn krylov_top(
    n: usize,
    matvec: impl Fn(&[f64], &mut [f64]),
    lock: &[f64],
    want: usize,
) -> Option<Vec<Vec<f64>>> {
    const TOL: f64 = 1e-4;
    let m_max = 64.min(n.saturating_sub(1)).max(want + 1);
    let keep = (want + 8).min(m_max / 2).max(want);
    let mut basis: Vec<Vec<f64>> = Vec::new();
    let mut images: Vec<Vec<f64>> = Vec::new();
    // umap starts eigsh from all ones; a deterministic perturbation keeps the Krylov space out
    // of a symmetric graph's invariant subspaces (ones alone never reach an antisymmetric
    // Fiedler vector).
    let mut next: Vec<f64> = (0..n)
        .map(|i| 1.0 + (splitmix(i as u64) >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();
    let mut best: Vec<Vec<f64>> = Vec::new();
    for _restart in 0..60 {
        while basis.len() < m_max {
            let mut v = next.clone();
            orthogonalize(&mut v, lock, &basis);
            let norm = dot(&v, &v).sqrt();
            if norm < 1e-10 {
                if basis.is_empty() {
                    next = (0..n)
                        .map(|i| (splitmix(i as u64) >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
                        .collect();
                    continue;
                }
                break;
            }
            v.iter_mut().for_each(|x| *x /= norm);
            let mut w = vec![0.0; n];
            matvec(&v, &mut w);
            next.clone_from(&w);
            basis.push(v);
            images.push(w);
        }
        let m = basis.len();
        if m < want {
            return None;
        }
        // basis^T images, symmetrised; its entries are independent dot products.
        let bi: Vec<Vec<f64>> = (0..m)
            .into_par_iter()
            .map(|i| (0..m).map(|j| dot(&basis[i], &images[j])).collect())
            .collect();
        let h = faer::Mat::<f64>::from_fn(m, m, |i, j| 0.5 * (bi[i][j] + bi[j][i]));
        let evd = h.self_adjoint_eigen(faer::Side::Lower).ok()?;
        let (s, u) = (evd.S().column_vector(), evd.U());
        let combine = |vs: &[Vec<f64>], col: usize| -> Vec<f64> {
            let mut out = vec![0.0; n];
            for (r, v) in vs.iter().enumerate() {
                let c = u[(r, m - 1 - col)];
                out.iter_mut().zip(v).for_each(|(o, x)| *o += c * x);
            }
            out
        };
        let n_keep = keep.min(m);
        let ritz: Vec<Vec<f64>> = (0..n_keep)
            .into_par_iter()
            .map(|c| combine(&basis, c))
            .collect();
        let ritz_img: Vec<Vec<f64>> = (0..n_keep)
            .into_par_iter()
            .map(|c| combine(&images, c))
            .collect();
        let mut unconverged = None;
        for c in 0..want {
            let theta = s[m - 1 - c];
            let r: Vec<f64> = ritz_img[c]
                .iter()
                .zip(&ritz[c])
                .map(|(a, y)| a - theta * y)
                .collect();
            if dot(&r, &r).sqrt() > TOL && unconverged.is_none() {
                unconverged = Some(r);
            }
        }
        best = ritz[..want].to_vec();
        match unconverged {
            None => return Some(best),
            // The basis spans an invariant subspace: nothing more to gain.
            Some(_) if m < m_max => return Some(best),
            Some(r) => {
                basis = ritz;
                images = ritz_img;
                next = r;
            }
        }
    }
    Some(best)
}

/// The graph as SGD walks it: edges grouped by head point (CSR order, as umap's COO), each
/// with its tail and sampling rate, and for each point the slots of the edges whose tail it is.
#[derive(Debug, Clone)]
pub struct SgdGraph {
    /// Points.
    pub n_vertices: usize,
    /// Edges of head point `i`: `head_ptr[i]..head_ptr[i + 1]`.
    pub head_ptr: Vec<usize>,
    /// Tail point of each edge.
    pub tail: Vec<u32>,
    /// Positive samples per epoch of each edge, `w / max w` in f32 (umap's
    /// `1 / epochs_per_sample`; 0: never sampled).
    pub rate: Vec<f32>,
    /// Where each edge leaves the move of its tail: its position among the tail's in-edges.
    pub slot: Vec<u32>,
    /// Slots of the edges whose tail is point `i`: `in_ptr[i]..in_ptr[i + 1]`, in ascending
    /// edge order.
    pub in_ptr: Vec<usize>,
}

impl SgdGraph {
    /// The sampling rates of `g` (an edge of weight w is sampled `w / max w` times per epoch)
    /// and its in-edge slots.
    pub fn new(g: &Graph) -> SgdGraph {
        let n = g.n();
        let max = g.weights.iter().fold(0f64, |m, &w| m.max(w));
        let rate = g
            .weights
            .iter()
            .map(|&w| if max > 0.0 { (w / max) as f32 } else { 0.0 })
            .collect();
        let mut in_ptr = vec![0usize; n + 1];
        for &t in &g.indices {
            in_ptr[t as usize + 1] += 1;
        }
        for i in 0..n {
            in_ptr[i + 1] += in_ptr[i];
        }
        let mut fill = in_ptr.clone();
        let mut slot = vec![0u32; g.indices.len()];
        for (e, &t) in g.indices.iter().enumerate() {
            slot[e] = fill[t as usize] as u32;
            fill[t as usize] += 1;
        }
        SgdGraph {
            n_vertices: n,
            head_ptr: g.indptr.clone(),
            tail: g.indices.clone(),
            rate,
            slot,
            in_ptr,
        }
    }
}

/// Parameters of the SGD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdParams {
    /// Curve parameter a.
    pub a: f32,
    /// Curve parameter b.
    pub b: f32,
    /// Repulsion strength.
    pub gamma: f32,
    /// Negative samples per positive sample.
    pub negative_sample_rate: f32,
    /// Initial learning rate.
    pub learning_rate: f32,
    /// Epochs.
    pub n_epochs: usize,
    /// Seed of the negative sampling.
    pub seed: u64,
}

impl SgdParams {
    /// The learning rate of `epoch`: linear decay from `learning_rate` (umap's alpha).
    pub fn alpha(&self, epoch: usize) -> f32 {
        self.learning_rate * (1.0 - epoch as f32 / self.n_epochs as f32)
    }

    /// The 32-bit seed of the negative-sample hash.
    pub fn hash_seed(&self) -> u32 {
        splitmix(self.seed) as u32
    }
}

/// Positive samples of an edge with `rate` in epochs `0..=epoch`. umap samples an edge in
/// epoch n when its clock (starting at `1 / rate`, advanced by `1 / rate` per sample) is at
/// most n: `floor(n rate)` samples by epoch n, so none in epoch 0, one in every epoch from
/// the first for the heaviest edges. Closed form, in f32, so the GPU derives the same
/// schedule.
#[inline]
pub fn samples_by(epoch: u32, rate: f32) -> u32 {
    (epoch as f32 * rate) as u32
}

/// Whether an edge with `rate` is sampled in `epoch`.
#[inline]
pub fn sampled(epoch: u32, rate: f32) -> bool {
    epoch > 0 && samples_by(epoch, rate) > samples_by(epoch - 1, rate)
}

/// Negative samples an edge has drawn once its positive sample in `epoch` is done. umap's
/// negative clock starts at and advances by `1 / neg_rate` (`neg_rate` = rate x negative
/// sample rate) and a positive sample in epoch n draws every tick up to n but the first:
/// `max(0, floor(n neg_rate) - 1)` in all. The draws of one sample are this minus the count
/// after the edge's previous sample, which the caller keeps per edge.
#[inline]
pub fn negatives_by(epoch: u32, neg_rate: f32) -> u32 {
    ((epoch as f32 * neg_rate) as u32).saturating_sub(1)
}

/// What the SGD carries from one epoch to the next besides the layout.
#[derive(Debug)]
pub struct SgdState {
    /// Negative samples drawn by each edge so far.
    pub drawn: Vec<u32>,
    /// The layout being written.
    next: Vec<f32>,
    /// Move of the tail left in each in-edge slot (f32 bits), valid where `stamp` is the epoch.
    delta: Vec<AtomicU32>,
    /// Epoch in which each slot was last written.
    stamp: Vec<AtomicU32>,
}

impl SgdState {
    /// Nothing drawn yet.
    pub fn new(g: &SgdGraph, dim: usize) -> Self {
        SgdState {
            drawn: vec![0; g.tail.len()],
            next: vec![0.0; g.n_vertices * dim],
            delta: (0..g.tail.len() * dim).map(|_| AtomicU32::new(0)).collect(),
            stamp: (0..g.tail.len())
                .map(|_| AtomicU32::new(u32::MAX))
                .collect(),
        }
    }
}

/// umap's `optimize_layout_euclidean` over all epochs, deterministic and parallel (module
/// header). `embedding` is row-major `n x dim`.
pub fn optimize_layout(g: &SgdGraph, embedding: &mut [f32], dim: usize, p: &SgdParams) {
    let mut state = SgdState::new(g, dim);
    for epoch in 0..p.n_epochs {
        optimize_epoch(g, &mut state, embedding, dim, p, epoch);
    }
}

/// `x^b` for `x > 0` as `exp2(b log2 x)` with short polynomials (relative error below 1e-5
/// over the distances a layout sees): the SGD spends half its time in `powf` otherwise, and
/// the gradient's own noise dwarfs the difference. Branch-free, so a loop over lanes
/// vectorises.
#[inline]
pub fn pow_fast(x: f32, b: f32) -> f32 {
    exp2_fast(b * log2_fast(x))
}

/// log2 of a positive normal f32: exponent plus the atanh series of the mantissa centred on 1.
#[inline]
fn log2_fast(x: f32) -> f32 {
    let bits = x.to_bits();
    let high = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000) > std::f32::consts::SQRT_2;
    // The mantissa in [1, 2), halved into [sqrt(1/2), sqrt(2)] when above sqrt(2).
    let e = ((bits >> 23) & 0xff) as i32 - 127 + i32::from(high);
    let m = f32::from_bits((bits & 0x007f_ffff) | if high { 0x3f00_0000 } else { 0x3f80_0000 });
    // ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172: four terms leave < 2e-8. Estrin's
    // scheme (pairs of terms side by side): a shorter chain of dependent operations.
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let t4 = t2 * t2;
    let series = (1.0 + t2 * (1.0 / 3.0)) + t4 * (1.0 / 5.0 + t2 * (1.0 / 7.0));
    e as f32 + (t * (2.0 * std::f32::consts::LOG2_E)) * series
}

/// 2^y: the nearest integer into the exponent bits, 2^f for |f| <= 1/2 by its Taylor series.
#[inline]
fn exp2_fast(y: f32) -> f32 {
    // 1.5 x 2^23: adding it leaves round(y) in the low mantissa bits (no libm call, no branch).
    const SHIFT: f32 = 12_582_912.0;
    let y = y.clamp(-126.0, 127.0);
    let t = y + SHIFT;
    let i = t - SHIFT;
    // Taylor series of e^f, f = (y - i) ln 2, to f^6, by Estrin's scheme.
    let f = (y - i) * std::f32::consts::LN_2;
    let f2 = f * f;
    let f4 = f2 * f2;
    let p = ((1.0 + f) + f2 * (0.5 + f * (1.0 / 6.0)))
        + f4 * ((1.0 / 24.0 + f * (1.0 / 120.0)) + f2 * (1.0 / 720.0));
    let scale = (t.to_bits() as i32 - 0x4b40_0000 + 127) as u32;
    p * f32::from_bits(scale << 23)
}

/// umap's gradient clip.
#[inline]
fn clip(v: f32) -> f32 {
    v.clamp(-4.0, 4.0)
}

/// The key of the negative-sample stream of `edge` in `epoch`.
#[inline]
pub fn sample_key(seed: u32, epoch: u32, edge: u32) -> u32 {
    pcg_hash(edge ^ pcg_hash(epoch ^ pcg_hash(seed)))
}

/// The `draw`-th negative sample of the stream `key`: a point index below `n` (multiply-shift
/// instead of a modulo: as uniform, cheaper).
#[inline]
pub fn negative_sample(key: u32, draw: u32, n: u32) -> u32 {
    mul_hi(
        pcg_hash(key.wrapping_add(draw.wrapping_mul(0x9E37_79B9))),
        n,
    )
}

/// The high 32 bits of `a b`, from 16-bit halves: 32-bit multiplies only, so eight of them
/// fit one AVX2 instruction each (and WGSL, without 64-bit integers, computes it the same way).
#[inline]
pub fn mul_hi(a: u32, b: u32) -> u32 {
    let (a0, a1, b0, b1) = (a & 0xffff, a >> 16, b & 0xffff, b >> 16);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
}

/// Points per parallel task.
const BLOCK: usize = 512;

/// Negative samples of one positive sample computed side by side (a positive sample draws
/// about `negative_sample_rate` of them).
const LANES: usize = 8;

/// Output dimensions the SGD is compiled for.
pub const MAX_COMPONENTS: usize = 4;

/// One epoch: reads `embedding`, then overwrites it with the next layout. Pass 1, per head
/// point (in parallel): its sampled edges in order, attracting it to the tails and pushing it
/// from negative samples (all at their positions at the start of the epoch), leaving the
/// tails' opposite moves in their in-edge slots. Pass 2, per point: the moves left in its
/// slots in this epoch, summed in edge order. `dim` is 1 to [`MAX_COMPONENTS`] (other values
/// leave the layout as it is).
pub fn optimize_epoch(
    g: &SgdGraph,
    state: &mut SgdState,
    embedding: &mut [f32],
    dim: usize,
    p: &SgdParams,
    epoch: usize,
) {
    match dim {
        1 => epoch_in::<1>(g, state, embedding, p, epoch),
        2 => epoch_in::<2>(g, state, embedding, p, epoch),
        3 => epoch_in::<3>(g, state, embedding, p, epoch),
        4 => epoch_in::<4>(g, state, embedding, p, epoch),
        _ => {}
    }
}

/// What every head point of an epoch reads.
struct EpochCtx<'a> {
    g: &'a SgdGraph,
    prev: &'a [f32],
    delta: &'a [AtomicU32],
    stamp: &'a [AtomicU32],
    epoch: u32,
    n: u32,
    seed: u32,
    a: f32,
    b: f32,
    gamma: f32,
    negative_rate: f32,
    alpha: f32,
}

impl EpochCtx<'_> {
    #[inline(always)]
    fn point<const D: usize>(&self, k: usize) -> [f32; D] {
        let mut x = [0f32; D];
        x.copy_from_slice(&self.prev[k * D..(k + 1) * D]);
        x
    }
}

/// A run of head points walked in order: the current point, its position so far and the next
/// edge to look at.
struct Walk<'s, const D: usize> {
    j: usize,
    end: usize,
    cur: [f32; D],
    first_point: usize,
    first_edge: usize,
    drawn: &'s mut [u32],
    out: &'s mut [f32],
    /// The current point's edges sampled in this epoch (`len` of them), `pos` the next one.
    list: Vec<u32>,
    len: usize,
    pos: usize,
    loaded: bool,
}

impl<'s, const D: usize> Walk<'s, D> {
    #[inline(always)]
    fn new(
        c: &EpochCtx<'_>,
        start: usize,
        end: usize,
        drawn: &'s mut [u32],
        out: &'s mut [f32],
    ) -> Self {
        let max_degree = (start..end)
            .map(|j| c.g.head_ptr[j + 1] - c.g.head_ptr[j])
            .max()
            .unwrap_or(0);
        Walk {
            j: start,
            end,
            cur: [0.0; D],
            first_point: start,
            first_edge: c.g.head_ptr[start],
            drawn,
            out,
            list: vec![0; max_degree],
            len: 0,
            pos: 0,
            loaded: false,
        }
    }

    /// The next edge sampled in this epoch, storing each point whose edges are done; None
    /// once the run is done. A point's sampled edges are listed first without a branch per
    /// edge (whether one is sampled is close to a coin toss for the processor).
    #[inline(always)]
    fn next_edge(&mut self, c: &EpochCtx<'_>) -> Option<usize> {
        while self.j < self.end {
            if !self.loaded {
                self.cur = c.point(self.j);
                let (lo, hi) = (c.g.head_ptr[self.j], c.g.head_ptr[self.j + 1]);
                let mut k = 0;
                for e in lo..hi {
                    // Written at k either way; kept only when sampled (k <= e - lo).
                    self.list[k] = e as u32;
                    k += usize::from(sampled(c.epoch, c.g.rate[e]));
                }
                (self.len, self.pos, self.loaded) = (k, 0, true);
            }
            if self.pos < self.len {
                let e = self.list[self.pos] as usize;
                self.pos += 1;
                return Some(e);
            }
            let r = self.j - self.first_point;
            self.out[r * D..(r + 1) * D].copy_from_slice(&self.cur);
            self.j += 1;
            self.loaded = false;
        }
        None
    }

    /// umap's update for one positive sample of edge `e` of the current point and its
    /// negative samples. (Lane loops index several arrays in lockstep.)
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn sample(&mut self, c: &EpochCtx<'_>, e: usize) {
        let (a, b, alpha) = (c.a, c.b, c.alpha);
        let j = self.j;
        let cur = &mut self.cur;
        let other: [f32; D] = c.point(c.g.tail[e] as usize);
        let mut d2 = 0f32;
        for d in 0..D {
            d2 += (cur[d] - other[d]) * (cur[d] - other[d]);
        }
        let coeff = if d2 > 0.0 {
            let pb = pow_fast(d2, b);
            -2.0 * a * b * (pb / d2) / (a * pb + 1.0)
        } else {
            0.0
        };
        let slot = c.g.slot[e] as usize;
        for d in 0..D {
            let grad = clip(coeff * (cur[d] - other[d]));
            cur[d] += grad * alpha;
            c.delta[slot * D + d].store((-grad * alpha).to_bits(), Ordering::Relaxed);
        }
        c.stamp[slot].store(c.epoch, Ordering::Relaxed);
        let drawn = &mut self.drawn[e - self.first_edge];
        let total = negatives_by(c.epoch, c.g.rate[e] * c.negative_rate);
        let n_neg = total.saturating_sub(*drawn);
        *drawn = (*drawn).max(total);
        // The pushes of one positive sample's negative samples are taken from the same
        // position and applied together, LANES at a time: independent, so they vectorise (umap
        // applies each before the next; one push is a small fraction of a step).
        let key = sample_key(c.seed, c.epoch, e as u32);
        let mut push = [0f32; D];
        let mut first = 0u32;
        while first < n_neg {
            let m = (n_neg - first).min(LANES as u32);
            // All lanes computed, the draws beyond `m` and draws of the point itself masked
            // out: a fixed trip count keeps the lanes in vector registers.
            let mut h = [0u32; LANES];
            for (l, h) in h.iter_mut().enumerate() {
                *h = pcg_hash(key.wrapping_add((first + l as u32).wrapping_mul(0x9E37_79B9)));
            }
            let mut idx = [0usize; LANES];
            for l in 0..LANES {
                idx[l] = mul_hi(h[l], c.n) as usize;
            }
            let mut live = [false; LANES];
            for l in 0..LANES {
                live[l] = (l as u32) < m && idx[l] != j;
            }
            let mut o = [[0f32; LANES]; D];
            for d in 0..D {
                for l in 0..LANES {
                    o[d][l] = c.prev[idx[l] * D + d];
                }
            }
            let mut d2 = [0f32; LANES];
            for d in 0..D {
                for l in 0..LANES {
                    let t = cur[d] - o[d][l];
                    d2[l] += t * t;
                }
            }
            let mut coeff = [0f32; LANES];
            for l in 0..LANES {
                let q = 2.0 * c.gamma * b / ((0.001 + d2[l]) * (a * pow_fast(d2[l], b) + 1.0));
                coeff[l] = if live[l] && d2[l] > 0.0 { q } else { 0.0 };
            }
            for d in 0..D {
                let mut g = [0f32; LANES];
                for l in 0..LANES {
                    g[l] = clip(coeff[l] * (cur[d] - o[d][l])) * alpha;
                }
                push[d] += ((g[0] + g[1]) + (g[2] + g[3])) + ((g[4] + g[5]) + (g[6] + g[7]));
            }
            first += m;
        }
        for d in 0..D {
            cur[d] += push[d];
        }
    }
}

/// Pass 1 over head points `start..end`: two halves walked side by side, so the processor
/// overlaps two independent chains of dependent steps (each point's samples depend on its
/// previous ones; the halves' do not).
#[inline(always)]
fn heads<const D: usize>(
    c: &EpochCtx<'_>,
    start: usize,
    end: usize,
    drawn: &mut [u32],
    out: &mut [f32],
) {
    let mid = start + (end - start) / 2;
    let split = c.g.head_ptr[mid] - c.g.head_ptr[start];
    let (d1, d2) = drawn.split_at_mut(split);
    let (o1, o2) = out.split_at_mut((mid - start) * D);
    let mut w1 = Walk::<D>::new(c, start, mid, d1, o1);
    let mut w2 = Walk::<D>::new(c, mid, end, d2, o2);
    loop {
        match (w1.next_edge(c), w2.next_edge(c)) {
            (Some(x), Some(y)) => {
                w1.sample(c, x);
                w2.sample(c, y);
            }
            (Some(x), None) => {
                w1.sample(c, x);
                while let Some(x) = w1.next_edge(c) {
                    w1.sample(c, x);
                }
                break;
            }
            (None, Some(y)) => {
                w2.sample(c, y);
                while let Some(y) = w2.next_edge(c) {
                    w2.sample(c, y);
                }
                break;
            }
            (None, None) => break,
        }
    }
}

/// [`heads`] compiled for AVX2 (8 lanes in one instruction; no FMA, so the same roundings and
/// bits as the baseline build).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn heads_avx2<const D: usize>(
    c: &EpochCtx<'_>,
    start: usize,
    end: usize,
    drawn: &mut [u32],
    out: &mut [f32],
) {
    heads::<D>(c, start, end, drawn, out)
}

fn heads_dispatch<const D: usize>(
    c: &EpochCtx<'_>,
    start: usize,
    end: usize,
    drawn: &mut [u32],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if !force_portable() && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked on the line above).
        unsafe { heads_avx2::<D>(c, start, end, drawn, out) };
        return;
    }
    heads::<D>(c, start, end, drawn, out)
}

#[cfg(test)]
fn force_portable() -> bool {
    tests::PORTABLE.load(Ordering::Relaxed)
}

#[cfg(not(test))]
fn force_portable() -> bool {
    false
}

fn epoch_in<const D: usize>(
    g: &SgdGraph,
    state: &mut SgdState,
    embedding: &mut [f32],
    p: &SgdParams,
    epoch: usize,
) {
    let n = g.n_vertices;
    let SgdState {
        drawn,
        next,
        delta,
        stamp,
    } = state;
    let c = EpochCtx {
        g,
        prev: embedding,
        delta,
        stamp,
        epoch: epoch as u32,
        n: n as u32,
        seed: p.hash_seed(),
        a: p.a,
        b: p.b,
        gamma: p.gamma,
        negative_rate: p.negative_sample_rate,
        alpha: p.alpha(epoch),
    };
    // Split the per-edge and per-point arrays at block boundaries.
    let mut tasks = Vec::with_capacity(n.div_ceil(BLOCK));
    {
        let (mut d_rest, mut n_rest) = (&mut drawn[..], &mut next[..]);
        for start in (0..n).step_by(BLOCK) {
            let end = (start + BLOCK).min(n);
            let edges = g.head_ptr[end] - g.head_ptr[start];
            let (d, dr) = std::mem::take(&mut d_rest).split_at_mut(edges);
            let (x, xr) = std::mem::take(&mut n_rest).split_at_mut((end - start) * D);
            (d_rest, n_rest) = (dr, xr);
            tasks.push((start, end, d, x));
        }
    }
    tasks
        .into_par_iter()
        .for_each(|(start, end, drawn, out)| heads_dispatch::<D>(&c, start, end, drawn, out));
    let epoch = epoch as u32;
    next.par_chunks_mut(D * BLOCK)
        .enumerate()
        .for_each(|(block, points)| {
            for (r, point) in points.chunks_mut(D).enumerate() {
                let k = block * BLOCK + r;
                for s in g.in_ptr[k]..g.in_ptr[k + 1] {
                    // Moves from other epochs add +0.0 (no branch to mispredict).
                    let live = stamp[s].load(Ordering::Relaxed) == epoch;
                    for d in 0..D {
                        let v = f32::from_bits(delta[s * D + d].load(Ordering::Relaxed));
                        point[d] += if live { v } else { 0.0 };
                    }
                }
            }
        });
    embedding.copy_from_slice(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes pass 1 take the baseline build even where AVX2 is there.
    pub(super) static PORTABLE: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    #[test]
    fn fast_pow_is_accurate() {
        let mut x = 1e-6f32;
        while x < 1e5 {
            for b in [0.5f32, 0.895, 1.334_167, 2.0] {
                let (fast, exact) = (pow_fast(x, b), f64::from(x).powf(f64::from(b)));
                assert!(((f64::from(fast) - exact) / exact).abs() < 1e-5, "{x}^{b}");
            }
            x *= 1.37;
        }
    }

    #[test]
    fn mul_hi_is_the_high_word_of_the_product() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for i in 0..100_000u32 {
            let (a, b) = match i {
                0 => (u32::MAX, u32::MAX),
                1 => (u32::MAX, 1),
                2 => (0, u32::MAX),
                _ => (rng.random(), rng.random()),
            };
            assert_eq!(
                mul_hi(a, b),
                ((u64::from(a) * u64::from(b)) >> 32) as u32,
                "{a} {b}"
            );
        }
    }

    #[test]
    fn ab_params_match_umap_learn() {
        // scanpy 1.11.5 / umap-learn 0.5 write these for min_dist 0.5, spread 1.
        let (a, b) = find_ab_params(1.0, 0.5);
        assert!((a - 0.583_030_020_341_442_5).abs() < 1e-5, "{a}");
        assert!((b - 1.334_166_992_431_491_4).abs() < 1e-5, "{b}");
        // umap's documented values for its own default min_dist 0.1.
        let (a, b) = find_ab_params(1.0, 0.1);
        assert!(
            (a - 1.577).abs() < 2e-3 && (b - 0.895).abs() < 2e-3,
            "{a} {b}"
        );
    }

    fn to_csr(n: usize, edge: impl Fn(usize, usize) -> f32) -> CsrMatrix {
        let mut m = CsrMatrix::empty(n);
        for i in 0..n {
            for j in 0..n {
                let w = edge(i, j);
                if i != j && w > 0.0 {
                    m.indices.push(j as u32);
                    m.data.push(w);
                }
            }
            m.indptr.push(m.indices.len() as u64);
        }
        m.n_rows = n;
        m
    }

    #[test]
    fn spectral_layout_of_a_path_is_monotone() {
        // The Fiedler vector of a path orders its points.
        let n = 300;
        let g = prune(&to_csr(n, |i, j| f32::from(i.abs_diff(j) == 1)), 500);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let v = spectral_layout(&g, 2, None, &mut rng);
        // Eigenvectors of the normalised Laplacian are D^1/2 times the ordering vector.
        let first: Vec<f64> = (0..n)
            .map(|i| v[i * 2] / ((g.indptr[i + 1] - g.indptr[i]) as f64).sqrt())
            .collect();
        let up = first.windows(2).all(|w| w[1] > w[0]);
        let down = first.windows(2).all(|w| w[1] < w[0]);
        assert!(up || down);
    }

    #[test]
    fn krylov_eigenvectors_match_the_dense_ones() {
        // A 20 x 30 grid: eigenvalue gaps of a few 1e-3, like a kNN graph's.
        let (r, c) = (20, 30);
        let near = |i: usize, j: usize| {
            let (a, b) = ((i / c, i % c), (j / c, j % c));
            f32::from(a.0.abs_diff(b.0) + a.1.abs_diff(b.1) == 1)
        };
        let g = prune(&to_csr(r * c, near), 500);
        let dense = normalized_laplacian_eigvecs(&g, 2, usize::MAX).unwrap();
        let krylov = normalized_laplacian_eigvecs(&g, 2, 0).unwrap();
        for d in 0..2 {
            let cos: f64 = (0..r * c)
                .map(|i| dense[i * 2 + d] * krylov[i * 2 + d])
                .sum();
            assert!(cos.abs() > 0.9999, "component {d}: |cos| {cos}");
        }
    }

    /// Two cliques of `n / 2` points (each joined to its 5 nearest indices) joined by one edge.
    fn two_cliques(n: usize) -> CsrMatrix {
        let mut m = CsrMatrix::empty(n);
        for i in 0..n {
            for j in 0..n {
                let same = (i < n / 2) == (j < n / 2);
                if i != j && ((same && (i as i64 - j as i64).abs() <= 5) || (i, j) == (0, n - 1)) {
                    m.indices.push(j as u32);
                    m.data.push(if same { 1.0 } else { 0.5 });
                }
            }
            m.indptr.push(m.indices.len() as u64);
        }
        m.n_rows = n;
        m
    }

    #[test]
    fn closed_form_schedule_is_umaps_clocks() {
        // umap's per-edge clocks in f64 (optimize_layout_euclidean) against the closed forms,
        // for weights relative to the maximum as a graph's are. The two round differently only
        // where a tick falls within rounding of an epoch boundary: there a sample or a draw
        // moves to the neighbouring epoch, never appears or vanishes, so the running counts
        // agree but for rare epochs, and then by one sample and its draws.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let (n_epochs, neg_rate) = (500u32, 5.0f64);
        let (mut pairs, mut moved) = (0usize, 0usize);
        for i in 0..2000 {
            let rate = match i {
                0 => 1.0f32,
                1 => 0.5,
                2 => 0.25,
                _ => rng.random_range(0.002f32..1.0),
            };
            let eps = 1.0 / f64::from(rate);
            let eps_neg = eps / neg_rate;
            let (mut next, mut next_neg) = (eps, eps_neg);
            let (mut umap_pos, mut umap_neg, mut ours_pos, mut ours_neg) = (0u32, 0u32, 0u32, 0u32);
            for n in 0..n_epochs {
                if next <= f64::from(n) {
                    next += eps;
                    umap_pos += 1;
                    let n_neg = ((f64::from(n) - next_neg) / eps_neg).max(0.0) as u32;
                    next_neg += f64::from(n_neg) * eps_neg;
                    umap_neg += n_neg;
                }
                if sampled(n, rate) {
                    ours_pos += 1;
                    ours_neg = ours_neg.max(negatives_by(n, rate * neg_rate as f32));
                }
                // A positive sample that moved takes its draws along (at most one epoch's ticks,
                // rate x 5 + 1), or leaves them to the next sample.
                assert!(
                    umap_pos.abs_diff(ours_pos) <= 1 && umap_neg.abs_diff(ours_neg) <= 6,
                    "rate {rate} epoch {n}: umap {umap_pos} {umap_neg}, ours {ours_pos} {ours_neg}"
                );
                pairs += 1;
                moved += usize::from((umap_pos, umap_neg) != (ours_pos, ours_neg));
            }
        }
        assert!(moved * 1000 < pairs, "{moved} of {pairs}");
    }

    #[test]
    fn the_avx2_build_gives_the_portable_bits() {
        let m = two_cliques(1500);
        let params = UmapParams {
            n_epochs: Some(30),
            ..UmapParams::default()
        };
        let fast = umap(&m, None, &params).unwrap();
        PORTABLE.store(true, Ordering::Relaxed);
        let portable = umap(&m, None, &params);
        PORTABLE.store(false, Ordering::Relaxed);
        assert_eq!(fast, portable.unwrap());
    }

    #[test]
    fn epochs_do_not_depend_on_the_thread_count() {
        let n = 1500;
        let m = two_cliques(n);
        let params = UmapParams {
            n_epochs: Some(50),
            ..UmapParams::default()
        };
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| umap(&m, None, &params).unwrap());
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| umap(&m, None, &params).unwrap());
        assert_eq!(one, three);
        assert!(one.embedding.iter().all(|v| v.is_finite()));
    }
}
