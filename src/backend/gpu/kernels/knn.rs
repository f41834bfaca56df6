//! Exact kNN (`shaders/knn.wgsl`): candidate lists from the device, re-ranked and certified in
//! f64 on the host.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::{GpuContext, GpuError, Shader, bind, dispatch, kernel, slice, whole};
use crate::backend::cpu::KnnCertifier;

/// Candidates kept per query beyond k, re-ranked on the host in f64 (as the CPU backend does).
pub(crate) const KNN_MARGIN: usize = 8;
/// Longest candidate list the kernel keeps (its private array size).
const KMAX: usize = 64;
/// Queries per workgroup.
const QT: usize = 64;
/// Threads, and lists, per query (merged after the last candidate slice).
const PARTS: usize = 4;
/// Threads per workgroup: one per list.
const WG: u32 = (PARTS * QT) as u32;
/// Candidates per dispatch: bounds the time of one dispatch.
const SLICE: usize = 1 << 17;
/// The largest storage binding offset alignment wgpu allows an adapter to ask for, in bytes:
/// slices start at multiples of QT points, whose byte offsets (4 QT per dimension) meet it.
const OFFSET_ALIGNMENT: usize = 256;
const _: () = assert!((4 * QT).is_multiple_of(OFFSET_ALIGNMENT));

pub(super) const SHADER: Shader = Shader {
    file: "knn.wgsl",
    body: include_str!("../../../../shaders/knn.wgsl"),
    consts: &[
        ("KMAX", KMAX as u32),
        ("QT", QT as u32),
        ("PARTS", PARTS as u32),
        ("WG", WG),
    ],
};

kernel! {
    /// `knn_candidates`: QT queries per workgroup against one slice of candidates.
    KnnCandidates = knn_candidates in SHADER {
        params: 0, queries: 1, cands: 2, cnorm: 3, best_d: 4, best_i: 5, worst_d: 6,
    }
}

/// `Params` of knn.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct KnnParams {
    pub(super) n_q: u32,
    pub(super) n_c: u32,
    pub(super) dim: u32,
    pub(super) list_len: u32,
    pub(super) c_offset: u32,
    pub(super) first: u32,
    pub(super) last: u32,
    pub(super) _pad0: u32,
}

/// Candidate lists (`list_len` per point, ascending by f32 score) of the exact kNN search,
/// and per point the largest score kept (the bound the host's certification starts from).
pub(crate) fn knn_candidates(
    ctx: &GpuContext,
    points: &[f32],
    norms: &[f64],
    dim: usize,
    list_len: usize,
) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    knn_candidates_sliced(ctx, points, norms, dim, list_len, SLICE)
}

