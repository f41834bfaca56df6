//! `sc.pp.neighbors(n_neighbors=15, method="umap")`: the kNN graph (self included at distance
//! 0) and umap's fuzzy simplicial set as connectivities (docs/algorithms.md section 5).
//!
//! `smooth_knn_dist` and the membership strengths follow umap-learn 0.5 exactly, including its
//! f32 arithmetic (`psum`, `lo`, `mid`, `hi` are float32 there) and its constants.

use rayon::prelude::*;

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
    // Rows are independent: solved in parallel, each exactly as umap solves it.
    (0..n)
        .into_par_iter()
        .map(|i| {
            let row = &dists[i * k..(i + 1) * k];
            let rho = row.iter().find(|&&d| d > 0.0).copied().unwrap_or(0.0);
            let mut lo = 0f32;
            let mut hi = f32::INFINITY;
            let mut mid = 1f32;
            for _ in 0..64 {
                let mut psum = 0f32;
                for &d in &row[1..] {
                    let r = d - rho;
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
            let mut sigma = mid;
            if rho > 0.0 {
                let mean_i = (row.iter().map(|&d| f64::from(d)).sum::<f64>() / k as f64) as f32;
                if sigma < MIN_K_DIST_SCALE * mean_i {
                    sigma = MIN_K_DIST_SCALE * mean_i;
                }
            } else if sigma < MIN_K_DIST_SCALE * mean_all {
                sigma = MIN_K_DIST_SCALE * mean_all;
            }
            (sigma, rho)
        })
        .unzip()
}

/// Rows per parallel task when building the sparse matrices.
const ROWS_PER_TASK: usize = 4096;

/// Sparse rows in CSR parts: row pointers, columns, values.
type Csr<T> = (Vec<u64>, Vec<u32>, Vec<T>);

/// Row-by-row sparse rows built in parallel, `ROWS_PER_TASK` rows a task, then joined in row
/// order: `row(i, out)` appends row `i`'s (column, value) entries.
fn build_rows<T: Copy + Send>(n: usize, row: impl Fn(usize, &mut Vec<(u32, T)>) + Sync) -> Csr<T> {
    // Per task: each row's length, then the rows' entries.
    type Part<T> = (Vec<u32>, Vec<(u32, T)>);
    let parts: Vec<Part<T>> = (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| {
            let rows = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n);
            let (mut lens, mut entries) = (Vec::with_capacity(rows.len()), Vec::new());
            for i in rows {
                let before = entries.len();
                row(i, &mut entries);
                lens.push((entries.len() - before) as u32);
            }
            (lens, entries)
        })
        .collect();
    let total = parts.iter().map(|p| p.1.len()).sum();
    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0u64);
    let (mut indices, mut data) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for (lens, entries) in parts {
        for len in lens {
            indptr.push(indptr[indptr.len() - 1] + u64::from(len));
        }
        for (j, v) in entries {
            indices.push(j);
            data.push(v);
        }
    }
    (indptr, indices, data)
}

/// The fuzzy union `P = W + Wᵀ - W∘Wᵀ` of umap's membership strengths, as CSR f32 with zeros
/// eliminated. `idx`/`dists` are row-major `n x k` (self in column 0).
pub fn connectivities(idx: &[u32], dists: &[f64], k: usize) -> CsrMatrix {
    let n = idx.len() / k.max(1);
    let d32: Vec<f32> = dists.iter().map(|&d| d as f32).collect();
    let (sigma, rho) = smooth_knn_dist(&d32, k);
    // W: per row, memberships by column, zero memberships (self) dropped, a neighbour listed
    // twice (duplicate index) summed, as scipy's COO -> CSR does.
    let (w_ptr, w_idx, w_val) = build_rows(n, |i, out| {
        let first = out.len();
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
                out.push((j, v));
            }
        }
        let row = &mut out[first..];
        row.sort_unstable_by_key(|e| e.0);
        let mut kept = 0;
        for r in 0..row.len() {
            if kept > 0 && row[kept - 1].0 == row[r].0 {
                row[kept - 1].1 += row[r].1;
            } else {
                row[kept] = row[r];
                kept += 1;
            }
        }
        out.truncate(first + kept);
    });
    // Wᵀ by counting and scattering, rows in ascending order within each column.
    let mut t_ptr = vec![0usize; n + 1];
    for &j in &w_idx {
        t_ptr[j as usize + 1] += 1;
    }
    for i in 0..n {
        t_ptr[i + 1] += t_ptr[i];
    }
    let mut fill = t_ptr.clone();
    let mut t_entries = vec![(0u32, 0f32); w_idx.len()];
    for i in 0..n {
        for e in w_ptr[i] as usize..w_ptr[i + 1] as usize {
            let j = w_idx[e] as usize;
            t_entries[fill[j]] = (i as u32, w_val[e]);
            fill[j] += 1;
        }
    }
    let (indptr, indices, data) = build_rows(n, |i, out| {
        let a = (w_ptr[i] as usize..w_ptr[i + 1] as usize).map(|e| (w_idx[e], w_val[e]));
        let b = &t_entries[t_ptr[i]..t_ptr[i + 1]];
        let mut a = a.peekable();
        let mut q = 0;
        loop {
            let (j, v) = match (a.peek().copied(), b.get(q)) {
                (Some((ja, va)), Some(&(jb, vb))) if ja == jb => {
                    a.next();
                    q += 1;
                    (ja, va + vb - va * vb)
                }
                (Some((ja, va)), Some(&(jb, _))) if ja < jb => {
                    a.next();
                    (ja, va)
                }
                (Some((ja, va)), None) => {
                    a.next();
                    (ja, va)
                }
                (_, Some(&(jb, vb))) => {
                    q += 1;
                    (jb, vb)
                }
                (None, None) => break,
            };
            if v != 0.0 {
                out.push((j, v));
            }
        }
    });
    CsrMatrix {
        n_rows: n,
        n_cols: n,
        indptr,
        indices,
        data,
    }
}

/// The kNN distance matrix as scanpy stores it on the exact path: each row's k - 1 nearest
/// other cells (self removed), f64 values, columns sorted.
pub fn distance_matrix(idx: &[u32], dists: &[f64], k: usize) -> Csr<f64> {
    let n = idx.len() / k.max(1);
    build_rows(n, |i, out| {
        let first = out.len();
        out.extend(
            (0..k)
                .map(|s| (idx[i * k + s], dists[i * k + s]))
                .filter(|&(j, _)| j as usize != i),
        );
        out[first..].sort_unstable_by_key(|e| e.0);
    })
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
