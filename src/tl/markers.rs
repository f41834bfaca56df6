//! Marker genes: scanpy's `rank_genes_groups(adata, groupby, reference)` on the
//! log-normalised matrix, methods `t-test`, `t-test_overestim_var` and `wilcoxon` (with or
//! without tie correction), Benjamini-Hochberg correction (docs/algorithms.md section 10).
//!
//! Every group is compared with the rest of the cells (cells of no group, e.g. a missing
//! label, belong to every rest), or with one reference group, whose statistics then stand
//! where the rest's do (N below is then the two groups' cells). The statistics come from one pass over the matrix
//! ([`GroupStats`]): per group and gene the sum, the sum of squares (each square rounded to
//! float32 first, as scanpy's numba kernel computes it) and the count of non-zero values; the
//! rest is the total minus the group. The Wilcoxon test adds the rank sums of every group
//! ([`RankSums`], gene by gene over the cells, or over the group's and the reference's
//! cells: zeros share one average rank, so only the non-zero values are sorted).
//!
//! Per group (scanpy's `_RankGenes`):
//! - mean `m = s / n` and variance `v = (q / n - m^2) * n / (n - 1)`;
//! - `t-test`: Welch's t (`scipy.stats.ttest_ind_from_stats(equal_var=False)`) of the group
//!   against the rest; `t-test_overestim_var` gives the rest the group's size; a NaN score
//!   (equal means, no variance) is 0 with p-value 1;
//! - `wilcoxon`: `z = (R - n (N + 1) / 2) / sqrt(T n (N - n) (N + 1) / 12)`, R the group's
//!   rank sum, T the tie correction (1 without it), p-value `2 sf(|z|)`;
//! - `logfoldchanges = log2((expm1(m) + 1e-9) / (expm1(m_rest) + 1e-9))`;
//! - adjusted p-values by Benjamini-Hochberg over all genes;
//! - genes ordered by score, highest first; the top `n_genes` are kept.

use rayon::prelude::*;

use super::special::{benjamini_hochberg, normal_sf, student_t_sf};
use crate::matrix::CsrMatrix;

/// The test that ranks the genes.
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
pub enum MarkerMethod {
    /// Welch's t-test (scanpy's default).
    #[default]
    #[value(name = "t-test")]
    #[serde(rename = "t-test")]
    TTest,
    /// Welch's t-test with the rest given the group's size (overestimates the variance of
    /// small groups).
    #[value(name = "t-test_overestim_var")]
    #[serde(rename = "t-test_overestim_var")]
    TTestOverestimVar,
    /// Wilcoxon rank-sum test (normal approximation).
    #[value(name = "wilcoxon")]
    #[serde(rename = "wilcoxon")]
    Wilcoxon,
}

impl MarkerMethod {
    /// scanpy's name of the method (`params["method"]`).
    pub fn scanpy_name(self) -> &'static str {
        match self {
            MarkerMethod::TTest => "t-test",
            MarkerMethod::TTestOverestimVar => "t-test_overestim_var",
            MarkerMethod::Wilcoxon => "wilcoxon",
        }
    }
}

/// The correction of the p-values for the number of genes tested.
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
pub enum Correction {
    /// Benjamini-Hochberg false discovery rate (scanpy's default).
    #[default]
    #[value(name = "benjamini-hochberg")]
    #[serde(rename = "benjamini-hochberg")]
    BenjaminiHochberg,
    /// Bonferroni: `min(p * genes, 1)`.
    #[value(name = "bonferroni")]
    #[serde(rename = "bonferroni")]
    Bonferroni,
}

impl Correction {
    /// scanpy's name of the correction (`params["corr_method"]`).
    pub fn scanpy_name(self) -> &'static str {
        match self {
            Correction::BenjaminiHochberg => "benjamini-hochberg",
            Correction::Bonferroni => "bonferroni",
        }
    }

    /// The adjusted p-values of one group's genes.
    fn adjust(self, pvals: &[f64]) -> Vec<f64> {
        match self {
            Correction::BenjaminiHochberg => benjamini_hochberg(pvals),
            Correction::Bonferroni => {
                let n = pvals.len() as f64;
                pvals.iter().map(|p| (p * n).min(1.0)).collect()
            }
        }
    }
}

/// The parameters of [`rank_genes_groups`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarkerParams {
    /// The test.
    pub method: MarkerMethod,
    /// Genes kept per group (scanpy's `n_genes`), at most the number of genes.
    pub n_genes: usize,
    /// Tie correction of the Wilcoxon test (scanpy's `tie_correct`).
    pub tie_correct: bool,
    /// scanpy's `corr_method`.
    pub correction: Correction,
    /// Rank by the absolute score (scanpy's `rankby_abs`); the scores keep their sign.
    pub rankby_abs: bool,
}

