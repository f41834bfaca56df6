//! The compiled compute pipelines and the host side of each kernel (one file each): upload,
//! dispatch in chunks that respect the adapter's limits, read back, finish in f64.
//!
//! Each kernel file holds the host's side of one WGSL file in `shaders/`: its [`Shader`] (the
//! file with the sizes the host and the shader share, defined once in Rust and prepended to the
//! WGSL as `const` declarations), one [`Kernel`] bindings struct per entry point (declared with
//! [`kernel!`], fields named and ordered as the WGSL `@binding` variables), and the
//! `#[repr(C)]` parameter blocks that mirror its WGSL structs (checked against them by the
//! tests in `tests.rs`, through naga's reflection of the very source the device compiles).

mod gram;
mod knn;
mod moments;
mod normalize;
mod project;
mod scale;
#[cfg(test)]
mod tests;
mod umap;

use std::fmt::Write as _;

use super::context::{DeviceBuffer, GpuContext, GpuError, Recorder};
use crate::matrix::CsrMatrix;

pub(crate) use gram::gram;
pub(crate) use knn::knn_exact;
#[cfg(test)]
pub(crate) use knn::{KNN_MARGIN, knn_candidates, knn_candidates_sliced};
pub(crate) use moments::gene_moments;
pub(crate) use normalize::normalize_log1p;
pub(crate) use project::project;
pub(crate) use scale::{DenseSource, scale_dense};
pub(crate) use umap::umap_epochs;
#[cfg(test)]
pub(crate) use umap::{parts as umap_parts, umap_epochs_in_parts};

/// Helpers every WGSL file uses (WGSL has no include).
const COMMON: &str = include_str!("../../../../shaders/common.wgsl");

/// One WGSL file of `shaders/` and the host constants it is compiled with.
pub(super) struct Shader {
    /// File name in `shaders/` (labels and test messages).
    pub(super) file: &'static str,
    /// The file's text.
    body: &'static str,
    /// `(WGSL name, value)` of each size the file shares with the host: the Rust constant is
    /// the only definition, prepended to the WGSL as `const NAME: u32 = value;`.
    consts: &'static [(&'static str, u32)],
}

impl Shader {
    /// The source the device compiles: the host constants, then `common.wgsl`, then the file.
    pub(super) fn source(&self) -> String {
        let mut s = format!(
            "// Sizes shared with the host, generated from src/backend/gpu/kernels/ for {}.\n",
            self.file
        );
        for (name, value) in self.consts {
            // Writing to a String cannot fail.
            let _ = writeln!(s, "const {name}: u32 = {value}u;");
        }
        s.push_str(COMMON);
        s.push_str(self.body);
        s
    }
}

/// An entry point's bindings: a struct with one field per `@binding` variable the entry point
/// uses, declared by [`kernel!`], which also ties it to its pipeline.
pub(super) trait Kernel<'a> {
    /// The entry point's name.
    const ENTRY: &'static str;
    /// The WGSL file that holds it.
    #[cfg(test)]
    const SHADER: &'static Shader;
    /// `(WGSL variable, binding)` of each field, in binding order.
    #[cfg(test)]
    const SLOTS: &'static [(&'static str, u32)];
    /// The entry point's compiled pipeline.
    fn pipeline(kernels: &Kernels) -> &wgpu::ComputePipeline;
    /// The bind group entries of the fields, each at its binding.
    fn entries(self) -> Vec<wgpu::BindGroupEntry<'a>>;
}

/// Declares the bindings struct of one entry point, `Name = entry in SHADER { var: binding,
/// ... }`: the fields are the entry point's `@binding` variables in binding order, named as in
/// the WGSL (the tests check both against the shader), so no call site binds by number.
macro_rules! kernel {
    (
        $(#[$doc:meta])*
        $name:ident = $entry:ident in $shader:path { $($field:ident: $binding:literal),* $(,)? }
    ) => {
        $(#[$doc])*
        pub(super) struct $name<'a> {
            $(
                #[doc = concat!("`@binding(", stringify!($binding), ") var ", stringify!($field), "`.")]
                pub(super) $field: wgpu::BindingResource<'a>,
            )*
        }

        impl<'a> super::Kernel<'a> for $name<'a> {
            const ENTRY: &'static str = stringify!($entry);
            #[cfg(test)]
            const SHADER: &'static super::Shader = &$shader;
            #[cfg(test)]
            const SLOTS: &'static [(&'static str, u32)] = &[$((stringify!($field), $binding)),*];

            fn pipeline(kernels: &super::Kernels) -> &wgpu::ComputePipeline {
                &kernels.$entry
            }

            fn entries(self) -> Vec<wgpu::BindGroupEntry<'a>> {
                vec![$(wgpu::BindGroupEntry { binding: $binding, resource: self.$field }),*]
            }
        }
    };
}
use kernel;

