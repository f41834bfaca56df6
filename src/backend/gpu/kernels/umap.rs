//! UMAP's SGD epochs (`shaders/umap.wgsl`), deterministic on a device: heads move against the
//! layout at the start of the epoch, tails add their stamped moves in edge order.

use std::ops::Range;

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
    pub(super) first_point: u32,
    pub(super) n_points: u32,
    pub(super) first_edge: u32,
}

/// `Edge` of umap.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct UmapEdge {
    pub(super) tail: u32,
    pub(super) rate: f32,
    pub(super) slot: u32,
}

/// A run of whole head points and their edges, whose per-edge arrays (edges, draws, moves)
/// each fit one storage binding: the unit the kernels bind. A point's edges never straddle
/// two parts (one invocation walks them in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// Head points.
    pub(crate) points: Range<usize>,
    /// Their edges: `head_ptr[points.start]..head_ptr[points.end]`.
    pub(crate) edges: Range<usize>,
}

/// Splits the head points (edges `head_ptr[i]..head_ptr[i + 1]` of point i) into consecutive
/// [`Part`]s of at most `max_edges` edges each, as few as that allows; errors if one point alone
/// has more.
pub(crate) fn parts(head_ptr: &[usize], max_edges: usize) -> Result<Vec<Part>, GpuError> {
    let n = head_ptr.len().saturating_sub(1);
    let mut out = Vec::new();
    let mut p0 = 0;
    while p0 < n {
        let e0 = head_ptr[p0];
        // Points p0..p1 fit: the last p1 whose edges start within max_edges of e0.
        let p1 = p0 + head_ptr[p0..=n].partition_point(|&e| e - e0 <= max_edges) - 1;
        if p1 == p0 {
            return Err(GpuError::LimitExceeded {
                what: format!("umap edges of point {p0}"),
                need: (head_ptr[p0 + 1] - e0) as u64,
                limit: max_edges as u64,
            });
        }
        out.push(Part {
            points: p0..p1,
            edges: e0..head_ptr[p1],
        });
        p0 = p1;
    }
    Ok(out)
}

/// Bytes per edge of the largest per-edge array: the edge record, or the move (`dim`
/// components and the epoch stamp).
fn bytes_per_edge(dim: usize) -> usize {
    std::mem::size_of::<UmapEdge>().max((dim + 1) * 4)
}

/// Epochs `0..epochs` of umap's SGD (`shaders/umap.wgsl`), the CPU's [`optimize_epoch`] per
/// epoch, with the learning rate decaying over `p.n_epochs`; returns the layout (row-major
/// `n x dim`). The per-edge arrays are split into as many [`Part`]s as the adapter's binding
/// size needs (one up to about 170 million edges at 2 GiB); the result does not depend on how
/// many.
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
    umap_epochs_in_parts(ctx, g, embedding, dim, p, epochs, usize::MAX)
}

/// The host's arrays of one [`Part`]: its edges with their slots among the part's in-edges of
/// each tail, the in-edge pointers over all points, and the moves with no epoch stamped.
struct PartArrays {
    edges: Vec<UmapEdge>,
    in_ptr: Vec<u32>,
    moves: Vec<u32>,
}

impl PartArrays {
    fn new(g: &SgdGraph, part: &Part, dim: usize) -> Self {
        let n = g.n_vertices;
        let mut in_ptr = vec![0u32; n + 1];
        for e in part.edges.clone() {
            in_ptr[g.tail[e] as usize + 1] += 1;
        }
        for i in 0..n {
            in_ptr[i + 1] += in_ptr[i];
        }
        let mut fill = in_ptr.clone();
        let edges = part
            .edges
            .clone()
            .map(|e| {
                let t = g.tail[e] as usize;
                let slot = fill[t];
                fill[t] += 1;
                UmapEdge {
                    tail: g.tail[e],
                    rate: g.rate[e],
                    slot,
                }
            })
            .collect();
        let mut moves = vec![0u32; part.edges.len() * (dim + 1)];
        for s in 0..part.edges.len() {
            moves[s * (dim + 1) + dim] = u32::MAX;
        }
        PartArrays {
            edges,
            in_ptr,
            moves,
        }
    }
}

/// [`umap_epochs`] with at most `max_edges` edges per [`Part`] (fewer where one binding holds
/// fewer).
pub(crate) fn umap_epochs_in_parts(
    ctx: &GpuContext,
    g: &SgdGraph,
    embedding: &[f32],
    dim: usize,
    p: &SgdParams,
    epochs: usize,
    max_edges: usize,
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
    ctx.fits("umap layout", (n * dim * 4) as u64)?;
    ctx.fits("umap edge pointers", ((n + 1) * 4) as u64)?;
    let max_edges = max_edges.min((ctx.max_binding() / bytes_per_edge(dim) as u64) as usize);
    let parts = parts(&g.head_ptr, max_edges)?;
    let head_ptr: Vec<u32> = g.head_ptr.iter().map(|&v| v as u32).collect();
    let counter = ctx.upload(&[0u32]);
    let hp = ctx.upload(&head_ptr);
    let prev = ctx.upload(embedding);
    let next = ctx.upload(embedding);
    // Per part: its parameters and per-edge buffers.
    let mut held = Vec::with_capacity(parts.len());
    for part in &parts {
        let a = PartArrays::new(g, part, dim);
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
            first_point: part.points.start as u32,
            n_points: part.points.len() as u32,
            first_edge: part.edges.start as u32,
        });
        let buffers = (
            ctx.upload(&a.edges),
            ctx.storage((part.edges.len() * 4) as u64),
            ctx.upload(&a.moves),
            ctx.upload(&a.in_ptr),
        );
        held.push((params, buffers, part.points.len()));
    }
    let mut heads = Vec::with_capacity(parts.len());
    let mut tails = Vec::with_capacity(parts.len());
    for (params, (eb, drawn, mv, ip), points) in &held {
        let bound = bind(
            ctx,
            UmapHeads {
                params: whole(params),
                counter: whole(&counter),
                head_ptr: whole(&hp),
                edges: whole(eb),
                drawn: whole(drawn),
                prev: whole(&prev),
                next: whole(&next),
                moves: whole(mv),
            },
        );
        heads.push((bound, ctx.grid(points.div_ceil(WG as usize) as u32)?));
        tails.push(bind(
            ctx,
            UmapTails {
                params: whole(params),
                counter: whole(&counter),
                next: whole(&next),
                moves: whole(mv),
                in_ptr: whole(ip),
            },
        ));
    }
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
                // Every part's heads read the epoch's start; tails add part after part, so
                // each point's moves come in ascending edge order.
                for (bound, grid) in &heads {
                    dispatch(enc, bound, (grid.0, grid.1, 1));
                }
                for bound in &tails {
                    dispatch(enc, bound, (gx, gy, 1));
                }
                enc.copy_buffer_to_buffer(&next, 0, &prev, 0, bytes);
                dispatch(enc, &tick, (1, 1, 1));
            }
            Ok(())
        })?;
    }
    ctx.read(&prev, 0, n * dim)
}
