//! The CPU backend: the readable reference implementation of every kernel, parallel over rows
//! or genes with rayon and accumulating in f64.

use rayon::prelude::*;

use super::{Backend, Moments, ScaleSpec, Transform};
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
        let totals = row_totals(&chunk.indptr, &chunk.data);
        normalize_rows(&chunk.indptr, &mut chunk.data, &totals, target_sum, true);
    }

    fn gene_moments(&self, chunk: &CsrMatrix, transform: Transform) -> Moments {
        moments_by_blocks(chunk, transform, false).0
    }

    fn gene_moments_pair(&self, chunk: &CsrMatrix, transform: Transform) -> (Moments, Moments) {
        let (raw, transformed) = moments_by_blocks(chunk, transform, true);
        (
            raw,
            transformed.unwrap_or_else(|| Moments::new(chunk.n_cols)),
        )
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
        // gram += Xᵀ X with faer's cache-blocked SIMD multiply (f64 throughout), on the lower
        // triangle only (a symmetric rank-n update: half the flops), then mirrored.
        let x = faer::MatRef::from_row_major_slice(block, n, k);
        let mut g = faer::MatMut::from_row_major_slice_mut(gram, k, k);
        faer::linalg::matmul::triangular::matmul(
            g.as_mut(),
            faer::linalg::matmul::triangular::BlockStructure::TriangularLower,
            faer::Accum::Add,
            x.transpose(),
            faer::linalg::matmul::triangular::BlockStructure::Rectangular,
            x,
            faer::linalg::matmul::triangular::BlockStructure::Rectangular,
            1.0,
            faer::Par::rayon(0),
        );
        for a in 0..k {
            for b in 0..a {
                g[(b, a)] = g[(a, b)];
            }
        }
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

    fn scaled_gram(
        &self,
        chunk: &CsrMatrix,
        spec: &ScaleSpec<'_>,
        gram: &mut [f64],
        colsum: &mut [f64],
    ) {
        let k = spec.cols.len();
        let stored = sparse_scaled_rows(chunk, spec);
        let n = chunk.n_rows;
        // Sparse outer products cost ~nnz²/2 scattered updates per row, the dense symmetric
        // update k²/2 fused multiply-adds at SIMD rate: the sparse route wins below roughly
        // 15 % of the HVG columns stored (scRNA-seq HVGs: ~5 %).
        if (stored.vals.len() as f64) > SPARSE_GRAM_MAX_DENSITY * (n * k) as f64 {
            let block = self.scale_dense(chunk, spec.cols, spec.mean, spec.std, spec.max_value);
            self.gram_accumulate(&block, k, gram, colsum);
            return;
        }
        // X = 1 zᵀ + S (S: stored entries minus z), so
        // XᵀX = n z zᵀ + z (Σ S)ᵀ + (Σ S) zᵀ + SᵀS and Σ X = n z + Σ S.
        let z = &stored.zero_value;
        let mut ssum = vec![0.0f64; k];
        for (&a, &v) in stored.pos.iter().zip(&stored.vals) {
            ssum[a as usize] += v;
        }
        let nf = n as f64;
        // SᵀS by bands of output rows: each band scans every row in order, so every entry is
        // summed in row order whatever the thread count (deterministic), and the bands split
        // the lower triangle's work evenly.
        let bands = gram_bands(k, 32);
        let mut band_rows: Vec<&mut [f64]> = Vec::with_capacity(bands.len());
        let mut rest: &mut [f64] = gram;
        let mut done = 0;
        for &(_, a1) in &bands {
            let (head, tail) = rest.split_at_mut((a1 - done) * k);
            band_rows.push(head);
            rest = tail;
            done = a1;
        }
        band_rows
            .into_par_iter()
            .zip(bands.par_iter())
            .for_each(|(g, &(a0, a1))| {
                for i in 0..n {
                    let (r0, r1) = (stored.indptr[i], stored.indptr[i + 1]);
                    let (pos, vals) = (&stored.pos[r0..r1], &stored.vals[r0..r1]);
                    for (e, &a) in pos.iter().enumerate() {
                        let a = a as usize;
                        if a < a0 {
                            continue;
                        }
                        if a >= a1 {
                            break;
                        }
                        let row = &mut g[(a - a0) * k..(a - a0 + 1) * k];
                        let va = vals[e];
                        for (&b, &vb) in pos[..=e].iter().zip(&vals[..=e]) {
                            row[b as usize] += va * vb;
                        }
                    }
                }
                for a in a0..a1 {
                    let row = &mut g[(a - a0) * k..(a - a0 + 1) * k];
                    for b in 0..=a {
                        row[b] += nf * z[a] * z[b] + z[a] * ssum[b] + ssum[a] * z[b];
                    }
                }
            });
        for a in 0..k {
            for b in 0..a {
                gram[b * k + a] = gram[a * k + b];
            }
            colsum[a] += nf * z[a] + ssum[a];
        }
    }

    fn scaled_project(
        &self,
        chunk: &CsrMatrix,
        spec: &ScaleSpec<'_>,
        pca_mean: &[f64],
        comps: &[f64],
        c: usize,
    ) -> Vec<f64> {
        // The scaled block is X = 1 zᵀ + S with z_a the scaled value of a zero in column a and
        // S sparse (stored entries only, s - z_a), so (X - 1 meanᵀ) V = 1 (z - mean)ᵀV + S V:
        // nnz x c multiply-adds instead of densifying n x k and a GEMM.
        let k = spec.cols.len();
        let clip = |x: f64| spec.max_value.map_or(x, |m| x.clamp(-m, m));
        let z: Vec<f64> = (0..k).map(|a| clip(-spec.mean[a] / spec.std[a])).collect();
        let mut base = vec![0.0f64; c];
        for a in 0..k {
            let w = z[a] - pca_mean[a];
            for (b, v) in base.iter_mut().zip(&comps[a * c..(a + 1) * c]) {
                *b += w * v;
            }
        }
        let mut pos = vec![u32::MAX; chunk.n_cols];
        for (a, &j) in spec.cols.iter().enumerate() {
            pos[j as usize] = a as u32;
        }
        let mut out = vec![0.0f64; chunk.n_rows * c];
        out.par_chunks_mut(c.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                row.copy_from_slice(&base);
                let (idx, val) = chunk.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    let a = pos[j as usize];
                    if a != u32::MAX {
                        let a = a as usize;
                        let s = clip((f64::from(v) - spec.mean[a]) / spec.std[a]) - z[a];
                        for (o, w) in row.iter_mut().zip(&comps[a * c..(a + 1) * c]) {
                            *o += s * w;
                        }
                    }
                }
            });
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
        knn_exact_certified(points, dim, k)
    }
}

