// Exact kNN candidates: for each query, the `list_len` candidates of smallest
// |p|² - 2 q·p (the squared distance less the constant |q|²), never materialising the
// distance matrix. A workgroup owns 64 queries and streams the candidates in tiles of 64:
// 256 threads compute the 64 x 64 dot-product tile with 4 x 4 register blocks (dimensions
// staged 16 at a time through workgroup memory), then one thread per query merges the tile
// into its private sorted list. Lists carry over between dispatches (`first` = 0), so the
// candidates can be streamed in slices that respect the binding limits. Each query's largest
// kept key also goes to `worst_d` (one f32 per query), so the host, which re-ranks the lists
// with f64 distances and certifies them from that key, reads back only the indices and it.

struct Params {
    n_q: u32,
    n_c: u32,
    dim: u32,
    list_len: u32,
    // Global index of candidate 0 of this slice.
    c_offset: u32,
    // 1: start from empty lists; 0: continue the lists in best_d/best_i.
    first: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> queries: array<f32>;
@group(0) @binding(2) var<storage, read> cands: array<f32>;
@group(0) @binding(3) var<storage, read> cnorm: array<f32>;
@group(0) @binding(4) var<storage, read_write> best_d: array<f32>;
@group(0) @binding(5) var<storage, read_write> best_i: array<u32>;
// Per query: the largest key of its list (best_d's last slot), INF while the list is not full.
@group(0) @binding(6) var<storage, read_write> worst_d: array<f32>;

const QT: u32 = 64u;
const CT: u32 = 64u;
const DS: u32 = 16u;
const KMAX: u32 = 64u;
const INF: f32 = 3.0e38;

// [d][q] and [d][c] slices of the query and candidate tiles.
var<workgroup> Qs: array<vec4<f32>, 256>;
var<workgroup> Cs: array<vec4<f32>, 256>;
// [q][c] scores of the current tile.
var<workgroup> Dt: array<f32, 4096>;

@compute @workgroup_size(256)
fn knn_candidates(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let q0 = flat_group(wg, nwg) * QT;
    if (q0 >= params.n_q) {
        return;
    }
    let tq = t / 16u;
    let tc = t % 16u;
    let len = params.list_len;
    // The selecting thread's list (t < QT), sorted ascending.
    var ld: array<f32, KMAX>;
    var li: array<u32, KMAX>;
    let my_q = q0 + t;
    let selecting = t < QT && my_q < params.n_q;
    for (var s = 0u; s < len; s++) {
        ld[s] = INF;
        li[s] = 0xffffffffu;
        if (selecting && params.first == 0u) {
            ld[s] = best_d[my_q * len + s];
            li[s] = best_i[my_q * len + s];
        }
    }
    var worst = ld[len - 1u];
    // Loader coordinates: element e = t + 256 l of a 64 x 16 slice, dimension fastest.
    for (var c0 = 0u; c0 < params.n_c; c0 += CT) {
        var sums: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i++) {
            sums[i] = vec4<f32>(0.0);
        }
        for (var d0 = 0u; d0 < params.dim; d0 += DS) {
            for (var l = 0u; l < 4u; l++) {
                let e = t + 256u * l;
                let d = e % DS;
                let p = e / DS;
                var qv = 0.0;
                var cv = 0.0;
                if (d0 + d < params.dim) {
                    if (q0 + p < params.n_q) {
                        qv = queries[(q0 + p) * params.dim + d0 + d];
                    }
                    if (c0 + p < params.n_c) {
                        cv = cands[(c0 + p) * params.dim + d0 + d];
                    }
                }
                // Scalar writes into the vec4 layout [d][p / 4][p % 4].
                Qs[d * 16u + p / 4u][p % 4u] = qv;
                Cs[d * 16u + p / 4u][p % 4u] = cv;
            }
            workgroupBarrier();
            for (var d = 0u; d < DS; d++) {
                let qv = Qs[d * 16u + tq];
                let cv = Cs[d * 16u + tc];
                sums[0] = fma(vec4<f32>(qv.x), cv, sums[0]);
                sums[1] = fma(vec4<f32>(qv.y), cv, sums[1]);
                sums[2] = fma(vec4<f32>(qv.z), cv, sums[2]);
                sums[3] = fma(vec4<f32>(qv.w), cv, sums[3]);
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) {
                let c = c0 + tc * 4u + j;
                var score = INF;
                if (c < params.n_c) {
                    score = cnorm[c] - 2.0 * sums[i][j];
                }
                Dt[(tq * 4u + i) * CT + tc * 4u + j] = score;
            }
        }
        workgroupBarrier();
        if (selecting) {
            let m = min(CT, params.n_c - c0);
            for (var j = 0u; j < m; j++) {
                let s = Dt[t * CT + j];
                if (s < worst) {
                    var at = len - 1u;
                    while (at > 0u && ld[at - 1u] > s) {
                        ld[at] = ld[at - 1u];
                        li[at] = li[at - 1u];
                        at -= 1u;
                    }
                    ld[at] = s;
                    li[at] = params.c_offset + c0 + j;
                    worst = ld[len - 1u];
                }
            }
        }
        workgroupBarrier();
    }
    if (selecting) {
        for (var s = 0u; s < len; s++) {
            best_d[my_q * len + s] = ld[s];
            best_i[my_q * len + s] = li[s];
        }
        worst_d[my_q] = ld[len - 1u];
    }
}
