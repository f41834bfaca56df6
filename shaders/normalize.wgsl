// normalize_total + log1p of a CSR row chunk, in place: one workgroup per row.
// x / f32(t_i / target), then ln(1 + x); rows with t_i = 0 keep factor 1 (they hold no values).

struct Params {
    n_rows: u32,
    target_sum: f32,
    // 1.0, opaque to the compiler (see two_sum).
    one: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Row offsets into `data`, relative to this chunk (n_rows + 1 entries).
@group(0) @binding(1) var<storage, read> indptr: array<u32>;
@group(0) @binding(2) var<storage, read_write> data: array<f32>;

// WG, the threads per workgroup, comes from the host (src/backend/gpu/kernels/normalize.rs).
// The reduction halves it down to one.
const_assert 0u == (WG & (WG - 1u));
var<workgroup> hi_s: array<f32, WG>;
var<workgroup> lo_s: array<f32, WG>;

// ln(1 + x) without the cancellation of log(1 + x) for small x: the rounding error of
// u = 1 + x is corrected to first order (Goldberg's trick, written as a correction term).
fn log1p_acc(x: f32) -> f32 {
    let u = 1.0 + x;
    if (u == 1.0) {
        return x;
    }
    return log(u) - ((u - 1.0) - x) / u;
}

@compute @workgroup_size(WG)
fn normalize_log1p(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row = flat_group(wg, nwg);
    if (row >= params.n_rows) {
        return;
    }
    let a = indptr[row];
    let b = indptr[row + 1u];
    // Row total with compensated (double-single) sums: the CPU sums in f64, then rounds.
    var acc = vec2<f32>(0.0, 0.0);
    for (var p = a + t; p < b; p += WG) {
        acc = ds_add(acc, data[p], params.one);
    }
    hi_s[t] = acc.x;
    lo_s[t] = acc.y;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (t < s) {
            let r = ds_add2(vec2<f32>(hi_s[t], lo_s[t]), vec2<f32>(hi_s[t + s], lo_s[t + s]), params.one);
            hi_s[t] = r.x;
            lo_s[t] = r.y;
        }
        workgroupBarrier();
    }
    let total = hi_s[0] + lo_s[0];
    var factor = 1.0;
    if (total != 0.0) {
        factor = total / params.target_sum;
    }
    for (var p = a + t; p < b; p += WG) {
        data[p] = log1p_acc(data[p] / factor);
    }
}