/// Per-gene moments of `transform(x)` and, with `both`, also of the stored values themselves,
/// in one pass: row blocks summed in parallel into per-block moments, merged in block order
/// (the result does not depend on the thread count). Returns (first, second) where first is
/// the identity moments when `both`, else the transformed ones.
fn moments_by_blocks(
    chunk: &CsrMatrix,
    transform: Transform,
    both: bool,
) -> (Moments, Option<Moments>) {
    let g = chunk.n_cols;
    let rows_per_block = 4096;
    let blocks: Vec<(Moments, Option<Moments>)> = (0..chunk.n_rows.div_ceil(rows_per_block))
        .into_par_iter()
        .map(|b| {
            let (r0, r1) = (
                b * rows_per_block,
                ((b + 1) * rows_per_block).min(chunk.n_rows),
            );
            let mut m = Moments::new(g);
            let mut t = both.then(|| Moments::new(g));
            let range = chunk.indptr[r0] as usize..chunk.indptr[r1] as usize;
            let values = &chunk.data[range.clone()];
            let transformed = match transform {
                Transform::Identity => std::borrow::Cow::Borrowed(values),
                Transform::Expm1 => {
                    let mut t = values.to_vec();
                    super::cmath::exp_m1_f32(&mut t);
                    std::borrow::Cow::Owned(t)
                }
            };
            for ((&j, &v), &x) in chunk.indices[range].iter().zip(values).zip(&*transformed) {
                let j = j as usize;
                match t.as_mut() {
                    Some(t) => {
                        m.sum[j] += f64::from(v);
                        m.sum_sq[j] += f64::from(v * v);
                        t.sum[j] += f64::from(x);
                        t.sum_sq[j] += f64::from(x * x);
                    }
                    None => {
                        m.sum[j] += f64::from(x);
                        m.sum_sq[j] += f64::from(x * x);
                    }
                }
            }
            m.n = (r1 - r0) as u64;
            if let Some(t) = t.as_mut() {
                t.n = m.n;
            }
            (m, t)
        })
        .collect();
    let mut first = Moments::new(g);
    let mut second = both.then(|| Moments::new(g));
    for (m, t) in &blocks {
        first.merge(m);
        if let (Some(s), Some(t)) = (second.as_mut(), t) {
            s.merge(t);
        }
    }
    first.n = chunk.n_rows as u64;
    if let Some(s) = second.as_mut() {
        s.n = chunk.n_rows as u64;
    }
    (first, second)
}

