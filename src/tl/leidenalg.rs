//! `sc.tl.leiden()` with scanpy's default flavor: leidenalg's `find_partition(g,
//! RBConfigurationVertexPartition, weights, resolution_parameter, n_iterations=-1, seed)` on
//! the **directed** graph scanpy builds (`get_igraph_from_adjacency(adjacency, directed=True)`),
//! reproducing its partition for the same seed (docs/algorithms.md section 6).
//!
//! The graph has one arc per non-zero stored entry of the connectivities, numbered in stored
//! (row-major) order, so every pair of neighbouring cells is joined by two arcs. Its lists
//! are igraph's: out-arcs by target, in-arcs by source, and "all" neighbours by the other end
//! (an out-arc before an in-arc to the same node, a self-loop twice). Every sum adds the same
//! f64 numbers in the same order as leidenalg (strengths and totals in arc order, a node's
//! weight to a community along its out- or in-list), so every comparison of two moves comes
//! out the same.
//!
//! The quality is leidenalg's `RBConfigurationVertexPartition` (modularity with a resolution,
//! directed: the gain of a move counts the node's out- and in-arcs against the communities'
//! in- and out-totals). One iteration is leidenalg's `Optimiser::optimise_partition`:
//!
//! 1. **Local moving** (`move_nodes`, all neighbouring communities): nodes from a shuffled queue
//!    go to the community with the largest gain when it exceeds `10 * f64::EPSILON`; an empty
//!    community is also a candidate when the node's own has other members (the one on top of
//!    the stack of empty communities, created when there is none). A move puts the node's
//!    neighbours outside its new community back at the end of the queue. The communities are
//!    then numbered by size (`renumber_communities`: size, then number of nodes, then number,
//!    largest first).
//! 2. **Refinement** (`merge_nodes_constrained`, a random neighbouring community): from a
//!    singleton partition of the level's graph, nodes in a shuffled order that are still alone
//!    may join the refined community of a random neighbour inside the same community of step 1
//!    (drawn with probability proportional to the number of arcs to it, and "stay" drawn with
//!    the weight of one arc) when the gain is not negative.
//! 3. **Aggregation** (`collapse_graph`): one node per refined community, its arcs the summed
//!    arcs between them in order of first appearance, self-loops included; the node starts in
//!    its community of step 1. Levels repeat while aggregation shrinks the graph and step 1
//!    left fewer communities than nodes.
//!
//! Iterations repeat from the previous partition while local moving moves a node
//! (`n_iterations < 0`, scanpy's default) or `n_iterations` times, and the final partition is
//! numbered by size, which are scanpy's labels.
//!
//! Randomness is leidenalg's: the optimiser's own igraph MT19937 seeded with scanpy's
//! `random_state` (GSL's seeding, so seed 0 is 4357; the seed's low 32 bits), integers by
//! Lemire's debiased multiplication (`igraph_rng_get_integer`, which draws nothing for a range
//! of one), Fisher-Yates shuffles from the last element down.

use std::collections::VecDeque;

use super::leiden::{Clustering, LeidenParams, lemire_below, modularity};
use crate::matrix::CsrMatrix;
use crate::rng::NumpyRandomState;

/// The optimiser's generator: igraph's MT19937 with GSL's seeding.
struct Mt(NumpyRandomState);

impl Mt {
    /// `igraph_rng_seed(mt19937, seed)`: 0 seeds as 4357, the low 32 bits otherwise.
    fn seeded(seed: u64) -> Self {
        let s = if seed == 0 { 4357 } else { seed };
        Mt(NumpyRandomState::seed(s as u32))
    }

    /// `igraph_rng_get_integer(lo, hi)`, both ends included.
    fn integer(&mut self, lo: usize, hi: usize) -> usize {
        if hi == lo {
            return lo;
        }
        lo + lemire_below((hi - lo + 1) as u32, || self.0.next_u32()) as usize
    }

