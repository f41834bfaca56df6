//! `highly_variable_genes` for the `seurat` and `cell_ranger` flavors (docs/algorithms.md section 3),
//! from per-gene means and variances (ddof 1) accumulated by the backend.

use crate::error::{Error, Result};

/// HVG flavors.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HvgFlavor {
    /// Seurat's dispersion on expm1 of log data, z-scored within equal-width mean bins (20).
    Seurat,
    /// Cell Ranger's dispersion, normalised by median and MAD within percentile bins.
    #[value(name = "cell_ranger")]
    CellRanger,
    /// Seurat v3: LOESS-regularised variance of clipped raw counts (see `pp::seurat_v3`).
    #[value(name = "seurat_v3")]
    SeuratV3,
}

/// How the seurat and cell_ranger flavors pick genes from the normalised dispersions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HvgPick {
    /// scanpy's `n_top_genes`: the genes whose normalised dispersion reaches the n-th largest.
    Top(usize),
    /// scanpy's `n_top_genes=None`: the genes within the mean and dispersion cut-offs.
    Cutoffs(HvgCutoffs),
}

/// scanpy's `min_mean`, `max_mean`, `min_disp`, `max_disp` (its defaults), used when no
/// `n_top_genes` is given. All bounds are exclusive; a NaN normalised dispersion counts as 0.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HvgCutoffs {
    /// Lower bound of `means` (log1p of the mean for seurat).
    pub min_mean: f64,
    /// Upper bound of `means`.
    pub max_mean: f64,
    /// Lower bound of `dispersions_norm`.
    pub min_disp: f64,
    /// Upper bound of `dispersions_norm`.
    pub max_disp: f64,
}

impl Default for HvgCutoffs {
    fn default() -> Self {
        HvgCutoffs {
            min_mean: 0.0125,
            max_mean: 3.0,
            min_disp: 0.5,
            max_disp: f64::INFINITY,
        }
    }
}

impl HvgCutoffs {
    /// scanpy's `_Cutoffs.in_bounds` after `np.nan_to_num` of the normalised dispersion.
    pub fn in_bounds(&self, mean: f64, dispersion_norm: f64) -> bool {
        let d = nan_to_num(dispersion_norm);
        mean > self.min_mean && mean < self.max_mean && d > self.min_disp && d < self.max_disp
    }
}

/// `np.nan_to_num`: NaN becomes 0, infinities the largest finite values.
fn nan_to_num(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(f64::MIN, f64::MAX)
    }
}

/// Per-gene HVG statistics and the selection.
#[derive(Debug, Clone, PartialEq)]
pub struct HvgResult {
    /// `means` (log1p of the mean for seurat).
    pub means: Vec<f64>,
    /// `dispersions` (log for seurat).
    pub dispersions: Vec<f64>,
    /// `dispersions_norm`, f32 as scanpy stores it.
    pub dispersions_norm: Vec<f32>,
    /// `highly_variable`.
    pub highly_variable: Vec<bool>,
}

/// Computes HVGs from means and variances of expm1(X) (seurat) or X (cell_ranger).
pub fn highly_variable_genes(
    mean: &[f64],
    var: &[f64],
    flavor: HvgFlavor,
    pick: HvgPick,
    n_bins: usize,
) -> Result<HvgResult> {
    let s = single_batch(mean, var, flavor, pick, n_bins)?;
    Ok(HvgResult {
        means: s.means,
        dispersions: s.dispersions,
        dispersions_norm: s.norm.iter().map(|&x| x as f32).collect(),
        highly_variable: s.highly_variable,
    })
}

/// One batch's statistics, normalised dispersions still in f64.
struct Single {
    means: Vec<f64>,
    dispersions: Vec<f64>,
    norm: Vec<f64>,
    highly_variable: Vec<bool>,
}