/// Above this fraction of stored HVG entries the Gram update goes dense.
const SPARSE_GRAM_MAX_DENSITY: f64 = 0.15;

/// The stored HVG entries of a chunk, scaled and clipped, minus the scaled value of a zero in
/// their column: `X = 1 zᵀ + S` with `X` the dense scaled block.
struct SparseScaled {
    indptr: Vec<usize>,
    /// HVG position (increasing within a row, as the columns are).
    pos: Vec<u32>,
    vals: Vec<f64>,
    /// Scaled (clipped) value of an unstored zero per HVG.
    zero_value: Vec<f64>,
}

fn sparse_scaled_rows(chunk: &CsrMatrix, spec: &ScaleSpec<'_>) -> SparseScaled {
    let k = spec.cols.len();
    let clip = |x: f64| spec.max_value.map_or(x, |m| x.clamp(-m, m));
    let zero_value: Vec<f64> = (0..k).map(|a| clip(-spec.mean[a] / spec.std[a])).collect();
    let mut map = vec![u32::MAX; chunk.n_cols];
    for (a, &j) in spec.cols.iter().enumerate() {
        map[j as usize] = a as u32;
    }
    let mut out = SparseScaled {
        indptr: Vec::with_capacity(chunk.n_rows + 1),
        pos: Vec::new(),
        vals: Vec::new(),
        zero_value,
    };
    out.indptr.push(0);
    for i in 0..chunk.n_rows {
        let (idx, val) = chunk.row(i);
        let start = out.pos.len();
        for (&j, &v) in idx.iter().zip(val) {
            let a = map[j as usize];
            if a != u32::MAX {
                let a = a as usize;
                out.pos.push(a as u32);
                out.vals
                    .push(clip((f64::from(v) - spec.mean[a]) / spec.std[a]) - out.zero_value[a]);
            }
        }
        // HVG positions follow column order only when `cols` is increasing; sort otherwise.
        if !out.pos[start..].is_sorted() {
            let mut pairs: Vec<(u32, f64)> = out.pos[start..]
                .iter()
                .copied()
                .zip(out.vals[start..].iter().copied())
                .collect();
            pairs.sort_by_key(|p| p.0);
            for (e, (a, v)) in pairs.into_iter().enumerate() {
                out.pos[start + e] = a;
                out.vals[start + e] = v;
            }
        }
        out.indptr.push(out.pos.len());
    }
    out
}

/// Up to `max` contiguous ranges of output rows with about equal lower-triangle work.
fn gram_bands(k: usize, max: usize) -> Vec<(usize, usize)> {
    let total = (k * (k + 1) / 2) as f64;
    let mut bands = Vec::new();
    let mut a0 = 0;
    for t in 1..=max {
        // Rows below a hold a(a+1)/2 entries: solve for the t-th share.
        let target = total * t as f64 / max as f64;
        let a1 = (((8.0 * target + 1.0).sqrt() - 1.0) / 2.0).round() as usize;
        let a1 = if t == max { k } else { a1.clamp(a0, k) };
        if a1 > a0 {
            bands.push((a0, a1));
            a0 = a1;
        }
    }
    bands
}

/// Query rows and point columns of one tile of the candidate search: the f32 tile of dot
/// products (256 x 1,024 x 4 B = 1 MiB) stays in cache while its rows are scanned.
const KNN_QUERY_TILE: usize = 256;
/// Query tiles per slab of the exact search (16,384 queries): the unit between cancellation
/// checkpoints, about 1 s of work at 200,000 points on 2 cores.
const KNN_TILES_PER_SLAB: usize = 64;
const KNN_POINT_TILE: usize = 1024;
/// Candidates kept beyond k for the exact re-ranking.
const KNN_MARGIN: usize = 8;

