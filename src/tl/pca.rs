//! PCA by exact covariance eigendecomposition (scanpy's `covariance_eigh` solver, which agrees
//! with its default arpack solver to |r| 0.999999 on the scores, docs/algorithms.md section 4).
//!
//! The covariance of the scaled HVG matrix is accumulated by the backend as a Gram matrix and
//! column sums over row chunks (f64): `C = (XᵀX - n μμᵀ) / (n - 1)`. Its eigenvectors are the
//! loadings; signs follow sklearn's v-based `svd_flip` (the largest-|v| entry of each
//! component positive); `variance` = eigenvalues (ddof 1) and `variance_ratio` divides by the
//! total variance of all masked genes.

use crate::backend::{Backend, ScaleSpec};
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

/// The fitted model: components and their variances.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Column means of the data.
    pub mean: Vec<f64>,
    /// Loadings, `k x n_comps` row-major (one row per gene).
    pub components: Vec<f64>,
    /// Number of components.
    pub n_comps: usize,
    /// Explained variance per component (ddof 1).
    pub variance: Vec<f64>,
    /// `variance / total variance`.
    pub variance_ratio: Vec<f64>,
}

/// scanpy's default number of components: 50, or `min(n_obs, n_vars) - 1` when that is <= 50.
pub fn default_n_comps(n_obs: usize, n_vars: usize, requested: usize) -> usize {
    let m = n_obs.min(n_vars);
    if m <= requested {
        m.saturating_sub(1)
    } else {
        requested
    }
}

/// PCA solvers.
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
#[serde(rename_all = "snake_case")]
pub enum PcaSolver {
    /// Exact eigendecomposition of the covariance (scanpy's `covariance_eigh`; agrees with
    /// its default arpack to |r| 0.999999).
    #[default]
    #[value(name = "covariance_eigh")]
    CovarianceEigh,
    /// Halko's randomized range finder on the covariance (2 n_components + 20 columns, 12 power
    /// iterations with re-orthonormalisation; wider and longer than sklearn's defaults because
    /// scRNA-seq spectra are flat past the first components), then the exact
    /// eigendecomposition of the small projected matrix. Skips the O(k³) solve; approximate in
    /// the trailing components.
    Randomized,
}

/// A matrix visited chunk by chunk of rows, in order: each call runs `f` on every chunk.
pub type ChunkPass<'a> = dyn FnMut(&mut dyn FnMut(&CsrMatrix) -> Result<()>) -> Result<()> + 'a;

/// PCA of the scaled columns `spec` of `n` rows, by the Gram route every PCA of cartscope
/// takes (the run's, on a file or in memory, and the bindings' `pca` on sparse data): one
/// pass accumulates the Gram matrix and column sums, the covariance (or, without
/// `zero_center`, the uncentred Gram matrix) is decomposed, a second pass projects. `note` is told when each step ends. Returns the fit and the n x n_comps
/// scores (f32, row-major).
#[allow(clippy::too_many_arguments)]
pub fn pca_by_gram(
    n: usize,
    spec: &ScaleSpec<'_>,
    n_comps: usize,
    solver: PcaSolver,
    zero_center: bool,
    backend: &dyn Backend,
    pass: &mut ChunkPass<'_>,
    note: &dyn Fn(&str),
) -> Result<(Pca, Vec<f32>)> {
    let k = spec.cols.len();
    let mut gram = vec![0.0f64; k * k];
    let mut colsum = vec![0.0f64; k];
    pass(&mut |x| {
        backend.scaled_gram(x, spec, &mut gram, &mut colsum);
        Ok(())
    })?;
    note("pca gram");
    let fit = fit_gram(&gram, &colsum, n, n_comps, solver, zero_center)?;
    note("pca eigh");
    let mut x_pca = Vec::with_capacity(n * n_comps);
    pass(&mut |x| {
        x_pca.extend(
            backend
                .scaled_project(x, spec, &fit.mean, &fit.components, n_comps)
                .into_iter()
                .map(|v| v as f32),
        );
        Ok(())
    })?;
    Ok((fit, x_pca))
}

