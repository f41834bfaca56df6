//! Approximate k nearest neighbours by NN-descent (Dong, Moses & Li 2011) with a random
//! projection forest for the initial graph, the method of pynndescent that scanpy uses above
//! 8,192 cells.
//!
//! Deterministic for a seed: every random choice comes from per-node streams, candidate
//! updates are sorted before they are applied, so the thread count does not change the result.
//! Distances are squared Euclidean in f32 while searching; the final neighbours are re-ranked
//! by distances computed in f64, and the cell itself is neighbour 0 at distance 0, as in the
//! exact path.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::matrix::{inverse_permutation, rows_in_order};
use crate::rng::splitmix;

/// Parameters (pynndescent's as scanpy calls it: max_candidates 16, delta 0.001).
#[derive(Debug, Clone, Copy)]
pub struct NnDescentParams {
    /// Random projection trees in the initial forest.
    pub n_trees: usize,
    /// Largest leaf of a tree.
    pub leaf_size: usize,
    /// NN-descent iterations at most.
    pub max_iters: usize,
    /// Candidates sampled per node and iteration.
    pub max_candidates: usize,
    /// Stop when fewer than `delta * n * k` neighbour lists changed in an iteration.
    pub delta: f64,
    /// Seed.
    pub seed: u64,
}

impl NnDescentParams {
    /// pynndescent's defaults for `n` points: trees `min(64, 5 + round(sqrt(n) / 20))`,
    /// iterations `max(5, round(log2 n))`.
    pub fn for_size(n: usize, seed: u64) -> Self {
        NnDescentParams {
            n_trees: (5 + ((n as f64).sqrt() / 20.0).round() as usize).min(64),
            leaf_size: 60,
            max_iters: ((n as f64).log2().round() as usize).max(5),
            max_candidates: 40,
            delta: 0.001,
            seed,
        }
    }
}

/// The sum of `term(a[i], b[i])` in f32 over eight independent partial sums, so that the
/// compiler can keep them in SIMD lanes (a single running sum is one long chain of dependent
/// additions that leaves the vector units idle).
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0.0f32; 8];
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += term(x[l], y[l]);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&x, &y) in ra.iter().zip(rb) {
        s += term(x, y);
    }
    s
}

/// Squared Euclidean distance in f32 ([`lane_sum`]).
fn dist2(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

/// Dot product in f32 ([`lane_sum`]): the random projection trees take one per point and
/// level.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// Candidate updates applied at once at most (target, distance², neighbour; 12 bytes each):
/// the forest's leaves and each iteration's nodes are processed in batches of about this many
/// candidate pairs, so the working set stays bounded whatever the number of points.
const PAIR_BUDGET: usize = 1 << 23;

/// Random projection trees built together (a fixed number, so that the order in which their
/// leaves are applied, and with it the result, does not depend on the thread count).
const TREES_PER_BATCH: usize = 4;

/// Up to `cap` items per node in one flat array, node `i`'s in slots
/// `i * cap..i * cap + len[i]`: one allocation instead of one per node, the lists in node order
/// whatever state earlier stages left the allocator in. Candidate lists ([`Lists`]) append;
/// neighbour lists ([`Heaps`]) keep their items sorted.
struct Flat<T> {
    cap: usize,
    len: Vec<u32>,
    items: Vec<T>,
}

impl<T: Copy + Default + Send> Flat<T> {
    fn new(n: usize, cap: usize) -> Self {
        Flat {
            cap,
            len: vec![0; n],
            items: vec![T::default(); n * cap],
        }
    }

    fn n(&self) -> usize {
        self.len.len()
    }

    /// Node `i`'s list.
    fn get(&self, i: usize) -> &[T] {
        &self.items[i * self.cap..i * self.cap + self.len[i] as usize]
    }
}

/// Up to `cap` node indices per node.
type Lists = Flat<u32>;

impl Lists {
    /// Appends `v` to node `i`'s list unless it is full.
    fn push(&mut self, i: usize, v: u32) -> bool {
        let l = self.len[i] as usize;
        if l >= self.cap {
            return false;
        }
        self.items[i * self.cap + l] = v;
        self.len[i] += 1;
        true
    }
}

/// A candidate update: (target, distance², neighbour).
type Update = (u32, f32, u32);

/// A neighbour in a list: (distance², index, is_new).
type Entry = (f32, u32, bool);

/// Every node's current neighbours, sorted by distance, up to `cap` per node.
type Heaps = Flat<Entry>;

impl Heaps {
    /// The distance a candidate must beat to enter node `i`'s list.
    fn worst(&self, i: usize) -> f32 {
        worst(
            &self.items[i * self.cap..(i + 1) * self.cap],
            self.len[i] as usize,
        )
    }

    /// Every node's list, in node order.
    fn lists_mut(&mut self) -> impl Iterator<Item = Heap<'_>> {
        self.items
            .chunks_mut(self.cap)
            .zip(self.len.iter_mut())
            .map(|(items, len)| Heap { items, len })
    }

    /// [`Heaps::lists_mut`] in parallel.
    fn par_lists_mut(&mut self) -> impl IndexedParallelIterator<Item = Heap<'_>> {
        self.items
            .par_chunks_mut(self.cap)
            .zip(self.len.par_iter_mut())
            .map(|(items, len)| Heap { items, len })
    }
}