/// One batch's statistics; `n_bins` equal-width mean bins for seurat (cell_ranger's bins are
/// percentiles, as in scanpy).
fn single_batch(
    mean: &[f64],
    var: &[f64],
    flavor: HvgFlavor,
    pick: HvgPick,
    n_bins: usize,
) -> Result<Single> {
    let mean: Vec<f64> = mean
        .iter()
        .map(|&m| if m == 0.0 { 1e-12 } else { m })
        .collect();
    let mut disp: Vec<f64> = var.iter().zip(&mean).map(|(v, m)| v / m).collect();
    let (means, norm): (Vec<f64>, Vec<f64>) = match flavor {
        HvgFlavor::Seurat => {
            for d in disp.iter_mut() {
                *d = if *d == 0.0 { f64::NAN } else { d.ln() };
            }
            let means: Vec<f64> = mean.iter().map(|m| m.ln_1p()).collect();
            let bins = cut_equal_width(&means, n_bins);
            let norm = normalize_in_bins(&disp, &bins, n_bins, |v| {
                let avg = nan_mean(v);
                let dev = nan_std_ddof1(v);
                (avg, dev)
            });
            (means, norm)
        }
        HvgFlavor::CellRanger => {
            let bins = cut_percentiles(&mean);
            let nb = bins.iter().copied().max().map_or(0, |b| b + 1);
            let norm = normalize_in_bins(&disp, &bins, nb, |v| {
                let med = median(v);
                let dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
                (med, median(&dev) / 0.674_489_750_196_081_7)
            });
            (mean.clone(), norm)
        }
        HvgFlavor::SeuratV3 => {
            return Err(Error::Usage(
                "seurat_v3 works on raw counts: use crate::pp::seurat_v3 (the pipeline does)"
                    .into(),
            ));
        }
    };
    let highly_variable = match pick {
        HvgPick::Top(n) => top_genes(&norm, n),
        HvgPick::Cutoffs(c) => means
            .iter()
            .zip(&norm)
            .map(|(&m, &d)| c.in_bounds(m, d))
            .collect(),
    };
    Ok(Single {
        means,
        dispersions: disp,
        norm,
        highly_variable,
    })
}

/// n_top mode: the n-th largest non-NaN normalised dispersion (in f64, before scanpy stores it
/// as f32) is the cutoff; NaN never qualifies; ties can select more than n.
fn top_genes(norm: &[f64], n_top_genes: usize) -> Vec<bool> {
    let mut sorted: Vec<f64> = norm.iter().copied().filter(|x| !x.is_nan()).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    if n_top_genes == 0 || sorted.is_empty() {
        return vec![false; norm.len()];
    }
    let cutoff = sorted[(n_top_genes.min(sorted.len())) - 1];
    norm.iter().map(|&x| !x.is_nan() && x >= cutoff).collect()
}

/// One batch's per-gene moments for [`highly_variable_genes_batched`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// Mean of expm1(X) (seurat) or X (cell_ranger) over the batch's cells.
    pub mean: Vec<f64>,
    /// Variance (ddof 1) of the same.
    pub var: Vec<f64>,
    /// Whether the gene has a positive value in at least one of the batch's cells.
    pub expressed: Vec<bool>,
}

/// HVGs with scanpy's `batch_key` (seurat, cell_ranger) and the batch columns.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchedHvg {
    /// `means`, `dispersions`, `dispersions_norm` (NaN-skipping means over the batches) and
    /// `highly_variable`.
    pub hvg: HvgResult,
    /// `highly_variable_nbatches`: batches in which the gene is highly variable.
    pub nbatches: Vec<i64>,
    /// `highly_variable_intersection`: highly variable in every batch.
    pub intersection: Vec<bool>,
    /// Each gene's place in the selection order (0 = first chosen).
    pub order: Vec<usize>,
}

