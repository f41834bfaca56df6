//! `sc.tl.leiden(flavor="igraph", n_iterations=2, directed=False)`: Leiden community detection
//! (Traag, Waltman & van Eck 2019) maximising modularity on `obsp["connectivities"]`, as
//! igraph's `community_leiden(objective_function="modularity", weights, resolution,
//! beta=0.01, n_iterations)` does it (docs/algorithms.md section 6), reproducing scanpy's labels
//! for the same seed.
//!
//! The graph is the one scanpy hands igraph (`get_igraph_from_adjacency`): one undirected edge
//! per stored non-zero entry, numbered in stored (row-major) order, so every pair of cells is
//! joined by two parallel edges (i->j and j->i). They are kept as two entries of igraph's
//! incidence lists (`IGRAPH_ALL`: by the other end, parallel edges by descending edge id,
//! self-loops twice), so every sum of edge weights adds the same numbers in the same order as
//! igraph. Node weights are the strengths
//! (`Graph.strength`, igraph's edge order) and the resolution is divided by their total
//! (python-igraph's `normalize_resolution` for modularity).
//!
//! Each iteration is igraph's `igraph_i_community_leiden`: fast local moving from a shuffled
//! queue (strictly improving moves only, the top of the stack of empty clusters always a
//! candidate), refinement cluster by cluster (only well-connected singletons move, to a
//! well-connected refined cluster chosen with probability proportional to `exp(diff / beta)`
//! among non-negative gains, the best one when that sum overflows), refined clusters numbered
//! cluster by cluster, aggregation on them (edges only towards higher-numbered nodes, in the
//! order met) with the unrefined partition as the starting membership, until local moving
//! leaves every node alone. The second iteration starts from the first's partition.
//!
//! Randomness is scanpy's: `sc.tl.leiden` installs `_RNGIgraph(random_state)`, a numpy
//! `RandomState(seed)` (MT19937, `NumpyRandomState`), as igraph's generator. python-igraph
//! makes it a 32-bit generator whose words are `getrandbits(32)`, which scanpy answers with
//! `tomaxint() & (2^32 - 1)` (two MT19937 words per draw), and whose reals are `random()`.
//! igraph turns the words into integers by Lemire's debiased multiplication
//! (`igraph_rng_get_integer`), shuffles by Fisher-Yates from the last element down
//! (`igraph_vector_int_shuffle`: once per local moving, once per cluster of two or more nodes
//! in the refinement) and draws the refinement's choice as `random() * total` located by
//! bisection in the cumulative weights. Seed `s` is scanpy's `random_state=s`; seeds of 2^32
//! and more, which numpy's `RandomState(s)` rejects, seed as `RandomState([low, high])` (the
//! two 32-bit halves). The algorithm is sequential, so the labels are the same on every
//! machine and thread count.
//!
//! The partition is scanpy's; the names are renumbered by size, "0" the largest, equal sizes in
//! igraph's order (leidenalg's `renumber_communities`, what scanpy's default flavor does).
//! scanpy's igraph flavor stores igraph's numbering (first appearance along the last
//! aggregated graph's nodes), so its labels are a permutation of these: the same clusters.
//!
//! On scanpy's graphs of the sample (1,857 cells) and of 200 real T cells, for seeds 0-9 and
//! resolutions 0.5, 1 and 2, the labels equal scanpy's (`tests/it/cluster.rs`).
//!
//! Why not a crate: no crate reproduces igraph's schedule and random stream. leiden-rs 0.8.1
//! (the maintained Rust Leiden; its default schedule, modularity, each pair once) was measured
//! against an earlier version of this module that followed igraph with its own generator
//! (Xoshiro256++), on scanpy's graph of an earlier version of the sample (scanpy's modularity
//! 0.5925) and cartscope's graph of a simulated 27,580-cell sample, release build, 2 shared
//! cores, seeds 0-2:
//!
//! | | earlier module (own generator) | leiden-rs 0.8.1 |
//! |---|---|---|
//! | modularity, sample (scanpy: 0.5925) | 0.5922-0.5940 | 0.5760-0.5830 |
//! | ARI with scanpy's labels, sample | 0.83-0.92 | 0.67-0.77 |
//! | modularity, 27,580 cells | 0.6493-0.6498 | 0.6325-0.6371 |
//! | seconds, 27,580 cells | 0.17-0.20 | 0.50-0.74 |
//! | same seed, same labels | yes | yes |
//!
//! leiden-rs runs its own schedule (convergence on a quality epsilon, not igraph's
//! `n_iterations` from the previous partition), lands 0.015 below scanpy's modularity (outside
//! the 0.01 tolerance) and is 3x slower. With its own generator this module agreed with scanpy
//! only as well as scanpy's seeds agree with each other; drawing scanpy's random numbers makes
//! it return scanpy's partition (ARI 1).

use crate::matrix::CsrMatrix;
use crate::rng::NumpyRandomState;
use rayon::prelude::*;

/// igraph's randomness of the refinement step (`beta`).
pub(crate) const BETA: f64 = 0.01;

/// Which of scanpy's Leiden implementations: `sc.tl.leiden(flavor=...)`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LeidenFlavor {
    /// igraph's `community_leiden` (modularity, undirected graph): the reference recipe's
    /// `flavor="igraph", n_iterations=2`, scanpy's announced future default.
    #[default]
    Igraph,
    /// leidenalg's RB-configuration optimiser on the directed graph until an iteration moves
    /// no node: scanpy 1.11's default `sc.tl.leiden()` ([`crate::tl::leidenalg`]).
    Leidenalg,
}