/// The distance a candidate must beat to enter a sorted list whose slots are `slots`, the
/// first `len` in use: the last one's when full, else none.
fn worst(slots: &[Entry], len: usize) -> f32 {
    if len < slots.len() {
        f32::INFINITY
    } else {
        slots[slots.len() - 1].0
    }
}

/// One node's list: its `cap` slots, the first `len` in use.
struct Heap<'a> {
    items: &'a mut [Entry],
    len: &'a mut u32,
}

impl Heap<'_> {
    fn full(&self) -> bool {
        *self.len as usize >= self.items.len()
    }

    /// Inserts neighbour `j` at distance² `d` in order if it is closer than the worst kept
    /// and not listed yet (the worst drops out of a full list).
    fn push(&mut self, d: f32, j: u32) -> bool {
        let (len, cap) = (*self.len as usize, self.items.len());
        let live = &self.items[..len];
        if d >= worst(self.items, len) || live.iter().any(|e| e.1 == j) {
            return false;
        }
        let at = live.partition_point(|e| (e.0, e.1) < (d, j));
        let end = (len + 1).min(cap);
        self.items.copy_within(at..end - 1, at + 1);
        self.items[at] = (d, j, true);
        *self.len = end as u32;
        true
    }
}

/// Leaves of one random projection tree: split by the hyperplane halfway between two random
/// points until leaves hold at most `leaf` points.
fn rp_leaves(
    points: &[f32],
    dim: usize,
    ids: Vec<u32>,
    leaf: usize,
    rng: &mut Xoshiro256PlusPlus,
    out: &mut Vec<Vec<u32>>,
) {
    if ids.len() <= leaf {
        out.push(ids);
        return;
    }
    let a = ids[rng.random_range(0..ids.len())] as usize;
    let mut b = ids[rng.random_range(0..ids.len())] as usize;
    for _ in 0..8 {
        if b != a {
            break;
        }
        b = ids[rng.random_range(0..ids.len())] as usize;
    }
    let (pa, pb) = (
        &points[a * dim..(a + 1) * dim],
        &points[b * dim..(b + 1) * dim],
    );
    let normal: Vec<f32> = pa.iter().zip(pb).map(|(x, y)| x - y).collect();
    let offset: f32 = normal
        .iter()
        .zip(pa.iter().zip(pb))
        .map(|(n, (x, y))| n * (x + y) / 2.0)
        .sum();
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for &i in &ids {
        let p = &points[i as usize * dim..(i as usize + 1) * dim];
        let side = dot(&normal, p) - offset;
        if side > 0.0 || (side == 0.0 && rng.random::<bool>()) {
            left.push(i)
        } else {
            right.push(i)
        }
    }
    if left.is_empty() || right.is_empty() {
        // Degenerate split (duplicates): halve arbitrarily.
        let mut all = ids;
        let half = all.len() / 2;
        right = all.split_off(half);
        left = all;
    }
    rp_leaves(points, dim, left, leaf, rng, out);
    rp_leaves(points, dim, right, leaf, rng, out);
}