/// PCA from the Gram matrix `gram` (k x k, Σ xxᵀ) and column sums over `n` rows, centred (`zero_center`) or not: scanpy's `pca(zero_center=False)`
/// is scikit-learn's `TruncatedSVD`, whose components are the top eigenvectors of the
/// uncentred `Σ xxᵀ`, whose `explained_variance_` is the variance (ddof 0) of each component's
/// scores and whose ratio divides by the summed variances (ddof 0) of the columns; its `mean`
/// is then zero, so that projecting does not centre.
pub fn fit_gram(
    gram: &[f64],
    colsum: &[f64],
    n: usize,
    n_comps: usize,
    solver: PcaSolver,
    zero_center: bool,
) -> Result<Pca> {
    let k = colsum.len();
    if n < 2 || n_comps == 0 || n_comps > k {
        return Err(Error::Usage(format!(
            "PCA needs at least 2 cells and 1..={k} components (cells {n}, components {n_comps})"
        )));
    }
    let nf = n as f64;
    let col_mean: Vec<f64> = colsum.iter().map(|s| s / nf).collect();
    let (centre, scale) = if zero_center {
        (1.0, nf - 1.0)
    } else {
        (0.0, nf)
    };
    let m = faer::Mat::<f64>::from_fn(k, k, |a, b| {
        (gram[a * k + b] - centre * nf * col_mean[a] * col_mean[b]) / scale
    });
    let (values, vectors) = match solver {
        PcaSolver::CovarianceEigh => top_eigen_full(&m, n_comps)?,
        PcaSolver::Randomized => top_eigen_randomized(&m, n_comps)?,
    };
    let total_var: f64 = if zero_center {
        (0..k).map(|a| m[(a, a)]).sum()
    } else {
        (0..k).map(|a| m[(a, a)] - col_mean[a] * col_mean[a]).sum()
    };
    let (s, u) = (&values, &vectors);
    let mut components = vec![0.0f64; k * n_comps];
    let mut variance = Vec::with_capacity(n_comps);
    for c in 0..n_comps {
        let v = &u[c * k..(c + 1) * k];
        // Uncentred: the scores' mean is colsum·v / n, their second moment the eigenvalue.
        let shift = if zero_center {
            0.0
        } else {
            let mean: f64 = v.iter().zip(&col_mean).map(|(a, b)| a * b).sum();
            mean * mean
        };
        variance.push((s[c] - shift).max(0.0));
        // v-based svd_flip: the entry of largest |v| (first on ties) becomes positive.
        let mut arg = 0;
        for a in 1..k {
            if v[a].abs() > v[arg].abs() {
                arg = a;
            }
        }
        let sign = if v[arg] < 0.0 { -1.0 } else { 1.0 };
        for a in 0..k {
            components[a * n_comps + c] = sign * v[a];
        }
    }
    let variance_ratio = variance.iter().map(|v| v / total_var).collect();
    let mean = if zero_center { col_mean } else { vec![0.0; k] };
    Ok(Pca {
        mean,
        components,
        n_comps,
        variance,
        variance_ratio,
    })
}

/// The `n` largest eigenpairs by the full dense eigendecomposition: eigenvalues descending,
/// eigenvectors concatenated (`n x k`).
fn top_eigen_full(cov: &faer::Mat<f64>, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let k = cov.nrows();
    let evd = cov
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| Error::Internal(format!("PCA eigendecomposition did not converge: {e:?}")))?;
    let (s, u) = (evd.S().column_vector(), evd.U());
    let mut values = Vec::with_capacity(n);
    let mut vectors = Vec::with_capacity(n * k);
    for c in 0..n {
        // faer returns eigenvalues in ascending order.
        let e = k - 1 - c;
        values.push(s[e]);
        vectors.extend((0..k).map(|a| u[(a, e)]));
    }
    Ok((values, vectors))
}

/// Orthonormalises the columns of `q` in place (modified Gram-Schmidt, twice).
fn orthonormalise(q: &mut faer::Mat<f64>) {
    let (k, l) = (q.nrows(), q.ncols());
    for _ in 0..2 {
        for j in 0..l {
            for p in 0..j {
                let d: f64 = (0..k).map(|a| q[(a, p)] * q[(a, j)]).sum();
                for a in 0..k {
                    let v = q[(a, p)];
                    q[(a, j)] -= d * v;
                }
            }
            let norm = (0..k)
                .map(|a| q[(a, j)] * q[(a, j)])
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            for a in 0..k {
                q[(a, j)] /= norm;
            }
        }
    }
}

/// Power iterations of the randomized solver.
const POWER_ITERATIONS: usize = 12;

