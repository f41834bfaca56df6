// UMAP SGD epochs, as src/backend/umap_sgd.rs `optimize_epoch` does them on the CPU: every epoch
// reads the layout as it stood at its start (`prev`), so the result does not depend on how
// threads are scheduled. One invocation per head point walks that point's edges in order (pass 1,
// `umap_heads`), writing the point's new position to `next` and leaving each sampled edge's
// opposite move of its tail in the edge's in-edge slot, stamped with the epoch; one invocation
// per point then adds the moves stamped in this epoch in slot (= edge) order (pass 2,
// `umap_tails`). No atomics, no float sums in scheduling order: deterministic on a device. The
// host copies `next` to `prev` after each epoch and `umap_tick` advances the epoch counter, so a
// command buffer holds many epochs.
//
// Where the per-edge arrays exceed one storage binding, the host splits the head points into
// parts (runs of whole points and their edges), each with its own edges, draws, moves and
// in-edge pointers. Every part's heads run before any tails; then each part's tails add the
// moves of its edges, part after part: a tail's moves are still added in ascending edge order,
// so the layout is bit for bit the one-part result.
//
// The schedule (umap's per-edge clocks in closed form), the negative-sample hash and the
// multiply-shift index are the CPU's, bit for bit; powers use the device's exp2/log2.

struct Params {
    n: u32,
    dim: u32,
    seed: u32,
    n_epochs: u32,
    a: f32,
    b: f32,
    gamma: f32,
    negative_rate: f32,
    learning_rate: f32,
    // This part's head points, first_point..first_point + n_points, and its first edge (the
    // global index of `edges[0]`).
    first_point: u32,
    n_points: u32,
    first_edge: u32,
}

struct Edge {
    tail: u32,
    // Positive samples per epoch (w / max w).
    rate: f32,
    // The edge's position among its tail's in-edges in this part.
    slot: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// [0]: the epoch.
@group(0) @binding(1) var<storage, read_write> counter: array<u32>;
// Global edge indices, for every point.
@group(0) @binding(2) var<storage, read> head_ptr: array<u32>;
// This part's edges (global edge e at e - first_edge).
@group(0) @binding(3) var<storage, read> edges: array<Edge>;
// Negative samples drawn by each of this part's edges so far.
@group(0) @binding(4) var<storage, read_write> drawn: array<u32>;
@group(0) @binding(5) var<storage, read> prev: array<f32>;
@group(0) @binding(6) var<storage, read_write> next: array<f32>;
// Per slot of this part: dim f32 move components (as bits), then the epoch that wrote them.
@group(0) @binding(7) var<storage, read_write> moves: array<u32>;
// Slots of this part's edges whose tail is point k: in_ptr[k]..in_ptr[k + 1].
@group(0) @binding(8) var<storage, read> in_ptr: array<u32>;

// WG, the points (threads) per workgroup, comes from the host
// (src/backend/gpu/kernels/umap.rs).

fn pcg_hash(x: u32) -> u32 {
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// High 32 bits of a * b (WGSL has no 64-bit integers).
fn mul_hi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

fn samples_by(epoch: u32, rate: f32) -> u32 {
    return u32(f32(epoch) * rate);
}

fn sampled(epoch: u32, rate: f32) -> bool {
    return epoch > 0u && samples_by(epoch, rate) > samples_by(epoch - 1u, rate);
}

fn negatives_by(epoch: u32, neg_rate: f32) -> u32 {
    return max(u32(f32(epoch) * neg_rate), 1u) - 1u;
}

fn pow_b(x: f32) -> f32 {
    return exp2(params.b * log2(x));
}

fn clip(v: f32) -> f32 {
    return clamp(v, -4.0, 4.0);
}

fn point(k: u32) -> vec4<f32> {
    var x = vec4<f32>(0.0);
    for (var d = 0u; d < params.dim; d++) {
        x[d] = prev[k * params.dim + d];
    }
    return x;
}

@compute @workgroup_size(WG)
fn umap_heads(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let local = flat_group(wg, nwg) * WG + t;
    if (local >= params.n_points) {
        return;
    }
    let j = params.first_point + local;
    let epoch = counter[0];
    let dim = params.dim;
    let a = params.a;
    let b = params.b;
    let alpha = params.learning_rate * (1.0 - f32(epoch) / f32(params.n_epochs));
    let stream = pcg_hash(epoch ^ pcg_hash(params.seed));
    var cur = point(j);
    for (var e = head_ptr[j]; e < head_ptr[j + 1u]; e++) {
        let edge = edges[e - params.first_edge];
        if (!sampled(epoch, edge.rate)) {
            continue;
        }
        let other = point(edge.tail);
        let diff = cur - other;
        let d2 = dot(diff, diff);
        var coeff = 0.0;
        if (d2 > 0.0) {
            let pb = pow_b(d2);
            coeff = -2.0 * a * b * (pb / d2) / (a * pb + 1.0);
        }
        let base = edge.slot * (dim + 1u);
        for (var d = 0u; d < dim; d++) {
            let grad = clip(coeff * diff[d]);
            cur[d] += grad * alpha;
            moves[base + d] = bitcast<u32>(-grad * alpha);
        }
        moves[base + dim] = epoch;
        let total = negatives_by(epoch, edge.rate * params.negative_rate);
        let done = drawn[e - params.first_edge];
        let n_neg = select(0u, total - done, total > done);
        drawn[e - params.first_edge] = max(done, total);
        // The pushes of one positive sample's negative samples from the same position, summed.
        let key = pcg_hash(e ^ stream);
        var push = vec4<f32>(0.0);
        for (var draw = 0u; draw < n_neg; draw++) {
            let k = mul_hi(pcg_hash(key + draw * 0x9E3779B9u), params.n);
            if (k == j) {
                continue;
            }
            let dn = cur - point(k);
            let q2 = dot(dn, dn);
            if (q2 <= 0.0) {
                continue;
            }
            let c = 2.0 * params.gamma * b / ((0.001 + q2) * (a * pow_b(q2) + 1.0));
            for (var d = 0u; d < dim; d++) {
                push[d] += clip(c * dn[d]) * alpha;
            }
        }
        cur += push;
    }
    for (var d = 0u; d < dim; d++) {
        next[j * dim + d] = cur[d];
    }
}

@compute @workgroup_size(WG)
fn umap_tails(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let k = flat_group(wg, nwg) * WG + t;
    if (k >= params.n) {
        return;
    }
    let epoch = counter[0];
    let dim = params.dim;
    for (var s = in_ptr[k]; s < in_ptr[k + 1u]; s++) {
        let base = s * (dim + 1u);
        if (moves[base + dim] == epoch) {
            for (var d = 0u; d < dim; d++) {
                next[k * dim + d] += bitcast<f32>(moves[base + d]);
            }
        }
    }
}

@compute @workgroup_size(1)
fn umap_tick() {
    counter[0] += 1u;
}