impl LeidenFlavor {
    /// scanpy's `n_iterations` for this flavor as cartscope runs it: 2 for igraph (the
    /// reference recipe), -1 for leidenalg (scanpy's default).
    pub fn n_iterations(self) -> i64 {
        match self {
            LeidenFlavor::Igraph => 2,
            LeidenFlavor::Leidenalg => -1,
        }
    }

    /// The clustering of `adj` with this flavor.
    pub fn run(self, adj: &CsrMatrix, params: &LeidenParams) -> Clustering {
        match self {
            LeidenFlavor::Igraph => leiden(adj, params),
            LeidenFlavor::Leidenalg => crate::tl::leidenalg::leidenalg(adj, params),
        }
    }
}

/// Parameters of [`leiden`], scanpy's defaults as the reference pipeline calls it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeidenParams {
    /// Resolution of modularity (1: standard modularity).
    pub resolution: f64,
    /// Full Leiden iterations; each starts from the previous partition. Negative: iterate
    /// until an iteration moves no node (igraph's convention).
    pub n_iterations: i64,
    /// Random seed (scanpy's `random_state`).
    pub seed: u64,
}

impl Default for LeidenParams {
    fn default() -> Self {
        LeidenParams {
            resolution: 1.0,
            n_iterations: 2,
            seed: 0,
        }
    }
}

/// `igraph_rng_get_integer(0, range - 1)` from a 32-bit generator's words: Lemire's debiased
/// multiplication (`0 < range < 2^32`).
pub(crate) fn lemire_below(range: u32, mut bits32: impl FnMut() -> u32) -> u32 {
    let t = range.wrapping_neg() % range;
    loop {
        let m = u64::from(bits32()) * u64::from(range);
        if m as u32 >= t {
            return (m >> 32) as u32;
        }
    }
}

/// A partition of the cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Cluster of each cell: scanpy's partition, numbered by size ("0" the largest).
    pub membership: Vec<u32>,
    /// Number of clusters.
    pub n_clusters: usize,
    /// Newman modularity (resolution 1) of the partition on the input graph.
    pub modularity: f64,
}

/// igraph's random numbers as python-igraph draws them from scanpy's `_RNGIgraph`: a 32-bit
/// generator whose words are `getrandbits(32) = RandomState.tomaxint() & (2^32 - 1)`, reals
/// from `RandomState.random()`.
struct IgraphRng(NumpyRandomState);

impl IgraphRng {
    fn bits32(&mut self) -> u32 {
        self.0.tomaxint() as u32
    }

    /// `igraph_rng_get_integer(0, range - 1)`: Lemire's debiased multiplication (range < 2^32).
    fn below(&mut self, range: u32) -> u32 {
        lemire_below(range, || self.bits32())
    }

    /// `igraph_rng_get_unif(0, h)`: never `h` itself unless `h` is 0.
    fn unif(&mut self, h: f64) -> f64 {
        if h == 0.0 {
            return h;
        }
        loop {
            let r = self.0.random() * h;
            if r != h {
                return r;
            }
        }
    }

    /// `igraph_vector_int_shuffle`: Fisher-Yates from the last element down.
    fn shuffle(&mut self, v: &mut [u32]) {
        let mut n = v.len();
        while n > 1 {
            let k = self.below(n as u32) as usize;
            n -= 1;
            v.swap(n, k);
        }
    }
}

/// One entry of an incidence list: the other end and the weight of the edges to it that the
/// slot holds. Sums over a list add each edge's weight in f64, in igraph's order.
trait Slot: Copy {
    fn other(self) -> usize;
    /// `acc += w` for each edge of the slot, in order.
    fn add_to(self, acc: &mut f64);
    /// `acc -= w` for each edge of the slot, in order.
    fn sub_from(self, acc: &mut f64);
}

/// A slot of the cells' graph: up to two parallel edges to one other end, with the input's
/// f32 weights (exact in f64). Parallel edges are neighbours in igraph's lists (ordered by
/// the other end), so pairing them halves the lookups the hot loops make per edge while every
/// sum still adds the same weights in the same order. A run of odd length ends in a slot
/// whose second weight is 0, an exact no-op in the sums (the lists hold no zero weights and
/// no sum starts from -0).
#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    other: u32,
    weight: [f32; 2],
}

impl Slot for Pair {
    #[inline(always)]
    fn other(self) -> usize {
        self.other as usize
    }
    #[inline(always)]
    fn add_to(self, acc: &mut f64) {
        *acc += f64::from(self.weight[0]);
        *acc += f64::from(self.weight[1]);
    }
    #[inline(always)]
    fn sub_from(self, acc: &mut f64) {
        *acc -= f64::from(self.weight[0]);
        *acc -= f64::from(self.weight[1]);
    }
}

/// A slot of an aggregated graph: its one edge to the other end (aggregation merges parallel
/// edges), weight in f64.
#[derive(Debug, Clone, Copy, Default)]
struct Single {
    other: u32,
    weight: f64,
}

impl Slot for Single {
    #[inline(always)]
    fn other(self) -> usize {
        self.other as usize
    }
    #[inline(always)]
    fn add_to(self, acc: &mut f64) {
        *acc += self.weight;
    }
    #[inline(always)]
    fn sub_from(self, acc: &mut f64) {
        *acc -= self.weight;
    }
}

/// An undirected weighted graph as igraph's incidence lists (`IGRAPH_ALL`, loops twice): for
/// each node its incident edges (other end, weight) in igraph's order (see
/// [`Graph::from_adjacency`]), parallel edges kept as separate edges, in slots `S`.
#[derive(Debug, Clone)]
struct Graph<S> {
    /// Node `v`'s slots are `slots[indptr[v]..indptr[v + 1]]`.
    indptr: Vec<usize>,
    slots: Vec<S>,
}

impl<S: Slot> Graph<S> {
    fn n(&self) -> usize {
        self.indptr.len() - 1
    }

