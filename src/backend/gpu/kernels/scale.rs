//! The dense scaled HVG block (`shaders/scale.wgsl`): densify, scale and clip the HVG columns
//! of a CSR chunk on the device, in row batches the Gram and projection kernels consume.

use bytemuck::{Pod, Zeroable};

use super::gram::{BK, k_padded};
use super::{
    DeviceBuffer, GpuContext, GpuError, Recorder, Shader, bind, csr_part, dispatch, kernel,
    row_batches, whole,
};
use crate::backend::ScaleSpec;
use crate::matrix::CsrMatrix;

/// Threads per workgroup (one output row each).
const WG: u32 = 256;
/// The output column of a gene that is not an HVG.
const NO_COLUMN: u32 = u32::MAX;

pub(super) const SHADER: Shader = Shader {
    file: "scale.wgsl",
    body: include_str!("../../../../shaders/scale.wgsl"),
    consts: &[("WG", WG), ("NO_COLUMN", NO_COLUMN)],
};

kernel! {
    /// `densify_scale`: one output row per workgroup.
    DensifyScale = densify_scale in SHADER {
        params: 0, indptr: 1, indices: 2, data: 3, pos: 4, stats: 5, dense: 6,
    }
}

/// `Params` of scale.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct ScaleParams {
    pub(super) n_rows: u32,
    pub(super) k_pad: u32,
    pub(super) k: u32,
    pub(super) rows_pad: u32,
    pub(super) max_value: f32,
    pub(super) _pad0: u32,
    pub(super) _pad1: u32,
    pub(super) _pad2: u32,
}

/// Where a dense scaled block comes from: a CSR chunk scaled on the device, or a dense f64
/// block from the host.
pub(crate) enum DenseSource<'a> {
    /// A CSR chunk and how to scale its HVG columns.
    Csr(&'a CsrMatrix, &'a ScaleSpec<'a>),
    /// A dense row-major block with `k` columns.
    Dense(&'a [f64], usize),
}

impl DenseSource<'_> {
    pub(super) fn k(&self) -> usize {
        match self {
            DenseSource::Csr(_, s) => s.cols.len(),
            DenseSource::Dense(_, k) => *k,
        }
    }

    pub(super) fn rows(&self) -> usize {
        match self {
            DenseSource::Csr(c, _) => c.n_rows,
            DenseSource::Dense(b, k) => b.len() / (*k).max(1),
        }
    }
}

/// Uploads what the densify kernel needs once per call: the gene -> column map and the scale
/// statistics.
struct ScaleInputs<'a> {
    pos: DeviceBuffer<'a>,
    stats: DeviceBuffer<'a>,
}

fn scale_inputs<'a>(
    ctx: &'a GpuContext,
    chunk: &CsrMatrix,
    spec: &ScaleSpec<'_>,
) -> ScaleInputs<'a> {
    let mut pos = vec![NO_COLUMN; chunk.n_cols];
    for (c, &j) in spec.cols.iter().enumerate() {
        pos[j as usize] = c as u32;
    }
    let stats: Vec<[f32; 2]> = spec
        .mean
        .iter()
        .zip(spec.std)
        .map(|(&m, &s)| [m as f32, s as f32])
        .collect();
    ScaleInputs {
        pos: ctx.upload(&pos),
        stats: ctx.upload(&stats),
    }
}

/// Rows of a dense batch: at most what one binding holds, a multiple of the Gram K-step.
fn dense_rows_limit(ctx: &GpuContext, k_pad: usize) -> Result<usize, GpuError> {
    let rows = (ctx.max_binding() / (4 * k_pad as u64)) as usize / BK * BK;
    if rows == 0 {
        return Err(GpuError::LimitExceeded {
            what: "one dense row".into(),
            need: 4 * k_pad as u64,
            limit: ctx.max_binding(),
        });
    }
    Ok(rows.min(1 << 20))
}

