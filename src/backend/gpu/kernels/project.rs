//! Projection of the dense scaled block onto the principal components
//! (`shaders/project.wgsl`): a tiled GEMM; the host subtracts the mean's projection in f64.

use bytemuck::{Pod, Zeroable};

use super::gram::{self, k_padded};
use super::scale::{DenseSource, for_each_dense_batch};
use super::{DeviceBuffer, GpuContext, GpuError, Shader, bind, dispatch, kernel, whole};

/// Side of the square output tile of a workgroup (one thread per element), and of the K-step.
const TILE: usize = 16;
// The dense block's columns (whole Gram tiles) are whole K-steps.
const _: () = assert!(gram::TILE.is_multiple_of(TILE));

pub(super) const SHADER: Shader = Shader {
    file: "project.wgsl",
    body: include_str!("../../../../shaders/project.wgsl"),
    consts: &[("TILE", TILE as u32)],
};

kernel! {
    /// `project`: one output tile per workgroup.
    Project = project in SHADER { params: 0, dense: 1, comps: 2, out: 3 }
}

/// `Params` of project.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct ProjectParams {
    pub(super) rows: u32,
    pub(super) k_pad: u32,
    pub(super) c_pad: u32,
    pub(super) _pad0: u32,
}

/// `(X - 1 meanᵀ) comps` for the scaled block X of `src` (`comps`: k x c, row-major).
pub(crate) fn project(
    ctx: &GpuContext,
    src: &DenseSource<'_>,
    mean: &[f64],
    comps: &[f64],
    c: usize,
) -> Result<Vec<f64>, GpuError> {
    let (k, n) = (src.k(), src.rows());
    let mut out = vec![0.0f64; n * c];
    if n == 0 || c == 0 {
        return Ok(out);
    }
    let k_pad = k_padded(k);
    let c_pad = c.div_ceil(TILE) * TILE;
    let mut v = vec![0.0f32; k_pad * c_pad];
    for a in 0..k {
        for j in 0..c {
            v[a * c_pad + j] = comps[a * c + j] as f32;
        }
    }
    let shift: Vec<f64> = (0..c)
        .map(|j| (0..k).map(|a| mean[a] * comps[a * c + j]).sum())
        .collect();
    let vb = ctx.upload(&v);
    // The projected rows of a batch must fit a binding too.
    let max_rows = (ctx.max_binding() / (4 * c_pad as u64)) as usize;
    let mut batches: Vec<(usize, usize, DeviceBuffer<'_>)> = Vec::new();
    for_each_dense_batch(ctx, src, k_pad, |enc, dense, rows, _rows_pad, first| {
        if rows > max_rows {
            return Err(GpuError::LimitExceeded {
                what: "projected rows".into(),
                need: (rows * c_pad * 4) as u64,
                limit: ctx.max_binding(),
            });
        }
        let ob = ctx.storage((rows * c_pad * 4) as u64);
        let params = ctx.uniform(&ProjectParams {
            rows: rows as u32,
            k_pad: k_pad as u32,
            c_pad: c_pad as u32,
            ..Zeroable::zeroed()
        });
        let bound = bind(
            ctx,
            Project {
                params: whole(&params),
                dense: whole(dense),
                comps: whole(&vb),
                out: whole(&ob),
            },
        );
        let (ty, tz) = ctx.grid(rows.div_ceil(TILE) as u32)?;
        dispatch(enc, &bound, ((c_pad / TILE) as u32, ty, tz));
        batches.push((first, rows, ob));
        Ok(())
    })?;
    for (first, rows, ob) in batches {
        let p: Vec<f32> = ctx.read(&ob, 0, rows * c_pad)?;
        for r in 0..rows {
            for j in 0..c {
                out[(first + r) * c + j] = f64::from(p[r * c_pad + j]) - shift[j];
            }
        }
    }
    Ok(out)
}