/// Pipelines, compiled once per context, one per entry point (named as it).
pub(crate) struct Kernels {
    normalize_log1p: wgpu::ComputePipeline,
    moments_scatter: wgpu::ComputePipeline,
    moments_fold: wgpu::ComputePipeline,
    densify_scale: wgpu::ComputePipeline,
    gram: wgpu::ComputePipeline,
    gram_fold: wgpu::ComputePipeline,
    column_sums: wgpu::ComputePipeline,
    project: wgpu::ComputePipeline,
    knn_candidates: wgpu::ComputePipeline,
    umap_heads: wgpu::ComputePipeline,
    umap_tails: wgpu::ComputePipeline,
    umap_tick: wgpu::ComputePipeline,
}

/// The pipeline of `K`'s entry point in `module` (compiled from `K::SHADER`).
fn pipeline<'a, K: Kernel<'a>>(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(K::ENTRY),
        layout: None,
        module,
        entry_point: Some(K::ENTRY),
        compilation_options: Default::default(),
        cache: None,
    })
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let module = |shader: &Shader| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.file),
                source: wgpu::ShaderSource::Wgsl(shader.source().into()),
            })
        };
        let normalize = module(&normalize::SHADER);
        let moments = module(&moments::SHADER);
        let scale = module(&scale::SHADER);
        let gram = module(&gram::SHADER);
        let project = module(&project::SHADER);
        let knn = module(&knn::SHADER);
        let umap = module(&umap::SHADER);
        Kernels {
            normalize_log1p: pipeline::<normalize::NormalizeLog1p>(device, &normalize),
            moments_scatter: pipeline::<moments::MomentsScatter>(device, &moments),
            moments_fold: pipeline::<moments::MomentsFold>(device, &moments),
            densify_scale: pipeline::<scale::DensifyScale>(device, &scale),
            gram: pipeline::<gram::Gram>(device, &gram),
            gram_fold: pipeline::<gram::GramFold>(device, &gram),
            column_sums: pipeline::<gram::ColumnSums>(device, &gram),
            project: pipeline::<project::Project>(device, &project),
            knn_candidates: pipeline::<knn::KnnCandidates>(device, &knn),
            umap_heads: pipeline::<umap::UmapHeads>(device, &umap),
            umap_tails: pipeline::<umap::UmapTails>(device, &umap),
            umap_tick: pipeline::<umap::UmapTick>(device, &umap),
        }
    }
}

/// A pipeline with its bind group, ready to dispatch.
struct Bound<'c> {
    pipeline: &'c wgpu::ComputePipeline,
    group: wgpu::BindGroup,
}

/// Binds `bindings` to group 0 of its own entry point's pipeline (whose layout holds only the
/// bindings that entry point uses).
fn bind<'c, 'a, K: Kernel<'a>>(ctx: &'c GpuContext, bindings: K) -> Bound<'c> {
    let pipeline = K::pipeline(&ctx.kernels);
    let layout = pipeline.get_bind_group_layout(0);
    let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(K::ENTRY),
        layout: &layout,
        entries: &bindings.entries(),
    });
    Bound { pipeline, group }
}

/// One dispatch in its own compute pass (timed when the context is being profiled).
fn dispatch(enc: &mut Recorder, bound: &Bound<'_>, groups: (u32, u32, u32)) {
    let mut pass = enc.compute_pass();
    pass.set_pipeline(bound.pipeline);
    pass.set_bind_group(0, &bound.group, &[]);
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