    #[inline(always)]
    fn incident(&self, v: usize) -> &[S] {
        &self.slots[self.indptr[v]..self.indptr[v + 1]]
    }

    /// Asks the cache for the start of `v`'s list, which the loops visit in random node
    /// order: fetched while the current node is processed, it is there when its turn comes.
    #[inline(always)]
    fn prefetch(&self, v: usize) {
        let (start, end) = (self.indptr[v], self.indptr[v + 1]);
        let per_line = 64 / std::mem::size_of::<S>();
        for i in (start..end).step_by(per_line.max(1)).take(4) {
            prefetch(&self.slots[i]);
        }
    }
}

/// A hint to load the cache line of `x`; no effect on results.
#[inline(always)]
fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect, and the address is a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

impl Graph<Pair> {
    /// The graph scanpy builds (`get_igraph_from_adjacency`): one undirected edge per stored
    /// non-zero entry, numbered in stored order, so both (i, j) and (j, i) become edges.
    /// igraph lists a node's incident edges by the other end, parallel edges by descending
    /// edge id, and its self-loops twice (all of them, then all again). Also returns the node
    /// weights that python-igraph gives modularity, `Graph.strength` (igraph adds each edge's
    /// weight to its larger end in edge order, then to its smaller end).
    ///
    /// Given each node's row (edges it starts) and column (edges it ends), a node's list and
    /// strength depend on nothing else, so nodes are built in parallel blocks.
    #[inline(never)]
    fn from_adjacency(adj: &CsrMatrix) -> (Graph<Pair>, Vec<f64>) {
        let n = adj.n_rows;
        // The edges in id order, as a CSR of the non-zero entries (the input's own arrays
        // when it stores no zeros).
        let row_ptr: Vec<usize> = adj.indptr.iter().map(|&p| p as usize).collect();
        let filtered: Option<(Vec<usize>, Vec<u32>, Vec<f32>)> =
            adj.data.contains(&0.0).then(|| {
                let mut ptr = Vec::with_capacity(n + 1);
                ptr.push(0usize);
                let (mut col, mut wt) = (Vec::new(), Vec::new());
                for i in 0..n {
                    let (idx, val) = adj.row(i);
                    for (&j, &v) in idx.iter().zip(val) {
                        if v != 0.0 {
                            col.push(j);
                            wt.push(v);
                        }
                    }
                    ptr.push(col.len());
                }
                (ptr, col, wt)
            });
        let (row_ptr, col, wt): (&[usize], &[u32], &[f32]) = match &filtered {
            Some((p, c, w)) => (p, c, w),
            None => (&row_ptr, &adj.indices, &adj.data),
        };
        let canonical = (0..n).all(|i| col[row_ptr[i]..row_ptr[i + 1]].is_sorted_by(|a, b| a < b));
        // The entries of each column, by row (edge id ascending).
        let mut col_ptr = vec![0usize; n + 1];
        for &j in col {
            col_ptr[j as usize + 1] += 1;
        }
        for v in 0..n {
            col_ptr[v + 1] += col_ptr[v];
        }
        let mut fill = col_ptr.clone();
        let mut col_edge = vec![0u32; if canonical { 0 } else { col.len() }];
        let mut col_row = vec![0u32; col.len()];
        let mut col_w = vec![0.0f32; col.len()];
        for i in 0..n {
            for e in row_ptr[i]..row_ptr[i + 1] {
                let j = col[e] as usize;
                if !canonical {
                    col_edge[fill[j]] = e as u32;
                }
                col_row[fill[j]] = i as u32;
                col_w[fill[j]] = wt[e];
                fill[j] += 1;
            }
        }
        drop(fill);
        const BLOCK: usize = 4096;
        let blocks: Vec<(Vec<usize>, Vec<Pair>, Vec<f64>)> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|block| {
                let nodes = block * BLOCK..((block + 1) * BLOCK).min(n);
                let mut ends = Vec::with_capacity(nodes.len());
                let mut slots = Vec::new();
                let mut strength = Vec::with_capacity(nodes.len());
                let mut entries: Vec<(u32, bool, std::cmp::Reverse<u32>, f32)> = Vec::new();
                for v in nodes {
                    let row = row_ptr[v]..row_ptr[v + 1];
                    let column = col_ptr[v]..col_ptr[v + 1];
                    let v32 = v as u32;
                    // Strength: as the larger end, the column's edges from earlier rows, then
                    // the row's edges to columns <= v; as the smaller end, the row's edges to
                    // columns >= v, then the column's edges from later rows (all in edge id
                    // order; a self-loop counts in both).
                    let mut s = 0.0f64;
                    for k in column.clone() {
                        if col_row[k] < v32 {
                            s += f64::from(col_w[k]);
                        }
                    }
                    for e in row.clone() {
                        if col[e] <= v32 {
                            s += f64::from(wt[e]);
                        }
                    }
                    for e in row.clone() {
                        if col[e] >= v32 {
                            s += f64::from(wt[e]);
                        }
                    }
                    for k in column.clone() {
                        if col_row[k] > v32 {
                            s += f64::from(col_w[k]);
                        }
                    }
                    strength.push(s);
                    // The list: the row merged with the column.
                    if canonical {
                        // Each side has at most one edge per other end u. Of the pair (v, u)
                        // from the row and (u, v) from the column the higher id comes first:
                        // the row's when u < v (row u precedes row v), the column's when
                        // u > v; a self-loop (the same edge on both sides) from the row first.
                        let (mut a, mut b) = (row.start, column.start);
                        push_pairs(
                            &mut slots,
                            std::iter::from_fn(|| {
                                if a == row.end && b == column.end {
                                    return None;
                                }
                                let take_row = b == column.end
                                    || (a < row.end
                                        && (col[a] < col_row[b]
                                            || (col[a] == col_row[b] && col[a] <= v32)));
                                if take_row {
                                    a += 1;
                                    Some((col[a - 1], wt[a - 1]))
                                } else {
                                    b += 1;
                                    Some((col_row[b - 1], col_w[b - 1]))
                                }
                            }),
                        );
                    } else {
                        // Other end, then (self-loops only) row side before column side, then
                        // descending edge id.
                        entries.clear();
                        for e in row.clone() {
                            entries.push((col[e], false, std::cmp::Reverse(e as u32), wt[e]));
                        }
                        for k in column.clone() {
                            let u = col_row[k];
                            entries.push((u, u == v32, std::cmp::Reverse(col_edge[k]), col_w[k]));
                        }
                        entries.sort_unstable_by_key(|&(u, side, e, _)| (u, side, e));
                        push_pairs(&mut slots, entries.iter().map(|e| (e.0, e.3)));
                    }
                    ends.push(slots.len());
                }
                (ends, slots, strength)
            })
            .collect();
        let total: usize = blocks.iter().map(|b| b.1.len()).sum();
        let mut graph = Graph {
            indptr: Vec::with_capacity(n + 1),
            slots: Vec::with_capacity(total),
        };
        graph.indptr.push(0);
        let mut strength = Vec::with_capacity(n);
        for (ends, slots, s) in blocks {
            let base = graph.slots.len();
            graph.indptr.extend(ends.iter().map(|&e| base + e));
            graph.slots.extend_from_slice(&slots);
            strength.extend_from_slice(&s);
        }
        (graph, strength)
    }
}

