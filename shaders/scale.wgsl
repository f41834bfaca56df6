// Densify + scale + clip of the HVG columns of a CSR chunk (scanpy `scale` on the HVGs):
// out[r][c] = clip((x - mean_c) / std_c), implicit zeros giving clip(-mean_c / std_c).
// One workgroup per output row; columns c >= k and rows r >= n_rows are zero padding, so the
// Gram and projection kernels can use whole tiles.

struct Params {
    n_rows: u32,
    // Columns written per row (a multiple of the Gram tile).
    k_pad: u32,
    // HVG columns.
    k: u32,
    // Rows written (n_rows rounded up to the Gram K-step).
    rows_pad: u32,
    // Clip bound; negative: no clipping.
    max_value: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> indptr: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read> data: array<f32>;
// Output column of each gene, NO_COLUMN when the gene is not an HVG.
@group(0) @binding(4) var<storage, read> pos: array<u32>;
// (mean, std) per output column.
@group(0) @binding(5) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> dense: array<f32>;

// From the host (src/backend/gpu/kernels/scale.rs): WG, the threads per workgroup, and
// NO_COLUMN, the `pos` of a gene that is not an HVG.

fn scaled(x: f32, c: u32) -> f32 {
    let st = stats[c];
    let z = (x - st.x) / st.y;
    if (params.max_value >= 0.0) {
        return clamp(z, -params.max_value, params.max_value);
    }
    return z;
}

@compute @workgroup_size(WG)
fn densify_scale(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row = flat_group(wg, nwg);
    if (row >= params.rows_pad) {
        return;
    }
    let base = row * params.k_pad;
    let live = row < params.n_rows;
    for (var c = t; c < params.k_pad; c += WG) {
        var v = 0.0;
        if (live && c < params.k) {
            v = scaled(0.0, c);
        }
        dense[base + c] = v;
    }
    if (!live) {
        return;
    }
    // The stored entries overwrite the zero value; the barrier orders the two writes.
    storageBarrier();
    let a = indptr[row];
    let b = indptr[row + 1u];
    for (var p = a + t; p < b; p += WG) {
        let c = pos[indices[p]];
        if (c != NO_COLUMN) {
            dense[base + c] = scaled(data[p], c);
        }
    }
}