/// `highly_variable_genes(batch_key=...)` for seurat and cell_ranger (docs/algorithms.md section
/// 3): each batch is run on its own after dropping the genes it does not express (those get
/// zero means, dispersions and normalised dispersions, and count as not variable there);
/// the per-batch values are averaged skipping NaN; genes are ranked by the number of batches
/// they are variable in, then by mean normalised dispersion (NaN last), ties in gene-name
/// order, and the first n of [`HvgPick::Top`] are selected; [`HvgPick::Cutoffs`] applies the
/// cut-offs in each batch (for the counts) and to the merged values. `names` are the gene
/// names.
pub fn highly_variable_genes_batched(
    batches: &[BatchStats],
    names: &[String],
    flavor: HvgFlavor,
    pick: HvgPick,
    n_bins: usize,
) -> Result<BatchedHvg> {
    let g = names.len();
    let (mut sums, mut counts) = (vec![[0.0f64; 3]; g], vec![[0usize; 3]; g]);
    let mut nbatches = vec![0i64; g];
    for b in batches {
        let genes: Vec<usize> = (0..g).filter(|&j| b.expressed[j]).collect();
        let take = |v: &[f64]| -> Vec<f64> { genes.iter().map(|&j| v[j]).collect() };
        let s = single_batch(&take(&b.mean), &take(&b.var), flavor, pick, n_bins)?;
        let mut vals = vec![[0.0f64; 3]; g];
        for (k, &j) in genes.iter().enumerate() {
            vals[j] = [s.means[k], s.dispersions[k], s.norm[k]];
            nbatches[j] += i64::from(s.highly_variable[k]);
        }
        for j in 0..g {
            for c in 0..3 {
                if !vals[j][c].is_nan() {
                    sums[j][c] += vals[j][c];
                    counts[j][c] += 1;
                }
            }
        }
    }
    let avg = |c: usize| -> Vec<f64> {
        (0..g)
            .map(|j| {
                if counts[j][c] == 0 {
                    f64::NAN
                } else {
                    sums[j][c] / counts[j][c] as f64
                }
            })
            .collect()
    };
    let (means, dispersions, mut norm) = (avg(0), avg(1), avg(2));
    // groupby(gene name) sorts by name; pandas' multi-column sort is stable: (nbatches desc,
    // dispersions_norm desc, NaN last), ties in name order.
    let mut order: Vec<usize> = (0..g).collect();
    order.sort_by(|&a, &b| names[a].cmp(&names[b]));
    order.sort_by(|&a, &b| {
        nbatches[b]
            .cmp(&nbatches[a])
            .then_with(|| match (norm[a].is_nan(), norm[b].is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                (false, false) => norm[b]
                    .partial_cmp(&norm[a])
                    .unwrap_or(std::cmp::Ordering::Equal),
            })
    });
    let mut place = vec![0usize; g];
    for (p, &j) in order.iter().enumerate() {
        place[j] = p;
    }
    let highly_variable = match pick {
        HvgPick::Top(n) => place.iter().map(|&p| p < n).collect(),
        HvgPick::Cutoffs(c) => {
            // scanpy fills the merged column's NaN with 0 (as Seurat) before the cut-offs, and
            // stores it so.
            norm.iter_mut()
                .filter(|d| d.is_nan())
                .for_each(|d| *d = 0.0);
            means
                .iter()
                .zip(&norm)
                .map(|(&m, &d)| c.in_bounds(m, d))
                .collect()
        }
    };
    let n_batches = batches.len() as i64;
    Ok(BatchedHvg {
        hvg: HvgResult {
            means,
            dispersions,
            dispersions_norm: norm.iter().map(|&x| x as f32).collect(),
            highly_variable,
        },
        intersection: nbatches.iter().map(|&k| k == n_batches).collect(),
        nbatches,
        order: place,
    })
}

