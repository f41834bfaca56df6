//! `gram += XᵀX`, `colsum += Σ rows` of the dense scaled block (`shaders/gram.wgsl`): register
//! tiled upper-triangle tiles, f32 sums flushed into double-single accumulators.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::scale::{DenseSource, for_each_dense_batch};
use super::{GpuContext, GpuError, Shader, bind, dispatch, kernel, whole};

/// Output tile (columns are padded to a multiple of it).
pub(super) const TILE: usize = 128;
/// Rows per K-slice (rows are padded to a multiple of it).
pub(super) const BK: usize = 8;
/// Threads per workgroup of every entry point; in `gram` one per 8 x 8 block of the tile.
const WG: u32 = 256;

pub(super) const SHADER: Shader = Shader {
    file: "gram.wgsl",
    body: include_str!("../../../../shaders/gram.wgsl"),
    consts: &[("TILE", TILE as u32), ("BK", BK as u32), ("WG", WG)],
};

kernel! {
    /// `gram`: one output tile and one row split per workgroup.
    Gram = gram in SHADER { params: 0, dense: 1, acc: 2 }
}

kernel! {
    /// `gram_fold`: row splits 1.. into split 0.
    GramFold = gram_fold in SHADER { params: 0, acc: 2 }
}

kernel! {
    /// `column_sums`: one thread per column.
    ColumnSums = column_sums in SHADER { params: 0, dense: 1, colsum: 3 }
}

/// `Params` of gram.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct GramParams {
    pub(super) k_pad: u32,
    pub(super) rows: u32,
    pub(super) rows_per_split: u32,
    pub(super) n_splits: u32,
    pub(super) one: f32,
    pub(super) _pad0: u32,
    pub(super) _pad1: u32,
    pub(super) _pad2: u32,
}

/// `k` rounded up to whole Gram tiles (at least one): the columns of a dense block.
pub(super) fn k_padded(k: usize) -> usize {
    k.div_ceil(TILE).max(1) * TILE
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
    let tiles = (k_pad / TILE) as u32;
    for_each_dense_batch(ctx, src, k_pad, |enc, dense, _rows, rows_pad, _| {
        let per_split = rows_pad.div_ceil(n_splits).div_ceil(BK) * BK;
        let params = ctx.uniform(&GramParams {
            k_pad: k_pad as u32,
            rows: rows_pad as u32,
            rows_per_split: per_split as u32,
            n_splits: n_splits as u32,
            one: 1.0,
            ..Zeroable::zeroed()
        });
        let tiled = bind(
            ctx,
            Gram {
                params: whole(&params),
                dense: whole(dense),
                acc: whole(&acc),
            },
        );
        dispatch(enc, &tiled, (tiles, tiles, n_splits as u32));
        let sums = bind(
            ctx,
            ColumnSums {
                params: whole(&params),
                dense: whole(dense),
                colsum: whole(&cs),
            },
        );
        dispatch(enc, &sums, (k_pad.div_ceil(WG as usize) as u32, 1, 1));
        Ok(())
    })?;
    if n_splits > 1 {
        let params = ctx.uniform(&GramParams {
            k_pad: k_pad as u32,
            rows: 0,
            rows_per_split: 1,
            n_splits: n_splits as u32,
            one: 1.0,
            ..Zeroable::zeroed()
        });
        let (gx, gy) = ctx.grid((k_pad * k_pad).div_ceil(WG as usize) as u32)?;
        ctx.run(|enc| {
            let fold = bind(
                ctx,
                GramFold {
                    params: whole(&params),
                    acc: whole(&acc),
                },
            );
            dispatch(enc, &fold, (gx, gy, 1));
            Ok(())
        })?;
    }
    let g: Vec<[f32; 2]> = ctx.read(&acc, 0, k_pad * k_pad)?;
    let s: Vec<[f32; 2]> = ctx.read(&cs, 0, k)?;
    let val = |i: usize| f64::from(g[i][0]) + f64::from(g[i][1]);
    gram.par_chunks_mut(k).enumerate().for_each(|(a, row)| {
        for (b, o) in row.iter_mut().enumerate() {
            // Only tiles on or above the diagonal were computed.
            *o += if a / TILE <= b / TILE {
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