/// Exact kNN by certified f32 candidates.
///
/// Within a query row, `|q - p|²` ranks like the key `|p|² - 2 q·p`, which one f32 GEMM gives
/// directly from the augmented vectors `[q, 1]` and `[-2p, |p|²]`. The GEMM runs tile by tile
/// (256 queries x 1,024 points, 1 MiB, in cache) and each row keeps its best `k + 8` keys in a
/// small bounded list. [`KnnCertifier`] then re-ranks those candidates by f64 distances and
/// proves the row equal to f64 brute force, or recomputes it.
fn knn_exact_certified(points: &[f32], dim: usize, k: usize) -> (Vec<u32>, Vec<f64>) {
    let dim = dim.max(1);
    let n = points.len() / dim;
    let k = k.min(n);
    if n == 0 || k == 0 {
        return (Vec::new(), Vec::new());
    }
    let want = (k + KNN_MARGIN).min(n);
    let cert = KnnCertifier::new(points, dim, 1.0);
    let aug = dim + 1;
    let mut queries = vec![1.0f32; n * aug];
    let mut keyed = vec![0.0f32; n * aug];
    for i in 0..n {
        queries[i * aug..i * aug + dim].copy_from_slice(&points[i * dim..(i + 1) * dim]);
        for a in 0..dim {
            keyed[i * aug + a] = -2.0 * points[i * dim + a];
        }
        keyed[i * aug + dim] = cert.norms[i] as f32;
    }
    let all = faer::MatRef::from_row_major_slice(&keyed, n, aug);
    let mut idx = vec![0u32; n * k];
    let mut dist = vec![0.0f64; n * k];
    let recomputed = std::sync::atomic::AtomicUsize::new(0);
    // Slabs of query tiles, one after another, each split across the threads: a cancelled
    // computation stops between slabs (rows are independent, so the result is the same).
    let slab = KNN_QUERY_TILE * KNN_TILES_PER_SLAB * k;
    for (first, (si, sd)) in idx.chunks_mut(slab).zip(dist.chunks_mut(slab)).enumerate() {
        crate::cancel::checkpoint();
        si.par_chunks_mut(KNN_QUERY_TILE * k)
            .zip(sd.par_chunks_mut(KNN_QUERY_TILE * k))
            .enumerate()
            .for_each(|(t, (oi, od))| {
                let q0 = (first * KNN_TILES_PER_SLAB + t) * KNN_QUERY_TILE;
                let q1 = (q0 + KNN_QUERY_TILE).min(n);
                let rows = q1 - q0;
                let q = faer::MatRef::from_row_major_slice(&queries[q0 * aug..q1 * aug], rows, aug);
                // Per row: the best `want` (key, index), unsorted, and the worst of them.
                let mut best: Vec<Vec<(f32, u32)>> = vec![Vec::with_capacity(want); rows];
                let mut worst = vec![f32::INFINITY; rows];
                let mut prod = vec![0.0f32; rows * KNN_POINT_TILE];
                for p0 in (0..n).step_by(KNN_POINT_TILE) {
                    let p1 = (p0 + KNN_POINT_TILE).min(n);
                    let cols = p1 - p0;
                    let out = faer::MatMut::from_row_major_slice_mut(
                        &mut prod[..rows * cols],
                        rows,
                        cols,
                    );
                    faer::linalg::matmul::matmul(
                        out,
                        faer::Accum::Replace,
                        q,
                        all.subrows(p0, cols).transpose(),
                        1.0f32,
                        faer::Par::Seq,
                    );
                    for r in 0..rows {
                        worst[r] = keep_smallest(
                            &prod[r * cols..(r + 1) * cols],
                            p0,
                            want,
                            &mut best[r],
                            worst[r],
                        );
                    }
                }
                for r in 0..rows {
                    let (row, redone) = cert.row(q0 + r, k, best[r].iter().map(|c| c.1), worst[r]);
                    if redone {
                        recomputed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    for (s, &(d2, j)) in row.iter().enumerate() {
                        oi[r * k + s] = j;
                        od[r * k + s] = d2.sqrt();
                    }
                }
            });
    }
    tracing::debug!(
        "exact kNN: {} of {n} rows recomputed by brute force (boundary within f32 error)",
        recomputed.into_inner()
    );
    (idx, dist)
}

/// Keys scanned together: a block with no key below the row's bound (nearly every block once
/// the list has filled) is passed over with one vectorised comparison.
const SCAN_BLOCK: usize = 16;

/// Offers `keys` (of points `first..`) to a row's bounded list of its `want` smallest keys,
/// unsorted, whose largest is `bound` (infinite while the list is short); returns the new bound.
/// The block test runs 8 lanes wide where the processor has AVX2 (the same comparisons, so
/// the same result).
pub(crate) fn keep_smallest(
    keys: &[f32],
    first: usize,
    want: usize,
    list: &mut Vec<(f32, u32)>,
    bound: f32,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked on the line above).
        return unsafe { keep_smallest_avx2(keys, first, want, list, bound) };
    }
    keep_smallest_portable(keys, first, want, list, bound)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn keep_smallest_avx2(
    keys: &[f32],
    first: usize,
    want: usize,
    list: &mut Vec<(f32, u32)>,
    bound: f32,
) -> f32 {
    keep_smallest_portable(keys, first, want, list, bound)
}

