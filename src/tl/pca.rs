//! PCA by exact covariance eigendecomposition (scanpy's `covariance_eigh` solver, which agrees
//! with its default arpack solver to |r| 0.999999 on the scores, ALGORITHMS.md section 4).
//!
//! The covariance of the scaled HVG matrix is accumulated by the backend as a Gram matrix and
//! column sums over row chunks (f64): `C = (XᵀX - n μμᵀ) / (n - 1)`. Its eigenvectors are the
//! loadings; signs follow sklearn's v-based `svd_flip` (the largest-|v| entry of each
//! component positive); `variance` = eigenvalues (ddof 1) and `variance_ratio` divides by the
//! total variance of all masked genes.

use crate::error::{Error, Result};

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

/// Fits PCA from the Gram matrix `gram` (k x k, Σ xxᵀ) and column sums over `n` rows.
pub fn fit_from_gram(gram: &[f64], colsum: &[f64], n: usize, n_comps: usize) -> Result<Pca> {
    let k = colsum.len();
    if n < 2 || n_comps == 0 || n_comps > k {
        return Err(Error::Usage(format!(
            "PCA needs at least 2 cells and 1..={k} components (cells {n}, components {n_comps})"
        )));
    }
    let nf = n as f64;
    let mean: Vec<f64> = colsum.iter().map(|s| s / nf).collect();
    let cov = faer::Mat::<f64>::from_fn(k, k, |a, b| {
        (gram[a * k + b] - nf * mean[a] * mean[b]) / (nf - 1.0)
    });
    let total_var: f64 = (0..k).map(|a| cov[(a, a)]).sum();
    let evd = cov
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| Error::Usage(format!("PCA eigendecomposition did not converge: {e:?}")))?;
    let (s, u) = (evd.S().column_vector(), evd.U());
    let mut components = vec![0.0f64; k * n_comps];
    let mut variance = Vec::with_capacity(n_comps);
    for c in 0..n_comps {
        // Eigenvalues come in ascending order; PCA wants descending, clipped at 0.
        let e = k - 1 - c;
        variance.push(s[e].max(0.0));
        // v-based svd_flip: the entry of largest |v| (first on ties) becomes positive.
        let mut arg = 0;
        for a in 1..k {
            if u[(a, e)].abs() > u[(arg, e)].abs() {
                arg = a;
            }
        }
        let sign = if u[(arg, e)] < 0.0 { -1.0 } else { 1.0 };
        for a in 0..k {
            components[a * n_comps + c] = sign * u[(a, e)];
        }
    }
    let variance_ratio = variance.iter().map(|v| v / total_var).collect();
    Ok(Pca {
        mean,
        components,
        n_comps,
        variance,
        variance_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let pca = fit_from_gram(&gram, &colsum, pts.len(), 1).unwrap();
        let v = [pca.components[0], pca.components[1]];
        assert!(
            v[1] > 0.0 && v[1].abs() > v[0].abs(),
            "largest entry positive: {v:?}"
        );
        assert!((v[0] / v[1] - 0.5).abs() < 1e-3);
        assert!(pca.variance_ratio[0] > 0.999);
        assert_eq!(default_n_comps(30, 2000, 50), 29);
        assert_eq!(default_n_comps(3000, 2000, 50), 50);
    }
}
