//! `sc.tl.umap()`: umap-learn's `simplicial_set_embedding` on `obsp["connectivities"]` with
//! scanpy's defaults (docs/algorithms.md section 6): min_dist 0.5, spread 1, a/b fitted as
//! `find_ab_params` does, 500 epochs up to 10,000 cells and 200 above, edges below
//! max/n_epochs dropped, spectral initialisation (scaled to 10, N(0, 1e-4) noise, rescaled to
//! [0, 10]), 5 negative samples per positive one, learning rate 1 decaying linearly, gradients
//! clipped at 4. Output f32, as scanpy stores `obsm["X_umap"]`.
//!
//! **SGD.** The epochs are the backend's kernel ([`Backend::umap_optimize`], by default
//! [`crate::backend::umap_sgd`]): umap's `optimize_layout_euclidean`, deterministic and
//! parallel, the result a function of the seed only, never of the number of threads or the
//! instruction set. The epochs see the points renumbered in the order of a Z-order curve
//! through the initial layout (which places a point near the points it shares edges with), so
//! that the reads and writes of a run of points stay in cache instead of spanning the whole
//! layout and every edge's slot (at 919,408 points: 190 s instead of 222 s on 2 cores); the
//! negative samples are drawn in that numbering, and the layout comes back in the input's.
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

use crate::backend::umap_sgd::{Graph, MAX_COMPONENTS, SgdGraph, SgdParams};
use crate::backend::{Backend, CpuBackend};
use crate::error::{Error, Result};
use crate::matrix::{CsrMatrix, inverse_permutation, rows_in_order};
use crate::rng::splitmix;

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
    /// The curve's `a` and `b`; None: fitted from `min_dist` and `spread` (scanpy's default).
    pub ab: Option<(f64, f64)>,
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
            ab: None,
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
pub(crate) fn default_epochs(n: usize) -> usize {
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
    let (a, b) = params
        .ab
        .unwrap_or_else(|| find_ab_params(params.spread, params.min_dist));
    if !(a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0) {
        return Err(Error::Usage(format!(
            "umap a and b must be positive, not {a} and {b}"
        )));
    }
    let n_epochs = params.n_epochs.unwrap_or_else(|| default_epochs(n)).max(1);
    let graph = prune(conn, n_epochs);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(params.seed ^ 0x0A11_CE55));
    let started = std::time::Instant::now();
    let init = spectral_layout(&graph, dim, data, &mut rng);
    tracing::debug!(
        "umap spectral init: {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let start = scale_init(&init, n, dim, &mut rng);
    // The epochs run on the points in the order of a curve through their initial layout, so
    // that the points an edge joins, and the slots their moves go to, sit close in memory.
    let order = locality_order(&start, n, dim);
    let rank = inverse_permutation(&order);
    let graph = permute(&graph, &order, &rank);
    let mut embedding = rows_in_order(&start, dim, &order);
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
    let layout = rows_in_order(&embedding, dim, &rank);
    tracing::debug!(
        "umap {n_epochs} epochs on {} edges: {:.3} s in all",
        sgd.tail.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(Umap {
        embedding: layout,
        a,
        b,
        n_epochs,
    })
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

/// The points in the order of a Z-order (Morton) curve through `layout` (row-major `n x dim`,
/// every coordinate in [0, 10] as [`scale_init`] leaves it), ties by index. The spectral
/// layout already places a point near the points it shares edges with, so along the curve the
/// SGD's reads and writes of one run of points stay within a few cache-sized blocks instead
/// of the whole layout and every edge's slot.
fn locality_order(layout: &[f32], n: usize, dim: usize) -> Vec<u32> {
    let bits = (32 / dim).min(16) as u32;
    let top = ((1u32 << bits) - 1) as f32;
    let mut keyed: Vec<(u32, u32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let q: Vec<u32> = layout[i * dim..(i + 1) * dim]
                .iter()
                .map(|&v| ((v / 10.0).clamp(0.0, 1.0) * top) as u32)
                .collect();
            let mut key = 0u32;
            for bit in (0..bits).rev() {
                for &c in &q {
                    key = (key << 1) | ((c >> bit) & 1);
                }
            }
            (key, i as u32)
        })
        .collect();
    keyed.par_sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// `g` with its points renumbered: point `order[r]` becomes point `r` (`rank` is the inverse
/// of `order`). Each point keeps its edges in their order (umap samples a point's edges in
/// CSR order).
fn permute(g: &Graph, order: &[u32], rank: &[u32]) -> Graph {
    let mut indptr = Vec::with_capacity(order.len() + 1);
    indptr.push(0);
    let mut indices = Vec::with_capacity(g.indices.len());
    let mut weights = Vec::with_capacity(g.weights.len());
    for &i in order {
        let edges = g.indptr[i as usize]..g.indptr[i as usize + 1];
        indices.extend(g.indices[edges.clone()].iter().map(|&j| rank[j as usize]));
        weights.extend_from_slice(&g.weights[edges]);
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
pub(crate) fn spectral_layout(
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn locality_order_follows_the_z_curve_and_permute_keeps_every_edge() {
        // Four quadrants of [0, 10]^2, listed out of curve order: the curve (x's bit before
        // y's at every level) visits (low x, low y), (low x, high y), (high x, low y), (high
        // x, high y).
        let layout = [9.0, 9.0, 1.0, 1.0, 1.0, 9.0, 9.0, 1.0, 1.5, 1.5];
        let order = locality_order(&layout, 5, 2);
        assert_eq!(order, vec![1, 4, 2, 3, 0]);
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..5).collect::<Vec<u32>>(), "a permutation");
        let g = Graph {
            indptr: vec![0, 2, 3, 3, 5, 6],
            indices: vec![3, 1, 0, 0, 4, 2],
            weights: vec![0.5, 1.0, 0.25, 0.75, 0.125, 2.0],
        };
        let p = permute(&g, &order, &inverse_permutation(&order));
        let edges = |g: &Graph, name: &dyn Fn(u32) -> u32| {
            let mut e: Vec<(u32, u32, u64)> = (0..g.n())
                .flat_map(|i| {
                    (g.indptr[i]..g.indptr[i + 1])
                        .map(move |e| (i as u32, e))
                        .collect::<Vec<_>>()
                })
                .map(|(i, e)| (name(i), name(g.indices[e]), g.weights[e].to_bits()))
                .collect();
            e.sort_unstable();
            e
        };
        assert_eq!(edges(&p, &|r| order[r as usize]), edges(&g, &|i| i));
        // A point keeps its edges in their order.
        assert_eq!(&p.indices[p.indptr[3]..p.indptr[4]], &[4, 1]);
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
