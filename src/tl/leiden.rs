//! `sc.tl.leiden(flavor="igraph", n_iterations=2, directed=False)`: Leiden community detection
//! (Traag, Waltman & van Eck 2019) maximising modularity on `obsp["connectivities"]`, as
//! igraph's `community_leiden(objective_function="modularity", weights, resolution,
//! beta=0.01, n_iterations)` does it (ALGORITHMS.md section 6).
//!
//! scanpy builds an undirected igraph graph with one edge per stored entry, so every pair of
//! cells is joined by two parallel edges (i->j and j->i). Here the symmetric matrix is used once
//! with its weights doubled, which is the same graph to igraph: the adjacency sums parallel
//! edges, and the refinement's randomness `exp(diff / beta)` sees the same differences.
//! Node weights are the strengths and the resolution is divided by their total (modularity).
//!
//! Each iteration is igraph's: fast local moving from a shuffled queue (strictly improving
//! moves only, an empty cluster always a candidate), refinement inside every cluster (only
//! well-connected singletons move, to a well-connected refined cluster chosen with probability
//! proportional to `exp(diff / beta)` among non-negative gains), aggregation on the refined
//! partition with the unrefined one as the starting membership, until each cluster is one node.
//! The second iteration starts from the first's partition.
//!
//! Randomness comes from Xoshiro256++ seeded through SplitMix64, so a seed gives the same
//! partition on every machine and thread count (the algorithm is sequential). igraph uses its
//! own generator, so partitions agree with scanpy's statistically (ARI, modularity), not bit
//! for bit.
//!
//! Cluster labels: igraph numbers clusters by the first cell in each; here "0" is the largest
//! cluster (then by size, ties by first cell), as scanpy's leidenalg flavor numbers them; labels are
//! arbitrary for every comparison made (ARI, modularity).
//!
//! Why not a crate: leiden-rs 0.8.1 (the maintained Rust Leiden; its default schedule, modularity,
//! each pair once) against this module on the same graphs, release build, 2 shared cores,
//! seeds 0-2 (scanpy's graph of the 1,857-cell sample; cartscope's graph of a simulated
//! 27,580-cell sample):
//!
//! | | this module | leiden-rs 0.8.1 |
//! |---|---|---|
//! | modularity, sample (scanpy: 0.5925) | 0.5922-0.5940 | 0.5760-0.5830 |
//! | ARI with scanpy's labels, sample | 0.83-0.92 | 0.67-0.77 |
//! | modularity, 27,580 cells | 0.6493-0.6498 | 0.6325-0.6371 |
//! | seconds, 27,580 cells | 0.17-0.20 | 0.50-0.74 |
//! | same seed, same labels | yes | yes |
//!
//! leiden-rs runs its own schedule (convergence on a quality epsilon, not igraph's
//! `n_iterations` from the previous partition), lands 0.015 below scanpy's modularity (outside
//! the 0.01 tolerance) and is 3x slower; following igraph step by step is what makes the
//! agreement with scanpy checkable.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::matrix::CsrMatrix;
use crate::simulate::splitmix;

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
    /// Cluster of each cell; 0 is the largest cluster.
    pub membership: Vec<u32>,
    /// Number of clusters.
    pub n_clusters: usize,
    /// Newman modularity (resolution 1) of the partition on the input graph.
    pub modularity: f64,
}

/// An undirected weighted graph: symmetric CSR without self-loops in the adjacency, with node
/// weights kept separately (aggregated nodes carry the summed weights of their members).
#[derive(Debug, Clone)]
struct Graph {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    weights: Vec<f64>,
    node_weights: Vec<f64>,
}

impl Graph {
    fn n(&self) -> usize {
        self.node_weights.len()
    }

    fn neighbours(&self, v: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.indptr[v]..self.indptr[v + 1];
        self.indices[r.clone()]
            .iter()
            .zip(&self.weights[r])
            .map(|(&u, &w)| (u as usize, w))
    }