/// Approximate k nearest neighbours of every point (self included first at distance 0):
/// row-major `n x k` indices and f64 distances.
pub fn knn(points: &[f32], dim: usize, k: usize, params: NnDescentParams) -> (Vec<u32>, Vec<f64>) {
    let n = points.len() / dim.max(1);
    let kk = k.saturating_sub(1).min(n.saturating_sub(1));
    // The search keeps three times the wanted neighbours: on high-dimensional, noise-dominated
    // embeddings a list of exactly k converges to about 0.9 recall; the wider list gets much
    // closer to exact, and the k nearest of it are returned.
    let cap = (3 * kk).min(n.saturating_sub(1)).max(1);
    // The search runs on the points renumbered in the order of one random projection tree's
    // leaves: neighbours then sit close in memory, so the joins' reads of coordinates and
    // lists hit the cache instead of the whole data set.
    let order = tree_order(points, dim, &params);
    let local = rows_in_order(points, dim, &order);
    let started = std::time::Instant::now();
    let mut heaps = initial_graph(&local, dim, cap, &params);
    tracing::debug!(
        "nn-descent forest of {} trees: {:.2} s",
        params.n_trees,
        started.elapsed().as_secs_f64()
    );
    for iter in 0..params.max_iters {
        crate::cancel::checkpoint();
        let changed = descend(&mut heaps, &local, dim, params.max_candidates);
        tracing::debug!(
            "nn-descent iteration {iter}: {changed} updates ({:.2} s)",
            started.elapsed().as_secs_f64()
        );
        if (changed as f64) <= params.delta * n as f64 * cap as f64 {
            break;
        }
    }
    final_lists(&heaps, &local, dim, k, &order)
}

/// The points in the order of the leaves of one random projection tree (its own seed, leaves
/// of at most 64 points): nearby points get nearby numbers.
fn tree_order(points: &[f32], dim: usize, params: &NnDescentParams) -> Vec<u32> {
    let n = points.len() / dim.max(1);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(params.seed ^ 0x0DE5_CE17));
    let mut leaves = Vec::new();
    rp_leaves(
        points,
        dim,
        (0..n as u32).collect(),
        64,
        &mut rng,
        &mut leaves,
    );
    leaves.concat()
}

/// The starting graph: neighbours within the leaves of a random projection forest, and random
/// neighbours for the nodes the forest left short. Trees are built [`TREES_PER_BATCH`] at a
/// time and their leaves joined in batches of at most [`PAIR_BUDGET`] pairs, so memory stays
/// at the trees of one batch and the updates of one batch of leaves.
fn initial_graph(points: &[f32], dim: usize, cap: usize, params: &NnDescentParams) -> Heaps {
    let n = points.len() / dim.max(1);
    let mut heaps = Heaps::new(n, cap);
    let pt = |i: usize| &points[i * dim..(i + 1) * dim];
    for first in (0..params.n_trees).step_by(TREES_PER_BATCH) {
        let leaves: Vec<Vec<u32>> = (first..(first + TREES_PER_BATCH).min(params.n_trees))
            .into_par_iter()
            .flat_map_iter(|t| {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(
                    params.seed ^ splitmix(t as u64 + 1),
                ));
                let mut out = Vec::new();
                rp_leaves(
                    points,
                    dim,
                    (0..n as u32).collect(),
                    params.leaf_size,
                    &mut rng,
                    &mut out,
                );
                out
            })
            .collect();
        let pairs = |l: &Vec<u32>| l.len() * l.len().saturating_sub(1) / 2;
        for batch in budget_batches(leaves.len(), |i| pairs(&leaves[i])) {
            let hs = &heaps;
            let mut updates: Vec<Update> = leaves[batch]
                .par_iter()
                .flat_map_iter(|leaf| local_join(leaf, leaf.len(), points, dim, hs).into_iter())
                .collect();
            apply(&mut heaps, &mut updates);
        }
    }
    // Fill nodes that the forest left short with random neighbours.
    heaps.par_lists_mut().enumerate().for_each(|(i, mut h)| {
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(splitmix(params.seed ^ (i as u64) ^ 0xF111));
        let mut tries = 0;
        while !h.full() && tries < 4 * cap + 16 {
            let j = rng.random_range(0..n);
            if j != i {
                h.push(dist2(pt(i), pt(j)), j as u32);
            }
            tries += 1;
        }
    });
    heaps
}

