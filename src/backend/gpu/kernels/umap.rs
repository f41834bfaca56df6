//! UMAP's SGD epochs (`shaders/umap.wgsl`), deterministic on a device: heads move against the
//! layout at the start of the epoch, tails add their stamped moves in edge order.

use bytemuck::{Pod, Zeroable};

use super::{GpuContext, GpuError, Shader, bind, dispatch, kernel, whole};
use crate::backend::umap_sgd::{SgdGraph, SgdParams};

/// Threads per workgroup of `umap_heads` and `umap_tails` (one point each).
const WG: u32 = 64;
/// Epochs per submission: bounds the time of one command buffer.
const EPOCHS_PER_SUBMIT: usize = 25;

pub(super) const SHADER: Shader = Shader {
    file: "umap.wgsl",
    body: include_str!("../../../../shaders/umap.wgsl"),
    consts: &[("WG", WG)],
};

kernel! {
    /// `umap_heads`: each point walks its edges in order.
    UmapHeads = umap_heads in SHADER {
        params: 0, counter: 1, head_ptr: 2, edges: 3, drawn: 4, prev: 5, next: 6, moves: 7,
    }
}

kernel! {
    /// `umap_tails`: each point adds the moves stamped in this epoch, in slot order.
    UmapTails = umap_tails in SHADER { params: 0, counter: 1, next: 6, moves: 7, in_ptr: 8 }
}

kernel! {
    /// `umap_tick`: the next epoch.
    UmapTick = umap_tick in SHADER { counter: 1 }
}

/// `Params` of umap.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct UmapParams {
    pub(super) n: u32,
    pub(super) dim: u32,
    pub(super) seed: u32,
    pub(super) n_epochs: u32,
    pub(super) a: f32,
    pub(super) b: f32,
    pub(super) gamma: f32,
    pub(super) negative_rate: f32,
    pub(super) learning_rate: f32,
    pub(super) _pad0: u32,
    pub(super) _pad1: u32,
    pub(super) _pad2: u32,
}

/// `Edge` of umap.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct UmapEdge {
    pub(super) tail: u32,
    pub(super) rate: f32,
    pub(super) slot: u32,
}

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
        ..Zeroable::zeroed()
    });
    let counter = ctx.upload(&[0u32]);
    let hp = ctx.upload(&head_ptr);
    let eb = ctx.upload(&edges);
    let drawn = ctx.upload(&vec![0u32; m]);
    let prev = ctx.upload(embedding);
    let next = ctx.upload(embedding);
    let mv = ctx.upload(&moves);
    let ip = ctx.upload(&in_ptr);
    let heads = bind(
        ctx,
        UmapHeads {
            params: whole(&params),
            counter: whole(&counter),
            head_ptr: whole(&hp),
            edges: whole(&eb),
            drawn: whole(&drawn),
            prev: whole(&prev),
            next: whole(&next),
            moves: whole(&mv),
        },
    );
    let tails = bind(
        ctx,
        UmapTails {
            params: whole(&params),
            counter: whole(&counter),
            next: whole(&next),
            moves: whole(&mv),
            in_ptr: whole(&ip),
        },
    );
    let tick = bind(
        ctx,
        UmapTick {
            counter: whole(&counter),
        },
    );
    let (gx, gy) = ctx.grid(n.div_ceil(WG as usize) as u32)?;
    let bytes = (n * dim * 4) as u64;
    for first in (0..epochs).step_by(EPOCHS_PER_SUBMIT) {
        let last = (first + EPOCHS_PER_SUBMIT).min(epochs);
        // Between submissions no encoder is open: a cancelled run unwinds with nothing in
        // flight but buffers, which drop.
        crate::cancel::checkpoint();
        ctx.run(|enc| {
            for _ in first..last {
                dispatch(enc, &heads, (gx, gy, 1));
                dispatch(enc, &tails, (gx, gy, 1));
                enc.copy_buffer_to_buffer(&next, 0, &prev, 0, bytes);
                dispatch(enc, &tick, (1, 1, 1));
            }
            Ok(())
        })?;
    }
    ctx.read(&prev, 0, n * dim)
}