    /// leidenalg's `shuffle`: Fisher-Yates from the last element down.
    fn shuffle(&mut self, v: &mut [usize]) {
        for idx in (1..v.len()).rev() {
            let j = self.integer(0, idx);
            v.swap(idx, j);
        }
    }
}

/// A directed weighted graph with igraph's adjacency orders and leidenalg's node data.
struct DiGraph {
    n: usize,
    /// The arcs `(from, to, weight)` in arc-id order.
    arcs: Vec<(u32, u32, f64)>,
    /// Out-arcs of each node by target: (target, weight).
    out_ptr: Vec<usize>,
    out: Vec<(u32, f64)>,
    /// In-arcs of each node by source: (source, weight).
    in_ptr: Vec<usize>,
    inc: Vec<(u32, f64)>,
    strength_out: Vec<f64>,
    strength_in: Vec<f64>,
    self_weight: Vec<f64>,
    node_size: Vec<f64>,
    total_weight: f64,
}

/// Arcs `(from, to, weight)` grouped by `key`'s node, each group ordered by `other` and equal
/// ends in arc order (igraph's out- or in-index): two stable counting sorts, by `other` then by
/// `key`.
fn index_by(
    n: usize,
    arcs: &[(u32, u32, f64)],
    key: impl Fn(&(u32, u32, f64)) -> u32,
    other: impl Fn(&(u32, u32, f64)) -> u32,
) -> (Vec<usize>, Vec<(u32, f64)>) {
    let starts = |by: &dyn Fn(&(u32, u32, f64)) -> u32| {
        let mut ptr = vec![0usize; n + 1];
        for a in arcs {
            ptr[by(a) as usize + 1] += 1;
        }
        for i in 0..n {
            ptr[i + 1] += ptr[i];
        }
        ptr
    };
    // Arc ids by `other`, ties in arc order.
    let mut fill = starts(&other);
    let mut by_other = vec![0u32; arcs.len()];
    for (e, a) in arcs.iter().enumerate() {
        let o = other(a) as usize;
        by_other[fill[o]] = e as u32;
        fill[o] += 1;
    }
    // Then by `key`, stably.
    let ptr = starts(&key);
    let mut fill = ptr.clone();
    let mut list = vec![(0u32, 0.0f64); arcs.len()];
    for &e in &by_other {
        let a = &arcs[e as usize];
        let k = key(a) as usize;
        list[fill[k]] = (other(a), a.2);
        fill[k] += 1;
    }
    (ptr, list)
}

impl DiGraph {
    /// The graph of `arcs` in arc-id order, with leidenalg's strengths, total weight and self
    /// weights (each summed in arc order).
    fn new(n: usize, arcs: Vec<(u32, u32, f64)>, node_size: Vec<f64>) -> DiGraph {
        let (out_ptr, out) = index_by(n, &arcs, |a| a.0, |a| a.1);
        let (in_ptr, inc) = index_by(n, &arcs, |a| a.1, |a| a.0);
        let mut strength_out = vec![0.0f64; n];
        let mut strength_in = vec![0.0f64; n];
        let mut self_weight = vec![0.0f64; n];
        let mut seen_loop = vec![false; n];
        let mut total_weight = 0.0f64;
        for &(f, t, w) in &arcs {
            total_weight += w;
            strength_in[t as usize] += w;
            strength_out[f as usize] += w;
            if f == t && !seen_loop[f as usize] {
                seen_loop[f as usize] = true;
                self_weight[f as usize] = w;
            }
        }
        DiGraph {
            n,
            arcs,
            out_ptr,
            out,
            in_ptr,
            inc,
            strength_out,
            strength_in,
            self_weight,
            node_size,
            total_weight,
        }
    }

