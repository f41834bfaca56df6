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
        // Row blocks summed in parallel into per-block moments, merged in block order (the
        // result does not depend on the thread count).
        let g = chunk.n_cols;
        let rows_per_block = 4096;
        let blocks: Vec<Moments> = (0..chunk.n_rows.div_ceil(rows_per_block))
            .into_par_iter()
            .map(|b| {
                let (r0, r1) = (
                    b * rows_per_block,
                    ((b + 1) * rows_per_block).min(chunk.n_rows),
                );
                let mut m = Moments::new(g);
                let range = chunk.indptr[r0] as usize..chunk.indptr[r1] as usize;
                for (&j, &v) in chunk.indices[range.clone()].iter().zip(&chunk.data[range]) {
                    let x = match transform {
                        Transform::Identity => v,
                        Transform::Expm1 => v.exp_m1(),
                    };
                    m.sum[j as usize] += f64::from(x);
                    m.sum_sq[j as usize] += f64::from(x * x);
                }
                m.n = (r1 - r0) as u64;
                m
            })
            .collect();
        let mut total = Moments::new(g);
        for b in &blocks {
            total.merge(b);
        }
        total.n = chunk.n_rows as u64;
        total
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

    fn clipped_sums(&self, chunk: &CsrMatrix, clip: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (mut s1, mut s2) = (vec![0.0f64; chunk.n_cols], vec![0.0f64; chunk.n_cols]);
        for (&j, &v) in chunk.indices.iter().zip(&chunk.data) {
            let c = f64::from(v).min(clip[j as usize]);
            s1[j as usize] += c;
            s2[j as usize] += c * c;
        }
        (s1, s2)
    }

    fn knn_exact(&self, points: &[f32], dim: usize, k: usize) -> (Vec<u32>, Vec<f64>) {
        // Candidates from blocked dot products (faer GEMM): d² = |q|² + |p|² - 2 q·p, then the
        // best k + MARGIN candidates of each row are re-ranked by distances computed directly
        // in f64, so the result equals brute force up to exact distance ties (broken by index).
        const MARGIN: usize = 8;
        let n = points.len() / dim.max(1);
        let k = k.min(n);
        let p64: Vec<f64> = points.iter().map(|&v| f64::from(v)).collect();
        let norms: Vec<f64> = p64
            .chunks(dim.max(1))
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let all = faer::MatRef::from_row_major_slice(&p64, n, dim);
        // Query block size keeps the block of products under ~256 MiB.
        let block = (32usize << 20).checked_div(n).unwrap_or(1).clamp(16, 1024);
        let mut idx = vec![0u32; n * k];
        let mut dist = vec![0.0f64; n * k];
        let exact = |i: usize, j: usize| -> f64 {
            let (a, b) = (&p64[i * dim..(i + 1) * dim], &p64[j * dim..(j + 1) * dim]);
            a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
        };
        let mut prod = vec![0.0f64; block * n];
        for q0 in (0..n).step_by(block) {
            let q1 = (q0 + block).min(n);
            let rows = q1 - q0;
            let q = faer::MatRef::from_row_major_slice(&p64[q0 * dim..q1 * dim], rows, dim);
            let out = faer::MatMut::from_row_major_slice_mut(&mut prod[..rows * n], rows, n);
            faer::linalg::matmul::matmul(
                out,
                faer::Accum::Replace,
                q,
                all.transpose(),
                1.0,
                faer::Par::rayon(0),
            );
            let want = (k + MARGIN).min(n);
            idx[q0 * k..q1 * k]
                .par_chunks_mut(k.max(1))
                .zip(dist[q0 * k..q1 * k].par_chunks_mut(k.max(1)))
                .zip(prod[..rows * n].par_chunks(n))
                .enumerate()
                .for_each(|(r, ((oi, od), dots))| {
                    let i = q0 + r;
                    let mut cand: Vec<(f64, u32)> = dots
                        .iter()
                        .enumerate()
                        .map(|(j, &d)| (norms[i] + norms[j] - 2.0 * d, j as u32))
                        .collect();
                    if want < n {
                        cand.select_nth_unstable_by(want - 1, |a, b| a.0.total_cmp(&b.0));
                        cand.truncate(want);
                    }
                    let mut best: Vec<(f64, u32)> = cand
                        .into_iter()
                        .map(|(_, j)| {
                            (
                                if j as usize == i {
                                    0.0
                                } else {
                                    exact(i, j as usize)
                                },
                                j,
                            )
                        })
                        .collect();
                    // Self is always a candidate at distance 0.
                    if !best.iter().any(|&(_, j)| j as usize == i) {
                        best.push((0.0, i as u32));
                    }
                    best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    for (s, &(d2, j)) in best.iter().take(k).enumerate() {
                        oi[s] = j;
                        od[s] = d2.sqrt();
                    }
                });
        }
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