/// Consecutive ranges of `0..n` whose `cost` adds up to at most [`PAIR_BUDGET`] (a single
/// item may exceed it on its own).
fn budget_batches(n: usize, cost: impl Fn(usize) -> usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut a = 0;
    while a < n {
        let mut b = a;
        let mut sum = 0;
        while b < n && (b == a || sum + cost(b) <= PAIR_BUDGET) {
            sum += cost(b);
            b += 1;
        }
        out.push(a..b);
        a = b;
    }
    out
}

/// One NN-descent iteration: sample new and old candidates per node and their reverses, join
/// them locally, and keep the closer pairs; returns how many updates were accepted. Nodes are
/// joined in batches of at most [`PAIR_BUDGET`] candidate pairs, each batch's updates applied
/// before the next batch is joined (so later batches filter against fresher lists).
fn descend(heaps: &mut Heaps, points: &[f32], dim: usize, mc: usize) -> usize {
    let n = heaps.n();
    // Sample new and old candidates per node, then their reverses.
    let (mut new_c, mut old_c) = (Lists::new(n, mc), Lists::new(n, mc));
    for (i, h) in heaps.lists_mut().enumerate() {
        for e in h.items[..*h.len as usize].iter_mut() {
            if e.2 {
                if new_c.push(i, e.1) {
                    e.2 = false;
                }
            } else {
                old_c.push(i, e.1);
            }
        }
    }
    let (mut new_r, mut old_r) = (Lists::new(n, mc), Lists::new(n, mc));
    for i in 0..n {
        for &j in new_c.get(i) {
            new_r.push(j as usize, i as u32);
        }
        for &j in old_c.get(i) {
            old_r.push(j as usize, i as u32);
        }
    }
    let join_pairs = |i: usize| {
        let nw = (new_c.len[i] + new_r.len[i]) as usize;
        let od = (old_c.len[i] + old_r.len[i]) as usize;
        nw * nw.saturating_sub(1) / 2 + nw * od
    };
    let mut changed = 0;
    for batch in budget_batches(n, join_pairs) {
        let hs: &Heaps = heaps;
        let mut updates: Vec<Update> = batch
            .into_par_iter()
            .flat_map_iter(|i| {
                let mut nw: Vec<u32> = new_c.get(i).iter().chain(new_r.get(i)).copied().collect();
                nw.sort_unstable();
                nw.dedup();
                let mut od: Vec<u32> = old_c.get(i).iter().chain(old_r.get(i)).copied().collect();
                od.sort_unstable();
                od.dedup();
                let ids: Vec<u32> = nw.iter().chain(&od).copied().collect();
                // New-new pairs once each, then new-old pairs.
                local_join(&ids, nw.len(), points, dim, hs).into_iter()
            })
            .collect();
        changed += apply(heaps, &mut updates);
    }
    changed
}

/// The candidate updates of one local join: every pair (x, y) of `ids` with x among the first
/// `first` and y after x, kept for a side whose list it would enter. The points' coordinates
/// and list bounds are gathered into one small block first, so the pairs read them from cache
/// instead of from all over memory.
fn local_join(ids: &[u32], first: usize, points: &[f32], dim: usize, hs: &Heaps) -> Vec<Update> {
    let block = rows_in_order(points, dim, ids);
    let bounds: Vec<f32> = ids.iter().map(|&a| hs.worst(a as usize)).collect();
    let at = |x: usize| &block[x * dim..(x + 1) * dim];
    let mut u = Vec::new();
    for x in 0..first {
        for y in x + 1..ids.len() {
            let (a, b) = (ids[x], ids[y]);
            if a == b {
                continue;
            }
            let d = dist2(at(x), at(y));
            if d < bounds[x] {
                u.push((a, d, b));
            }
            if d < bounds[y] {
                u.push((b, d, a));
            }
        }
    }
    u
}