impl Default for MarkerParams {
    fn default() -> Self {
        MarkerParams {
            method: MarkerMethod::TTest,
            n_genes: 100,
            tie_correct: false,
            correction: Correction::BenjaminiHochberg,
            rankby_abs: false,
        }
    }
}

/// One group's ranked genes, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMarkers {
    /// The group's label.
    pub group: String,
    /// Cells in the group.
    pub n_cells: usize,
    /// Gene indices (columns of the matrix), best first.
    pub genes: Vec<u32>,
    /// Test statistics (t or z), float32 as scanpy stores them.
    pub scores: Vec<f32>,
    /// log2 fold changes of the group over the rest.
    pub logfoldchanges: Vec<f32>,
    /// p-values.
    pub pvals: Vec<f64>,
    /// Benjamini-Hochberg adjusted p-values (over all genes).
    pub pvals_adj: Vec<f64>,
    /// Fraction of the group's cells expressing each gene.
    pub pts: Vec<f32>,
    /// Fraction of the other cells expressing each gene.
    pub pts_rest: Vec<f32>,
}

/// Per group and gene: sums, sums of squares and non-zero counts, from one pass.
#[derive(Debug, Clone)]
pub struct GroupStats {
    n_groups: usize,
    n_genes: usize,
    /// Cells per group.
    sizes: Vec<usize>,
    /// Cells in total (with cells of no group).
    n_cells: usize,
    /// `[group * n_genes + gene]`; the last block (index `n_groups`) holds cells of no group.
    sum: Vec<f64>,
    sumsq: Vec<f64>,
    nnz: Vec<u64>,
}

/// Fewest rows of a parallel task when accumulating.
const MIN_ROWS_PER_TASK: usize = 512;

impl GroupStats {
    /// Empty statistics of `n_groups` groups over `n_genes` genes.
    pub fn new(n_groups: usize, n_genes: usize) -> Self {
        let len = (n_groups + 1) * n_genes;
        GroupStats {
            n_groups,
            n_genes,
            sizes: vec![0; n_groups],
            n_cells: 0,
            sum: vec![0.0; len],
            sumsq: vec![0.0; len],
            nnz: vec![0; len],
        }
    }

    /// Adds the rows of `x`, whose groups are `codes` (one per row; negative or out of range
    /// = no group).
    pub fn push(&mut self, x: &CsrMatrix, codes: &[i32]) {
        assert_eq!(x.n_rows, codes.len(), "one group code per row");
        let (n_groups, n_genes) = (self.n_groups, self.n_genes);
        let slot = |c: i32| usize::try_from(c).ok().filter(|&c| c < n_groups);
        for &c in codes {
            if let Some(g) = slot(c) {
                self.sizes[g] += 1;
            }
        }
        self.n_cells += x.n_rows;
        let len = self.sum.len();
        // One accumulator per task, interleaved (sum, sum of squares, non-zero count) so that
        // one entry's three updates share a cache line.
        let add = |rows: std::ops::Range<usize>| {
            let mut acc = vec![[0.0f64; 3]; len];
            for i in rows {
                let base = slot(codes[i]).unwrap_or(n_groups) * n_genes;
                let (idx, val) = x.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    let a = &mut acc[base + j as usize];
                    a[0] += f64::from(v);
                    a[1] += f64::from(v * v);
                    a[2] += f64::from(u8::from(v != 0.0));
                }
            }
            acc
        };
        // One contiguous range of rows per thread: every task zeroes and reduces an
        // accumulator of (groups + 1) x genes, which costs more than the rows of a small task.
        // Tasks are reduced in row order, so the sums depend only on the thread count.
        let per_task = x
            .n_rows
            .div_ceil(rayon::current_num_threads().max(1))
            .max(MIN_ROWS_PER_TASK);
        let tasks: Vec<_> = (0..x.n_rows)
            .step_by(per_task)
            .map(|a| a..(a + per_task).min(x.n_rows))
            .collect();
        let parts: Vec<Vec<[f64; 3]>> = tasks.into_par_iter().map(add).collect();
        for part in parts {
            for (k, a) in part.into_iter().enumerate() {
                self.sum[k] += a[0];
                self.sumsq[k] += a[1];
                // Counts below 2^53 are exact in f64.
                self.nnz[k] += a[2] as u64;
            }
        }
    }

    /// Cells per group.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Mean expression and fraction of cells expressing, `[group * n_genes + gene]` (zeros
    /// for empty groups).
    pub fn means_fractions(&self) -> (Vec<f32>, Vec<f32>) {
        let mut mean = vec![0.0f32; self.n_groups * self.n_genes];
        let mut frac = vec![0.0f32; self.n_groups * self.n_genes];
        for g in 0..self.n_groups {
            let n = self.sizes[g].max(1) as f64;
            for j in 0..self.n_genes {
                let k = g * self.n_genes + j;
                mean[k] = (self.sum[k] / n) as f32;
                frac[k] = (self.nnz[k] as f64 / n) as f32;
            }
        }
        (mean, frac)
    }

    /// Cells with a non-zero value, `[group * n_genes + gene]`, then per gene those of no
    /// group.
    pub fn nnz(&self) -> &[u64] {
        &self.nnz
    }

    /// Non-zero values of every gene, all cells.
    pub fn gene_nnz(&self) -> Vec<u64> {
        gene_totals(&self.nnz, self.n_genes)
    }

    /// (sum, sum of squares) of every gene, all cells.
    fn totals(&self) -> (Vec<f64>, Vec<f64>) {
        let mut s = vec![0.0; self.n_genes];
        let mut q = vec![0.0; self.n_genes];
        for (bs, bq) in self
            .sum
            .chunks(self.n_genes)
            .zip(self.sumsq.chunks(self.n_genes))
        {
            s.iter_mut().zip(bs).for_each(|(o, v)| *o += v);
            q.iter_mut().zip(bq).for_each(|(o, v)| *o += v);
        }
        (s, q)
    }
}

