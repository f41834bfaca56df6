//! `sc.tl.leiden(flavor="igraph", n_iterations=2, directed=False)`: Leiden community detection
//! (Traag, Waltman & van Eck 2019) maximising modularity on `obsp["connectivities"]`, as
//! igraph's `community_leiden(objective_function="modularity", weights, resolution,
//! beta=0.01, n_iterations)` does it (ALGORITHMS.md section 6), reproducing scanpy's labels
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
//! `RandomState(seed)` (MT19937, [`NumpyRandomState`]), as igraph's generator. python-igraph
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
//! Labels are igraph's membership as scanpy stores it: numbered by first appearance along the
//! last aggregated graph's nodes, not by size (scanpy's categories are then in natural order).
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

use crate::cart::rng::NumpyRandomState;
use crate::matrix::CsrMatrix;

/// igraph's randomness of the refinement step (`beta`).
pub const BETA: f64 = 0.01;

/// Parameters of [`leiden`], scanpy's defaults as the reference pipeline calls it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeidenParams {
    /// Resolution of modularity (1: standard modularity).
    pub resolution: f64,
    /// Full Leiden iterations; each starts from the previous partition.
    pub n_iterations: usize,
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

/// A partition of the cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Cluster of each cell, numbered as igraph returns them (scanpy's labels).
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
        let t = range.wrapping_neg() % range;
        loop {
            let m = u64::from(self.bits32()) * u64::from(range);
            if m as u32 >= t {
                return (m >> 32) as u32;
            }
        }
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

/// An undirected weighted graph as igraph's incidence lists (`IGRAPH_ALL`, loops twice): for
/// each node its incident edges as (other end, weight) in igraph's order (see
/// [`Graph::from_adjacency`]), so parallel edges stay separate entries.
#[derive(Debug, Clone)]
struct Graph {
    indptr: Vec<usize>,
    other: Vec<u32>,
    weight: Vec<f64>,
}

impl Graph {
    fn n(&self) -> usize {
        self.indptr.len() - 1
    }

    fn incident(&self, v: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.indptr[v]..self.indptr[v + 1];
        self.other[r.clone()]
            .iter()
            .zip(&self.weight[r])
            .map(|(&u, &w)| (u as usize, w))
    }

    /// The graph scanpy builds (`get_igraph_from_adjacency`): one undirected edge per stored
    /// non-zero entry, numbered in stored order, so both (i, j) and (j, i) become edges.
    /// igraph lists a node's incident edges by the other end, parallel edges by descending
    /// edge id, and its self-loops twice (all of them, then all again). Also returns the node
    /// weights that python-igraph gives modularity, `Graph.strength` (igraph adds each edge's
    /// weight to its larger end in edge order, then to its smaller end).
    fn from_adjacency(adj: &CsrMatrix) -> (Graph, Vec<f64>) {
        let n = adj.n_rows;
        // The edges in id order, as a CSR of the non-zero entries.
        let mut row_ptr = Vec::with_capacity(n + 1);
        row_ptr.push(0usize);
        let mut col: Vec<u32> = Vec::with_capacity(adj.indices.len());
        let mut wt: Vec<f64> = Vec::with_capacity(adj.indices.len());
        let mut canonical = true;
        for i in 0..n {
            let (idx, val) = adj.row(i);
            let first = col.len();
            for (&j, &v) in idx.iter().zip(val) {
                if v != 0.0 {
                    col.push(j);
                    wt.push(f64::from(v));
                }
            }
            canonical &= col[first..].windows(2).all(|p| p[0] < p[1]);
            row_ptr.push(col.len());
        }
        let mut strength = vec![0.0f64; n];
        for pass in 0..2 {
            for i in 0..n {
                for e in row_ptr[i]..row_ptr[i + 1] {
                    let j = col[e] as usize;
                    let end = if pass == 0 { i.max(j) } else { i.min(j) };
                    strength[end] += wt[e];
                }
            }
        }
        // The entries of each column, by row (edge id ascending).
        let mut col_ptr = vec![0usize; n + 1];
        for &j in &col {
            col_ptr[j as usize + 1] += 1;
        }
        for v in 0..n {
            col_ptr[v + 1] += col_ptr[v];
        }
        let mut fill = col_ptr.clone();
        let mut col_edge = vec![0u32; col.len()];
        let mut col_row = vec![0u32; col.len()];
        let mut col_w = vec![0.0f64; col.len()];
        for i in 0..n {
            for e in row_ptr[i]..row_ptr[i + 1] {
                let j = col[e] as usize;
                col_edge[fill[j]] = e as u32;
                col_row[fill[j]] = i as u32;
                col_w[fill[j]] = wt[e];
                fill[j] += 1;
            }
        }
        // A node's incidence list is its row (edges it starts) merged with its column (edges
        // it ends); a self-loop is in both.
        let mut indptr = Vec::with_capacity(n + 1);
        indptr.push(0usize);
        let mut other = Vec::with_capacity(2 * col.len());
        let mut weight = Vec::with_capacity(2 * col.len());
        let mut entries: Vec<(u32, bool, std::cmp::Reverse<u32>, f64)> = Vec::new();
        for v in 0..n {
            let (mut a, a_end) = (row_ptr[v], row_ptr[v + 1]);
            let (mut b, b_end) = (col_ptr[v], col_ptr[v + 1]);
            if canonical {
                // Each side has at most one edge per other end: of a pair, the higher id
                // first; a self-loop (the same edge on both sides) from the row first.
                while a < a_end || b < b_end {
                    let take_row = b == b_end
                        || (a < a_end
                            && (col[a] < col_row[b]
                                || (col[a] == col_row[b] && a as u32 >= col_edge[b])));
                    if take_row {
                        other.push(col[a]);
                        weight.push(wt[a]);
                        a += 1;
                    } else {
                        other.push(col_row[b]);
                        weight.push(col_w[b]);
                        b += 1;
                    }
                }
            } else {
                // Other end, then (self-loops only) row side before column side, then
                // descending edge id.
                entries.clear();
                for e in a..a_end {
                    entries.push((col[e], false, std::cmp::Reverse(e as u32), wt[e]));
                }
                for k in b..b_end {
                    let u = col_row[k];
                    let e = std::cmp::Reverse(col_edge[k]);
                    entries.push((u, u as usize == v, e, col_w[k]));
                }
                entries.sort_unstable_by_key(|&(u, side, e, _)| (u, side, e));
                other.extend(entries.iter().map(|e| e.0));
                weight.extend(entries.iter().map(|e| e.3));
                (a, b) = (a_end, b_end);
            }
            debug_assert!(a == a_end && b == b_end);
            indptr.push(other.len());
        }
        let graph = Graph {
            indptr,
            other,
            weight,
        };
        (graph, strength)
    }
}

