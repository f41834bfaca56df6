//! The compiled compute pipelines and the host side of each kernel: upload, dispatch in chunks
//! that respect the adapter's limits, read back, finish in f64.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::context::{DeviceBuffer, GpuContext, GpuError, Recorder};
use crate::backend::cpu::KnnCertifier;
use crate::backend::umap_sgd::{SgdGraph, SgdParams};
use crate::backend::{Moments, ScaleSpec, Transform};
use crate::matrix::CsrMatrix;

macro_rules! shader {
    ($file:literal) => {
        concat!(
            include_str!("../../../shaders/common.wgsl"),
            include_str!(concat!("../../../shaders/", $file))
        )
    };
}

/// Output tile of the Gram kernel (columns are padded to a multiple of it).
pub(crate) const GRAM_TILE: usize = 128;
/// Rows per K-slice of the Gram kernel (rows are padded to a multiple of it).
const GRAM_BK: usize = 8;
/// Candidates kept per query beyond k, re-ranked on the host in f64 (as the CPU backend does).
pub(crate) const KNN_MARGIN: usize = 8;
/// Longest candidate list the kNN kernel keeps (its private array size).
const KNN_KMAX: usize = 64;
/// Queries per kNN workgroup.
const KNN_QT: usize = 64;
/// Threads, and lists, per query in the kNN kernel (merged after the last candidate slice).
const KNN_PARTS: usize = 4;
/// Candidates per kNN dispatch: bounds the time of one dispatch.
const KNN_SLICE: usize = 1 << 17;
/// Moments: partial-sum lanes per pass, rows per lane, entries per workgroup.
const MOMENT_LANES: usize = 64;
const MOMENT_ROWS_PER_LANE: usize = 128;
const MOMENT_PER_GROUP: usize = 2048;

/// Pipelines, compiled once per context.
pub(crate) struct Kernels {
    normalize: wgpu::ComputePipeline,
    moments_scatter: wgpu::ComputePipeline,
    moments_fold: wgpu::ComputePipeline,
    densify: wgpu::ComputePipeline,
    gram: wgpu::ComputePipeline,
    gram_fold: wgpu::ComputePipeline,
    column_sums: wgpu::ComputePipeline,
    project: wgpu::ComputePipeline,
    knn: wgpu::ComputePipeline,
    umap_heads: wgpu::ComputePipeline,
    umap_tails: wgpu::ComputePipeline,
    umap_tick: wgpu::ComputePipeline,
}

fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let module = |label: &str, src: &'static str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        };
        let normalize = module("normalize", shader!("normalize.wgsl"));
        let moments = module("moments", shader!("moments.wgsl"));
        let scale = module("scale", shader!("scale.wgsl"));
        let gram = module("gram", shader!("gram.wgsl"));
        let project = module("project", shader!("project.wgsl"));
        let knn = module("knn", shader!("knn.wgsl"));
        let umap = module("umap", shader!("umap.wgsl"));
        Kernels {
            normalize: pipeline(device, &normalize, "normalize_log1p"),
            moments_scatter: pipeline(device, &moments, "moments_scatter"),
            moments_fold: pipeline(device, &moments, "moments_fold"),
            densify: pipeline(device, &scale, "densify_scale"),
            gram: pipeline(device, &gram, "gram"),
            gram_fold: pipeline(device, &gram, "gram_fold"),
            column_sums: pipeline(device, &gram, "column_sums"),
            project: pipeline(device, &project, "project"),
            knn: pipeline(device, &knn, "knn_candidates"),
            umap_heads: pipeline(device, &umap, "umap_heads"),
            umap_tails: pipeline(device, &umap, "umap_tails"),
            umap_tick: pipeline(device, &umap, "umap_tick"),
        }
    }
}

/// One dispatch in its own compute pass (timed when the context is being profiled).
fn dispatch(
    enc: &mut Recorder,
    pipeline: &wgpu::ComputePipeline,
    bind: &wgpu::BindGroup,
    groups: (u32, u32, u32),
) {
    let mut pass = enc.compute_pass();
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind, &[]);
    pass.dispatch_workgroups(groups.0, groups.1, groups.2);
}

/// What a kernel binds whole: a uniform block, or the bytes of a pooled buffer's use (never
/// the rest of it, which may hold another use's data).
trait Bindable {
    fn resource(&self) -> wgpu::BindingResource<'_>;
}

impl Bindable for wgpu::Buffer {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        self.as_entire_binding()
    }
}

impl Bindable for DeviceBuffer<'_> {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        self.binding()
    }
}