/// Per gene, the sum over the blocks of `[block * n_genes + gene]` counts (e.g. the non-zero
/// counts of [`GroupStats::nnz`] over every group and the cells of none).
pub fn gene_totals(blocks: &[u64], n_genes: usize) -> Vec<u64> {
    let mut out = vec![0u64; n_genes];
    for block in blocks.chunks(n_genes.max(1)) {
        out.iter_mut().zip(block).for_each(|(o, v)| *o += v);
    }
    out
}

/// scanpy's `_get_mean_var` from a sum and a sum of squares over `n` cells.
fn mean_var(s: f64, q: f64, n: usize) -> (f64, f64) {
    let nf = n as f64;
    let mean = s / nf;
    let mut var = q / nf - mean * mean;
    if n != 1 {
        var *= nf / (n - 1) as f64;
    }
    (mean, var)
}

/// Welch's t statistic and its two-sided p-value from the groups' statistics (scipy's
/// `ttest_ind_from_stats(equal_var=False)`, the standard deviations squared back).
fn welch(m1: f64, v1: f64, n1: f64, m2: f64, v2: f64, n2: f64) -> (f64, f64) {
    let (s1, s2) = (v1.sqrt(), v2.sqrt());
    let vn1 = s1 * s1 / n1;
    let vn2 = s2 * s2 / n2;
    let mut df = (vn1 + vn2).powi(2) / (vn1 * vn1 / (n1 - 1.0) + vn2 * vn2 / (n2 - 1.0));
    if df.is_nan() {
        df = 1.0;
    }
    let t = (m1 - m2) / (vn1 + vn2).sqrt();
    let p = 2.0 * student_t_sf(df, t.abs());
    (t, p)
}

/// Rank sums of each group and the tie correction of each group and gene (Wilcoxon). Against
/// the rest, every gene is ranked once over all cells; against a reference group, once per
/// group over the group's and the reference's cells.
#[derive(Debug, Clone)]
pub struct RankSums {
    /// `[group * n_genes + gene]`.
    sums: Vec<f64>,
    /// `1 - sum(t^3 - t) / (N^3 - N)` over the tie blocks of the cells ranked,
    /// `[group * n_genes + gene]`.
    tie: Vec<f64>,
    n_genes: usize,
    /// The reference group (None: the rest).
    reference: Option<usize>,
}

impl RankSums {
    /// Zero rank sums for `n_groups` groups over `n_genes` genes, each group compared with
    /// `reference` (None: the rest of the cells).
    pub fn new(n_groups: usize, n_genes: usize, reference: Option<usize>) -> Self {
        RankSums {
            sums: vec![0.0; n_groups * n_genes],
            tie: vec![1.0; n_groups * n_genes],
            n_genes,
            reference,
        }
    }