/// Leiden clustering of the undirected graph `adj` (every stored entry an edge), as scanpy's
/// `sc.tl.leiden(flavor="igraph", n_iterations=2, random_state=seed)` computes it.
pub fn leiden(adj: &CsrMatrix, params: &LeidenParams) -> Clustering {
    let (graph, node_weights) = Graph::from_adjacency(adj);
    let n = graph.n();
    let total: f64 = node_weights.iter().sum();
    let resolution = params.resolution / total;
    let mut rng = IgraphRng(NumpyRandomState::seed_u64(params.seed));
    let mut membership: Vec<u32> = (0..n as u32).collect();
    for _ in 0..params.n_iterations {
        one_iteration(&graph, &node_weights, &mut membership, resolution, &mut rng);
    }
    // igraph's labels are 0..k, numbered through the last aggregated graph.
    let n_clusters = membership
        .iter()
        .map(|&c| c as usize + 1)
        .max()
        .unwrap_or(0);
    let modularity = modularity(adj, &membership, 1.0);
    Clustering {
        membership,
        n_clusters,
        modularity,
    }
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
    graph: &Graph,
    node_weights: &[f64],
    membership: &mut [u32],
    resolution: f64,
    rng: &mut IgraphRng,
) {
    let n = graph.n();
    reindex(membership);
    // Node of the current aggregated graph that holds each cell.
    let mut aggregate_node: Vec<u32> = (0..n as u32).collect();
    let mut agg: Option<(Graph, Vec<f64>)> = None;
    let mut agg_membership: Vec<u32> = membership.to_vec();
    let mut level = 0;
    loop {
        let (g, w) = match &agg {
            Some((g, w)) => (g, w.as_slice()),
            None => (graph, node_weights),
        };
        let n_clusters = fast_move_nodes(g, w, &mut agg_membership, resolution, rng);
        if level == 0 {
            // On the first level igraph moves the cells' own membership.
            membership.copy_from_slice(&agg_membership);
        }
        if n_clusters >= g.n() {
            break;
        }
        if level > 0 {
            for (m, &v) in membership.iter_mut().zip(&aggregate_node) {
                *m = agg_membership[v as usize];
            }
        }
        let (mut refined, mut n_refined) =
            refine(g, w, &agg_membership, n_clusters, resolution, rng);
        if n_refined >= g.n() {
            // Refinement merged nothing: aggregate on the clustering itself.
            refined.copy_from_slice(&agg_membership);
            n_refined = n_clusters;
        }
        for v in aggregate_node.iter_mut() {
            *v = refined[*v as usize];
        }
        let next = aggregate(g, w, &agg_membership, &refined, n_refined);
        agg_membership = next.2;
        agg = Some((next.0, next.1));
        level += 1;
    }
}

