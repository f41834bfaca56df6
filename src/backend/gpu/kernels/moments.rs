//! Per-gene Σx and Σx² of a CSR chunk (`shaders/moments.wgsl`): f32 partial sums in lanes,
//! folded into double-single totals.

use bytemuck::{Pod, Zeroable};

use super::{GpuContext, GpuError, Shader, bind, csr_part, dispatch, kernel, row_batches, whole};
use crate::backend::{Moments, Transform};
use crate::matrix::CsrMatrix;

/// Threads per workgroup of both entry points.
const WG: u32 = 256;
/// Partial-sum lanes per pass, rows per lane, entries per workgroup.
const LANES: usize = 64;
const ROWS_PER_LANE: usize = 128;
const PER_GROUP: usize = 2048;
/// `Params::transform` values.
const TRANSFORM_IDENTITY: u32 = 0;
const TRANSFORM_EXPM1: u32 = 1;

pub(super) const SHADER: Shader = Shader {
    file: "moments.wgsl",
    body: include_str!("../../../../shaders/moments.wgsl"),
    consts: &[("WG", WG), ("TRANSFORM_EXPM1", TRANSFORM_EXPM1)],
};

kernel! {
    /// `moments_scatter`: entries into the lanes' f32 partial sums.
    MomentsScatter = moments_scatter in SHADER { params: 0, indices: 1, data: 2, lanes: 3 }
}

kernel! {
    /// `moments_fold`: the lanes, in lane order, into the double-single totals.
    MomentsFold = moments_fold in SHADER { params: 0, lanes: 3, totals: 4 }
}

/// `Params` of moments.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct MomentParams {
    pub(super) entry_begin: u32,
    pub(super) entry_end: u32,
    pub(super) per_group: u32,
    pub(super) groups_per_lane: u32,
    pub(super) n_cols: u32,
    pub(super) n_lanes: u32,
    pub(super) transform: u32,
    pub(super) one: f32,
}

/// Per-gene Σx and Σx² of `chunk`.
pub(crate) fn gene_moments(
    ctx: &GpuContext,
    chunk: &CsrMatrix,
    transform: Transform,
) -> Result<Moments, GpuError> {
    let g = chunk.n_cols;
    let mut m = Moments::new(g);
    m.n = chunk.n_rows as u64;
    if g == 0 || chunk.nnz() == 0 {
        return Ok(m);
    }
    ctx.fits("per-gene sums", 16 * g as u64)?;
    let lanes = ((ctx.max_binding() / (8 * g as u64)) as usize).min(LANES);
    if lanes == 0 {
        return Err(GpuError::LimitExceeded {
            what: "per-gene partial sums".into(),
            need: 8 * g as u64,
            limit: ctx.max_binding(),
        });
    }
    let lane_buf = ctx.storage((lanes * 2 * g * 4) as u64);
    let totals = ctx.storage((2 * g * 8) as u64);
    let transform = match transform {
        Transform::Identity => TRANSFORM_IDENTITY,
        Transform::Expm1 => TRANSFORM_EXPM1,
    };
    let max = ctx.max_binding() / 4;
    for r in row_batches(chunk, max, usize::MAX)? {
        let (indptr, e) = csr_part(chunk, &r);
        if e.is_empty() {
            continue;
        }
        let idx = ctx.upload(&chunk.indices[e.clone()]);
        let data = ctx.upload(&chunk.data[e.clone()]);
        ctx.run(|enc| {
            // Passes of at most lanes x ROWS_PER_LANE rows keep each f32 partial short.
            let step = lanes * ROWS_PER_LANE;
            for p0 in (0..r.len()).step_by(step) {
                let p1 = (p0 + step).min(r.len());
                let (b, c) = (indptr[p0] as usize, indptr[p1] as usize);
                if b == c {
                    continue;
                }
                let groups_per_lane = (c - b).div_ceil(lanes * PER_GROUP);
                let params = ctx.uniform(&MomentParams {
                    entry_begin: b as u32,
                    entry_end: c as u32,
                    per_group: PER_GROUP as u32,
                    groups_per_lane: groups_per_lane as u32,
                    n_cols: g as u32,
                    n_lanes: lanes as u32,
                    transform,
                    one: 1.0,
                });
                let scatter = bind(
                    ctx,
                    MomentsScatter {
                        params: whole(&params),
                        indices: whole(&idx),
                        data: whole(&data),
                        lanes: whole(&lane_buf),
                    },
                );
                let (gx, gy) = ctx.grid((lanes * groups_per_lane) as u32)?;
                dispatch(enc, &scatter, (gx, gy, 1));
                let fold = bind(
                    ctx,
                    MomentsFold {
                        params: whole(&params),
                        lanes: whole(&lane_buf),
                        totals: whole(&totals),
                    },
                );
                let (fx, fy) = ctx.grid((2 * g).div_ceil(WG as usize) as u32)?;
                dispatch(enc, &fold, (fx, fy, 1));
            }
            Ok(())
        })?;
    }
    let t: Vec<[f32; 2]> = ctx.read(&totals, 0, 2 * g)?;
    for j in 0..g {
        m.sum[j] = f64::from(t[j][0]) + f64::from(t[j][1]);
        m.sum_sq[j] = f64::from(t[g + j][0]) + f64::from(t[g + j][1]);
    }
    Ok(m)
}