    /// Ranks genes `first..first + columns.len()` from their non-zero values
    /// (`columns[j]` = (value, cell) pairs of gene `first + j`, all cells of the matrix), with
    /// `codes` the group of every cell.
    pub fn add_columns(&mut self, first: usize, columns: &mut [Vec<(f32, u32)>], codes: &[i32]) {
        let n_genes = self.n_genes;
        let n_groups = self.sums.len() / n_genes.max(1);
        let slot = |c: i32| usize::try_from(c).ok().filter(|&g| g < n_groups);
        let mut sizes = vec![0usize; n_groups];
        for &c in codes {
            if let Some(g) = slot(c) {
                sizes[g] += 1;
            }
        }
        let reference = self.reference;
        let results: Vec<(Vec<f64>, Vec<f64>)> = columns
            .par_iter_mut()
            .map(|col| {
                col.retain(|&(v, _)| v != 0.0);
                col.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
                match reference {
                    None => {
                        let member = |cell: u32| Some(slot(codes[cell as usize]));
                        let (sums, tie) = rank_sorted(col, codes.len(), &sizes, member);
                        (sums, vec![tie; n_groups])
                    }
                    Some(r) => against_reference(col, codes, &sizes, r),
                }
            })
            .collect();
        for (j, (sums, ties)) in results.into_iter().enumerate() {
            let gene = first + j;
            for (g, (s, t)) in sums.into_iter().zip(ties).enumerate() {
                self.sums[g * n_genes + gene] = s;
                self.tie[g * n_genes + gene] = t;
            }
        }
    }
}

/// One gene's rank sum and tie correction of each group against group `r`, each over the
/// cells of the two groups (scanpy's `_ranks(X, mask_obs, mask_obs_rest)`); zeros for `r`
/// and for groups of fewer than two cells.
fn against_reference(
    col: &[(f32, u32)],
    codes: &[i32],
    sizes: &[usize],
    r: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut sums = vec![0.0; sizes.len()];
    let mut ties = vec![1.0; sizes.len()];
    for g in (0..sizes.len()).filter(|&g| g != r && sizes[g] >= 2) {
        let member = |cell: u32| match usize::try_from(codes[cell as usize]) {
            Ok(c) if c == g => Some(Some(0)),
            Ok(c) if c == r => Some(Some(1)),
            _ => None,
        };
        let (s, t) = rank_sorted(col, sizes[g] + sizes[r], &[sizes[g], sizes[r]], member);
        (sums[g], ties[g]) = (s[0], t);
    }
    (sums, ties)
}

/// The rank sum of each group and the tie correction of one gene over the `n_cells` cells
/// that `member` admits (`Some(group)`, `Some(None)` for a cell of no group): ranks are
/// scipy's average ranks, the zeros form one tie block. `col` holds the gene's non-zero
/// values, sorted; `sizes` are the groups' cells among those admitted.
fn rank_sorted(
    col: &[(f32, u32)],
    n_cells: usize,
    sizes: &[usize],
    member: impl Fn(u32) -> Option<Option<usize>>,
) -> (Vec<f64>, f64) {
    let (mut n_nonzero, mut n_neg) = (0usize, 0usize);
    for &(v, cell) in col {
        if member(cell).is_some() {
            n_nonzero += 1;
            n_neg += usize::from(v < 0.0);
        }
    }
    let n_zero = n_cells - n_nonzero;
    let mut sums = vec![0.0f64; sizes.len()];
    let mut nz_in = vec![0usize; sizes.len()];
    let mut ties = 0.0f64;
    let block = |t: usize| {
        let t = t as f64;
        t * t * t - t
    };
    // Ranks are 1-based; a block of m equal values after p smaller ones gets
    // (p + 1 + p + m) / 2, shifted by the zeros when the values are positive.
    let (mut s, mut p) = (0, 0);
    while s < col.len() {
        let v = col[s].0;
        let mut e = s;
        let mut m = 0;
        while e < col.len() && col[e].0 == v {
            m += usize::from(member(col[e].1).is_some());
            e += 1;
        }
        if m > 0 {
            let offset = if v > 0.0 { n_zero } else { 0 };
            let rank = 0.5 * ((p + offset + 1) + (p + m + offset)) as f64;
            for &(_, cell) in &col[s..e] {
                if let Some(Some(g)) = member(cell) {
                    sums[g] += rank;
                    nz_in[g] += 1;
                }
            }
            ties += block(m);
            p += m;
        }
        s = e;
    }
    if n_zero > 0 {
        let zero_rank = 0.5 * ((n_neg + 1) + (n_neg + n_zero)) as f64;
        for g in 0..sizes.len() {
            sums[g] += (sizes[g] - nz_in[g]) as f64 * zero_rank;
        }
        ties += block(n_zero);
    }
    let size = n_cells as f64;
    let tie = if n_cells >= 2 {
        1.0 - ties / (size * size * size - size)
    } else {
        1.0
    };
    (sums, tie)
}

