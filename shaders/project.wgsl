// Projection of the dense scaled block onto the principal components: P = D V with D
// (rows x k_pad, row-major) and V (k_pad x c_pad, zero-padded), a 16 x 16 shared-memory tiled
// GEMM (c is ~50, so the projection is small next to the Gram). The host subtracts μᵀV in f64.

struct Params {
    rows: u32,
    k_pad: u32,
    c_pad: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dense: array<f32>;
@group(0) @binding(2) var<storage, read> comps: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> As: array<f32, 256>;
var<workgroup> Bs: array<f32, 256>;

@compute @workgroup_size(16, 16)
fn project(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // x: column tiles of P; y (and z for more rows than one dimension allows): row tiles.
    let row_tile = wg.y + wg.z * nwg.y;
    let r = row_tile * 16u + lid.y;
    let c = wg.x * 16u + lid.x;
    var sum = 0.0;
    for (var k0 = 0u; k0 < params.k_pad; k0 += 16u) {
        var a = 0.0;
        if (r < params.rows) {
            a = dense[r * params.k_pad + k0 + lid.x];
        }
        As[lid.y * 16u + lid.x] = a;
        Bs[lid.y * 16u + lid.x] = comps[(k0 + lid.y) * params.c_pad + c];
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            sum = fma(As[lid.y * 16u + kk], Bs[kk * 16u + lid.x], sum);
        }
        workgroupBarrier();
    }
    if (r < params.rows) {
        out[r * params.c_pad + c] = sum;
    }
}
