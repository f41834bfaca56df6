//! The CPU backend: the readable reference implementation of every kernel, parallel over rows
//! or genes with rayon and accumulating in f64.

use rayon::prelude::*;

use super::{Backend, Moments, Transform};
use crate::matrix::CsrMatrix;

/// Kernels on the CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }

    fn normalize_log1p(&self, chunk: &mut CsrMatrix, target_sum: f32) {
        let indptr = &chunk.indptr;
        let mut rows: Vec<&mut [f32]> = Vec::with_capacity(chunk.n_rows);
        let mut rest: &mut [f32] = &mut chunk.data;
        for i in 0..chunk.n_rows {
            let len = (indptr[i + 1] - indptr[i]) as usize;
            let (row, tail) = rest.split_at_mut(len);
            rows.push(row);
            rest = tail;
        }
        rows.into_par_iter().for_each(|row| {
            // scipy sums an f32 CSR row in f64 and stores f32; numpy divides the f32 totals by
            // the target in f32; scanpy then divides every value by that rounded factor.
            let total = row.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
            let factor = if total == 0.0 {
                1.0
            } else {
                total / target_sum
            };
            for v in row.iter_mut() {
                *v = (*v / factor).ln_1p();
            }
        });
    }

    fn gene_moments(&self, chunk: &CsrMatrix, transform: Transform) -> Moments {
        let g = chunk.n_cols;
        let mut m = Moments::new(g);
        for (&j, &v) in chunk.indices.iter().zip(&chunk.data) {
            let x = match transform {
                Transform::Identity => v,
                Transform::Expm1 => v.exp_m1(),
            };
            m.sum[j as usize] += f64::from(x);
            m.sum_sq[j as usize] += f64::from(x * x);
        }
        m.n = chunk.n_rows as u64;
        m
    }

    fn scale_dense(
        &self,
        chunk: &CsrMatrix,
        cols: &[u32],
        mean: &[f64],
        std: &[f64],
        max_value: Option<f64>,
    ) -> Vec<f64> {
        let k = cols.len();
        let mut pos = vec![u32::MAX; chunk.n_cols];
        for (c, &j) in cols.iter().enumerate() {
            pos[j as usize] = c as u32;
        }
        let mut out = vec![0.0f64; chunk.n_rows * k];
        out.par_chunks_mut(k.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                for c in 0..k {
                    row[c] = -mean[c] / std[c];
                }
                let (idx, val) = chunk.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    let c = pos[j as usize];
                    if c != u32::MAX {
                        let c = c as usize;
                        row[c] = (f64::from(v) - mean[c]) / std[c];
                    }
                }
                if let Some(m) = max_value {
                    for x in row.iter_mut() {
                        *x = x.clamp(-m, m);
                    }
                }
            });
        out
    }

    fn gram_accumulate(&self, block: &[f64], k: usize, gram: &mut [f64], colsum: &mut [f64]) {
        let n = block.len() / k.max(1);
        // gram += Xᵀ X with faer's cache-blocked SIMD matrix multiply (f64 throughout).
        let x = faer::MatRef::from_row_major_slice(block, n, k);
        let g = faer::MatMut::from_row_major_slice_mut(gram, k, k);
        faer::linalg::matmul::matmul(
            g,
            faer::Accum::Add,
            x.transpose(),
            x,
            1.0,
            faer::Par::rayon(0),
        );
        for row in block.chunks(k.max(1)) {
            for (s, &v) in colsum.iter_mut().zip(row) {
                *s += v;
            }
        }
    }

    fn project(&self, block: &[f64], k: usize, mean: &[f64], comps: &[f64], c: usize) -> Vec<f64> {
        let n = block.len() / k.max(1);
        // (X - 1μᵀ) V = X V - 1 (μᵀ V).
        let x = faer::MatRef::from_row_major_slice(block, n, k);
        let v = faer::MatRef::from_row_major_slice(comps, k, c);
        let mut out = vec![0.0f64; n * c];
        let o = faer::MatMut::from_row_major_slice_mut(&mut out, n, c);
        faer::linalg::matmul::matmul(o, faer::Accum::Replace, x, v, 1.0, faer::Par::rayon(0));
        let shift: Vec<f64> = (0..c)
            .map(|j| (0..k).map(|a| mean[a] * comps[a * c + j]).sum())
            .collect();
        for row in out.chunks_mut(c.max(1)) {
            for (o, s) in row.iter_mut().zip(&shift) {
                *o -= s;
            }
        }
        out
    }

    fn knn_exact(&self, points: &[f32], dim: usize, k: usize) -> (Vec<u32>, Vec<f64>) {
        let n = points.len() / dim.max(1);
        let k = k.min(n);
        let mut idx = vec![0u32; n * k];
        let mut dist = vec![0.0f64; n * k];
        idx.par_chunks_mut(k.max(1))
            .zip(dist.par_chunks_mut(k.max(1)))
            .enumerate()
            .for_each(|(i, (oi, od))| {
                let p = &points[i * dim..(i + 1) * dim];
                // A bounded max-heap of (squared distance, index), as a sorted small vector.
                let mut best: Vec<(f64, u32)> = Vec::with_capacity(k + 1);
                for j in 0..n {
                    let d2 = if i == j {
                        0.0
                    } else {
                        let q = &points[j * dim..(j + 1) * dim];
                        p.iter()
                            .zip(q)
                            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                            .sum::<f64>()
                    };
                    if best.len() < k || (d2, j as u32) < best[k - 1] {
                        let at = best.partition_point(|e| *e < (d2, j as u32));
                        best.insert(at, (d2, j as u32));
                        best.truncate(k);
                    }
                }
                for (s, (d2, j)) in best.into_iter().enumerate() {
                    oi[s] = j;
                    od[s] = d2.sqrt();
                }
            });
        (idx, dist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_divides_by_the_rounded_factor() {
        let mut m = CsrMatrix::from_dense(2, 3, &[1.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
        CpuBackend.normalize_log1p(&mut m, 1e4);
        let f = 4.0f32 / 1e4f32;
        assert_eq!(m.data, vec![(1.0f32 / f).ln_1p(), (3.0f32 / f).ln_1p()]);
    }

    #[test]
    fn gram_matches_naive() {
        let block = [1.0, 2.0, 3.0, -1.0, 0.5, 4.0];
        let (mut g, mut s) = (vec![0.0; 9], vec![0.0; 3]);
        CpuBackend.gram_accumulate(&block, 3, &mut g, &mut s);
        for a in 0..3 {
            for b in 0..3 {
                assert_eq!(
                    g[a * 3 + b],
                    block[a] * block[b] + block[3 + a] * block[3 + b]
                );
            }
            assert_eq!(s[a], block[a] + block[3 + a]);
        }
    }

    #[test]
    fn knn_includes_self_first() {
        let pts = [0.0f32, 0.0, 1.0, 0.0, 3.0, 0.0, 3.5, 0.0];
        let (idx, dist) = CpuBackend.knn_exact(&pts, 2, 3);
        assert_eq!(&idx[..3], &[0, 1, 2]);
        assert_eq!(&dist[..3], &[0.0, 1.0, 3.0]);
        assert_eq!(&idx[9..12], &[3, 2, 1]);
    }
}
