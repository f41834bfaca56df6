//! umap-learn's `optimize_layout_euclidean`: the SGD epochs of a UMAP layout, the kernel
//! behind [`crate::backend::Backend::umap_optimize`] (the CPU's parallel loop here; the GPU
//! backend runs the same epochs in `shaders/umap.wgsl`). The scanpy-level algorithm around it
//! (parameters, the a/b fit, the graph, the initial layout) is [`crate::tl::umap`].
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
//! per-edge clocks in closed form (`samples_by`, `negatives_by`). So the result depends on
//! the seed only, never on the number of threads or the instruction set (the AVX2 build does
//! the same IEEE operations, without FMA), and an epoch is a function of (graph, rates,
//! negative counts, embedding, params, seed, epoch) that a GPU kernel reproduces
//! (`optimize_epoch`, `shaders/umap.wgsl`). The CPU walks two runs of head points side by
//! side: each point's samples form a chain of dependent steps, and two independent chains keep
//! the processor busy.

use rayon::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::rng::{pcg_hash, splitmix};

/// A symmetric weighted graph in CSR with f64 weights: what the SGD lays out (UMAP's fuzzy
/// simplicial set, pruned).
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
    /// Points (rows).
    pub fn n(&self) -> usize {
        self.indptr.len() - 1
    }
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
    /// Sampling rate of the edge in each slot (`rate` in slot order): pass 2 tells the moves
    /// left in this epoch from older ones by the schedule, reading it in order, instead of by
    /// a stamp that pass 1 would write at random.
    pub in_rate: Vec<f32>,
}

impl SgdGraph {
    /// The sampling rates of `g` (an edge of weight w is sampled `w / max w` times per epoch)
    /// and its in-edge slots.
    pub fn new(g: &Graph) -> SgdGraph {
        let n = g.n();
        let max = g.weights.iter().fold(0f64, |m, &w| m.max(w));
        let rate: Vec<f32> = g
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
        let mut in_rate = vec![0f32; rate.len()];
        for (&s, &r) in slot.iter().zip(&rate) {
            in_rate[s as usize] = r;
        }
        SgdGraph {
            n_vertices: n,
            head_ptr: g.indptr.clone(),
            tail: g.indices.clone(),
            rate,
            slot,
            in_ptr,
            in_rate,
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
pub(crate) fn samples_by(epoch: u32, rate: f32) -> u32 {
    (epoch as f32 * rate) as u32
}

/// Whether an edge with `rate` is sampled in `epoch`.
#[inline]
pub(crate) fn sampled(epoch: u32, rate: f32) -> bool {
    epoch > 0 && samples_by(epoch, rate) > samples_by(epoch - 1, rate)
}

/// Negative samples an edge has drawn once its positive sample in `epoch` is done. umap's
/// negative clock starts at and advances by `1 / neg_rate` (`neg_rate` = rate x negative
/// sample rate) and a positive sample in epoch n draws every tick up to n but the first:
/// `max(0, floor(n neg_rate) - 1)` in all. The draws of one sample are this minus the count
/// after the edge's previous sample, which the caller keeps per edge.
#[inline]
pub(crate) fn negatives_by(epoch: u32, neg_rate: f32) -> u32 {
    ((epoch as f32 * neg_rate) as u32).saturating_sub(1)
}

/// What the SGD carries from one epoch to the next besides the layout.
#[derive(Debug)]
pub(crate) struct SgdState {
    /// Negative samples drawn by each edge so far.
    pub drawn: Vec<u32>,
    /// The layout being written.
    next: Vec<f32>,
    /// Move of the tail left in each in-edge slot (f32 bits), valid where the slot's edge is
    /// sampled in the epoch.
    delta: Vec<AtomicU32>,
}

impl SgdState {
    /// Nothing drawn yet.
    pub fn new(g: &SgdGraph, dim: usize) -> Self {
        SgdState {
            drawn: vec![0; g.tail.len()],
            next: vec![0.0; g.n_vertices * dim],
            delta: (0..g.tail.len() * dim).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

/// umap's `optimize_layout_euclidean` over all epochs, deterministic and parallel (module
/// header). `embedding` is row-major `n x dim`.
pub fn optimize_layout(g: &SgdGraph, embedding: &mut [f32], dim: usize, p: &SgdParams) {
    let mut state = SgdState::new(g, dim);
    for epoch in 0..p.n_epochs {
        crate::cancel::checkpoint();
        optimize_epoch(g, &mut state, embedding, dim, p, epoch);
    }
}

/// `x^b` for `x > 0` as `exp2(b log2 x)` with short polynomials (relative error below 1e-5
/// over the distances a layout sees): the SGD spends half its time in `powf` otherwise, and
/// the gradient's own noise dwarfs the difference. Branch-free, so a loop over lanes
/// vectorises.
#[inline]
pub(crate) fn pow_fast(x: f32, b: f32) -> f32 {
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
pub(crate) fn sample_key(seed: u32, epoch: u32, edge: u32) -> u32 {
    pcg_hash(edge ^ pcg_hash(epoch ^ pcg_hash(seed)))
}

/// The high 32 bits of `a b`, from 16-bit halves: 32-bit multiplies only, so eight of them
/// fit one AVX2 instruction each (and WGSL, without 64-bit integers, computes it the same way).
#[inline]
pub(crate) fn mul_hi(a: u32, b: u32) -> u32 {
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
pub(crate) fn optimize_epoch(
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
    let SgdState { drawn, next, delta } = state;
    let c = EpochCtx {
        g,
        prev: embedding,
        delta,
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
                    let live = sampled(epoch, g.in_rate[s]);
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
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

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

    /// Two cliques of `n / 2` points (each joined to its 5 nearest indices) joined by one edge,
    /// and a layout spread over [0, 10]^2, as the SGD starts from.
    fn two_cliques(n: usize) -> (SgdGraph, Vec<f32>) {
        let mut g = Graph {
            indptr: vec![0],
            indices: Vec::new(),
            weights: Vec::new(),
        };
        for i in 0..n {
            for j in 0..n {
                let same = (i < n / 2) == (j < n / 2);
                if i != j && ((same && i.abs_diff(j) <= 5) || (i, j) == (0, n - 1)) {
                    g.indices.push(j as u32);
                    g.weights.push(if same { 1.0 } else { 0.5 });
                }
            }
            g.indptr.push(g.indices.len());
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let init = (0..n * 2).map(|_| rng.random_range(0f32..10.0)).collect();
        (SgdGraph::new(&g), init)
    }

    #[test]
    fn the_avx2_build_gives_the_portable_bits() {
        let (g, init) = two_cliques(1500);
        // scanpy's curve for min_dist 0.5, spread 1.
        let p = SgdParams {
            a: 0.583_03,
            b: 1.334_167,
            gamma: 1.0,
            negative_sample_rate: 5.0,
            learning_rate: 1.0,
            n_epochs: 30,
            seed: 0,
        };
        let mut fast = init.clone();
        optimize_layout(&g, &mut fast, 2, &p);
        PORTABLE.store(true, Ordering::Relaxed);
        let mut portable = init;
        optimize_layout(&g, &mut portable, 2, &p);
        PORTABLE.store(false, Ordering::Relaxed);
        assert!(
            fast.iter()
                .zip(&portable)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
        assert!(fast.iter().all(|v| v.is_finite()));
    }
}
