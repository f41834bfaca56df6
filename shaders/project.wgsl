// Projection of the dense scaled block onto the principal components: P = D V with D
// (rows x k_pad, row-major) and V (k_pad x c_pad, zero-padded), a TILE x TILE shared-memory tiled
// GEMM (c is ~50, so the projection is small next to the Gram). The host subtracts μᵀV in f64.

struct Params {
    rows: u32,
    k_pad: u32,
    c_pad: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dense: array<f32>;
@group(0) @binding(2) var<storage, read> comps: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// TILE, the side of the output tile and the K-step, comes from the host
// (src/backend/gpu/kernels/project.rs).
var<workgroup> As: array<f32, TILE * TILE>;
var<workgroup> Bs: array<f32, TILE * TILE>;

@compute @workgroup_size(TILE, TILE)
fn project(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // x: column tiles of P; y (and z for more rows than one dimension allows): row tiles.
    let row_tile = wg.y + wg.z * nwg.y;
    let r = row_tile * TILE + lid.y;
    let c = wg.x * TILE + lid.x;
    var sum = 0.0;
    for (var k0 = 0u; k0 < params.k_pad; k0 += TILE) {
        var a = 0.0;
        if (r < params.rows) {
            a = dense[r * params.k_pad + k0 + lid.x];
        }
        As[lid.y * TILE + lid.x] = a;
        Bs[lid.y * TILE + lid.x] = comps[(k0 + lid.y) * params.c_pad + c];
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            sum = fma(As[lid.y * TILE + kk], Bs[kk * TILE + lid.x], sum);
        }
        workgroupBarrier();
    }
    if (r < params.rows) {
        out[r * params.c_pad + c] = sum;
    }
}