/// igraph's `fastmovenodes`: nodes leave a queue (shuffled at first) and move to the cluster
/// with the strictly largest gain; stable neighbours left outside the new cluster re-enter the
/// queue. Returns the number of clusters, with `membership` reindexed.
fn fast_move_nodes(
    g: &Graph,
    node_weights: &[f64],
    membership: &mut [u32],
    resolution: f64,
    rng: &mut IgraphRng,
) -> usize {
    let n = g.n();
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
        for (u, w) in g.incident(v) {
            if u != v {
                let c = membership[u];
                if !added[c as usize] {
                    added[c as usize] = true;
                    candidates.push(c);
                }
                edge_to[c as usize] += w;
            }
        }
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
            membership[v] = best as u32;
            for (u, _) in g.incident(v) {
                if stable[u] && membership[u] as usize != best {
                    queue.push_back(u as u32);
                    stable[u] = false;
                }
            }
        }
    }
    reindex(membership)
}

/// igraph's refinement (`mergenodes` for each cluster in turn, `clean_refined_membership`):
/// inside each cluster, starting from singletons, each well-connected singleton (in random
/// order) joins a well-connected refined cluster of its cluster, chosen at random with weight
/// `exp(gain / beta)` among gains >= 0. Returns the refined clusters, numbered cluster by
/// cluster in order of first member, and their number.
fn refine(
    g: &Graph,
    node_weights: &[f64],
    membership: &[u32],
    n_clusters: usize,
    resolution: f64,
    rng: &mut IgraphRng,
) -> (Vec<u32>, usize) {
    let n = g.n();
    // Nodes of each cluster, in node order.
    let mut start = vec![0usize; n_clusters + 1];
    for &c in membership {
        start[c as usize + 1] += 1;
    }
    for c in 0..n_clusters {
        start[c + 1] += start[c];
    }
    let mut fill = start.clone();
    let mut members = vec![0u32; n];
    for (v, &c) in membership.iter().enumerate() {
        members[fill[c as usize]] = v as u32;
        fill[c as usize] += 1;
    }
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
            let v = v as usize;
            refined[v] = i as u32;
            weight[i] = node_weights[v];
            non_singleton[i] = false;
            total += node_weights[v];
            let mut ext = 0.0f64;
            for (u, w) in g.incident(v) {
                if u != v && membership[u] == cluster {
                    ext += w;
                }
            }
            external[i] = ext;
        }
        order.clear();
        order.extend_from_slice(nodes);
        rng.shuffle(&mut order);
        for &v in &order {
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
            for (u, w) in g.incident(v) {
                if u != v && membership[u] == cluster {
                    let r = refined[u];
                    if !added[r as usize] {
                        added[r as usize] = true;
                        candidates.push(r);
                    }
                    edge_to[r as usize] += w;
                }
            }
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
            for (u, w) in g.incident(v) {
                if membership[u] == cluster {
                    if refined[u] as usize == chosen {
                        external[chosen] -= w;
                    } else {
                        external[chosen] += w;
                    }
                }
            }
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
fn aggregate(
    g: &Graph,
    node_weights: &[f64],
    membership: &[u32],
    refined: &[u32],
    k: usize,
) -> (Graph, Vec<f64>, Vec<u32>) {
    let n = g.n();
    let mut start = vec![0usize; k + 1];
    for &r in refined {
        start[r as usize + 1] += 1;
    }
    for c in 0..k {
        start[c + 1] += start[c];
    }
    let mut fill = start.clone();
    let mut members = vec![0u32; n];
    for (v, &r) in refined.iter().enumerate() {
        members[fill[r as usize]] = v as u32;
        fill[r as usize] += 1;
    }
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
        for &v in &members[start[c]..start[c + 1]] {
            let v = v as usize;
            for (u, w) in g.incident(v) {
                let d = refined[u];
                if d as usize > c {
                    if !added[d as usize] {
                        added[d as usize] = true;
                        touched.push(d);
                    }
                    acc[d as usize] += w;
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
    let mut other = vec![0u32; indptr[k]];
    let mut weight = vec![0.0f64; indptr[k]];
    // Edges come by ascending c, then ascending d: both ends' lists fill in ascending order.
    for &(c, d, w) in &edges {
        let (c, d) = (c as usize, d as usize);
        other[fill[c]] = d as u32;
        weight[fill[c]] = w;
        fill[c] += 1;
        other[fill[d]] = c as u32;
        weight[fill[d]] = w;
        fill[d] += 1;
    }
    (
        Graph {
            indptr,
            other,
            weight,
        },
        agg_weights,
        agg_membership,
    )
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

    fn incidence(g: &Graph) -> Vec<Vec<(usize, f64)>> {
        (0..g.n()).map(|v| g.incident(v).collect()).collect()
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
