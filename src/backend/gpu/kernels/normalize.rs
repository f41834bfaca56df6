//! normalize_total + log1p of a CSR chunk (`shaders/normalize.wgsl`): one workgroup per row.

use bytemuck::{Pod, Zeroable};

use super::{GpuContext, GpuError, Shader, bind, csr_part, dispatch, kernel, row_batches, whole};
use crate::matrix::CsrMatrix;

/// Threads per workgroup (a power of two): they stride over the row's entries and reduce their
/// partial totals in workgroup memory.
const WG: u32 = 256;

pub(super) const SHADER: Shader = Shader {
    file: "normalize.wgsl",
    body: include_str!("../../../../shaders/normalize.wgsl"),
    consts: &[("WG", WG)],
};

kernel! {
    /// `normalize_log1p`: one row per workgroup, in place.
    NormalizeLog1p = normalize_log1p in SHADER { params: 0, indptr: 1, data: 2 }
}

/// `Params` of normalize.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct NormalizeParams {
    pub(super) n_rows: u32,
    pub(super) target_sum: f32,
    pub(super) one: f32,
    pub(super) _pad0: u32,
}

/// normalize_total + log1p of `chunk`, in place (the data change only if every batch ran).
pub(crate) fn normalize_log1p(
    ctx: &GpuContext,
    chunk: &mut CsrMatrix,
    target_sum: f32,
) -> Result<(), GpuError> {
    let max = ctx.max_binding() / 4;
    let batches = row_batches(chunk, max, (max - 1) as usize)?;
    let mut out = chunk.data.clone();
    for r in batches {
        let (indptr, e) = csr_part(chunk, &r);
        if e.is_empty() {
            continue;
        }
        let ip = ctx.upload(&indptr);
        let data = ctx.upload(&chunk.data[e.clone()]);
        let params = ctx.uniform(&NormalizeParams {
            n_rows: r.len() as u32,
            target_sum,
            one: 1.0,
            ..Zeroable::zeroed()
        });
        let (gx, gy) = ctx.grid(r.len() as u32)?;
        ctx.run(|enc| {
            let bound = bind(
                ctx,
                NormalizeLog1p {
                    params: whole(&params),
                    indptr: whole(&ip),
                    data: whole(&data),
                },
            );
            dispatch(enc, &bound, (gx, gy, 1));
            Ok(())
        })?;
        let v: Vec<f32> = ctx.read(&data, 0, e.len())?;
        out[e].copy_from_slice(&v);
    }
    chunk.data = out;
    Ok(())
}