#[inline(always)]
fn keep_smallest_portable(
    keys: &[f32],
    first: usize,
    want: usize,
    list: &mut Vec<(f32, u32)>,
    mut bound: f32,
) -> f32 {
    let blocks = keys.chunks_exact(SCAN_BLOCK);
    let tail = blocks.remainder();
    // Position of the largest kept key once the list is full (found when first needed).
    let mut top: Option<usize> = None;
    let mut offer = |at: usize, block: &[f32], bound: &mut f32| {
        for (c, &key) in block.iter().enumerate() {
            if key < *bound {
                let item = (key, (first + at + c) as u32);
                if list.len() < want {
                    list.push(item);
                    if list.len() < want {
                        continue;
                    }
                } else {
                    let w = *top.get_or_insert_with(|| arg_max(list));
                    list[w] = item;
                }
                let w = arg_max(list);
                top = Some(w);
                *bound = list[w].0;
            }
        }
    };
    for (b, block) in blocks.enumerate() {
        let block: &[f32; SCAN_BLOCK] = block.try_into().expect("exact chunk");
        let mut any = false;
        for &key in block {
            any |= key < bound;
        }
        if any {
            offer(b * SCAN_BLOCK, block, &mut bound);
        }
    }
    offer(keys.len() - tail.len(), tail, &mut bound);
    bound
}

/// Turns a row's f32 candidate list into its exact f64 top k, with a proof.
///
/// Both backends search with the f32 key `|p|² - 2 q·p` (the squared distance less the
/// row's constant `|q|²`) and keep the `k + 8` smallest keys per query. The candidates are
/// re-ranked by distances computed directly in f64, ties broken by index
/// ([`rerank_exact`]). The result is then *proved* equal to f64 brute force: an f32 dot
/// product over `m` terms is off by at most `γ_m = m·u/(1 - m·u)` times the sum of the
/// terms' magnitudes (u = 2⁻²⁴, any summation order, fused or not), here `2|q||p| + |p|²`,
/// plus `u|p|²` for rounding `|p|²` to f32; so every point left out has a true key of at
/// least the worst kept key minus that slack (taken with the largest |p|). When the k-th
/// exact distance is below that bound, nothing left out can enter the top k; otherwise
/// (rare: near-ties at the boundary) the row is recomputed by f64 brute force.
///
/// `headroom` multiplies the slack: 1 for the CPU's IEEE arithmetic, more for a device whose
/// compiler may reassociate, flush denormals or use its own rounding; a larger slack only
/// sends more rows to the brute-force path, never a wrong row through.
pub(crate) struct KnnCertifier<'a> {
    points: &'a [f32],
    dim: usize,
    /// `|p|²` of every point, in f64.
    pub(crate) norms: Vec<f64>,
    max_sq: f64,
    gamma: f64,
    headroom: f64,
}