/// The Wilcoxon z-score and two-sided p-value of a group of `n` of `total` cells with rank
/// sum `r` and tie correction `coef`.
fn wilcoxon_z(r: f64, n: usize, total: usize, coef: f64) -> (f64, f64) {
    let (nf, tf) = (n as f64, total as f64);
    let sd = (coef * nf * (tf - nf) * (tf + 1.0) / 12.0).sqrt();
    let mut z = (r - nf * (tf + 1.0) / 2.0) / sd;
    if z.is_nan() {
        z = 0.0;
    }
    (z, 2.0 * normal_sf(z.abs()))
}

/// Ranks the genes of every group against the rest, or against group `reference`. `ranks`
/// must be given for the Wilcoxon test. Groups with fewer than two cells are left out
/// (scanpy refuses them), and so is the reference.
pub fn rank_genes_groups(
    stats: &GroupStats,
    ranks: Option<&RankSums>,
    names: &[String],
    params: &MarkerParams,
    reference: Option<usize>,
) -> Vec<GroupMarkers> {
    let n_genes = stats.n_genes;
    let (tot_s, tot_q) = stats.totals();
    let tot_nnz = stats.gene_nnz();
    let n = stats.n_cells;
    let block = |g: usize| g * n_genes..(g + 1) * n_genes;
    (0..stats.n_groups)
        .into_par_iter()
        .filter(|&g| stats.sizes[g] >= 2 && Some(g) != reference)
        .map(|g| {
            let ng = stats.sizes[g];
            let (s, q, z) = (
                &stats.sum[block(g)],
                &stats.sumsq[block(g)],
                &stats.nnz[block(g)],
            );
            // The other side: the reference group, or the rest (the total minus the group).
            let nr = reference.map_or(n - ng, |r| stats.sizes[r]);
            let other = |j: usize| match reference {
                Some(r) => {
                    let k = r * n_genes + j;
                    (stats.sum[k], stats.sumsq[k], stats.nnz[k])
                }
                None => (tot_s[j] - s[j], tot_q[j] - q[j], tot_nnz[j] - z[j]),
            };
            let mut scores = vec![0.0f64; n_genes];
            let mut pvals = vec![1.0f64; n_genes];
            let mut lfc = vec![0.0f64; n_genes];
            let mut nnz_other = vec![0u64; n_genes];
            for j in 0..n_genes {
                let (os, oq, oz) = other(j);
                nnz_other[j] = oz;
                let (m1, v1) = mean_var(s[j], q[j], ng);
                let (m2, v2) = mean_var(os, oq, nr);
                let (score, p) = match params.method {
                    MarkerMethod::TTest => welch(m1, v1, ng as f64, m2, v2, nr as f64),
                    MarkerMethod::TTestOverestimVar => welch(m1, v1, ng as f64, m2, v2, ng as f64),
                    MarkerMethod::Wilcoxon => {
                        let r = ranks.expect("rank sums for the Wilcoxon test");
                        let k = g * n_genes + j;
                        let coef = if params.tie_correct { r.tie[k] } else { 1.0 };
                        wilcoxon_z(r.sums[k], ng, ng + nr, coef)
                    }
                };
                (scores[j], pvals[j]) = if score.is_nan() {
                    (0.0, 1.0)
                } else {
                    (score, if p.is_nan() { 1.0 } else { p })
                };
                lfc[j] = ((libm::expm1(m1) + 1e-9) / (libm::expm1(m2) + 1e-9)).log2();
            }
            let adjusted = params.correction.adjust(&pvals);
            let mut order: Vec<usize> = (0..n_genes).collect();
            // Highest score first; equal scores: the later gene first (numpy's argsort
            // reversed).
            let key = |j: usize| {
                if params.rankby_abs {
                    scores[j].abs()
                } else {
                    scores[j]
                }
            };
            order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(b.cmp(&a)));
            order.truncate(params.n_genes.min(n_genes));
            let pct = |nnz: u64, cells: usize| {
                if cells == 0 {
                    0.0
                } else {
                    (nnz as f64 / cells as f64) as f32
                }
            };
            GroupMarkers {
                group: names[g].clone(),
                n_cells: ng,
                genes: order.iter().map(|&j| j as u32).collect(),
                scores: order.iter().map(|&j| scores[j] as f32).collect(),
                logfoldchanges: order.iter().map(|&j| lfc[j] as f32).collect(),
                pvals: order.iter().map(|&j| pvals[j]).collect(),
                pvals_adj: order.iter().map(|&j| adjusted[j]).collect(),
                pts: order.iter().map(|&j| pct(z[j], ng)).collect(),
                pts_rest: order.iter().map(|&j| pct(nnz_other[j], nr)).collect(),
            }
        })
        .collect()
}