/// Calls `f(encoder, dense, rows, rows_pad, first_row)` for consecutive row batches of the
/// dense scaled block, formed on the device (k_pad columns, zero padded).
pub(super) fn for_each_dense_batch(
    ctx: &GpuContext,
    src: &DenseSource<'_>,
    k_pad: usize,
    mut f: impl FnMut(&mut Recorder, &DeviceBuffer<'_>, usize, usize, usize) -> Result<(), GpuError>,
) -> Result<(), GpuError> {
    let max_rows = dense_rows_limit(ctx, k_pad)?;
    match src {
        DenseSource::Csr(chunk, spec) => {
            let inputs = scale_inputs(ctx, chunk, spec);
            let max_value = spec.max_value.map_or(-1.0, |m| m as f32);
            for r in row_batches(chunk, ctx.max_binding() / 4, max_rows)? {
                let (indptr, e) = csr_part(chunk, &r);
                let rows = r.len();
                let rows_pad = rows.div_ceil(BK) * BK;
                let ip = ctx.upload(&indptr);
                let idx = ctx.upload(&chunk.indices[e.clone()]);
                let data = ctx.upload(&chunk.data[e]);
                let dense = ctx.storage((rows_pad * k_pad * 4) as u64);
                let params = ctx.uniform(&ScaleParams {
                    n_rows: rows as u32,
                    k_pad: k_pad as u32,
                    k: spec.cols.len() as u32,
                    rows_pad: rows_pad as u32,
                    max_value,
                    ..Zeroable::zeroed()
                });
                let (gx, gy) = ctx.grid(rows_pad as u32)?;
                ctx.run(|enc| {
                    let bound = bind(
                        ctx,
                        DensifyScale {
                            params: whole(&params),
                            indptr: whole(&ip),
                            indices: whole(&idx),
                            data: whole(&data),
                            pos: whole(&inputs.pos),
                            stats: whole(&inputs.stats),
                            dense: whole(&dense),
                        },
                    );
                    dispatch(enc, &bound, (gx, gy, 1));
                    f(enc, &dense, rows, rows_pad, r.start)
                })?;
            }
        }
        DenseSource::Dense(block, k) => {
            let n = block.len() / (*k).max(1);
            for a in (0..n).step_by(max_rows) {
                let rows = (n - a).min(max_rows);
                let rows_pad = rows.div_ceil(BK) * BK;
                let mut host = vec![0.0f32; rows_pad * k_pad];
                for (r, row) in block[a * k..(a + rows) * k].chunks(*k).enumerate() {
                    for (o, &v) in host[r * k_pad..r * k_pad + k].iter_mut().zip(row) {
                        *o = v as f32;
                    }
                }
                let dense = ctx.upload(&host);
                ctx.run(|enc| f(enc, &dense, rows, rows_pad, a))?;
            }
        }
    }
    Ok(())
}

/// The dense scaled HVG block of `chunk` (rounded to f32 on the device).
pub(crate) fn scale_dense(
    ctx: &GpuContext,
    chunk: &CsrMatrix,
    spec: &ScaleSpec<'_>,
) -> Result<Vec<f64>, GpuError> {
    let k = spec.cols.len();
    let mut out = vec![0.0f64; chunk.n_rows * k];
    if k == 0 || chunk.n_rows == 0 {
        return Ok(out);
    }
    let k_pad = k_padded(k);
    let mut batches: Vec<(usize, usize, DeviceBuffer<'_>)> = Vec::new();
    for_each_dense_batch(
        ctx,
        &DenseSource::Csr(chunk, spec),
        k_pad,
        |enc, dense, rows, rows_pad, first| {
            let copy = ctx.storage((rows_pad * k_pad * 4) as u64);
            enc.copy_buffer_to_buffer(dense, 0, &copy, 0, (rows_pad * k_pad * 4) as u64);
            batches.push((first, rows, copy));
            Ok(())
        },
    )?;
    for (first, rows, buf) in batches {
        let d: Vec<f32> = ctx.read(&buf, 0, rows * k_pad)?;
        for r in 0..rows {
            for (o, &v) in out[(first + r) * k..(first + r + 1) * k]
                .iter_mut()
                .zip(&d[r * k_pad..r * k_pad + k])
            {
                *o = f64::from(v);
            }
        }
    }
    Ok(out)
}