    /// scanpy's graph: an arc per non-zero stored entry, in stored order, weights in f64.
    fn from_adjacency(adj: &CsrMatrix) -> DiGraph {
        let mut arcs = Vec::with_capacity(adj.nnz() as usize);
        for i in 0..adj.n_rows {
            let (idx, val) = adj.row(i);
            for (&j, &w) in idx.iter().zip(val) {
                if w != 0.0 {
                    arcs.push((i as u32, j, f64::from(w)));
                }
            }
        }
        DiGraph::new(adj.n_rows, arcs, vec![1.0; adj.n_rows])
    }

    fn out(&self, v: usize) -> &[(u32, f64)] {
        &self.out[self.out_ptr[v]..self.out_ptr[v + 1]]
    }

    fn inc(&self, v: usize) -> &[(u32, f64)] {
        &self.inc[self.in_ptr[v]..self.in_ptr[v + 1]]
    }

    /// igraph's "all" list of `v`: its out- and in-arcs merged by the other end, an out-arc
    /// first, a self-loop twice, as `(is_out, other end, weight)`.
    fn arcs_by_end(&self, v: usize) -> impl Iterator<Item = (bool, u32, f64)> + '_ {
        let (out, inc) = (self.out(v), self.inc(v));
        let (mut a, mut b) = (0, 0);
        std::iter::from_fn(move || {
            if a == out.len() && b == inc.len() {
                return None;
            }
            if b == inc.len() || (a < out.len() && out[a].0 <= inc[b].0) {
                a += 1;
                Some((true, out[a - 1].0, out[a - 1].1))
            } else {
                b += 1;
                Some((false, inc[b - 1].0, inc[b - 1].1))
            }
        })
    }

    /// The neighbours along igraph's "all" list of `v`.
    fn all(&self, v: usize) -> impl Iterator<Item = usize> + '_ {
        self.arcs_by_end(v).map(|(_, u, _)| u as usize)
    }

    /// `collapse_graph`: a node per community of `p`, the arcs between communities summed
    /// (community by community, its nodes in order, each node's out-arcs in order; the
    /// communities an arc leads to in order of first appearance), node sizes the communities'.
    fn collapse(&self, p: &Partition) -> DiGraph {
        let k = p.n_comms;
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
        for v in 0..self.n {
            members[p.membership[v]].push(v);
        }
        let mut acc = vec![0.0f64; k];
        let mut added = vec![false; k];
        let mut arcs = Vec::new();
        let mut seen = Vec::new();
        for (c, nodes) in members.iter().enumerate() {
            for &v in nodes {
                for &(u, w) in self.out(v) {
                    let uc = p.membership[u as usize];
                    if !added[uc] {
                        added[uc] = true;
                        seen.push(uc);
                    }
                    acc[uc] += w;
                }
            }
            for &uc in &seen {
                arcs.push((c as u32, uc as u32, acc[uc]));
                acc[uc] = 0.0;
                added[uc] = false;
            }
            seen.clear();
        }
        DiGraph::new(k, arcs, p.csize[..k].to_vec())
    }
}

/// leidenalg's `MutableVertexPartition` bookkeeping, as far as the RB-configuration quality
/// and the optimiser read it.
struct Partition {
    membership: Vec<usize>,
    csize: Vec<f64>,
    cnodes: Vec<usize>,
    /// Total weight of the arcs leaving / entering each community.
    from_comm: Vec<f64>,
    to_comm: Vec<f64>,
    /// Stack of empty communities.
    empty: Vec<usize>,
    n_comms: usize,
}

impl Partition {
    /// `init_admin` for `membership` on `g`.
    fn new(g: &DiGraph, membership: Vec<usize>) -> Partition {
        let k = membership.iter().map(|&c| c + 1).max().unwrap_or(0);
        let mut p = Partition {
            membership,
            csize: vec![0.0; k],
            cnodes: vec![0; k],
            from_comm: vec![0.0; k],
            to_comm: vec![0.0; k],
            empty: Vec::new(),
            n_comms: k,
        };
        for v in 0..g.n {
            let c = p.membership[v];
            p.csize[c] += g.node_size[v];
            p.cnodes[c] += 1;
        }
        for &(f, t, w) in &g.arcs {
            p.from_comm[p.membership[f as usize]] += w;
            p.to_comm[p.membership[t as usize]] += w;
        }
        p.empty = (0..k).filter(|&c| p.cnodes[c] == 0).collect();
        p
    }