fn whole(b: &impl Bindable) -> wgpu::BindingResource<'_> {
    b.resource()
}

/// Elements `first..first + count` of a buffer of `width`-float rows.
fn slice<'a>(
    b: &'a DeviceBuffer<'_>,
    first: usize,
    count: usize,
    width: usize,
) -> wgpu::BindingResource<'a> {
    let offset = (first * width * 4) as u64;
    let size = ((count * width * 4).max(4) as u64).min(b.len() - offset);
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: b,
        offset,
        size: std::num::NonZeroU64::new(size),
    })
}

/// Consecutive row ranges of `chunk` such that each holds at most `max_nnz` stored entries and
/// `max_rows` rows.
fn row_batches(
    chunk: &CsrMatrix,
    max_nnz: u64,
    max_rows: usize,
) -> Result<Vec<std::ops::Range<usize>>, GpuError> {
    let mut out = Vec::new();
    let mut a = 0;
    while a < chunk.n_rows {
        let mut b = a;
        while b < chunk.n_rows
            && b - a < max_rows
            && chunk.indptr[b + 1] - chunk.indptr[a] <= max_nnz
        {
            b += 1;
        }
        if b == a {
            return Err(GpuError::LimitExceeded {
                what: format!("row {a} of a chunk"),
                need: (chunk.indptr[a + 1] - chunk.indptr[a]) * 4,
                limit: max_nnz * 4,
            });
        }
        out.push(a..b);
        a = b;
    }
    Ok(out)
}

