//! `highly_variable_genes` for the `seurat` and `cell_ranger` flavors (ALGORITHMS.md section 3),
//! from per-gene means and variances (ddof 1) accumulated by the backend.

use crate::error::{Error, Result};

/// HVG flavors.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HvgFlavor {
    /// Seurat's dispersion on expm1 of log data, z-scored within 20 equal-width mean bins.
    Seurat,
    /// Cell Ranger's dispersion, normalised by median and MAD within percentile bins.
    #[value(name = "cell_ranger")]
    CellRanger,
    /// Seurat v3: LOESS-regularised variance of clipped raw counts (see `pp::seurat_v3`).
    #[value(name = "seurat_v3")]
    SeuratV3,
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
    n_top_genes: usize,
) -> Result<HvgResult> {
    let g = mean.len();
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
            let bins = cut_equal_width(&means, 20);
            let norm = normalize_in_bins(&disp, &bins, 20, |v| {
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
    let dispersions_norm: Vec<f32> = norm.iter().map(|&x| x as f32).collect();
    // n_top mode: the n-th largest non-NaN normalised dispersion (in f64, before scanpy
    // stores it as f32) is the cutoff; NaN never qualifies; ties can select more than n.
    let mut sorted: Vec<f64> = norm.iter().copied().filter(|x| !x.is_nan()).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let highly_variable = if n_top_genes == 0 || sorted.is_empty() {
        vec![false; g]
    } else {
        let cutoff = sorted[(n_top_genes.min(sorted.len())) - 1];
        norm.iter().map(|&x| !x.is_nan() && x >= cutoff).collect()
    };
    Ok(HvgResult {
        means,
        dispersions: disp,
        dispersions_norm,
        highly_variable,
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
    fn single_gene_bin_gets_normalised_dispersion_one() {
        let n = normalize_in_bins(&[2.0, 5.0, 7.0], &[0, 1, 1], 2, |v| {
            (nan_mean(v), nan_std_ddof1(v))
        });
        assert_eq!(n[0], 1.0);
    }
}