/// Final lists in the input's numbering (point `order[r]` searched as `r`): self first, then
/// the neighbours re-ranked by f64 distances, ties by index.
fn final_lists(
    heaps: &Heaps,
    points: &[f32],
    dim: usize,
    k: usize,
    order: &[u32],
) -> (Vec<u32>, Vec<f64>) {
    let n = heaps.n();
    let pt = |i: usize| &points[i * dim..(i + 1) * dim];
    let rank = inverse_permutation(order);
    let mut idx = vec![0u32; n * k.min(n)];
    let mut dist = vec![0f64; n * k.min(n)];
    let kn = k.min(n);
    idx.par_chunks_mut(kn.max(1))
        .zip(dist.par_chunks_mut(kn.max(1)))
        .enumerate()
        .for_each(|(i, (oi, od))| {
            let r = rank[i] as usize;
            let mut row: Vec<(f64, u32)> = heaps
                .get(r)
                .iter()
                .map(|e| {
                    let (a, b) = (pt(r), pt(e.1 as usize));
                    (
                        a.iter()
                            .zip(b)
                            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                            .sum::<f64>(),
                        order[e.1 as usize],
                    )
                })
                .collect();
            row.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            oi[0] = i as u32;
            od[0] = 0.0;
            for (s, (d2, j)) in row.into_iter().take(kn - 1).enumerate() {
                oi[s + 1] = j;
                od[s + 1] = d2.sqrt();
            }
        });
    (idx, dist)
}

/// Applies candidate updates (target, distance², neighbour) in a deterministic order; returns
/// how many were accepted.
fn apply(heaps: &mut Heaps, updates: &mut [Update]) -> usize {
    updates
        .par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    // Pair each target's run of updates with its heap (the targets are sorted, and a slice
    // iterator skips ahead in constant time).
    let mut work: Vec<(Heap<'_>, &[Update])> = Vec::new();
    let mut it = heaps.lists_mut();
    let mut next = 0usize;
    for run in updates.chunk_by(|a, b| a.0 == b.0) {
        let t = run[0].0 as usize;
        let h = it.nth(t - next).expect("update target is a node");
        next = t + 1;
        work.push((h, run));
    }
    work.into_par_iter()
        .map(|(mut h, run)| run.iter().filter(|u| h.push(u.1, u.2)).count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, CpuBackend};

    fn clustered(n: usize, dim: usize) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let centres: Vec<f32> = (0..10 * dim).map(|_| rng.random::<f32>() * 20.0).collect();
        (0..n)
            .flat_map(|i| {
                let c = i % 10;
                let base: Vec<f32> = (0..dim).map(|d| centres[c * dim + d]).collect();
                base.into_iter()
                    .map(|x| x + rng.random::<f32>() * 4.0)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn recall_against_exact_and_determinism() {
        let (n, dim, k) = (3000, 20, 15);
        let pts = clustered(n, dim);
        let (ei, _) = CpuBackend.knn_exact(&pts, dim, k);
        let p = NnDescentParams::for_size(n, 0);
        let (ai, ad) = knn(&pts, dim, k, p);
        let mut hit = 0;
        for i in 0..n {
            assert_eq!((ai[i * k], ad[i * k]), (i as u32, 0.0), "self first");
            let e: std::collections::HashSet<u32> =
                ei[i * k + 1..(i + 1) * k].iter().copied().collect();
            hit += ai[i * k + 1..(i + 1) * k]
                .iter()
                .filter(|j| e.contains(j))
                .count();
        }
        let recall = hit as f64 / (n * (k - 1)) as f64;
        assert!(recall >= 0.98, "recall {recall}");
        assert_eq!(knn(&pts, dim, k, p).0, ai, "same seed, same graph");
    }
}