/// Appends one node's incidence list (in igraph's order) to `slots`, parallel edges paired.
fn push_pairs(slots: &mut Vec<Pair>, list: impl IntoIterator<Item = (u32, f32)>) {
    let mut open = false;
    for (u, w) in list {
        match slots.last_mut() {
            Some(last) if open && last.other == u => {
                last.weight[1] = w;
                open = false;
            }
            _ => {
                slots.push(Pair {
                    other: u,
                    weight: [w, 0.0],
                });
                open = true;
            }
        }
    }
}

/// Leiden clustering of the undirected graph `adj` (every stored entry an edge), as scanpy's
/// `sc.tl.leiden(flavor="igraph", n_iterations=2, random_state=seed)` computes it, with the
/// clusters renumbered by size. A negative `n_iterations` repeats iterations until one moves
/// no node in any of its levels, as igraph does.
pub fn leiden(adj: &CsrMatrix, params: &LeidenParams) -> Clustering {
    let (graph, node_weights) = Graph::from_adjacency(adj);
    let n = graph.n();
    let total: f64 = node_weights.iter().sum();
    let resolution = params.resolution / total;
    let mut rng = IgraphRng(NumpyRandomState::seed_u64(params.seed));
    let mut membership: Vec<u32> = (0..n as u32).collect();
    let mut changed = true;
    let mut done = 0i64;
    while if params.n_iterations < 0 {
        changed
    } else {
        done < params.n_iterations
    } {
        crate::cancel::checkpoint();
        changed = one_iteration(&graph, &node_weights, &mut membership, resolution, &mut rng);
        done += 1;
    }
    let n_clusters = number_by_size(&mut membership);
    let modularity = modularity(adj, &membership, 1.0);
    Clustering {
        membership,
        n_clusters,
        modularity,
    }
}

/// Renumbers igraph's clusters (0..k) by size, largest first, equal sizes in igraph's order
/// (leidenalg's `renumber_communities`); returns k.
fn number_by_size(membership: &mut [u32]) -> usize {
    let k = membership
        .iter()
        .map(|&c| c as usize + 1)
        .max()
        .unwrap_or(0);
    let mut size = vec![0usize; k];
    for &c in membership.iter() {
        size[c as usize] += 1;
    }
    let mut order: Vec<u32> = (0..k as u32).collect();
    // Stable: ties keep igraph's numbering.
    order.sort_by_key(|&c| std::cmp::Reverse(size[c as usize]));
    let mut new = vec![0u32; k];
    for (rank, &c) in order.iter().enumerate() {
        new[c as usize] = rank as u32;
    }
    for c in membership.iter_mut() {
        *c = new[*c as usize];
    }
    k
}

/// `igraph_reindex_membership`: cluster ids made contiguous in order of first appearance.
fn reindex(membership: &mut [u32]) -> usize {
    let mut map = vec![u32::MAX; membership.len()];
    let mut next = 0u32;
    for c in membership.iter_mut() {
        let slot = &mut map[*c as usize];
        if *slot == u32::MAX {
            *slot = next;
            next += 1;
        }
        *c = *slot;
    }
    next as usize
}

/// One run of igraph's `igraph_i_community_leiden`, improving `membership` in place. As in
/// igraph, the cells' membership is updated from an aggregated level only when that level is
/// refined further, so the last local moving (which found every node best alone) leaves it.
fn one_iteration(
    graph: &Graph<Pair>,
    node_weights: &[f64],
    membership: &mut [u32],
    resolution: f64,
    rng: &mut IgraphRng,
) -> bool {
    let n = graph.n();
    reindex(membership);
    let mut state = Level {
        agg_membership: membership.to_vec(),
        membership,
        aggregate_node: (0..n as u32).collect(),
        level: 0,
        resolution,
        changed: false,
    };
    let mut agg = match state.step(graph, node_weights, rng) {
        Some(next) => next,
        None => return state.changed,
    };
    while let Some(next) = state.step(&agg.0, &agg.1, rng) {
        agg = next;
    }
    state.changed
}