    fn singletons(g: &DiGraph) -> Partition {
        Partition::new(g, (0..g.n).collect())
    }

    fn add_empty(&mut self) -> usize {
        let c = self.n_comms;
        self.n_comms += 1;
        self.csize.push(0.0);
        self.cnodes.push(0);
        self.from_comm.push(0.0);
        self.to_comm.push(0.0);
        self.empty.push(c);
        c
    }

    /// `get_empty_community`: the top of the stack, a new community when there is none.
    fn empty_community(&mut self) -> usize {
        match self.empty.last() {
            Some(&c) => c,
            None => self.add_empty(),
        }
    }

    /// `move_node`: the sizes, the stack of empty communities and the arc totals, updated
    /// along the out-list, then the in-list, as leidenalg does.
    fn move_node(&mut self, g: &DiGraph, v: usize, new: usize) {
        while new >= self.n_comms {
            self.add_empty();
        }
        let old = self.membership[v];
        self.cnodes[old] -= 1;
        self.csize[old] -= g.node_size[v];
        if self.cnodes[old] == 0 {
            self.empty.push(old);
        }
        if self.cnodes[new] == 0
            && let Some(pos) = self.empty.iter().rposition(|&c| c == new)
        {
            self.empty.remove(pos);
        }
        self.cnodes[new] += 1;
        self.csize[new] += g.node_size[v];
        for &(_, w) in g.out(v) {
            self.from_comm[old] -= w;
            self.from_comm[new] += w;
        }
        for &(_, w) in g.inc(v) {
            self.to_comm[old] -= w;
            self.to_comm[new] += w;
        }
        self.membership[v] = new;
    }

    /// `renumber_communities`: by size, then number of nodes (both descending), then number.
    fn renumber(&mut self) {
        let mut rows: Vec<(usize, usize, usize)> = (0..self.n_comms)
            .map(|c| (c, self.csize[c] as usize, self.cnodes[c]))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        let mut new_id = vec![0usize; self.n_comms];
        for (rank, r) in rows.iter().enumerate() {
            new_id[r.0] = rank;
        }
        for c in self.membership.iter_mut() {
            *c = new_id[*c];
        }
        let k = self.membership.iter().map(|&c| c + 1).max().unwrap_or(0);
        let mut csize = vec![0.0; k];
        let mut cnodes = vec![0; k];
        let mut from_comm = vec![0.0; k];
        let mut to_comm = vec![0.0; k];
        for (c, &d) in new_id.iter().enumerate() {
            if self.cnodes[c] > 0 {
                csize[d] = self.csize[c];
                cnodes[d] = self.cnodes[c];
                from_comm[d] = self.from_comm[c];
                to_comm[d] = self.to_comm[c];
            }
        }
        self.empty = (0..k).filter(|&c| cnodes[c] == 0).collect();
        (self.csize, self.cnodes, self.from_comm, self.to_comm) =
            (csize, cnodes, from_comm, to_comm);
        self.n_comms = k;
    }
}

/// One node's arc weights to and from each community (leidenalg's `weight_to_comm` /
/// `weight_from_comm` caches: each community's sum along the out- or in-list).
struct NodeWeights {
    to: Vec<f64>,
    from: Vec<f64>,
    touched: Vec<usize>,
}

impl NodeWeights {
    fn new(n: usize) -> NodeWeights {
        NodeWeights {
            to: vec![0.0; n],
            from: vec![0.0; n],
            touched: Vec::new(),
        }
    }