/// [`knn_candidates`] with at most `max_slice` candidates (a multiple of `QT`) per dispatch.
pub(crate) fn knn_candidates_sliced(
    ctx: &GpuContext,
    points: &[f32],
    norms: &[f64],
    dim: usize,
    list_len: usize,
    max_slice: usize,
) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    let n = points.len() / dim.max(1);
    if list_len > KMAX {
        return Err(GpuError::LimitExceeded {
            what: "kNN candidate list (k + margin)".into(),
            need: list_len as u64,
            limit: KMAX as u64,
        });
    }
    let all_bytes = (points.len() * 4) as u64;
    if all_bytes > ctx.limits.max_buffer_size {
        return Err(GpuError::LimitExceeded {
            what: "kNN points".into(),
            need: all_bytes,
            limit: ctx.limits.max_buffer_size,
        });
    }
    let norms: Vec<f32> = norms.iter().map(|&v| v as f32).collect();
    let pts = ctx.upload(points);
    let nb = ctx.upload(&norms);
    // Query and candidate slices: whole multiples of QT points (so byte offsets stay aligned,
    // see OFFSET_ALIGNMENT) that fit one binding, lists included.
    let per_point = (dim * 4).max(PARTS * list_len * 4) as u64;
    let fit = ((ctx.max_binding() / per_point) as usize / QT * QT).max(QT);
    let q_slice = fit.min(QT * ctx.limits.max_compute_workgroups_per_dimension as usize);
    let c_slice = fit.min(max_slice);
    let mut out = vec![0u32; n * list_len];
    let mut worst = vec![0f32; n];
    for q0 in (0..n).step_by(q_slice) {
        let nq = (n - q0).min(q_slice);
        // Each query's lists ([part][query][list_len]); part 0 ends up holding the merged one.
        let bd = ctx.storage((PARTS * nq * list_len * 4) as u64);
        let bi = ctx.storage((PARTS * nq * list_len * 4) as u64);
        let wd = ctx.storage((nq * 4) as u64);
        let (gx, gy) = ctx.grid(nq.div_ceil(QT) as u32)?;
        for c0 in (0..n).step_by(c_slice) {
            let nc = (n - c0).min(c_slice);
            let params = ctx.uniform(&KnnParams {
                n_q: nq as u32,
                n_c: nc as u32,
                dim: dim as u32,
                list_len: list_len as u32,
                c_offset: c0 as u32,
                first: u32::from(c0 == 0),
                last: u32::from(c0 + nc == n),
                ..Zeroable::zeroed()
            });
            ctx.run(|enc| {
                let bound = bind(
                    ctx,
                    KnnCandidates {
                        params: whole(&params),
                        queries: slice(&pts, q0, nq, dim),
                        cands: slice(&pts, c0, nc, dim),
                        cnorm: slice(&nb, c0, nc, 1),
                        best_d: whole(&bd),
                        best_i: whole(&bi),
                        worst_d: whole(&wd),
                    },
                );
                dispatch(enc, &bound, (gx, gy, 1));
                Ok(())
            })?;
        }
        let ids: Vec<u32> = ctx.read(&bi, 0, nq * list_len)?;
        out[q0 * list_len..(q0 + nq) * list_len].copy_from_slice(&ids);
        // The lists' scores stay on the device: the certification needs only the last.
        let w: Vec<f32> = ctx.read(&wd, 0, nq)?;
        worst[q0..q0 + nq].copy_from_slice(&w);
    }
    Ok((out, worst))
}

/// Slack multiplier of the certification for device arithmetic: WGSL leaves the compiler free
/// to contract and reorder f32 operations and to flush denormals, so the proof of each row
/// assumes twice the IEEE error bound (any bound only costs brute-force rows, never a wrong one).
const DEVICE_HEADROOM: f64 = 2.0;

/// Exact kNN: the device's candidate lists re-ranked by f64 distances and certified (or a row
/// recomputed by brute force) by the same [`KnnCertifier`] the CPU backend uses, so both
/// backends return the f64 brute-force result, ties broken by index.
pub(crate) fn knn_exact(
    ctx: &GpuContext,
    points: &[f32],
    dim: usize,
    k: usize,
) -> Result<(Vec<u32>, Vec<f64>), GpuError> {
    let n = points.len() / dim.max(1);
    let k = k.min(n);
    if n == 0 || k == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let want = (k + KNN_MARGIN).min(n);
    let cert = KnnCertifier::new(points, dim, DEVICE_HEADROOM);
    let (cand, worst) = knn_candidates(ctx, points, &cert.norms, dim, want)?;
    let mut idx = vec![0u32; n * k];
    let mut dist = vec![0.0f64; n * k];
    let recomputed = std::sync::atomic::AtomicUsize::new(0);
    idx.par_chunks_mut(k)
        .zip(dist.par_chunks_mut(k))
        .zip(cand.par_chunks(want))
        .enumerate()
        .for_each(|(i, ((oi, od), c))| {
            // Unfilled list slots hold an out-of-range index.
            let (best, redone) = cert.row(
                i,
                k,
                c.iter().copied().filter(|&j| (j as usize) < n),
                worst[i],
            );
            if redone {
                recomputed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            for (s, &(d2, j)) in best.iter().enumerate() {
                oi[s] = j;
                od[s] = d2.sqrt();
            }
        });
    tracing::debug!(
        "GPU exact kNN: {} of {n} rows recomputed by brute force (boundary within f32 error)",
        recomputed.into_inner()
    );
    Ok((idx, dist))
}