/// The state one iteration carries from one aggregation level to the next.
struct Level<'a> {
    /// The cells' membership.
    membership: &'a mut [u32],
    /// Node of the current aggregated graph that holds each cell.
    aggregate_node: Vec<u32>,
    /// Membership of the current graph's nodes.
    agg_membership: Vec<u32>,
    level: usize,
    resolution: f64,
    /// Whether the local moving moved a node on any level (igraph's `changed`).
    changed: bool,
}

impl Level<'_> {
    /// Local moving on graph `g`, then (unless every node stays alone) refinement and
    /// aggregation: returns the next level's graph and node weights, or `None` when done.
    fn step<S: Slot>(
        &mut self,
        g: &Graph<S>,
        w: &[f64],
        rng: &mut IgraphRng,
    ) -> Option<(Graph<Single>, Vec<f64>)> {
        let resolution = self.resolution;
        let (n_clusters, moved) = fast_move_nodes(g, w, &mut self.agg_membership, resolution, rng);
        self.changed |= moved;
        if self.level == 0 {
            // On the first level igraph moves the cells' own membership.
            self.membership.copy_from_slice(&self.agg_membership);
        }
        if n_clusters >= g.n() {
            return None;
        }
        if self.level > 0 {
            for (m, &v) in self.membership.iter_mut().zip(&self.aggregate_node) {
                *m = self.agg_membership[v as usize];
            }
        }
        let (mut refined, mut n_refined) =
            refine(g, w, &self.agg_membership, n_clusters, resolution, rng);
        if n_refined >= g.n() {
            // Refinement merged nothing: aggregate on the clustering itself.
            refined.copy_from_slice(&self.agg_membership);
            n_refined = n_clusters;
        }
        for v in self.aggregate_node.iter_mut() {
            *v = refined[*v as usize];
        }
        let (graph, weights, membership) =
            aggregate(g, w, &self.agg_membership, &refined, n_refined);
        self.agg_membership = membership;
        self.level += 1;
        Some((graph, weights))
    }
}

/// Adds the weight of each edge from `v` to another node `u` that `key` maps to a cluster
/// into `edge_to[cluster]`, in list order, and lists each cluster met for the first time in
/// `candidates` (flagged in `added`). Neighbours mostly share a cluster, so a run of them sums
/// in a register, stored when the cluster changes: the same additions in the same order.
#[inline(always)]
fn gather<S: Slot>(
    g: &Graph<S>,
    v: usize,
    key: impl Fn(usize) -> Option<u32>,
    edge_to: &mut [f64],
    added: &mut [bool],
    candidates: &mut Vec<u32>,
) {
    let mut run = (u32::MAX, 0.0f64);
    for &slot in g.incident(v) {
        let u = slot.other();
        let Some(c) = key(u).filter(|_| u != v) else {
            continue;
        };
        if c != run.0 {
            if run.0 != u32::MAX {
                edge_to[run.0 as usize] = run.1;
            }
            if !added[c as usize] {
                added[c as usize] = true;
                candidates.push(c);
            }
            run = (c, edge_to[c as usize]);
        }
        slot.add_to(&mut run.1);
    }
    if run.0 != u32::MAX {
        edge_to[run.0 as usize] = run.1;
    }
}

/// igraph's `fastmovenodes`: nodes leave a queue (shuffled at first) and move to the cluster
/// with the strictly largest gain; stable neighbours left outside the new cluster re-enter the
/// queue. Returns the number of clusters, with `membership` reindexed, and whether a node
/// moved.
#[inline(never)]
fn fast_move_nodes<S: Slot>(
    g: &Graph<S>,
    node_weights: &[f64],
    membership: &mut [u32],
    resolution: f64,
    rng: &mut IgraphRng,
) -> (usize, bool) {
    let n = g.n();
    let mut moved = false;
    let mut order: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut order);
    let mut queue: std::collections::VecDeque<u32> = order.into();
    let mut cluster_weight = vec![0.0f64; n];
    let mut cluster_size = vec![0usize; n];
    for v in 0..n {
        cluster_weight[membership[v] as usize] += node_weights[v];
        cluster_size[membership[v] as usize] += 1;
    }
    let mut empty: Vec<u32> = (0..n as u32)
        .filter(|&c| cluster_size[c as usize] == 0)
        .collect();
    let mut stable = vec![false; n];
    let mut edge_to = vec![0.0f64; n];
    let mut added = vec![false; n];
    let mut candidates: Vec<u32> = Vec::new();
    while let Some(v) = queue.pop_front() {
        if let Some(&next) = queue.front() {
            g.prefetch(next as usize);
        }
        let v = v as usize;
        let current = membership[v] as usize;
        let wv = node_weights[v];
        cluster_weight[current] -= wv;
        cluster_size[current] -= 1;
        if cluster_size[current] == 0 {
            empty.push(current as u32);
        }
        // An empty cluster is always a candidate (a node may leave to be alone).
        candidates.clear();
        let spare = *empty.last().expect("the node's own cluster at least");
        candidates.push(spare);
        added[spare as usize] = true;
        gather(
            g,
            v,
            |u| Some(membership[u]),
            &mut edge_to,
            &mut added,
            &mut candidates,
        );
        let mut best = current;
        let mut best_gain = edge_to[current] - wv * cluster_weight[current] * resolution;
        for &c in &candidates {
            let c = c as usize;
            let gain = edge_to[c] - wv * cluster_weight[c] * resolution;
            if gain > best_gain {
                best = c;
                best_gain = gain;
            }
            edge_to[c] = 0.0;
            added[c] = false;
        }
        cluster_weight[best] += wv;
        cluster_size[best] += 1;
        if empty.last() == Some(&(best as u32)) {
            empty.pop();
        }
        stable[v] = true;
        if best != current {
            moved = true;
            membership[v] = best as u32;
            for slot in g.incident(v) {
                let u = slot.other();
                if stable[u] && membership[u] as usize != best {
                    queue.push_back(u as u32);
                    stable[u] = false;
                }
            }
        }
    }
    (reindex(membership), moved)
}