/// The `n` largest eigenpairs by a randomized range finder (deterministic start).
fn top_eigen_randomized(cov: &faer::Mat<f64>, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let k = cov.nrows();
    let l = (2 * n + 20).min(k);
    let mut state = 0x5EED_u64;
    let mut q = faer::Mat::<f64>::from_fn(k, l, |_, _| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    });
    orthonormalise(&mut q);
    for _ in 0..POWER_ITERATIONS {
        let mut y = cov * &q;
        orthonormalise(&mut y);
        q = y;
    }
    let b = q.transpose() * (cov * &q);
    let evd = b
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| Error::Internal(format!("PCA eigendecomposition did not converge: {e:?}")))?;
    let (s, y) = (evd.S().column_vector(), evd.U());
    let ritz = &q * y;
    let mut values = Vec::with_capacity(n);
    let mut vectors = Vec::with_capacity(n * k);
    for c in 0..n {
        let e = l - 1 - c;
        values.push(s[e]);
        vectors.extend((0..k).map(|a| ritz[(a, e)]));
    }
    Ok((values, vectors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncentred_fit_is_the_svd_of_the_raw_rows() {
        // Rows far from the origin: the first uncentred direction follows their mean.
        let rows = [
            [5.0, 1.0, 0.5],
            [6.0, 2.0, 0.0],
            [5.5, 0.0, 1.0],
            [7.0, 1.5, 0.5],
        ];
        let (n, k) = (rows.len(), 3);
        let mut gram = vec![0.0; k * k];
        let mut colsum = vec![0.0; k];
        for r in &rows {
            for a in 0..k {
                colsum[a] += r[a];
                for b in 0..k {
                    gram[a * k + b] += r[a] * r[b];
                }
            }
        }
        let fit = fit_gram(&gram, &colsum, n, 2, PcaSolver::CovarianceEigh, false).unwrap();
        assert_eq!(fit.mean, vec![0.0; k], "projection does not centre");
        let v: Vec<f64> = (0..k).map(|a| fit.components[a * 2]).collect();
        // Largest singular direction: |X v| maximal among unit vectors, so above the mean's.
        let norm = |w: &[f64]| {
            rows.iter()
                .map(|r| (0..k).map(|a| r[a] * w[a]).sum::<f64>().powi(2))
                .sum::<f64>()
        };
        let m: Vec<f64> = colsum.iter().map(|s| s / n as f64).collect();
        let ml = m.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(norm(&v) >= norm(&m.iter().map(|x| x / ml).collect::<Vec<_>>()) - 1e-9);
        // explained variance: the scores' variance with ddof 0.
        let scores: Vec<f64> = rows
            .iter()
            .map(|r| (0..k).map(|a| r[a] * v[a]).sum())
            .collect();
        let mean = scores.iter().sum::<f64>() / n as f64;
        let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (fit.variance[0] - var).abs() < 1e-12 * var.max(1.0),
            "{} {var}",
            fit.variance[0]
        );
        let total: f64 = (0..k)
            .map(|a| rows.iter().map(|r| (r[a] - m[a]).powi(2)).sum::<f64>() / n as f64)
            .sum();
        assert!((fit.variance_ratio[0] - var / total).abs() < 1e-12);
    }

    #[test]
    fn recovers_a_dominant_axis_with_flipped_sign() {
        // Points along (-1, -2) with small noise on the other axis.
        let pts: Vec<[f64; 2]> = (0..50)
            .map(|i| {
                let t = i as f64 - 25.0;
                [-t + 0.01 * ((i % 3) as f64), -2.0 * t]
            })
            .collect();
        let mut gram = vec![0.0; 4];
        let mut colsum = vec![0.0; 2];
        for p in &pts {
            for a in 0..2 {
                colsum[a] += p[a];
                for b in 0..2 {
                    gram[a * 2 + b] += p[a] * p[b];
                }
            }
        }
        let pca = fit_gram(
            &gram,
            &colsum,
            pts.len(),
            1,
            PcaSolver::CovarianceEigh,
            true,
        )
        .unwrap();
        let v = [pca.components[0], pca.components[1]];
        assert!(
            v[1] > 0.0 && v[1].abs() > v[0].abs(),
            "largest entry positive: {v:?}"
        );
        assert!((v[0] / v[1] - 0.5).abs() < 1e-3);
        assert!(pca.variance_ratio[0] > 0.999);
        assert_eq!(default_n_comps(30, 2000, 50), 29);
        let r = fit_gram(&gram, &colsum, pts.len(), 1, PcaSolver::Randomized, true).unwrap();
        assert!((r.variance[0] - pca.variance[0]).abs() < 1e-9 * pca.variance[0]);
        assert!(
            (r.components[1] - v[1]).abs() < 1e-9,
            "same sign rule, same loading"
        );
        assert_eq!(default_n_comps(3000, 2000, 50), 50);
    }
}