/// The CSR arrays of rows `r` with offsets relative to the first row.
fn csr_part(chunk: &CsrMatrix, r: &std::ops::Range<usize>) -> (Vec<u32>, std::ops::Range<usize>) {
    let base = chunk.indptr[r.start];
    let indptr: Vec<u32> = chunk.indptr[r.start..=r.end]
        .iter()
        .map(|&p| (p - base) as u32)
        .collect();
    (indptr, base as usize..chunk.indptr[r.end] as usize)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormalizeParams {
    n_rows: u32,
    target_sum: f32,
    one: f32,
    _pad: u32,
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
            _pad: 0,
        });
        let (gx, gy) = ctx.grid(r.len() as u32)?;
        ctx.run(|enc| {
            let bind = ctx.bind(
                &ctx.kernels.normalize,
                &[(0, whole(&params)), (1, whole(&ip)), (2, whole(&data))],
            );
            dispatch(enc, &ctx.kernels.normalize, &bind, (gx, gy, 1));
            Ok(())
        })?;
        let v: Vec<f32> = ctx.read(&data, 0, e.len())?;
        out[e].copy_from_slice(&v);
    }
    chunk.data = out;
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MomentParams {
    entry_begin: u32,
    entry_end: u32,
    per_group: u32,
    groups_per_lane: u32,
    n_cols: u32,
    n_lanes: u32,
    transform: u32,
    one: f32,
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
    let lanes = ((ctx.max_binding() / (8 * g as u64)) as usize).min(MOMENT_LANES);
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
        Transform::Identity => 0,
        Transform::Expm1 => 1,
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
            // Passes of at most lanes x MOMENT_ROWS_PER_LANE rows keep each f32 partial short.
            let step = lanes * MOMENT_ROWS_PER_LANE;
            for p0 in (0..r.len()).step_by(step) {
                let p1 = (p0 + step).min(r.len());
                let (b, c) = (indptr[p0] as usize, indptr[p1] as usize);
                if b == c {
                    continue;
                }
                let groups_per_lane = (c - b).div_ceil(lanes * MOMENT_PER_GROUP);
                let params = ctx.uniform(&MomentParams {
                    entry_begin: b as u32,
                    entry_end: c as u32,
                    per_group: MOMENT_PER_GROUP as u32,
                    groups_per_lane: groups_per_lane as u32,
                    n_cols: g as u32,
                    n_lanes: lanes as u32,
                    transform,
                    one: 1.0,
                });
                let scatter = ctx.bind(
                    &ctx.kernels.moments_scatter,
                    &[
                        (0, whole(&params)),
                        (1, whole(&idx)),
                        (2, whole(&data)),
                        (3, whole(&lane_buf)),
                    ],
                );
                let (gx, gy) = ctx.grid((lanes * groups_per_lane) as u32)?;
                dispatch(enc, &ctx.kernels.moments_scatter, &scatter, (gx, gy, 1));
                let fold = ctx.bind(
                    &ctx.kernels.moments_fold,
                    &[
                        (0, whole(&params)),
                        (3, whole(&lane_buf)),
                        (4, whole(&totals)),
                    ],
                );
                let (fx, fy) = ctx.grid((2 * g).div_ceil(256) as u32)?;
                dispatch(enc, &ctx.kernels.moments_fold, &fold, (fx, fy, 1));
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ScaleParams {
    n_rows: u32,
    k_pad: u32,
    k: u32,
    rows_pad: u32,
    max_value: f32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GramParams {
    k_pad: u32,
    rows: u32,
    rows_per_split: u32,
    n_splits: u32,
    one: f32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ProjectParams {
    rows: u32,
    k_pad: u32,
    c_pad: u32,
    _pad: u32,
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
    fn k(&self) -> usize {
        match self {
            DenseSource::Csr(_, s) => s.cols.len(),
            DenseSource::Dense(_, k) => *k,
        }
    }

    fn rows(&self) -> usize {
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
    let mut pos = vec![u32::MAX; chunk.n_cols];
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
    let rows = (ctx.max_binding() / (4 * k_pad as u64)) as usize / GRAM_BK * GRAM_BK;
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
fn for_each_dense_batch(
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
                let rows_pad = rows.div_ceil(GRAM_BK) * GRAM_BK;
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
                    _pad: [0; 3],
                });
                let (gx, gy) = ctx.grid(rows_pad as u32)?;
                ctx.run(|enc| {
                    let bind = ctx.bind(
                        &ctx.kernels.densify,
                        &[
                            (0, whole(&params)),
                            (1, whole(&ip)),
                            (2, whole(&idx)),
                            (3, whole(&data)),
                            (4, whole(&inputs.pos)),
                            (5, whole(&inputs.stats)),
                            (6, whole(&dense)),
                        ],
                    );
                    dispatch(enc, &ctx.kernels.densify, &bind, (gx, gy, 1));
                    f(enc, &dense, rows, rows_pad, r.start)
                })?;
            }
        }
        DenseSource::Dense(block, k) => {
            let n = block.len() / (*k).max(1);
            for a in (0..n).step_by(max_rows) {
                let rows = (n - a).min(max_rows);
                let rows_pad = rows.div_ceil(GRAM_BK) * GRAM_BK;
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

fn k_padded(k: usize) -> usize {
    k.div_ceil(GRAM_TILE).max(1) * GRAM_TILE
}

/// `gram += XᵀX`, `colsum += Σ rows` for the scaled block X of `src`.
pub(crate) fn gram(
    ctx: &GpuContext,
    src: &DenseSource<'_>,
    gram: &mut [f64],
    colsum: &mut [f64],
) -> Result<(), GpuError> {
    let k = src.k();
    if k == 0 || src.rows() == 0 {
        return Ok(());
    }
    let k_pad = k_padded(k);
    let one = (k_pad * k_pad * 8) as u64;
    ctx.fits("the Gram accumulator", one)?;
    // Row splits run side by side for occupancy, each with its own accumulator.
    let n_splits = ((ctx.max_binding() / one) as usize).clamp(1, 8);
    let acc = ctx.storage(one * n_splits as u64);
    let cs = ctx.storage((k_pad * 8) as u64);
    let tiles = (k_pad / GRAM_TILE) as u32;
    for_each_dense_batch(ctx, src, k_pad, |enc, dense, _rows, rows_pad, _| {
        let per_split = rows_pad.div_ceil(n_splits).div_ceil(GRAM_BK) * GRAM_BK;
        let params = ctx.uniform(&GramParams {
            k_pad: k_pad as u32,
            rows: rows_pad as u32,
            rows_per_split: per_split as u32,
            n_splits: n_splits as u32,
            one: 1.0,
            _pad: [0; 3],
        });
        let bind = ctx.bind(
            &ctx.kernels.gram,
            &[(0, whole(&params)), (1, whole(dense)), (2, whole(&acc))],
        );
        dispatch(
            enc,
            &ctx.kernels.gram,
            &bind,
            (tiles, tiles, n_splits as u32),
        );
        let bind = ctx.bind(
            &ctx.kernels.column_sums,
            &[(0, whole(&params)), (1, whole(dense)), (3, whole(&cs))],
        );
        dispatch(
            enc,
            &ctx.kernels.column_sums,
            &bind,
            (k_pad.div_ceil(256) as u32, 1, 1),
        );
        Ok(())
    })?;
    if n_splits > 1 {
        let params = ctx.uniform(&GramParams {
            k_pad: k_pad as u32,
            rows: 0,
            rows_per_split: 1,
            n_splits: n_splits as u32,
            one: 1.0,
            _pad: [0; 3],
        });
        let (gx, gy) = ctx.grid((k_pad * k_pad).div_ceil(256) as u32)?;
        ctx.run(|enc| {
            let bind = ctx.bind(
                &ctx.kernels.gram_fold,
                &[(0, whole(&params)), (2, whole(&acc))],
            );
            dispatch(enc, &ctx.kernels.gram_fold, &bind, (gx, gy, 1));
            Ok(())
        })?;
    }
    let g: Vec<[f32; 2]> = ctx.read(&acc, 0, k_pad * k_pad)?;
    let s: Vec<[f32; 2]> = ctx.read(&cs, 0, k)?;
    let val = |i: usize| f64::from(g[i][0]) + f64::from(g[i][1]);
    gram.par_chunks_mut(k).enumerate().for_each(|(a, row)| {
        for (b, o) in row.iter_mut().enumerate() {
            // Only tiles on or above the diagonal were computed.
            *o += if a / GRAM_TILE <= b / GRAM_TILE {
                val(a * k_pad + b)
            } else {
                val(b * k_pad + a)
            };
        }
    });
    for (o, v) in colsum.iter_mut().zip(&s) {
        *o += f64::from(v[0]) + f64::from(v[1]);
    }
    Ok(())
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
    let c_pad = c.div_ceil(16) * 16;
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
            _pad: 0,
        });
        let bind = ctx.bind(
            &ctx.kernels.project,
            &[
                (0, whole(&params)),
                (1, whole(dense)),
                (2, whole(&vb)),
                (3, whole(&ob)),
            ],
        );
        let (ty, tz) = ctx.grid(rows.div_ceil(16) as u32)?;
        dispatch(
            enc,
            &ctx.kernels.project,
            &bind,
            ((c_pad / 16) as u32, ty, tz),
        );
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct KnnParams {
    n_q: u32,
    n_c: u32,
    dim: u32,
    list_len: u32,
    c_offset: u32,
    first: u32,
    last: u32,
    _pad: u32,
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
    knn_candidates_sliced(ctx, points, norms, dim, list_len, KNN_SLICE)
}

/// [`knn_candidates`] with at most `max_slice` candidates (a multiple of 64) per dispatch.
pub(crate) fn knn_candidates_sliced(
    ctx: &GpuContext,
    points: &[f32],
    norms: &[f64],
    dim: usize,
    list_len: usize,
    max_slice: usize,
) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    let n = points.len() / dim.max(1);
    if list_len > KNN_KMAX {
        return Err(GpuError::LimitExceeded {
            what: "kNN candidate list (k + margin)".into(),
            need: list_len as u64,
            limit: KNN_KMAX as u64,
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
    // Query and candidate slices: whole multiples of 64 points (so byte offsets stay 256-byte
    // aligned) that fit one binding, lists included.
    let per_point = (dim * 4).max(KNN_PARTS * list_len * 4) as u64;
    let fit = ((ctx.max_binding() / per_point) as usize / KNN_QT * KNN_QT).max(KNN_QT);
    let q_slice = fit.min(KNN_QT * ctx.limits.max_compute_workgroups_per_dimension as usize);
    let c_slice = fit.min(max_slice);
    let mut out = vec![0u32; n * list_len];
    let mut worst = vec![0f32; n];
    for q0 in (0..n).step_by(q_slice) {
        let nq = (n - q0).min(q_slice);
        // Each query's lists ([part][query][list_len]); part 0 ends up holding the merged one.
        let bd = ctx.storage((KNN_PARTS * nq * list_len * 4) as u64);
        let bi = ctx.storage((KNN_PARTS * nq * list_len * 4) as u64);
        let wd = ctx.storage((nq * 4) as u64);
        let (gx, gy) = ctx.grid(nq.div_ceil(KNN_QT) as u32)?;
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
                _pad: 0,
            });
            ctx.run(|enc| {
                let bind = ctx.bind(
                    &ctx.kernels.knn,
                    &[
                        (0, whole(&params)),
                        (1, slice(&pts, q0, nq, dim)),
                        (2, slice(&pts, c0, nc, dim)),
                        (3, slice(&nb, c0, nc, 1)),
                        (4, whole(&bd)),
                        (5, whole(&bi)),
                        (6, whole(&wd)),
                    ],
                );
                dispatch(enc, &ctx.kernels.knn, &bind, (gx, gy, 1));
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
const KNN_DEVICE_HEADROOM: f64 = 2.0;

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
    let cert = KnnCertifier::new(points, dim, KNN_DEVICE_HEADROOM);
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct UmapParams {
    n: u32,
    dim: u32,
    seed: u32,
    n_epochs: u32,
    a: f32,
    b: f32,
    gamma: f32,
    negative_rate: f32,
    learning_rate: f32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct UmapEdge {
    tail: u32,
    rate: f32,
    slot: u32,
}

/// Epochs per submission: bounds the time of one command buffer.
const UMAP_EPOCHS_PER_SUBMIT: usize = 25;

/// Epochs `0..epochs` of umap's SGD (`shaders/umap.wgsl`), the CPU's [`optimize_epoch`] per
/// epoch, with the learning rate decaying over `p.n_epochs`; returns the layout (row-major
/// `n x dim`).
///
/// [`optimize_epoch`]: crate::backend::umap_sgd::optimize_epoch
pub(crate) fn umap_epochs(
    ctx: &GpuContext,
    g: &SgdGraph,
    embedding: &[f32],
    dim: usize,
    p: &SgdParams,
    epochs: usize,
) -> Result<Vec<f32>, GpuError> {
    let n = g.n_vertices;
    let m = g.tail.len();
    if !(1..=crate::backend::umap_sgd::MAX_COMPONENTS).contains(&dim) {
        return Err(GpuError::LimitExceeded {
            what: "umap dimensions".into(),
            need: dim as u64,
            limit: crate::backend::umap_sgd::MAX_COMPONENTS as u64,
        });
    }
    // Without edges nothing moves.
    if n == 0 || m == 0 || epochs == 0 {
        return Ok(embedding.to_vec());
    }
    ctx.fits("umap edges", (m * std::mem::size_of::<UmapEdge>()) as u64)?;
    ctx.fits("umap moves", (m * (dim + 1) * 4) as u64)?;
    ctx.fits("umap layout", (n * dim * 4) as u64)?;
    let head_ptr: Vec<u32> = g.head_ptr.iter().map(|&v| v as u32).collect();
    let in_ptr: Vec<u32> = g.in_ptr.iter().map(|&v| v as u32).collect();
    let edges: Vec<UmapEdge> = (0..m)
        .map(|e| UmapEdge {
            tail: g.tail[e],
            rate: g.rate[e],
            slot: g.slot[e],
        })
        .collect();
    let mut moves = vec![0u32; m * (dim + 1)];
    for s in 0..m {
        moves[s * (dim + 1) + dim] = u32::MAX;
    }
    let params = ctx.uniform(&UmapParams {
        n: n as u32,
        dim: dim as u32,
        seed: p.hash_seed(),
        n_epochs: p.n_epochs as u32,
        a: p.a,
        b: p.b,
        gamma: p.gamma,
        negative_rate: p.negative_sample_rate,
        learning_rate: p.learning_rate,
        _pad: [0; 3],
    });
    let counter = ctx.upload(&[0u32]);
    let hp = ctx.upload(&head_ptr);
    let eb = ctx.upload(&edges);
    let drawn = ctx.upload(&vec![0u32; m]);
    let prev = ctx.upload(embedding);
    let next = ctx.upload(embedding);
    let mv = ctx.upload(&moves);
    let ip = ctx.upload(&in_ptr);
    let heads = ctx.bind(
        &ctx.kernels.umap_heads,
        &[
            (0, whole(&params)),
            (1, whole(&counter)),
            (2, whole(&hp)),
            (3, whole(&eb)),
            (4, whole(&drawn)),
            (5, whole(&prev)),
            (6, whole(&next)),
            (7, whole(&mv)),
        ],
    );
    let tails = ctx.bind(
        &ctx.kernels.umap_tails,
        &[
            (0, whole(&params)),
            (1, whole(&counter)),
            (6, whole(&next)),
            (7, whole(&mv)),
            (8, whole(&ip)),
        ],
    );
    let tick = ctx.bind(&ctx.kernels.umap_tick, &[(1, whole(&counter))]);
    let (gx, gy) = ctx.grid(n.div_ceil(64) as u32)?;
    let bytes = (n * dim * 4) as u64;
    for first in (0..epochs).step_by(UMAP_EPOCHS_PER_SUBMIT) {
        let last = (first + UMAP_EPOCHS_PER_SUBMIT).min(epochs);
        ctx.run(|enc| {
            for _ in first..last {
                dispatch(enc, &ctx.kernels.umap_heads, &heads, (gx, gy, 1));
                dispatch(enc, &ctx.kernels.umap_tails, &tails, (gx, gy, 1));
                enc.copy_buffer_to_buffer(&next, 0, &prev, 0, bytes);
                dispatch(enc, &ctx.kernels.umap_tick, &tick, (1, 1, 1));
            }
            Ok(())
        })?;
    }
    ctx.read(&prev, 0, n * dim)
}