/// The nodes of each label `0..k` in node order: label `c`'s are
/// `members[start[c]..start[c + 1]]`.
fn group_by_label(labels: &[u32], k: usize) -> (Vec<usize>, Vec<u32>) {
    let mut start = vec![0usize; k + 1];
    for &c in labels {
        start[c as usize + 1] += 1;
    }
    for c in 0..k {
        start[c + 1] += start[c];
    }
    let mut fill = start.clone();
    let mut members = vec![0u32; labels.len()];
    for (v, &c) in labels.iter().enumerate() {
        members[fill[c as usize]] = v as u32;
        fill[c as usize] += 1;
    }
    (start, members)
}

/// igraph's refinement (`mergenodes` for each cluster in turn, `clean_refined_membership`):
/// inside each cluster, starting from singletons, each well-connected singleton (in random
/// order) joins a well-connected refined cluster of its cluster, chosen at random with weight
/// `exp(gain / beta)` among gains >= 0. Returns the refined clusters, numbered cluster by
/// cluster in order of first member, and their number.
#[inline(never)]
fn refine<S: Slot>(
    g: &Graph<S>,
    node_weights: &[f64],
    membership: &[u32],
    n_clusters: usize,
    resolution: f64,
    rng: &mut IgraphRng,
) -> (Vec<u32>, usize) {
    let n = g.n();
    // Nodes of each cluster, in node order.
    let (start, members) = group_by_label(membership, n_clusters);
    // Refined cluster of each node, local to its cluster (the position of its first node).
    let mut refined = vec![0u32; n];
    let mut weight = vec![0.0f64; n];
    let mut non_singleton = vec![false; n];
    // Weight of the edges from each refined cluster to the rest of its cluster.
    let mut external = vec![0.0f64; n];
    let mut edge_to = vec![0.0f64; n];
    let mut added = vec![false; n];
    let mut candidates: Vec<u32> = Vec::new();
    let mut cumulative: Vec<f64> = Vec::new();
    let mut order: Vec<u32> = Vec::new();
    let mut renumber = vec![u32::MAX; n];
    let mut n_refined = 0u32;
    for c in 0..n_clusters {
        let nodes = &members[start[c]..start[c + 1]];
        let cluster = c as u32;
        let mut total = 0.0f64;
        for (i, &v) in nodes.iter().enumerate() {
            if let Some(&next) = nodes.get(i + 1) {
                g.prefetch(next as usize);
            }
            let v = v as usize;
            refined[v] = i as u32;
            weight[i] = node_weights[v];
            non_singleton[i] = false;
            total += node_weights[v];
            let mut ext = 0.0f64;
            for &slot in g.incident(v) {
                let u = slot.other();
                if u != v && membership[u] == cluster {
                    slot.add_to(&mut ext);
                }
            }
            external[i] = ext;
        }
        order.clear();
        order.extend_from_slice(nodes);
        rng.shuffle(&mut order);
        for (i, &v) in order.iter().enumerate() {
            if let Some(&next) = order.get(i + 1) {
                g.prefetch(next as usize);
            }
            let v = v as usize;
            let current = refined[v] as usize;
            if non_singleton[current]
                || external[current] < weight[current] * (total - weight[current]) * resolution
            {
                continue;
            }
            let wv = node_weights[v];
            weight[current] = 0.0;
            candidates.clear();
            candidates.push(current as u32);
            added[current] = true;
            gather(
                g,
                v,
                |u| (membership[u] == cluster).then(|| refined[u]),
                &mut edge_to,
                &mut added,
                &mut candidates,
            );
            let mut best = current;
            let mut best_gain = 0.0f64;
            let mut sum = 0.0f64;
            cumulative.clear();
            for &r in &candidates {
                let r = r as usize;
                if external[r] >= weight[r] * (total - weight[r]) * resolution {
                    let gain = edge_to[r] - wv * weight[r] * resolution;
                    if gain > best_gain {
                        best = r;
                        best_gain = gain;
                    }
                    if gain >= 0.0 {
                        sum += (gain / BETA).exp();
                    }
                }
                cumulative.push(sum);
                edge_to[r] = 0.0;
                added[r] = false;
            }
            let chosen = if sum < f64::INFINITY {
                let x = rng.unif(sum);
                candidates[binsearch(&cumulative, x)] as usize
            } else {
                best
            };
            weight[chosen] += wv;
            let mut ext = external[chosen];
            for &slot in g.incident(v) {
                let u = slot.other();
                if membership[u] == cluster {
                    if refined[u] as usize == chosen {
                        slot.sub_from(&mut ext);
                    } else {
                        slot.add_to(&mut ext);
                    }
                }
            }
            external[chosen] = ext;
            if chosen != current {
                refined[v] = chosen as u32;
                non_singleton[chosen] = true;
            }
        }
        // Global numbers, in order of first node within the cluster.
        for &v in nodes {
            let local = refined[v as usize] as usize;
            if renumber[local] == u32::MAX {
                renumber[local] = n_refined;
                n_refined += 1;
            }
        }
        for &v in nodes {
            refined[v as usize] = renumber[refined[v as usize] as usize];
        }
        renumber[..nodes.len()].fill(u32::MAX);
    }
    (refined, n_refined as usize)
}

