// Gram matrix G = DᵀD of a dense row-major block D (rows x k_pad), register-tiled like an
// SGEMM: each workgroup owns one 128 x 128 output tile of the upper triangle (tile row <= tile
// column; the host mirrors it) and one slice of the rows; each of its 256 threads keeps an
// 8 x 8 block of f32 sums in registers, fed by 8-row K-slices staged in workgroup memory.
// Every FLUSH (64) rows the f32 sums are added into a double-single accumulator in memory, so the
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

const TILE: u32 = 128u;
const BK: u32 = 8u;
const FLUSH: u32 = 64u;
// K-slices of the two column tiles, as vec4 (TILE / 4 = 32 per row).
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

fn flush(sums: ptr<function, array<vec4<f32>, 16>>, base: u32, ty: u32, tx: u32) {
    for (var i = 0u; i < 8u; i++) {
        let r = select(ty * 4u + i, 64u + ty * 4u + i - 4u, i >= 4u);
        for (var h = 0u; h < 2u; h++) {
            let v = (*sums)[i * 2u + h];
            let c = h * 64u + tx * 4u;
            let o = base + r * params.k_pad + c;
            acc[o] = ds_add(acc[o], v.x, params.one);
            acc[o + 1u] = ds_add(acc[o + 1u], v.y, params.one);
            acc[o + 2u] = ds_add(acc[o + 2u], v.z, params.one);
            acc[o + 3u] = ds_add(acc[o + 3u], v.w, params.one);
            (*sums)[i * 2u + h] = vec4<f32>(0.0);
        }
    }
}

@compute @workgroup_size(256)
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
    let tx = t % 16u;
    let ty = t / 16u;
    let ld4 = params.k_pad / 4u;
    let r0 = split * params.rows_per_split;
    let r1 = min(r0 + params.rows_per_split, params.rows);
    // Loader coordinates: one vec4 of each tile per thread per K-slice.
    let lk = t / 32u;
    let lc = t % 32u;
    var sums: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        sums[i] = vec4<f32>(0.0);
    }
    let base = split * params.k_pad * params.k_pad + ti * TILE * params.k_pad + tj * TILE;
    var since = 0u;
    for (var r = r0; r < r1; r += BK) {
        let row = (r + lk) * ld4;
        As[t] = dense[row + ti * 32u + lc];
        Bs[t] = dense[row + tj * 32u + lc];
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = As[kk * 32u + ty];
            let a1 = As[kk * 32u + 16u + ty];
            let b0 = Bs[kk * 32u + tx];
            let b1 = Bs[kk * 32u + 16u + tx];
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
@compute @workgroup_size(256)
fn gram_fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
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

@compute @workgroup_size(256)
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
