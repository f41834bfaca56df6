// Per-gene sum and sum of squares of the stored entries of a CSR chunk (implicit zeros add
// nothing). Pass 1 scatters entries into `lanes` f32 partial sums with an atomic
// compare-and-swap add; each lane takes a contiguous entry range of about 1/n_lanes of the
// rows, so each partial sums few values. Pass 2 folds the lanes, in lane order, into a
// double-single accumulator (about 48 bits of mantissa) and zeroes them for the next pass.

struct Params {
    entry_begin: u32,
    entry_end: u32,
    // Entries per workgroup.
    per_group: u32,
    // Workgroups per lane.
    groups_per_lane: u32,
    n_cols: u32,
    n_lanes: u32,
    // TRANSFORM_EXPM1: expm1(x); otherwise the values as stored.
    transform: u32,
    // 1.0, opaque to the compiler (see two_sum).
    one: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read> data: array<f32>;
// [lane][2][n_cols] f32 bit patterns: Σx then Σx².
@group(0) @binding(3) var<storage, read_write> lanes: array<atomic<u32>>;
// [2][n_cols] double-single totals.
@group(0) @binding(4) var<storage, read_write> totals: array<vec2<f32>>;

// From the host (src/backend/gpu/kernels/moments.rs): WG, the threads per workgroup, and
// TRANSFORM_EXPM1, the `transform` that asks for expm1(x).

// expm1 in f32: a Taylor polynomial (Horner, 11 terms, truncation < 1e-10 relative) below
// |x| = 0.5, where exp(x) - 1 would cancel and GPU log/exp are only accurate to ~2^-22
// absolutely; exp(x) - 1 above, where the relative error of exp carries over unchanged.
fn expm1_acc(x: f32) -> f32 {
    if (abs(x) < 0.5) {
        var r = 1.0;
        for (var i = 11; i >= 2; i--) {
            r = 1.0 + x * r / f32(i);
        }
        return x * r;
    }
    return exp(x) - 1.0;
}

fn atomic_add_f32(i: u32, v: f32) {
    var old = atomicLoad(&lanes[i]);
    loop {
        let r = atomicCompareExchangeWeak(&lanes[i], old, bitcast<u32>(bitcast<f32>(old) + v));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

@compute @workgroup_size(WG)
fn moments_scatter(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let g = flat_group(wg, nwg);
    let lane = g / params.groups_per_lane;
    if (lane >= params.n_lanes) {
        return;
    }
    let begin = params.entry_begin + g * params.per_group;
    let end = min(begin + params.per_group, params.entry_end);
    let base = lane * 2u * params.n_cols;
    for (var p = begin + t; p < end; p += WG) {
        var x = data[p];
        if (params.transform == TRANSFORM_EXPM1) {
            x = expm1_acc(x);
        }
        let j = indices[p];
        atomic_add_f32(base + j, x);
        atomic_add_f32(base + params.n_cols + j, x * x);
    }
}

@compute @workgroup_size(WG)
fn moments_fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let m = 2u * params.n_cols;
    if (i >= m) {
        return;
    }
    var acc = totals[i];
    for (var l = 0u; l < params.n_lanes; l++) {
        acc = ds_add(acc, bitcast<f32>(atomicLoad(&lanes[l * m + i])), params.one);
        atomicStore(&lanes[l * m + i], 0u);
    }
    totals[i] = acc;
}