/// Collects the non-zero values of genes `genes` (a range of columns) from the rows of `x`,
/// whose first row is cell `row0`: `columns[j]` gets (value, cell) of gene `genes.start + j`.
pub fn collect_columns(
    x: &CsrMatrix,
    row0: usize,
    genes: std::ops::Range<usize>,
    columns: &mut [Vec<(f32, u32)>],
) {
    for i in 0..x.n_rows {
        let (idx, val) = x.row(i);
        let a = idx.partition_point(|&j| (j as usize) < genes.start);
        let b = idx.partition_point(|&j| (j as usize) < genes.end);
        for k in a..b {
            columns[idx[k] as usize - genes.start].push((val[k], (row0 + i) as u32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small matrix with ties, zeros, a gene with no variance and an unlabelled cell.
    fn fixture() -> (CsrMatrix, Vec<i32>) {
        #[rustfmt::skip]
        let dense = [
            1.0, 0.0, 2.0, 0.5,
            1.0, 0.0, 2.0, 0.0,
            3.0, 1.5, 2.0, 0.0,
            0.0, 1.5, 2.0, 0.7,
            0.0, 2.5, 2.0, 0.0,
            2.0, 0.0, 2.0, 0.5,
            0.0, 0.0, 2.0, 0.0,
        ];
        (
            CsrMatrix::from_dense(7, 4, &dense),
            vec![0, 0, 0, 1, 1, 1, -1],
        )
    }

    /// Ranks `x` (groups `codes`, `n_groups` of them) against `reference` or the rest.
    fn ranked(
        x: &CsrMatrix,
        codes: &[i32],
        n_groups: usize,
        params: &MarkerParams,
        reference: Option<usize>,
    ) -> Vec<GroupMarkers> {
        let mut stats = GroupStats::new(n_groups, x.n_cols);
        stats.push(x, codes);
        let mut ranks = RankSums::new(n_groups, x.n_cols, reference);
        let mut cols = vec![Vec::new(); x.n_cols];
        collect_columns(x, 0, 0..x.n_cols, &mut cols);
        ranks.add_columns(0, &mut cols, codes);
        let names: Vec<String> = (0..n_groups).map(|g| format!("g{g}")).collect();
        rank_genes_groups(&stats, Some(&ranks), &names, params, reference)
    }

    #[test]
    fn bonferroni_and_absolute_ranking() {
        let (x, codes) = fixture();
        let params = MarkerParams {
            n_genes: 4,
            correction: Correction::Bonferroni,
            rankby_abs: true,
            ..MarkerParams::default()
        };
        for g in ranked(&x, &codes, 2, &params, None) {
            for (p, q) in g.pvals.iter().zip(&g.pvals_adj) {
                assert_eq!(*q, (p * 4.0).min(1.0));
            }
            let a: Vec<f32> = g.scores.iter().map(|s| s.abs()).collect();
            assert!(a.windows(2).all(|w| w[0] >= w[1]), "{:?}", g.scores);
            assert!(
                g.scores.iter().any(|&s| s < 0.0),
                "signs kept: {:?}",
                g.scores
            );
        }
    }

    #[test]
    fn a_reference_group_equals_the_rest_of_a_matrix_of_the_two_groups_only() {
        // Three groups and a cell of none; group 0 against group 2 must equal group 0 against
        // the rest of the matrix that holds only groups 0 and 2 (negative values and ties
        // included).
        #[rustfmt::skip]
        let dense = [
            1.0, 0.0, 2.0, -0.5,
            1.0, 0.0, 2.0, 0.0,
            3.0, 1.5, 2.0, 0.0,
            0.0, 1.5, 0.0, 0.7,
            0.0, 2.5, 2.0, 0.0,
            2.0, 0.0, 2.0, -0.5,
            0.0, 0.0, 2.0, 0.0,
            1.0, 0.5, 0.0, 0.7,
            4.0, 0.0, 1.0, 0.0,
        ];
        let x = CsrMatrix::from_dense(9, 4, &dense);
        let codes = [0, 0, 0, 1, 1, 2, -1, 2, 2];
        let keep = [0usize, 1, 2, 5, 7, 8];
        let sub: Vec<f32> = keep
            .iter()
            .flat_map(|&i| dense[i * 4..i * 4 + 4].to_vec())
            .collect();
        let sub = CsrMatrix::from_dense(keep.len(), 4, &sub);
        let sub_codes: Vec<i32> = keep.iter().map(|&i| codes[i] / 2).collect();
        for (method, tie_correct) in [
            (MarkerMethod::TTest, false),
            (MarkerMethod::TTestOverestimVar, false),
            (MarkerMethod::Wilcoxon, false),
            (MarkerMethod::Wilcoxon, true),
        ] {
            let params = MarkerParams {
                method,
                n_genes: 4,
                tie_correct,
                ..MarkerParams::default()
            };
            let by_ref = ranked(&x, &codes, 3, &params, Some(2));
            let by_rest = ranked(&sub, &sub_codes, 2, &params, None);
            let names: Vec<&str> = by_ref.iter().map(|g| g.group.as_str()).collect();
            assert_eq!(names, ["g0", "g1"], "the reference is left out");
            let (a, b) = (&by_ref[0], &by_rest[0]);
            assert_eq!(a.genes, b.genes, "{method:?}");
            assert_eq!(a.scores, b.scores, "{method:?} {tie_correct}");
            assert_eq!(a.pvals, b.pvals, "{method:?}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // The fold change of a gene with a negative mean is NaN on both sides.
            assert_eq!(
                bits(&a.logfoldchanges),
                bits(&b.logfoldchanges),
                "{method:?}"
            );
            assert_eq!(a.pts_rest, b.pts_rest, "{method:?}");
        }
    }

    fn run(method: MarkerMethod, tie_correct: bool) -> Vec<GroupMarkers> {
        let (x, codes) = fixture();
        let mut stats = GroupStats::new(2, 4);
        stats.push(&x.slice_rows(0..3), &codes[0..3]);
        stats.push(&x.slice_rows(3..7), &codes[3..7]);
        let mut ranks = RankSums::new(2, 4, None);
        let mut cols = vec![Vec::new(); 4];
        collect_columns(&x, 0, 0..4, &mut cols);
        ranks.add_columns(0, &mut cols, &codes);
        let params = MarkerParams {
            method,
            n_genes: 4,
            tie_correct,
            ..MarkerParams::default()
        };
        rank_genes_groups(
            &stats,
            Some(&ranks),
            &["a".into(), "b".into()],
            &params,
            None,
        )
    }

    /// (method, tie_correct, group, genes, scores, pvals, pvals_adj, logfoldchanges)
    type Case = (
        MarkerMethod,
        bool,
        usize,
        [u32; 4],
        [f64; 4],
        [f64; 4],
        [f64; 4],
        [f64; 4],
    );
    /// Reference: scanpy 1.11.5 `rank_genes_groups(adata, "g", method, tie_correct, n_genes=4)`
    /// on the fixture (obs g = a, a, a, b, b, b, missing).
    const SCANPY: [Case; 8] = [
        (
            MarkerMethod::TTest,
            false,
            0,
            [0, 2, 3, 1],
            [
                1.399999976158142,
                0.0,
                -0.5468687415122986,
                -0.6324555277824402,
            ],
            [
                0.23356075037302526,
                1.0,
                0.6084045656941157,
                0.55487828305637,
            ],
            [
                0.8112060875921543,
                1.0,
                0.8112060875921543,
                0.8112060875921543,
            ],
            [
                2.726816177368164,
                0.0,
                -0.9479132294654846,
                -1.4052960872650146,
            ],
        ),
        (
            MarkerMethod::TTest,
            false,
            1,
            [1, 3, 2, 0],
            [
                1.1721885204315186,
                1.1325570344924927,
                0.0,
                -0.6363636255264282,
            ],
            [
                0.3241708704897787,
                0.33075879410338205,
                1.0,
                0.5543725858185243,
            ],
            [
                0.6615175882067641,
                0.6615175882067641,
                1.0,
                0.7391634477580324,
            ],
            [
                2.6182491779327393,
                1.885108470916748,
                0.0,
                -1.3937902450561523,
            ],
        ),
        (
            MarkerMethod::TTestOverestimVar,
            false,
            0,
            [0, 2, 3, 1],
            [
                1.3228756189346313,
                0.0,
                -0.5039526224136353,
                -0.5773502588272095,
            ],
            [
                0.257767806142459,
                1.0,
                0.6418504880245861,
                0.5978671879151778,
            ],
            [
                0.8558006506994481,
                1.0,
                0.8558006506994481,
                0.8558006506994481,
            ],
            [
                2.726816177368164,
                0.0,
                -0.9479132294654846,
                -1.4052960872650146,
            ],
        ),
        (
            MarkerMethod::TTestOverestimVar,
            false,
            1,
            [1, 3, 2, 0],
            [
                1.1331286430358887,
                1.0856202840805054,
                0.0,
                -0.5916079878807068,
            ],
            [
                0.3335213465709371,
                0.3455937276362116,
                1.0,
                0.5861505297009377,
            ],
            [
                0.6911874552724232,
                0.6911874552724232,
                1.0,
                0.7815340396012503,
            ],
            [
                2.6182491779327393,
                1.885108470916748,
                0.0,
                -1.3937902450561523,
            ],
        ),
        (
            MarkerMethod::Wilcoxon,
            false,
            0,
            [0, 2, 3, 1],
            [
                1.4142135381698608,
                0.0,
                -0.5303300619125366,
                -0.5303300619125366,
            ],
            [
                0.15729920705028516,
                1.0,
                0.5958830905651777,
                0.5958830905651777,
            ],
            [
                0.6291968282011406,
                1.0,
                0.794510787420237,
                0.794510787420237,
            ],
            [
                2.726816177368164,
                0.0,
                -0.9479132294654846,
                -1.4052960872650146,
            ],
        ),
        (
            MarkerMethod::Wilcoxon,
            false,
            1,
            [3, 1, 2, 0],
            [
                1.0606601238250732,
                1.0606601238250732,
                0.0,
                -0.7071067690849304,
            ],
            [
                0.2888443663464849,
                0.2888443663464849,
                1.0,
                0.4795001221869535,
            ],
            [
                0.5776887326929698,
                0.5776887326929698,
                1.0,
                0.6393334962492713,
            ],
            [
                1.885108470916748,
                2.6182491779327393,
                0.0,
                -1.3937902450561523,
            ],
        ),
        (
            MarkerMethod::Wilcoxon,
            true,
            0,
            [0, 2, 3, 1],
            [
                1.481917142868042,
                0.0,
                -0.5916079878807068,
                -0.5916079878807068,
            ],
            [
                0.13836234188025062,
                1.0,
                0.5541131300694455,
                0.5541131300694455,
            ],
            [
                0.5534493675210025,
                1.0,
                0.7388175067592607,
                0.7388175067592607,
            ],
            [
                2.726816177368164,
                0.0,
                -0.9479132294654846,
                -1.4052960872650146,
            ],
        ),
        (
            MarkerMethod::Wilcoxon,
            true,
            1,
            [3, 1, 2, 0],
            [
                1.1832159757614136,
                1.1832159757614136,
                0.0,
                -0.740958571434021,
            ],
            [
                0.2367235706378572,
                0.2367235706378572,
                1.0,
                0.4587185587250222,
            ],
            [
                0.4734471412757144,
                0.4734471412757144,
                1.0,
                0.6116247449666963,
            ],
            [
                1.885108470916748,
                2.6182491779327393,
                0.0,
                -1.3937902450561523,
            ],
        ),
    ];

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn every_method_matches_scanpy() {
        for (method, tie, group, genes, scores, pvals, adj, lfc) in SCANPY {
            let got = &run(method, tie)[group];
            let what = format!("{method:?} tie {tie} group {group}");
            assert_eq!(got.genes, genes, "{what}");
            for k in 0..4 {
                assert!(
                    close(got.scores[k].into(), scores[k], 1e-7),
                    "{what} score {k}: {} vs {}",
                    got.scores[k],
                    scores[k]
                );
                assert!(
                    close(got.pvals[k], pvals[k], 1e-12),
                    "{what} pval {k}: {} vs {}",
                    got.pvals[k],
                    pvals[k]
                );
                assert!(
                    close(got.pvals_adj[k], adj[k], 1e-12),
                    "{what} pval_adj {k}"
                );
                assert!(
                    close(got.logfoldchanges[k].into(), lfc[k], 1e-7),
                    "{what} lfc {k}"
                );
            }
        }
    }

    #[test]
    fn fractions_expressing_and_group_sizes() {
        let got = run(MarkerMethod::TTest, false);
        assert_eq!((got[0].n_cells, got[1].n_cells), (3, 3));
        // Gene 0 in group a: 3 of 3 cells; in the rest (b and the unlabelled cell): 1 of 4.
        assert_eq!(got[0].genes[0], 0);
        assert_eq!((got[0].pts[0], got[0].pts_rest[0]), (1.0, 0.25));
    }

    #[test]
    fn groups_of_one_cell_are_left_out() {
        let (x, _) = fixture();
        let codes = [0, 0, 0, 0, 0, 0, 1];
        let mut stats = GroupStats::new(2, 4);
        stats.push(&x, &codes);
        let got = rank_genes_groups(
            &stats,
            None,
            &["a".into(), "b".into()],
            &MarkerParams::default(),
            None,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].group, "a");
    }
}