    fn load(&mut self, g: &DiGraph, p: &Partition, v: usize) {
        self.reset();
        for &(u, w) in g.out(v) {
            let c = p.membership[u as usize];
            self.to[c] += w;
            self.touched.push(c);
        }
        for &(u, w) in g.inc(v) {
            let c = p.membership[u as usize];
            self.from[c] += w;
            self.touched.push(c);
        }
    }

    fn reset(&mut self) {
        for &c in &self.touched {
            self.to[c] = 0.0;
            self.from[c] = 0.0;
        }
        self.touched.clear();
    }

    /// [`NodeWeights::load`] and, in the same pass, the communities of `v`'s neighbours in
    /// order of first appearance along igraph's "all" list (the out- and in-lists merged by
    /// neighbour, an out-arc first), appended to `comms` and marked in `added`.
    fn load_with_comms(
        &mut self,
        g: &DiGraph,
        p: &Partition,
        v: usize,
        added: &mut [bool],
        comms: &mut Vec<usize>,
    ) {
        self.reset();
        for (is_out, u, w) in g.arcs_by_end(v) {
            let c = p.membership[u as usize];
            if is_out {
                self.to[c] += w;
            } else {
                self.from[c] += w;
            }
            self.touched.push(c);
            if !added[c] {
                added[c] = true;
                comms.push(c);
            }
        }
    }
}

/// `RBConfigurationVertexPartition::diff_move` for a directed graph, with `nw` loaded for `v`.
fn diff_move(g: &DiGraph, p: &Partition, nw: &NodeWeights, v: usize, new: usize, res: f64) -> f64 {
    let old = p.membership[v];
    let total = g.total_weight;
    if total == 0.0 || new == old {
        return 0.0;
    }
    let (k_out, k_in, self_w) = (g.strength_out[v], g.strength_in[v], g.self_weight[v]);
    let k_out_new = p.from_comm[new] + k_out;
    let k_in_new = p.to_comm[new] + k_in;
    let diff_old = (nw.to[old] - res * k_out * p.to_comm[old] / total)
        + (nw.from[old] - res * k_in * p.from_comm[old] / total);
    let diff_new = (nw.to[new] + self_w - res * k_out * k_in_new / total)
        + (nw.from[new] + self_w - res * k_in * k_out_new / total);
    diff_new - diff_old
}

/// `Optimiser::move_nodes` with all neighbouring communities and the empty community as
/// candidates; the communities are renumbered by size afterwards. Returns whether a node moved.
fn move_nodes(g: &DiGraph, p: &mut Partition, rng: &mut Mt, res: f64) -> bool {
    let n = g.n;
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut queue: VecDeque<usize> = order.into();
    let mut stable = vec![false; n];
    let mut added = vec![false; n];
    let mut comms = Vec::new();
    let mut nw = NodeWeights::new(n);
    let mut moved = false;
    while let Some(v) = queue.pop_front() {
        let v_comm = p.membership[v];
        nw.load_with_comms(g, p, v, &mut added, &mut comms);
        if p.cnodes[v_comm] > 1 {
            comms.push(p.empty_community());
        }
        let (mut best, mut best_gain) = (v_comm, 10.0 * f64::EPSILON);
        for &c in &comms {
            added[c] = false;
            let gain = diff_move(g, p, &nw, v, c, res);
            if gain > best_gain {
                (best, best_gain) = (c, gain);
            }
        }
        comms.clear();
        stable[v] = true;
        if best != v_comm {
            moved = true;
            p.move_node(g, v, best);
            for u in g.all(v) {
                if stable[u] && p.membership[u] != best {
                    queue.push_back(u);
                    stable[u] = false;
                }
            }
        }
    }
    p.renumber();
    moved
}

