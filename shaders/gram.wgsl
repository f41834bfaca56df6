// Gram matrix G = DᵀD of a dense row-major block D (rows x k_pad), register-tiled like an
// SGEMM: each workgroup owns one TILE x TILE output tile of the upper triangle (tile row <=
// tile column; the host mirrors it) and one slice of the rows; each of its WG threads keeps an
// 8 x 8 block of f32 sums in registers, fed by BK-row K-slices staged in workgroup memory.
// Every FLUSH rows the f32 sums are added into a double-single accumulator in memory, so the
// result keeps ~48-bit accuracy however many rows are summed (1M+ cells).

struct Params {
    k_pad: u32,
    // Rows of D (a multiple of BK).
    rows: u32,
    // Rows per split (a multiple of BK); split s takes rows [s * rows_per_split, ...).
    rows_per_split: u32,
    // Splits in the accumulator (its first dimension).
    n_splits: u32,
    // 1.0, opaque to the compiler (see two_sum).
    one: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dense: array<vec4<f32>>;
// [split][k_pad][k_pad] double-single sums.
@group(0) @binding(2) var<storage, read_write> acc: array<vec2<f32>>;

// TILE, BK and WG come from the host (src/backend/gpu/kernels/gram.rs).
const FLUSH: u32 = 64u;
// A tile row as vec4s.
const TILE4: u32 = TILE / 4u;
// Half a tile: each thread's 8 x 8 block is four 4 x 4 blocks, one in each quadrant.
const HALF: u32 = TILE / 2u;
// Threads per tile side (each covering 4 rows or columns of each half).
const SIDE: u32 = HALF / 4u;
// A thread's 8 x 8 block of sums, as vec4s (two per row).
const BLOCK4: u32 = 16u;
// One thread per 8 x 8 block; one vec4 of each K-slice per thread.
const_assert WG == SIDE * SIDE;
const_assert WG == BK * TILE4;
const_assert FLUSH % BK == 0u;
// K-slices of the two column tiles, as vec4.
var<workgroup> As: array<vec4<f32>, BK * TILE4>;
var<workgroup> Bs: array<vec4<f32>, BK * TILE4>;

fn flush(sums: ptr<function, array<vec4<f32>, BLOCK4>>, base: u32, ty: u32, tx: u32) {
    for (var i = 0u; i < 8u; i++) {
        let r = select(ty * 4u + i, HALF + ty * 4u + i - 4u, i >= 4u);
        for (var h = 0u; h < 2u; h++) {
            let v = (*sums)[i * 2u + h];
            let c = h * HALF + tx * 4u;
            let o = base + r * params.k_pad + c;
            acc[o] = ds_add(acc[o], v.x, params.one);
            acc[o + 1u] = ds_add(acc[o + 1u], v.y, params.one);
            acc[o + 2u] = ds_add(acc[o + 2u], v.z, params.one);
            acc[o + 3u] = ds_add(acc[o + 3u], v.w, params.one);
            (*sums)[i * 2u + h] = vec4<f32>(0.0);
        }
    }
}

@compute @workgroup_size(WG)
fn gram(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let ti = wg.x;
    let tj = wg.y;
    if (ti > tj) {
        return;
    }
    let split = wg.z;
    let tx = t % SIDE;
    let ty = t / SIDE;
    let ld4 = params.k_pad / 4u;
    let r0 = split * params.rows_per_split;
    let r1 = min(r0 + params.rows_per_split, params.rows);
    // Loader coordinates: one vec4 of each tile per thread per K-slice.
    let lk = t / TILE4;
    let lc = t % TILE4;
    var sums: array<vec4<f32>, BLOCK4>;
    for (var i = 0u; i < BLOCK4; i++) {
        sums[i] = vec4<f32>(0.0);
    }
    let base = split * params.k_pad * params.k_pad + ti * TILE * params.k_pad + tj * TILE;
    var since = 0u;
    for (var r = r0; r < r1; r += BK) {
        let row = (r + lk) * ld4;
        As[t] = dense[row + ti * TILE4 + lc];
        Bs[t] = dense[row + tj * TILE4 + lc];
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = As[kk * TILE4 + ty];
            let a1 = As[kk * TILE4 + SIDE + ty];
            let b0 = Bs[kk * TILE4 + tx];
            let b1 = Bs[kk * TILE4 + SIDE + tx];
            sums[0] = fma(vec4<f32>(a0.x), b0, sums[0]);
            sums[1] = fma(vec4<f32>(a0.x), b1, sums[1]);
            sums[2] = fma(vec4<f32>(a0.y), b0, sums[2]);
            sums[3] = fma(vec4<f32>(a0.y), b1, sums[3]);
            sums[4] = fma(vec4<f32>(a0.z), b0, sums[4]);
            sums[5] = fma(vec4<f32>(a0.z), b1, sums[5]);
            sums[6] = fma(vec4<f32>(a0.w), b0, sums[6]);
            sums[7] = fma(vec4<f32>(a0.w), b1, sums[7]);
            sums[8] = fma(vec4<f32>(a1.x), b0, sums[8]);
            sums[9] = fma(vec4<f32>(a1.x), b1, sums[9]);
            sums[10] = fma(vec4<f32>(a1.y), b0, sums[10]);
            sums[11] = fma(vec4<f32>(a1.y), b1, sums[11]);
            sums[12] = fma(vec4<f32>(a1.z), b0, sums[12]);
            sums[13] = fma(vec4<f32>(a1.z), b1, sums[13]);
            sums[14] = fma(vec4<f32>(a1.w), b0, sums[14]);
            sums[15] = fma(vec4<f32>(a1.w), b1, sums[15]);
        }
        workgroupBarrier();
        since += BK;
        if (since >= FLUSH) {
            flush(&sums, base, ty, tx);
            since = 0u;
        }
    }
    flush(&sums, base, ty, tx);
}

// Folds splits 1.. into split 0 (element-wise, in split order).
@compute @workgroup_size(WG)
fn gram_fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let m = params.k_pad * params.k_pad;
    if (i >= m) {
        return;
    }
    var a = acc[i];
    for (var s = 1u; s < params.n_splits; s++) {
        a = ds_add2(a, acc[s * m + i], params.one);
    }
    acc[i] = a;
}

// colsum[c] += Σ_r D[r][c] in double-single, one thread per column.
@group(0) @binding(3) var<storage, read_write> colsum: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn column_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= params.k_pad) {
        return;
    }
    var a = colsum[c];
    let ld = params.k_pad / 4u;
    for (var r = 0u; r < params.rows; r++) {
        let v = dense[r * ld + c / 4u];
        a = ds_add(a, v[c % 4u], params.one);
    }
    colsum[c] = a;
}