/// `igraph_vector_binsearch_slice` on the whole of `v` (ascending): the index of an element
/// equal to `x` where the bisection meets one, else the first index whose element exceeds `x`.
fn binsearch(v: &[f64], x: f64) -> usize {
    let (mut left, mut right) = (0isize, v.len() as isize - 1);
    while left <= right {
        let middle = left + ((right - left) >> 1);
        let m = v[middle as usize];
        if m > x {
            right = middle - 1;
        } else if m < x {
            left = middle + 1;
        } else {
            return middle as usize;
        }
    }
    left as usize
}

/// igraph's `aggregate`: one node per refined cluster (in its numbering), an edge from each
/// refined cluster to every higher-numbered one it touches, weighted by the summed weights of
/// the edges between them in the order they are met (members in node order, each member's
/// incidence list); edges inside a refined cluster are dropped. Returns the graph, its node
/// weights and the membership of each refined cluster (its last member's cluster).
#[inline(never)]
fn aggregate<S: Slot>(
    g: &Graph<S>,
    node_weights: &[f64],
    membership: &[u32],
    refined: &[u32],
    k: usize,
) -> (Graph<Single>, Vec<f64>, Vec<u32>) {
    let (start, members) = group_by_label(refined, k);
    let mut agg_weights = vec![0.0f64; k];
    let mut agg_membership = vec![0u32; k];
    // Edges (c, d > c, weight) in igraph's creation order within each c, sorted by d below:
    // a node's incidence list is ordered by the other end.
    let mut edges: Vec<(u32, u32, f64)> = Vec::new();
    let mut acc = vec![0.0f64; k];
    let mut added = vec![false; k];
    let mut touched: Vec<u32> = Vec::new();
    let mut degree = vec![0usize; k + 1];
    for c in 0..k {
        let mut last = 0usize;
        for (i, &v) in members.iter().enumerate().take(start[c + 1]).skip(start[c]) {
            if let Some(&next) = members.get(i + 1) {
                g.prefetch(next as usize);
            }
            let v = v as usize;
            for &slot in g.incident(v) {
                let d = refined[slot.other()];
                if d as usize > c {
                    if !added[d as usize] {
                        added[d as usize] = true;
                        touched.push(d);
                    }
                    slot.add_to(&mut acc[d as usize]);
                }
            }
            agg_weights[c] += node_weights[v];
            last = v;
        }
        agg_membership[c] = membership[last];
        touched.sort_unstable();
        for &d in &touched {
            edges.push((c as u32, d, acc[d as usize]));
            degree[c + 1] += 1;
            degree[d as usize + 1] += 1;
            acc[d as usize] = 0.0;
            added[d as usize] = false;
        }
        touched.clear();
    }
    for c in 0..k {
        degree[c + 1] += degree[c];
    }
    let indptr = degree;
    let mut fill = indptr.clone();
    let mut slots = vec![Single::default(); indptr[k]];
    // Edges come by ascending c, then ascending d: both ends' lists fill in ascending order.
    for &(c, d, weight) in &edges {
        slots[fill[c as usize]] = Single { other: d, weight };
        fill[c as usize] += 1;
        slots[fill[d as usize]] = Single { other: c, weight };
        fill[d as usize] += 1;
    }
    (Graph { indptr, slots }, agg_weights, agg_membership)
}