/// `Optimiser::merge_nodes_constrained` with a random neighbouring community: refines the
/// singleton partition `sub` of `g` within the communities `constrained`.
fn refine(g: &DiGraph, sub: &mut Partition, constrained: &[usize], rng: &mut Mt, res: f64) {
    let mut order: Vec<usize> = (0..g.n).collect();
    rng.shuffle(&mut order);
    let mut nw = NodeWeights::new(g.n);
    let mut pool = Vec::new();
    for v in order {
        let v_comm = sub.membership[v];
        if sub.cnodes[v_comm] != 1 {
            continue;
        }
        pool.clear();
        pool.extend(
            g.all(v)
                .filter(|&u| constrained[u] == constrained[v])
                .map(|u| sub.membership[u]),
        );
        let k = pool.len();
        if k == 0 || rng.integer(0, k) == 0 {
            continue;
        }
        let c = pool[rng.integer(0, k - 1)];
        nw.load(g, sub, v);
        if c != v_comm && diff_move(g, sub, &nw, v, c, res) >= 0.0 {
            sub.move_node(g, v, c);
        }
    }
    sub.renumber();
}

/// One `Optimiser::optimise_partition`: local moving, refinement and aggregation, level by
/// level, the cells' partition `part` updated from each level. Returns whether a node moved.
fn optimise_once(graph: &DiGraph, part: &mut Partition, rng: &mut Mt, res: f64) -> bool {
    let n = graph.n;
    let mut aggregate: Vec<usize> = (0..n).collect();
    let mut level: Option<(DiGraph, Partition)> = None;
    let mut moved = false;
    // leidenalg resets the cells' partition from every aggregated level (`from_coarse_partition`,
    // a fresh `init_admin`); nothing reads it before the next level resets it again, so only
    // the last level's is built.
    let mut cells: Option<Vec<usize>> = None;
    loop {
        let (g, p) = match level.as_mut() {
            Some((g, p)) => {
                moved |= move_nodes(g, p, rng, res);
                cells = Some(aggregate.iter().map(|&a| p.membership[a]).collect());
                (&*g, &*p)
            }
            None => {
                moved |= move_nodes(graph, part, rng, res);
                (graph, &*part)
            }
        };
        let mut sub = Partition::singletons(g);
        refine(g, &mut sub, &p.membership, rng, res);
        // leidenalg aggregates once more before it stops; nothing reads that last level.
        if !(sub.n_comms < g.n && g.n > p.n_comms) {
            break;
        }
        for a in aggregate.iter_mut() {
            *a = sub.membership[*a];
        }
        let next_graph = g.collapse(&sub);
        let mut next_membership = vec![0usize; next_graph.n];
        for v in 0..g.n {
            next_membership[sub.membership[v]] = p.membership[v];
        }
        let next = Partition::new(&next_graph, next_membership);
        level = Some((next_graph, next));
    }
    if let Some(cells) = cells {
        *part = Partition::new(graph, cells);
    }
    part.renumber();
    moved
}

/// Leiden clustering of `adj` as scanpy's default `sc.tl.leiden(random_state=seed)` computes
/// it (flavor "leidenalg", directed, weighted; scanpy's default `n_iterations` is -1: repeat
/// while an iteration moves a node). The labels are leidenalg's (numbered by size).
pub fn leidenalg(adj: &CsrMatrix, params: &LeidenParams) -> Clustering {
    let graph = DiGraph::from_adjacency(adj);
    let mut rng = Mt::seeded(params.seed);
    let mut part = Partition::singletons(&graph);
    let mut done = 0i64;
    loop {
        let go = if params.n_iterations < 0 {
            true
        } else {
            done < params.n_iterations
        };
        if !go {
            break;
        }
        crate::cancel::checkpoint();
        let moved = optimise_once(&graph, &mut part, &mut rng, params.resolution);
        done += 1;
        if params.n_iterations < 0 && !moved {
            break;
        }
    }
    let membership: Vec<u32> = part.membership.iter().map(|&c| c as u32).collect();
    let modularity = modularity(adj, &membership, 1.0);
    Clustering {
        membership,
        n_clusters: part.n_comms,
        modularity,
    }
}