    /// The graph scanpy hands igraph: every stored entry an edge, weights doubled for the two
    /// parallel edges; node weights are strengths (self-loops included, as igraph counts them).
    fn from_adjacency(adj: &CsrMatrix) -> Graph {
        let n = adj.n_rows;
        let mut indptr = Vec::with_capacity(n + 1);
        indptr.push(0);
        let mut indices = Vec::with_capacity(adj.indices.len());
        let mut weights = Vec::with_capacity(adj.indices.len());
        let mut node_weights = vec![0.0; n];
        for (i, strength) in node_weights.iter_mut().enumerate() {
            let (idx, val) = adj.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                let w = 2.0 * f64::from(v);
                // A self-loop adds twice its weight to igraph's strength (both ends).
                *strength += if j as usize == i { 2.0 * w } else { w };
                if j as usize != i && w != 0.0 {
                    indices.push(j);
                    weights.push(w);
                }
            }
            indptr.push(indices.len());
        }
        Graph {
            indptr,
            indices,
            weights,
            node_weights,
        }
    }
}

/// Leiden clustering of the undirected graph `adj` (symmetric; every stored entry an edge).
pub fn leiden(adj: &CsrMatrix, params: &LeidenParams) -> Clustering {
    let graph = Graph::from_adjacency(adj);
    let n = graph.n();
    let total: f64 = graph.node_weights.iter().sum();
    let resolution = if total > 0.0 {
        params.resolution / total
    } else {
        0.0
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(params.seed ^ 0x1E1D_E11E));
    let mut membership: Vec<u32> = (0..n as u32).collect();
    for _ in 0..params.n_iterations {
        one_iteration(&graph, &mut membership, resolution, &mut rng);
    }
    let (membership, n_clusters) = number_by_size(&membership);
    let modularity = modularity(adj, &membership, 1.0);
    Clustering {
        membership,
        n_clusters,
        modularity,
    }
}

/// One run of igraph's `igraph_i_community_leiden`, improving `membership` in place.
fn one_iteration(
    graph: &Graph,
    membership: &mut [u32],
    resolution: f64,
    rng: &mut Xoshiro256PlusPlus,
) {
    let n = graph.n();
    // Node of the current aggregated graph that holds each cell.
    let mut node_of: Vec<u32> = (0..n as u32).collect();
    let mut agg = graph.clone();
    let mut agg_membership = renumber_first_seen(membership).0;
    loop {
        let n_clusters = fast_move_nodes(&agg, &mut agg_membership, resolution, rng);
        for (m, &v) in membership.iter_mut().zip(&node_of) {
            *m = agg_membership[v as usize];
        }
        if n_clusters >= agg.n() {
            break;
        }
        let mut refined = refine(&agg, &agg_membership, resolution, rng);
        let (mut refined_ids, mut n_refined) = renumber_first_seen(&refined);
        if n_refined >= agg.n() {
            // Refinement merged nothing: aggregate on the clustering itself.
            refined.copy_from_slice(&agg_membership);
            (refined_ids, n_refined) = renumber_first_seen(&refined);
        }
        let mut next_membership = vec![0u32; n_refined];
        for v in 0..agg.n() {
            next_membership[refined_ids[v] as usize] = agg_membership[v];
        }
        agg = aggregate(&agg, &refined_ids, n_refined);
        for v in node_of.iter_mut() {
            *v = refined_ids[*v as usize];
        }
        agg_membership = next_membership;
    }
    let (ids, _) = renumber_first_seen(membership);
    membership.copy_from_slice(&ids);
}

/// Cluster ids made contiguous in order of first appearance (igraph_reindex_membership).
fn renumber_first_seen(membership: &[u32]) -> (Vec<u32>, usize) {
    let mut map = vec![
        u32::MAX;
        membership
            .len()
            .max(1 + *membership.iter().max().unwrap_or(&0) as usize)
    ];
    let mut next = 0u32;
    let ids = membership
        .iter()
        .map(|&c| {
            let slot = &mut map[c as usize];
            if *slot == u32::MAX {
                *slot = next;
                next += 1;
            }
            *slot
        })
        .collect();
    (ids, next as usize)
}