impl<'a> KnnCertifier<'a> {
    pub(crate) fn new(points: &'a [f32], dim: usize, headroom: f64) -> Self {
        let dim = dim.max(1);
        let norms: Vec<f64> = points
            .par_chunks(dim)
            .map(|r| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
            .collect();
        let max_sq = norms.iter().fold(0.0f64, |a, &b| a.max(b));
        let m = (dim + 1) as f64;
        let gamma = m * F32_UNIT_ROUNDOFF / (1.0 - m * F32_UNIT_ROUNDOFF);
        KnnCertifier {
            points,
            dim,
            norms,
            max_sq,
            gamma,
            headroom,
        }
    }

    /// The exact top `k` of point `i` (squared distance, index), from the candidates of the
    /// f32 search whose largest kept key is `worst`; `true` when the proof failed and the row
    /// was recomputed by brute force.
    pub(crate) fn row(
        &self,
        i: usize,
        k: usize,
        candidates: impl Iterator<Item = u32>,
        worst: f32,
    ) -> (Vec<(f64, u32)>, bool) {
        let n = self.norms.len();
        let mut kept = 0usize;
        let mut best = rerank_exact(self.points, self.dim, i, candidates.inspect(|_| kept += 1));
        let (u, max_sq, qn) = (F32_UNIT_ROUNDOFF, self.max_sq, self.norms[i]);
        let slack =
            self.headroom * (self.gamma * (2.0 * (qn * max_sq).sqrt() + max_sq) + u * max_sq);
        // Left out: true d² >= worst key + |q|² - slack; a relative 1e-12 covers the f64
        // arithmetic of this comparison itself. A list holding every point proves itself.
        let floor = f64::from(worst) + qn - slack;
        let certified =
            kept >= n || (best.len() >= k && best[k - 1].0 < floor - 1e-12 * (qn + max_sq));
        if !certified {
            best = (0..n)
                .map(|j| {
                    let d = if j == i {
                        0.0
                    } else {
                        squared_distance(self.points, self.dim, i, j)
                    };
                    (d, j as u32)
                })
                .collect();
            best.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            best.truncate(k);
            best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        best.truncate(k);
        (best, !certified)
    }
}

/// Unit roundoff of f32 (2⁻²⁴).
const F32_UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;

/// f64 squared Euclidean distance between points `i` and `j` (row-major, `dim` columns).
pub(crate) fn squared_distance(points: &[f32], dim: usize, i: usize, j: usize) -> f64 {
    let (a, b) = (
        &points[i * dim..(i + 1) * dim],
        &points[j * dim..(j + 1) * dim],
    );
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum()
}

/// The candidates of point `i` with their squared distances computed in f64, `i` itself
/// included at 0 (added when missing), sorted by (distance, index): the exact re-ranking both
/// backends apply to their candidate lists.
pub(crate) fn rerank_exact(
    points: &[f32],
    dim: usize,
    i: usize,
    candidates: impl Iterator<Item = u32>,
) -> Vec<(f64, u32)> {
    let mut best: Vec<(f64, u32)> = candidates
        .map(|j| {
            let d = if j as usize == i {
                0.0
            } else {
                squared_distance(points, dim, i, j as usize)
            };
            (d, j)
        })
        .collect();
    if !best.iter().any(|&(_, j)| j as usize == i) {
        best.push((0.0, i as u32));
    }
    best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    best
}

/// Position of the largest first component.
pub(crate) fn arg_max(list: &[(f32, u32)]) -> usize {
    let mut w = 0;
    for (p, e) in list.iter().enumerate() {
        if e.0 > list[w].0 {
            w = p;
        }
    }
    w
}

/// The value types of the CSR kernels that work on numpy's arrays too (float32, float64).
pub trait Real: Copy + Send + Sync + PartialOrd {
    /// From f64, rounding to the type.
    fn from_f64(v: f64) -> Self;
    /// To f64.
    fn to_f64(self) -> f64;
    /// Division in the type.
    fn div(self, other: Self) -> Self;
    /// Addition in the type.
    fn add(self, other: Self) -> Self;
    /// `ln(1 + x)` in the type.
    fn ln_1p(self) -> Self;
    /// `ln(1 + x)` of every value in place, each the same as [`Real::ln_1p`] (float32 in
    /// vector lanes).
    fn ln_1p_all(data: &mut [Self]);
}

macro_rules! real {
    ($t:ty, $all:expr) => {
        impl Real for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn div(self, other: Self) -> Self {
                self / other
            }
            fn add(self, other: Self) -> Self {
                self + other
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn ln_1p_all(data: &mut [Self]) {
                $all(data)
            }
        }
    };
}
real!(f32, super::cmath::ln_1p_f32);
real!(f64, |d: &mut [f64]| d
    .iter_mut()
    .for_each(|v| *v = v.ln_1p()));

/// Row totals of CSR values (`indptr` of the rows): each row summed in f64 and rounded to the
/// values' type, as scipy's `X.sum(axis=1)` stores them.
pub fn row_totals<T: Real>(indptr: &[u64], data: &[T]) -> Vec<T> {
    indptr
        .par_windows(2)
        .map(|w| {
            let row = &data[w[0] as usize..w[1] as usize];
            T::from_f64(row.iter().map(|v| v.to_f64()).sum::<f64>())
        })
        .collect()
}

/// scanpy's `normalize_total(target)` on CSR values in place, given the row `totals`: numpy
/// divides each total by the target in the values' type, and scanpy every value by that
/// rounded factor (rows with total 0 stay as they are); then `ln(1 + x)` when `log1p`.
pub fn normalize_rows<T: Real>(
    indptr: &[u64],
    data: &mut [T],
    totals: &[T],
    target: T,
    log1p: bool,
) {
    let mut rows: Vec<(&mut [T], T)> = Vec::with_capacity(totals.len());
    let mut rest = data;
    for (w, &t) in indptr.windows(2).zip(totals) {
        let (row, tail) = rest.split_at_mut((w[1] - w[0]) as usize);
        rows.push((row, t));
        rest = tail;
    }
    rows.into_par_iter().for_each(|(row, total)| {
        let factor = if total.to_f64() == 0.0 {
            T::from_f64(1.0)
        } else {
            total.div(target)
        };
        for v in row.iter_mut() {
            *v = v.div(factor);
        }
        if log1p {
            T::ln_1p_all(row);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_smallest_keeps_the_smallest_keys_across_tiles_on_both_paths() {
        // Keys in a scrambled order, offered in tiles of 37 (not a multiple of the block).
        let keys: Vec<f32> = (0..1000u32)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.5 - 100.0)
            .collect();
        let want = 23;
        type Keep = fn(&[f32], usize, usize, &mut Vec<(f32, u32)>, f32) -> f32;
        let run = |f: Keep| {
            let (mut list, mut bound) = (Vec::new(), f32::INFINITY);
            for (t, tile) in keys.chunks(37).enumerate() {
                bound = f(tile, t * 37, want, &mut list, bound);
            }
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
            (list, bound)
        };
        let (list, bound) = run(keep_smallest);
        let mut sorted: Vec<(f32, u32)> = keys.iter().zip(0u32..).map(|(&k, i)| (k, i)).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(list, sorted[..want]);
        assert_eq!(bound, sorted[want - 1].0);
        assert_eq!(run(keep_smallest_portable), (list, bound));
    }

    #[test]
    fn normalize_divides_by_the_rounded_factor() {
        let mut m = CsrMatrix::from_dense(2, 3, &[1.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
        CpuBackend.normalize_log1p(&mut m, 1e4);
        let f = 4.0f32 / 1e4f32;
        assert_eq!(m.data, vec![(1.0f32 / f).ln_1p(), (3.0f32 / f).ln_1p()]);
    }

    #[test]
    fn sparse_projection_equals_dense_projection() {
        // Two rows with a clipped value, a zero-variance column and a non-HVG column.
        let m = CsrMatrix::from_dense(
            3,
            4,
            &[1.0, 0.0, 5.0, 2.0, 0.0, 0.0, 0.5, 1.0, 3.0, 0.0, 0.0, 0.0],
        );
        let cols = [3u32, 0, 2];
        let (mean, std) = ([1.0, 1.3, 1.8], [0.9, 1.0, 0.1]);
        let spec = ScaleSpec {
            cols: &cols,
            mean: &mean,
            std: &std,
            max_value: Some(10.0),
        };
        let comps = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6];
        let pm = [0.01, -0.02, 0.5];
        let block = CpuBackend.scale_dense(&m, &cols, &mean, &std, Some(10.0));
        let dense = CpuBackend.project(&block, 3, &pm, &comps, 2);
        let sparse = CpuBackend.scaled_project(&m, &spec, &pm, &comps, 2);
        for (a, b) in dense.iter().zip(&sparse) {
            assert!((a - b).abs() < 1e-12, "{dense:?} vs {sparse:?}");
        }
    }

    #[test]
    fn sparse_gram_equals_dense_gram() {
        // Mostly-zero rows (sparse route), one clipped value, unsorted HVG order, a zero row.
        let mut dense = vec![0.0f32; 40 * 30];
        for i in 0..40 {
            for j in 0..30 {
                if (i * 7 + j * 3) % 11 == 0 && i != 5 {
                    dense[i * 30 + j] = ((i + j) % 4) as f32 + 0.5;
                }
            }
        }
        dense[3 * 30 + 4] = 90.0;
        let m = CsrMatrix::from_dense(40, 30, &dense);
        let cols: Vec<u32> = vec![4, 2, 9, 10, 11, 20, 29, 0];
        let mean: Vec<f64> = (0..8).map(|a| 0.1 * a as f64).collect();
        let std: Vec<f64> = (0..8).map(|a| 0.5 + 0.1 * a as f64).collect();
        let spec = ScaleSpec {
            cols: &cols,
            mean: &mean,
            std: &std,
            max_value: Some(10.0),
        };
        let block = CpuBackend.scale_dense(&m, &cols, &mean, &std, Some(10.0));
        let (mut g1, mut s1) = (vec![0.0; 64], vec![0.0; 8]);
        CpuBackend.gram_accumulate(&block, 8, &mut g1, &mut s1);
        let (mut g2, mut s2) = (vec![0.0; 64], vec![0.0; 8]);
        CpuBackend.scaled_gram(&m, &spec, &mut g2, &mut s2);
        CpuBackend.scaled_gram(&m, &spec, &mut g2, &mut s2);
        for (a, b) in g1.iter().zip(&g2) {
            assert!((2.0 * a - b).abs() < 1e-9 * (1.0 + a.abs()), "{a} vs {b}");
        }
        for (a, b) in s1.iter().zip(&s2) {
            assert!((2.0 * a - b).abs() < 1e-9 * (1.0 + a.abs()));
        }
        let bands = gram_bands(2000, 32);
        assert_eq!(bands.first().map(|b| b.0), Some(0));
        assert_eq!(bands.last().map(|b| b.1), Some(2000));
        assert!(bands.windows(2).all(|w| w[0].1 == w[1].0));
    }

    #[test]
    fn paired_moments_equal_separate_passes() {
        let dense: Vec<f32> = (0..9000 * 7)
            .map(|i| {
                if i % 3 == 0 {
                    (i % 11) as f32 * 0.37
                } else {
                    0.0
                }
            })
            .collect();
        let m = CsrMatrix::from_dense(9000, 7, &dense);
        let (raw, ex) = CpuBackend.gene_moments_pair(&m, Transform::Expm1);
        assert_eq!(raw, CpuBackend.gene_moments(&m, Transform::Identity));
        assert_eq!(ex, CpuBackend.gene_moments(&m, Transform::Expm1));
        assert_eq!(raw.n, 9000);
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

    /// f64 brute force, sorted by (distance, index), self forced to 0.
    fn brute_force(points: &[f32], dim: usize, k: usize) -> (Vec<u32>, Vec<f64>) {
        let n = points.len() / dim;
        let mut idx = Vec::new();
        let mut dist = Vec::new();
        for i in 0..n {
            let mut all: Vec<(f64, u32)> = (0..n)
                .map(|j| {
                    let d: f64 = (0..dim)
                        .map(|a| {
                            let t = f64::from(points[i * dim + a]) - f64::from(points[j * dim + a]);
                            t * t
                        })
                        .sum();
                    (if i == j { 0.0 } else { d }, j as u32)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for &(d, j) in all.iter().take(k) {
                idx.push(j);
                dist.push(d.sqrt());
            }
        }
        (idx, dist)
    }

    #[test]
    fn knn_equals_f64_brute_force_with_ties_duplicates_and_offsets() {
        // Clustered points far from the origin (large norms make the f32 estimates coarse),
        // exact duplicates and grid ties; n not a multiple of the tiles; n < k + margin too.
        let mut state = 7u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(n, dim, k) in &[
            (4200usize, 7usize, 15usize),
            (300, 50, 15),
            (20, 3, 15),
            (5, 2, 15),
        ] {
            let mut pts = Vec::with_capacity(n * dim);
            for i in 0..n {
                for a in 0..dim {
                    let v = match i % 5 {
                        0 => 1000.0 + rnd(),
                        1 => (i % 7) as f32 + a as f32,
                        _ => 40.0 * rnd() + 300.0 * ((i / 5) % 3) as f32,
                    };
                    pts.push(v);
                }
            }
            // Duplicates of earlier points.
            for i in (50..n).step_by(97) {
                let (src, dst) = (i - 50, i);
                for a in 0..dim {
                    pts[dst * dim + a] = pts[src * dim + a];
                }
            }
            let (ei, ed) = brute_force(&pts, dim, k.min(n));
            let (ci, cd) = CpuBackend.knn_exact(&pts, dim, k);
            assert_eq!(ci, ei, "n {n} dim {dim}");
            assert_eq!(cd, ed, "n {n} dim {dim}");
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