/// `pd.cut(x, n)`: n equal-width bins over [min, max], the first edge lowered by 0.1 % of the
/// range, intervals right-closed.
fn cut_equal_width(x: &[f64], n: usize) -> Vec<usize> {
    let (lo, hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if hi.is_nan() || lo.is_nan() || hi <= lo {
        return vec![0; x.len()];
    }
    // pandas: linspace(min, max, n + 1), then edges[0] -= 0.001 * (max - min).
    let mut edges: Vec<f64> = (0..=n)
        .map(|k| lo + (hi - lo) * k as f64 / n as f64)
        .collect();
    edges[n] = hi;
    edges[0] -= 0.001 * (hi - lo);
    x.iter()
        .map(|&v| {
            // right-closed: bin b holds (edges[b], edges[b+1]].
            let b = edges.partition_point(|&e| e < v);
            b.saturating_sub(1).min(n - 1)
        })
        .collect()
}

/// cell_ranger bins: edges at [-inf, 10th, 15th, ..., 100th percentile, +inf], right-closed.
fn cut_percentiles(mean: &[f64]) -> Vec<usize> {
    let mut sorted = mean.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mut edges = vec![f64::NEG_INFINITY];
    for p in (10..=100).step_by(5) {
        edges.push(percentile_linear(&sorted, p as f64));
    }
    edges.push(f64::INFINITY);
    mean.iter()
        .map(|&v| edges.partition_point(|&e| e < v).saturating_sub(1))
        .collect()
}

fn percentile_linear(sorted: &[f64], p: f64) -> f64 {
    let pos = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    if lo + 1 < sorted.len() {
        sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac
    } else {
        sorted[lo]
    }
}

/// z-scores `disp` within bins with the (centre, scale) that `stats` gives for the bin's
/// non-NaN values. A bin with one gene (scale NaN) uses centre 0 and scale = centre, so that
/// gene's normalised dispersion is 1 (scanpy's rule).
fn normalize_in_bins(
    disp: &[f64],
    bins: &[usize],
    n_bins: usize,
    stats: impl Fn(&[f64]) -> (f64, f64),
) -> Vec<f64> {
    let mut members: Vec<Vec<f64>> = vec![Vec::new(); n_bins.max(1)];
    for (&d, &b) in disp.iter().zip(bins) {
        if !d.is_nan() {
            members[b].push(d);
        }
    }
    let params: Vec<(f64, f64)> = members
        .iter()
        .map(|v| {
            let (c, s) = stats(v);
            if s.is_nan() { (0.0, c) } else { (c, s) }
        })
        .collect();
    disp.iter()
        .zip(bins)
        .map(|(&d, &b)| (d - params[b].0) / params[b].1)
        .collect()
}

fn nan_mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn nan_std_ddof1(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = nan_mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_width_bins_are_right_closed_with_lowered_first_edge() {
        let x = [0.0, 1.0, 2.0, 10.0];
        let b = cut_equal_width(&x, 10);
        assert_eq!(b, vec![0, 0, 1, 9]);
    }

    #[test]
    fn batches_average_with_zeros_for_unexpressed_genes_and_rank_by_nbatches_first() {
        let names: Vec<String> = (0..30).map(|j| format!("g{j:02}")).collect();
        let mean: Vec<f64> = (0..30).map(|j| 0.1 + 0.05 * j as f64).collect();
        let var_a: Vec<f64> = (0..30).map(|j| mean[j] * (1.0 + (j % 7) as f64)).collect();
        let var_b: Vec<f64> = (0..30).map(|j| mean[j] * (1.0 + (j % 5) as f64)).collect();
        let mut expressed_b = vec![true; 30];
        expressed_b[3] = false;
        let batches = [
            BatchStats {
                mean: mean.clone(),
                var: var_a.clone(),
                expressed: vec![true; 30],
            },
            BatchStats {
                mean: mean.clone(),
                var: var_b.clone(),
                expressed: expressed_b.clone(),
            },
        ];
        let r =
            highly_variable_genes_batched(&batches, &names, HvgFlavor::Seurat, HvgPick::Top(5), 20)
                .unwrap();
        let a = single_batch(&mean, &var_a, HvgFlavor::Seurat, HvgPick::Top(5), 20).unwrap();
        let keep: Vec<usize> = (0..30).filter(|&j| expressed_b[j]).collect();
        let pick = |v: &[f64]| -> Vec<f64> { keep.iter().map(|&j| v[j]).collect() };
        let b = single_batch(
            &pick(&mean),
            &pick(&var_b),
            HvgFlavor::Seurat,
            HvgPick::Top(5),
            20,
        )
        .unwrap();
        // Gene 3 is absent from batch b: its zeros enter the means.
        assert_eq!(r.hvg.means[3], a.means[3] / 2.0);
        assert_eq!(r.hvg.dispersions_norm[3], (a.norm[3] / 2.0) as f32);
        let k4 = keep.iter().position(|&j| j == 4).unwrap();
        assert_eq!(r.hvg.means[4], (a.means[4] + b.means[k4]) / 2.0);
        for j in 0..30 {
            let in_b = keep
                .iter()
                .position(|&k| k == j)
                .is_some_and(|k| b.highly_variable[k]);
            assert_eq!(
                r.nbatches[j],
                i64::from(a.highly_variable[j]) + i64::from(in_b)
            );
            assert_eq!(r.intersection[j], r.nbatches[j] == 2);
        }
        // Selection order: nbatches first, then mean normalised dispersion.
        let mut by_order: Vec<usize> = (0..30).collect();
        by_order.sort_by_key(|&j| r.order[j]);
        for w in by_order.windows(2) {
            let (x, y) = (w[0], w[1]);
            assert!(r.nbatches[x] >= r.nbatches[y]);
            if r.nbatches[x] == r.nbatches[y] {
                // NaN last (gene 0: one gene in its bin with mean dispersion 0).
                let (dx, dy) = (r.hvg.dispersions_norm[x], r.hvg.dispersions_norm[y]);
                assert!(dy.is_nan() || dx >= dy, "{x} {dx} before {y} {dy}");
            }
        }
        assert_eq!(r.hvg.highly_variable.iter().filter(|&&h| h).count(), 5);
    }

    #[test]
    fn single_gene_bin_gets_normalised_dispersion_one() {
        let n = normalize_in_bins(&[2.0, 5.0, 7.0], &[0, 1, 1], 2, |v| {
            (nan_mean(v), nan_std_ddof1(v))
        });
        assert_eq!(n[0], 1.0);
    }

    #[test]
    fn cutoffs_are_exclusive_and_count_a_nan_dispersion_as_zero() {
        let c = HvgCutoffs::default();
        assert!(c.in_bounds(1.0, 0.6));
        assert!(!c.in_bounds(0.0125, 0.6) && !c.in_bounds(3.0, 0.6));
        assert!(!c.in_bounds(1.0, 0.5) && !c.in_bounds(1.0, f64::NAN));
        assert!(
            c.in_bounds(1.0, f64::INFINITY),
            "inf becomes the largest finite value"
        );
        let open = HvgCutoffs {
            min_disp: -0.1,
            ..c
        };
        assert!(open.in_bounds(1.0, f64::NAN) && !open.in_bounds(1.0, f64::NEG_INFINITY));
    }

    #[test]
    fn cutoff_selection_keeps_the_genes_in_bounds_whatever_their_number() {
        let mean: Vec<f64> = (0..40).map(|j| 0.01 + 0.8 * j as f64).collect();
        let var: Vec<f64> = (0..40).map(|j| mean[j] * (1.0 + (j % 9) as f64)).collect();
        let c = HvgCutoffs::default();
        let s = single_batch(&mean, &var, HvgFlavor::Seurat, HvgPick::Cutoffs(c), 20).unwrap();
        let want: Vec<bool> = (0..40)
            .map(|j| s.means[j] > 0.0125 && s.means[j] < 3.0 && s.norm[j] > 0.5)
            .collect();
        assert_eq!(s.highly_variable, want);
        let n = want.iter().filter(|&&h| h).count();
        assert!(n > 0 && n < 40, "{n}");
        let top = single_batch(&mean, &var, HvgFlavor::Seurat, HvgPick::Top(n), 20).unwrap();
        assert_ne!(
            top.highly_variable, want,
            "the mean bounds change the choice"
        );
    }
}