/// Labels renumbered so that 0 is the largest cluster (ties: the cluster seen first).
fn number_by_size(membership: &[u32]) -> (Vec<u32>, usize) {
    let (ids, k) = renumber_first_seen(membership);
    let mut size = vec![0usize; k];
    for &c in &ids {
        size[c as usize] += 1;
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(size[c]), c));
    let mut rank = vec![0u32; k];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r as u32;
    }
    (ids.iter().map(|&c| rank[c as usize]).collect(), k)
}

/// Fisher-Yates shuffle of 0..n.
fn shuffled(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// igraph's `fastmovenodes`: nodes leave a queue (shuffled at first) and move to the cluster
/// with the strictly largest gain; neighbours left outside the new cluster re-enter the queue.
/// Returns the number of clusters, with `membership` renumbered contiguously.
fn fast_move_nodes(
    g: &Graph,
    membership: &mut [u32],
    resolution: f64,
    rng: &mut Xoshiro256PlusPlus,
) -> usize {
    let n = g.n();
    let mut cluster_weight = vec![0.0f64; n];
    let mut cluster_size = vec![0usize; n];
    for v in 0..n {
        cluster_weight[membership[v] as usize] += g.node_weights[v];
        cluster_size[membership[v] as usize] += 1;
    }
    let mut empty: Vec<u32> = (0..n as u32)
        .rev()
        .filter(|&c| cluster_size[c as usize] == 0)
        .collect();
    let mut queue: std::collections::VecDeque<u32> = shuffled(n, rng).into();
    let mut stable = vec![false; n];
    let mut edge_to = vec![0.0f64; n];
    let mut added = vec![false; n];
    let mut candidates: Vec<u32> = Vec::new();
    while let Some(v) = queue.pop_front() {
        let v = v as usize;
        let current = membership[v] as usize;
        let wv = g.node_weights[v];
        cluster_weight[current] -= wv;
        cluster_size[current] -= 1;
        if cluster_size[current] == 0 {
            empty.push(current as u32);
        }
        candidates.clear();
        // An empty cluster is always a candidate (a node may leave to be alone).
        let spare = *empty.last().unwrap_or(&(current as u32));
        candidates.push(spare);
        added[spare as usize] = true;
        for (u, w) in g.neighbours(v) {
            if u == v {
                continue;
            }
            let c = membership[u];
            if !added[c as usize] {
                added[c as usize] = true;
                candidates.push(c);
            }
            edge_to[c as usize] += w;
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
        edge_to[current] = 0.0;
        cluster_weight[best] += wv;
        cluster_size[best] += 1;
        if empty.last() == Some(&(best as u32)) {
            empty.pop();
        }
        if best != current {
            membership[v] = best as u32;
            for (u, _) in g.neighbours(v) {
                if stable[u] && membership[u] as usize != best {
                    stable[u] = false;
                    queue.push_back(u as u32);
                }
            }
        }
        stable[v] = true;
    }
    let (ids, k) = renumber_first_seen(membership);
    membership.copy_from_slice(&ids);
    k
}

/// igraph's refinement (`mergenodes`) inside every cluster of `membership`: starting from
/// singletons, each well-connected singleton (in random order) joins a well-connected refined
/// cluster of its own cluster, chosen at random with weight `exp(gain / beta)` among gains >= 0.
fn refine(
    g: &Graph,
    membership: &[u32],
    resolution: f64,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<u32> {
    let n = g.n();
    let mut refined: Vec<u32> = (0..n as u32).collect();
    // Nodes of each cluster, in node order.
    let k = membership
        .iter()
        .map(|&c| c as usize + 1)
        .max()
        .unwrap_or(0);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
    for v in 0..n {
        members[membership[v] as usize].push(v as u32);
    }
    let mut weight = g.node_weights.clone();
    let mut size = vec![1usize; n];
    // Weight of the edges from each refined cluster to the rest of its cluster.
    let mut external = vec![0.0f64; n];
    for v in 0..n {
        for (u, w) in g.neighbours(v) {
            if u != v && membership[u] == membership[v] {
                external[v] += w;
            }
        }
    }
    let mut edge_to = vec![0.0f64; n];
    let mut added = vec![false; n];
    let mut candidates: Vec<u32> = Vec::new();
    let mut cumulative: Vec<f64> = Vec::new();
    for nodes in &members {
        let total: f64 = nodes.iter().map(|&v| g.node_weights[v as usize]).sum();
        for pos in shuffled(nodes.len(), rng) {
            let v = nodes[pos as usize] as usize;
            let current = refined[v] as usize;
            let well_connected = |c: usize, weight: &[f64], external: &[f64]| {
                external[c] >= weight[c] * (total - weight[c]) * resolution
            };
            if size[current] != 1 || !well_connected(current, &weight, &external) {
                continue;
            }
            let wv = g.node_weights[v];
            weight[current] = 0.0;
            size[current] = 0;
            candidates.clear();
            candidates.push(current as u32);
            added[current] = true;
            for (u, w) in g.neighbours(v) {
                if u == v || membership[u] != membership[v] {
                    continue;
                }
                let c = refined[u];
                if !added[c as usize] {
                    added[c as usize] = true;
                    candidates.push(c);
                }
                edge_to[c as usize] += w;
            }
            let mut best = current;
            let mut best_gain = 0.0f64;
            let mut sum = 0.0f64;
            cumulative.clear();
            for &c in &candidates {
                let c = c as usize;
                if well_connected(c, &weight, &external) {
                    let gain = edge_to[c] - wv * weight[c] * resolution;
                    if gain > best_gain {
                        best_gain = gain;
                        best = c;
                    }
                    if gain >= 0.0 {
                        sum += (gain / BETA).exp();
                    }
                }
                cumulative.push(sum);
            }
            let chosen = if sum.is_finite() && sum > 0.0 {
                let r = rng.random::<f64>() * sum;
                let i = cumulative.partition_point(|&s| s < r);
                candidates[i.min(candidates.len() - 1)] as usize
            } else {
                best
            };
            for &c in &candidates {
                edge_to[c as usize] = 0.0;
                added[c as usize] = false;
            }
            weight[chosen] += wv;
            size[chosen] += 1;
            for (u, w) in g.neighbours(v) {
                if u == v || membership[u] != membership[v] {
                    continue;
                }
                if refined[u] as usize == chosen {
                    external[chosen] -= w;
                } else {
                    external[chosen] += w;
                }
            }
            refined[v] = chosen as u32;
        }
    }
    refined
}

/// The graph of the clusters `ids` (0..k): edge weights summed, edges inside a cluster dropped
/// (they do not change any move), node weights summed.
fn aggregate(g: &Graph, ids: &[u32], k: usize) -> Graph {
    let mut node_weights = vec![0.0f64; k];
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
    for v in 0..g.n() {
        node_weights[ids[v] as usize] += g.node_weights[v];
        members[ids[v] as usize].push(v as u32);
    }
    let mut indptr = Vec::with_capacity(k + 1);
    indptr.push(0);
    let mut indices = Vec::new();
    let mut weights = Vec::new();
    let mut acc = vec![0.0f64; k];
    let mut touched: Vec<u32> = Vec::new();
    for (c, nodes) in members.iter().enumerate() {
        for &v in nodes {
            for (u, w) in g.neighbours(v as usize) {
                let d = ids[u];
                if d as usize == c {
                    continue;
                }
                if acc[d as usize] == 0.0 {
                    touched.push(d);
                }
                acc[d as usize] += w;
            }
        }
        touched.sort_unstable();
        for &d in &touched {
            indices.push(d);
            weights.push(acc[d as usize]);
            acc[d as usize] = 0.0;
        }
        touched.clear();
        indptr.push(indices.len());
    }
    Graph {
        indptr,
        indices,
        weights,
        node_weights,
    }
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

    #[test]
    fn labels_are_numbered_by_size() {
        let (ids, k) = number_by_size(&[5, 5, 2, 7, 7, 7]);
        assert_eq!((ids, k), (vec![1, 1, 2, 0, 0, 0], 3));
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
