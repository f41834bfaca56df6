//! `sc.pp.neighbors(n_neighbors=15, method="umap")`: the kNN graph (self included at distance
//! 0) and umap's fuzzy simplicial set as connectivities (docs/algorithms.md section 5).
//!
//! `smooth_knn_dist` and the membership strengths follow umap-learn 0.5 exactly, including its
//! f32 arithmetic (`psum`, `lo`, `mid`, `hi` are float32 there) and its constants.

use crate::matrix::CsrMatrix;

const SMOOTH_K_TOLERANCE: f32 = 1e-5;
const MIN_K_DIST_SCALE: f32 = 1e-3;

/// umap's `smooth_knn_dist` with `local_connectivity = 1`, `bandwidth = 1`, 64 iterations:
/// per row the distance to the nearest non-identical neighbour (rho) and the bandwidth sigma.
/// `dists` is row-major `n x k`, column 0 being the point itself.
pub fn smooth_knn_dist(dists: &[f32], k: usize) -> (Vec<f32>, Vec<f32>) {
    let n = dists.len() / k.max(1);
    let target = (k as f32).log2();
    let mean_all =
        (dists.iter().map(|&d| f64::from(d)).sum::<f64>() / dists.len().max(1) as f64) as f32;
    let mut sigma = vec![0f32; n];
    let mut rho = vec![0f32; n];
    for i in 0..n {
        let row = &dists[i * k..(i + 1) * k];
        let mut lo = 0f32;
        let mut hi = f32::INFINITY;
        let mut mid = 1f32;
        if let Some(&first) = row.iter().find(|&&d| d > 0.0) {
            rho[i] = first;
        }
        for _ in 0..64 {
            let mut psum = 0f32;
            for &d in &row[1..] {
                let r = d - rho[i];
                psum += if r > 0.0 { (-(r / mid)).exp() } else { 1.0 };
            }
            if (psum - target).abs() < SMOOTH_K_TOLERANCE {
                break;
            }
            if psum > target {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                if hi == f32::INFINITY {
                    mid *= 2.0;
                } else {
                    mid = (lo + hi) / 2.0;
                }
            }
        }
        sigma[i] = mid;
        if rho[i] > 0.0 {
            let mean_i = (row.iter().map(|&d| f64::from(d)).sum::<f64>() / k as f64) as f32;
            if sigma[i] < MIN_K_DIST_SCALE * mean_i {
                sigma[i] = MIN_K_DIST_SCALE * mean_i;
            }
        } else if sigma[i] < MIN_K_DIST_SCALE * mean_all {
            sigma[i] = MIN_K_DIST_SCALE * mean_all;
        }
    }
    (sigma, rho)
}

/// The fuzzy union `P = W + Wᵀ - W∘Wᵀ` of umap's membership strengths, as CSR f32 with zeros
/// eliminated. `idx`/`dists` are row-major `n x k` (self in column 0).
pub fn connectivities(idx: &[u32], dists: &[f64], k: usize) -> CsrMatrix {
    let n = idx.len() / k.max(1);
    let d32: Vec<f32> = dists.iter().map(|&d| d as f32).collect();
    let (sigma, rho) = smooth_knn_dist(&d32, k);
    // W as per-row (column, value) lists, zero memberships (self) dropped.
    let mut w: Vec<Vec<(u32, f32)>> = vec![Vec::with_capacity(k); n];
    for i in 0..n {
        for s in 0..k {
            let j = idx[i * k + s];
            let d = d32[i * k + s];
            let v = if j as usize == i {
                0.0
            } else if d - rho[i] <= 0.0 || sigma[i] == 0.0 {
                1.0
            } else {
                (-((d - rho[i]) / sigma[i])).exp()
            };
            if v != 0.0 {
                w[i].push((j, v));
            }
        }
        w[i].sort_unstable_by_key(|e| e.0);
        // A neighbour listed twice (duplicate index) sums, as scipy's COO -> CSR does.
        w[i].dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 += b.1;
                true
            } else {
                false
            }
        });
    }
    // Wᵀ by scattering.
    let mut wt: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for (i, row) in w.iter().enumerate() {
        for &(j, v) in row {
            wt[j as usize].push((i as u32, v));
        }
    }
    let mut out = CsrMatrix::empty(n);
    for i in 0..n {
        let (a, b) = (&w[i], &wt[i]);
        let (mut p, mut q) = (0, 0);
        while p < a.len() || q < b.len() {
            let (j, v) = match (a.get(p), b.get(q)) {
                (Some(&(ja, va)), Some(&(jb, vb))) if ja == jb => {
                    p += 1;
                    q += 1;
                    (ja, va + vb - va * vb)
                }
                (Some(&(ja, va)), Some(&(jb, _))) if ja < jb => {
                    p += 1;
                    (ja, va)
                }
                (Some(&(ja, va)), None) => {
                    p += 1;
                    (ja, va)
                }
                (_, Some(&(jb, vb))) => {
                    q += 1;
                    (jb, vb)
                }
                (None, None) => unreachable!(),
            };
            if v != 0.0 {
                out.indices.push(j);
                out.data.push(v);
            }
        }
        out.indptr.push(out.data.len() as u64);
    }
    out.n_rows = n;
    out
}

/// The kNN distance matrix as scanpy stores it on the exact path: each row's k - 1 nearest
/// other cells (self removed), f64 values, columns sorted.
pub fn distance_matrix(idx: &[u32], dists: &[f64], k: usize) -> (Vec<u64>, Vec<u32>, Vec<f64>) {
    let n = idx.len() / k.max(1);
    let mut indptr = vec![0u64];
    let mut indices = Vec::with_capacity(n * k);
    let mut data = Vec::with_capacity(n * k);
    for i in 0..n {
        let mut row: Vec<(u32, f64)> = (0..k)
            .map(|s| (idx[i * k + s], dists[i * k + s]))
            .filter(|&(j, _)| j as usize != i)
            .collect();
        row.sort_unstable_by_key(|e| e.0);
        for (j, d) in row {
            indices.push(j);
            data.push(d);
        }
        indptr.push(indices.len() as u64);
    }
    (indptr, indices, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_solves_the_target_sum() {
        let k = 15;
        let row: Vec<f32> = (0..k).map(|j| j as f32 * 0.5).collect();
        let (sigma, rho) = smooth_knn_dist(&row, k);
        assert_eq!(rho[0], 0.5);
        let psum: f32 = row[1..]
            .iter()
            .map(|&d| {
                if d - rho[0] > 0.0 {
                    (-(d - rho[0]) / sigma[0]).exp()
                } else {
                    1.0
                }
            })
            .sum();
        assert!((psum - (k as f32).log2()).abs() < 1e-4, "{psum}");
    }

    #[test]
    fn connectivities_are_symmetric_fuzzy_unions() {
        let pts: Vec<f32> = (0..40)
            .map(|i| ((i * 7) % 13) as f32 + i as f32 * 0.01)
            .collect();
        let (idx, d) = crate::backend::Backend::knn_exact(&crate::backend::CpuBackend, &pts, 1, 5);
        let p = connectivities(&idx, &d, 5);
        let dense = p.to_dense();
        for i in 0..40 {
            assert_eq!(dense[i * 40 + i], 0.0);
            for j in 0..40 {
                assert!((dense[i * 40 + j] - dense[j * 40 + i]).abs() < 1e-6);
                assert!(dense[i * 40 + j] <= 1.0);
            }
        }
    }
}
