//! Gene-set scores exactly as scanpy's `tl.score_genes` (docs/algorithms.md section 7), with
//! `ctrl_size=50, n_bins=25, ctrl_as_ref=True, random_state=0`, on the log-normalised data of
//! all genes left after filter_genes (the reference script scores before subsetting to HVGs).
//!
//! - Listed genes missing from the data are dropped (and reported); duplicates count once.
//! - The pool is every gene with a finite mean `a_j` over cells. `n_items =
//!   round(|pool| / (n_bins - 1))` (numpy rounds half to even); a gene's bin is
//!   `floor(rank_min(a_j) / n_items)`, ranks 1-based with ties at the minimum.
//! - For each bin holding a listed gene (ascending), the bin's genes in var order are sampled
//!   down to `ctrl_size` with numpy's legacy `RandomState` seeded once per set (`crate::rng`),
//!   then listed genes are removed. The control set is the union over bins.
//! - `score_i = mean_list(x_i) - mean_ctrl(x_i)`, sums in f64, implicit zeros included.

use crate::matrix::CsrMatrix;
use crate::rng::NumpyRandomState;

/// scanpy's defaults.
pub(crate) const CTRL_SIZE: usize = 50;
/// scanpy's default number of expression bins.
pub(crate) const N_BINS: usize = 25;
/// scanpy's default seed.
pub(crate) const RANDOM_STATE: u32 = 0;

/// The control genes scanpy draws for `list` (indices into the genes whose means are `means`)
/// from `pool` (candidate genes in scanpy's order; None: every gene in gene order), sorted
/// ascending.
pub(crate) fn control_genes(
    means: &[f64],
    list: &[usize],
    pool: Option<&[usize]>,
    ctrl_size: usize,
    n_bins: usize,
    rng: &mut NumpyRandomState,
) -> Vec<usize> {
    let pool: Vec<usize> = pool
        .map_or_else(|| (0..means.len()).collect(), <[usize]>::to_vec)
        .into_iter()
        .filter(|&j| means[j].is_finite())
        .collect();
    let n_items = (pool.len() as f64 / n_bins.saturating_sub(1).max(1) as f64).round_ties_even();
    // rank_min: 1 + the number of pool genes with a strictly smaller mean.
    let mut sorted: Vec<f64> = pool.iter().map(|&j| means[j]).collect();
    sorted.sort_by(f64::total_cmp);
    let mut cut = vec![u64::MAX; means.len()];
    for &j in &pool {
        let rank = (sorted.partition_point(|&v| v < means[j]) + 1) as f64;
        // pandas divides by zero to inf: every gene then falls in one bin.
        cut[j] = if n_items > 0.0 {
            (rank / n_items).floor() as u64
        } else {
            0
        };
    }
    let mut in_list = vec![false; means.len()];
    for &j in list {
        in_list[j] = true;
    }
    let mut cuts: Vec<u64> = list
        .iter()
        .map(|&j| cut[j])
        .filter(|&c| c != u64::MAX)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut control = vec![false; means.len()];
    for c in cuts {
        let genes: Vec<usize> = pool.iter().copied().filter(|&j| cut[j] == c).collect();
        let picked: Vec<usize> = if ctrl_size < genes.len() {
            rng.permutation(genes.len())[..ctrl_size]
                .iter()
                .map(|&p| genes[p])
                .collect()
        } else {
            genes
        };
        for j in picked.into_iter().filter(|&j| !in_list[j]) {
            control[j] = true;
        }
    }
    (0..means.len()).filter(|&j| control[j]).collect()
}

/// One set prepared for scoring: its present genes and its control genes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScorePlan {
    /// Present listed genes (indices), in list order.
    pub genes: Vec<usize>,
    /// Control genes (indices), ascending.
    pub control: Vec<usize>,
}

impl ScorePlan {
    /// scanpy's plan for `genes` (already restricted to present genes), given gene means.
    pub fn new(means: &[f64], genes: Vec<usize>) -> Self {
        Self::with_ctrl_size(means, genes, CTRL_SIZE)
    }

    /// scanpy's plan with `ctrl_size` control genes drawn per bin (score_genes_cell_cycle
    /// passes the length of the shorter list); the generator is seeded afresh, as each
    /// `score_genes` call does.
    pub fn with_ctrl_size(means: &[f64], genes: Vec<usize>, ctrl_size: usize) -> Self {
        let draw = ControlDraw {
            ctrl_size,
            ..ControlDraw::default()
        };
        Self::drawn(means, genes, &draw)
    }