/// Newman modularity of `membership` on the undirected graph `adj` (every stored entry an
/// edge, as igraph's `Graph.modularity(membership, weights)` sees scanpy's graph):
/// `Q = 1/(2m) sum_ij (A_ij - resolution k_i k_j / (2m)) [c_i = c_j]`.
pub fn modularity(adj: &CsrMatrix, membership: &[u32], resolution: f64) -> f64 {
    let k = membership
        .iter()
        .map(|&c| c as usize + 1)
        .max()
        .unwrap_or(0);
    let mut inside = vec![0.0f64; k];
    let mut degree = vec![0.0f64; k];
    let mut two_m = 0.0f64;
    for i in 0..adj.n_rows {
        let (idx, val) = adj.row(i);
        let ci = membership[i] as usize;
        for (&j, &v) in idx.iter().zip(val) {
            let w = f64::from(v);
            two_m += w;
            degree[ci] += w;
            if membership[j as usize] as usize == ci {
                inside[ci] += w;
            }
        }
    }
    if two_m == 0.0 {
        return f64::NAN;
    }
    (0..k)
        .map(|c| inside[c] / two_m - resolution * (degree[c] / two_m).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `blocks` cliques of `size` nodes, each joined to the next by one weak edge.
    fn ring_of_cliques(blocks: usize, size: usize) -> CsrMatrix {
        let n = blocks * size;
        let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for b in 0..blocks {
            for i in 0..size {
                for j in 0..size {
                    if i != j {
                        rows[b * size + i].push(((b * size + j) as u32, 1.0));
                    }
                }
            }
            let (a, c) = (b * size, ((b + 1) % blocks) * size + 1);
            rows[a].push((c as u32, 0.1));
            rows[c].push((a as u32, 0.1));
        }
        let mut m = CsrMatrix::empty(n);
        for mut r in rows {
            r.sort_by_key(|e| e.0);
            for (j, v) in r {
                m.indices.push(j);
                m.data.push(v);
            }
            m.indptr.push(m.indices.len() as u64);
        }
        m.n_rows = n;
        m
    }

    #[test]
    fn finds_the_cliques_of_a_ring() {
        let g = ring_of_cliques(8, 6);
        let c = leiden(&g, &LeidenParams::default());
        assert_eq!(c.n_clusters, 8);
        for b in 0..8 {
            let first = c.membership[b * 6];
            assert!(c.membership[b * 6..(b + 1) * 6].iter().all(|&m| m == first));
        }
        // Eight cliques of 30 stored unit entries, 8 weak edges of 0.1 stored twice:
        // 2m = 241.6, Q = 8 (30/241.6 - (30.2/241.6)^2) = 0.8684.
        assert!((c.modularity - 0.8684).abs() < 1e-3, "{}", c.modularity);
    }

    #[test]
    fn same_seed_same_partition() {
        let g = ring_of_cliques(12, 5);
        let p = LeidenParams::default();
        assert_eq!(leiden(&g, &p), leiden(&g, &p));
    }

    fn csr(indptr: &[u64], indices: &[u32], data: &[f32]) -> CsrMatrix {
        CsrMatrix {
            n_rows: indptr.len() - 1,
            n_cols: indptr.len() - 1,
            indptr: indptr.to_vec(),
            indices: indices.to_vec(),
            data: data.to_vec(),
        }
    }

    /// The incidence lists with the slots expanded back into edges (the test graphs have no
    /// zero weights, so a zero second weight is an odd run's padding).
    fn incidence(g: &Graph<Pair>) -> Vec<Vec<(usize, f64)>> {
        (0..g.n())
            .map(|v| {
                g.incident(v)
                    .iter()
                    .flat_map(|s| s.weight.map(|w| (s.other(), f64::from(w))))
                    .filter(|&(_, w)| w != 0.0)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn incidence_lists_and_strengths_are_igraphs() {
        // python-igraph 1.0 on scanpy's get_igraph_from_adjacency of these matrices:
        // [[(G.es[e].target if G.es[e].source == v else G.es[e].source, G.es[e]["weight"])
        //   for e in G.incident(v, mode="all")] for v in range(3)], G.strength(weights="weight")
        let (g, s) = Graph::from_adjacency(&csr(
            &[0, 2, 5, 6],
            &[0, 1, 0, 1, 2, 1],
            &[0.5, 2.0, 3.0, 1.5, 0.25, 4.0],
        ));
        assert_eq!(
            incidence(&g),
            vec![
                vec![(0, 0.5), (0, 0.5), (1, 3.0), (1, 2.0)],
                vec![(0, 3.0), (0, 2.0), (1, 1.5), (1, 1.5), (2, 4.0), (2, 0.25)],
                vec![(1, 4.0), (1, 0.25)],
            ]
        );
        assert_eq!(s, vec![6.0, 12.25, 4.25]);
        // A row out of column order.
        let (g, s) = Graph::from_adjacency(&csr(
            &[0, 3, 4, 6],
            &[2, 0, 1, 0, 1, 0],
            &[1.0, 0.5, 2.0, 3.0, 0.25, 4.0],
        ));
        assert_eq!(
            incidence(&g),
            vec![
                vec![(0, 0.5), (0, 0.5), (1, 3.0), (1, 2.0), (2, 4.0), (2, 1.0)],
                vec![(0, 3.0), (0, 2.0), (2, 0.25)],
                vec![(0, 4.0), (0, 1.0), (1, 0.25)],
            ]
        );
        assert_eq!(s, vec![11.0, 5.25, 5.25]);
    }

    /// igraph's `Graph.strength` as it sums: every edge's weight to its larger end in edge
    /// order, then to its smaller end.
    fn strength_two_passes(adj: &CsrMatrix) -> Vec<f64> {
        let mut s = vec![0.0f64; adj.n_rows];
        for pass in 0..2 {
            for i in 0..adj.n_rows {
                let (idx, val) = adj.row(i);
                for (&j, &w) in idx.iter().zip(val) {
                    let j = j as usize;
                    s[if pass == 0 { i.max(j) } else { i.min(j) }] += f64::from(w);
                }
            }
        }
        s
    }

    #[test]
    fn strengths_add_in_igraphs_order() {
        // Weights of very different magnitudes, so any other order of the sums shows in the
        // bits; rows out of order, repeated entries and self-loops, sorted and not.
        let mut state = 3u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        for sorted in [true, false] {
            let n = 5000;
            let mut m = CsrMatrix::empty(n);
            for _ in 0..n {
                let mut row: Vec<(u32, f32)> = (0..next(12))
                    .map(|_| {
                        let w = (1.0 + next(1000) as f32) * 10f32.powi(next(13) as i32 - 6);
                        (next(n as u64) as u32, w)
                    })
                    .collect();
                if sorted {
                    row.sort_by_key(|e| e.0);
                    row.dedup_by_key(|e| e.0);
                }
                for (j, w) in row {
                    m.indices.push(j);
                    m.data.push(w);
                }
                m.indptr.push(m.indices.len() as u64);
            }
            m.n_rows = n;
            let (_, s) = Graph::from_adjacency(&m);
            let reference = strength_two_passes(&m);
            assert!(
                s.iter()
                    .zip(&reference)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "sorted rows: {sorted}"
            );
        }
    }

    #[test]
    fn binsearch_is_igraphs_bisection() {
        let v = [1.0, 2.0, 2.0, 2.0, 5.0];
        // Not present: the first element above.
        assert_eq!(binsearch(&v, 0.5), 0);
        assert_eq!(binsearch(&v, 2.5), 4);
        // Present: where the bisection meets it (middle of 0..=4 first).
        assert_eq!(binsearch(&v, 2.0), 2);
        assert_eq!(binsearch(&v, 1.0), 0);
    }

    #[test]
    fn modularity_of_two_disjoint_edges() {
        // Two components, each one edge (stored both ways): Q = 2 * (1/2 - 1/4) = 0.5.
        let m = CsrMatrix {
            n_rows: 4,
            n_cols: 4,
            indptr: vec![0, 1, 2, 3, 4],
            indices: vec![1, 0, 3, 2],
            data: vec![1.0; 4],
        };
        assert!((modularity(&m, &[0, 0, 1, 1], 1.0) - 0.5).abs() < 1e-12);
    }
}