    /// scanpy's plan with all of `score_genes`' control-gene arguments.
    pub fn drawn(means: &[f64], genes: Vec<usize>, draw: &ControlDraw) -> Self {
        let mut rng = NumpyRandomState::seed(draw.random_state);
        let pool = draw.pool.as_deref();
        let control = control_genes(means, &genes, pool, draw.ctrl_size, draw.n_bins, &mut rng);
        ScorePlan { genes, control }
    }
}

/// How `score_genes` draws its control genes: scanpy's `ctrl_size`, `n_bins`, `random_state`
/// (`np.random.seed`) and `gene_pool`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlDraw {
    /// Control genes drawn per expression bin.
    pub ctrl_size: usize,
    /// Expression bins.
    pub n_bins: usize,
    /// Seed of numpy's legacy generator.
    pub random_state: u32,
    /// Candidate control genes (indices, in the order scanpy sees them); None: all genes.
    pub pool: Option<Vec<usize>>,
}

impl Default for ControlDraw {
    fn default() -> Self {
        ControlDraw {
            ctrl_size: CTRL_SIZE,
            n_bins: N_BINS,
            random_state: RANDOM_STATE,
            pool: None,
        }
    }
}

/// Per-cell scores of several plans, accumulated over row chunks of the log-normalised matrix.
#[derive(Debug, Clone)]
pub(crate) struct Scorer {
    plans: Vec<ScorePlan>,
    /// For each gene: (plan, +1 list / -1 control) memberships.
    roles: Vec<Vec<(usize, bool)>>,
    /// Per cell, per plan: (Σ list, Σ control).
    sums: Vec<(f64, f64)>,
    n_cells: usize,
}

impl Scorer {
    /// A scorer for `plans` over `n_genes` columns.
    pub fn new(plans: Vec<ScorePlan>, n_genes: usize) -> Self {
        let mut roles = vec![Vec::new(); n_genes];
        for (p, plan) in plans.iter().enumerate() {
            for &j in &plan.genes {
                roles[j].push((p, true));
            }
            for &j in &plan.control {
                roles[j].push((p, false));
            }
        }
        Scorer {
            plans,
            roles,
            sums: Vec::new(),
            n_cells: 0,
        }
    }

    /// Adds the next rows.
    pub fn push(&mut self, x: &CsrMatrix) {
        let k = self.plans.len();
        for i in 0..x.n_rows {
            let base = self.sums.len();
            self.sums.resize(base + k, (0.0, 0.0));
            let (idx, val) = x.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                for &(p, listed) in &self.roles[j as usize] {
                    let s = &mut self.sums[base + p];
                    if listed {
                        s.0 += f64::from(v);
                    } else {
                        s.1 += f64::from(v);
                    }
                }
            }
        }
        self.n_cells += x.n_rows;
    }

    /// Scores per plan, each with one value per cell.
    pub fn finish(&self) -> Vec<Vec<f64>> {
        let k = self.plans.len();
        (0..k)
            .map(|p| {
                let plan = &self.plans[p];
                let (nl, nc) = (plan.genes.len() as f64, plan.control.len() as f64);
                (0..self.n_cells)
                    .map(|i| {
                        let (l, c) = self.sums[i * k + p];
                        l / nl - c / nc
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_by_min_rank_and_samples_like_numpy() {
        // 100 genes with distinct means: n_items = round(100/24) = 4, bin = rank // 4.
        let means: Vec<f64> = (0..100).map(|j| f64::from(j) * 0.01).collect();
        let mut rng = NumpyRandomState::seed(0);
        // Gene 10 has rank 11 -> bin 2 = ranks 8..11 = genes 7..10; fewer than ctrl_size, so
        // all of them, minus the listed gene.
        assert_eq!(
            control_genes(&means, &[10], None, 50, 25, &mut rng),
            vec![7, 8, 9]
        );
        // A bin larger than ctrl_size draws permutation(len)[:ctrl_size] in bin order.
        let flat = vec![1.0; 30];
        let mut rng = NumpyRandomState::seed(0);
        let got = control_genes(&flat, &[0], None, 4, 25, &mut rng);
        let mut rng = NumpyRandomState::seed(0);
        let mut want: Vec<usize> = rng.permutation(30)[..4]
            .iter()
            .copied()
            .filter(|&j| j != 0)
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn score_is_list_mean_minus_control_mean() {
        let x = CsrMatrix::from_dense(2, 4, &[1.0, 3.0, 0.0, 2.0, 0.0, 0.0, 4.0, 0.0]);
        let plan = ScorePlan {
            genes: vec![0, 1],
            control: vec![2, 3],
        };
        let mut s = Scorer::new(vec![plan], 4);
        s.push(&x.slice_rows(0..1));
        s.push(&x.slice_rows(1..2));
        assert_eq!(s.finish(), vec![vec![2.0 - 1.0, 0.0 - 2.0]]);
    }
}
