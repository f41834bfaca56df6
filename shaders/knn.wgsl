// Exact kNN candidates: for each query, the `list_len` candidates of smallest
// |p|² - 2 q·p (the squared distance less the constant |q|²), never materialising the
// distance matrix. A workgroup owns QT queries and streams the candidates in tiles of CT = QT:
// its WG threads compute the QT x CT dot-product tile with 4 x 4 register blocks (dimensions
// staged DS at a time through workgroup memory), then all WG threads merge the tile into
// sorted lists held in private memory: PARTS threads per query, each taking its share of the
// tile's candidates into its own list. Lists carry over between dispatches (`first` = 0), so
// the candidates can be streamed in slices that respect the binding limits. After the last
// slice (`last` = 1) the PARTS lists of a query are merged by (key, index), which gives the
// same list one thread taking every candidate in index order would keep. Each query's largest
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
    // 1: merge each query's lists into part 0 and write worst_d.
    last: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> queries: array<f32>;
@group(0) @binding(2) var<storage, read> cands: array<f32>;
@group(0) @binding(3) var<storage, read> cnorm: array<f32>;
// [part][query][list_len]: the lists of the PARTS threads of each query; after the last slice
// part 0 holds the merged list.
@group(0) @binding(4) var<storage, read_write> best_d: array<f32>;
@group(0) @binding(5) var<storage, read_write> best_i: array<u32>;
// Per query: the largest key of its merged list, INF while the list is not full.
@group(0) @binding(6) var<storage, read_write> worst_d: array<f32>;

// From the host (src/backend/gpu/kernels/knn.rs): QT, the queries per workgroup; KMAX, the
// longest list; PARTS, the threads (and lists) per query; WG, the threads per workgroup.
// Candidates per tile: the loader fills both tiles from the same positions.
const CT: u32 = QT;
// Dimensions per staged slice.
const DS: u32 = 16u;
const INF: f32 = 3.0e38;
// The candidates of a tile each part takes.
const PART_C: u32 = CT / PARTS;
// Threads along the queries and the candidates of a tile, each scoring a 4 x 4 block.
const TQ: u32 = QT / 4u;
const TC: u32 = CT / 4u;
// Elements of a DS-slice of a tile each thread loads.
const LOADS: u32 = QT * DS / WG;
// Row stride of Dt: one more than CT, so the 32 queries of a subgroup reading the same
// candidate column hit distinct banks.
const DSTRIDE: u32 = CT + 1u;
// One thread per list, and per 4 x 4 block of the scores.
const_assert WG == PARTS * QT;
const_assert WG == TQ * TC;
const_assert LOADS * WG == QT * DS;

// [d][q] and [d][c] slices of the query and candidate tiles.
var<workgroup> Qs: array<vec4<f32>, DS * TQ>;
var<workgroup> Cs: array<vec4<f32>, DS * TC>;
// [q][c] scores of the current tile.
var<workgroup> Dt: array<f32, QT * DSTRIDE>;
// [part][q] largest key of each list as of the previous tile. A candidate whose key is not
// below another part's is left out: that part already holds list_len candidates with smaller
// or equal keys and smaller indices, so the merged list could not hold it either.
var<workgroup> Wp: array<f32, PARTS * QT>;

// Whether (d, i) comes before (e, j): by key, then by index.
fn before(d: f32, i: u32, e: f32, j: u32) -> bool {
    return d < e || (d == e && i < j);
}

@compute @workgroup_size(WG)
fn knn_candidates(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let q0 = flat_group(wg, nwg) * QT;
    if (q0 >= params.n_q) {
        return;
    }
    let tq = t / TC;
    let tc = t % TC;
    let len = params.list_len;
    // This thread's list: query t % QT, candidates of part t / QT; sorted ascending by
    // (key, index), since candidates arrive in index order and ties go after.
    var ld: array<f32, KMAX>;
    var li: array<u32, KMAX>;
    let lq = t % QT;
    let part = t / QT;
    let my_q = q0 + lq;
    let selecting = my_q < params.n_q;
    let at0 = (part * params.n_q + my_q) * len;
    for (var s = 0u; s < len; s++) {
        ld[s] = INF;
        li[s] = 0xffffffffu;
        if (selecting && params.first == 0u) {
            ld[s] = best_d[at0 + s];
            li[s] = best_i[at0 + s];
        }
    }
    var worst = ld[len - 1u];
    Wp[t] = worst;
    // Loader coordinates: element e = t + WG l of a QT x DS slice, dimension fastest.
    for (var c0 = 0u; c0 < params.n_c; c0 += CT) {
        var sums: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i++) {
            sums[i] = vec4<f32>(0.0);
        }
        for (var d0 = 0u; d0 < params.dim; d0 += DS) {
            for (var l = 0u; l < LOADS; l++) {
                let e = t + WG * l;
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
                Qs[d * TQ + p / 4u][p % 4u] = qv;
                Cs[d * TC + p / 4u][p % 4u] = cv;
            }
            workgroupBarrier();
            for (var d = 0u; d < DS; d++) {
                let qv = Qs[d * TQ + tq];
                let cv = Cs[d * TC + tc];
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
                Dt[(tq * 4u + i) * DSTRIDE + tc * 4u + j] = score;
            }
        }
        workgroupBarrier();
        if (selecting) {
            // The bar is the lowest of the parts' (this part's own is the current one).
            for (var p = 0u; p < PARTS; p++) {
                worst = min(worst, Wp[p * QT + lq]);
            }
            let j1 = min((part + 1u) * PART_C, params.n_c - c0);
            for (var j = part * PART_C; j < j1; j++) {
                let s = Dt[lq * DSTRIDE + j];
                if (s < worst) {
                    var at = len - 1u;
                    while (at > 0u && ld[at - 1u] > s) {
                        ld[at] = ld[at - 1u];
                        li[at] = li[at - 1u];
                        at -= 1u;
                    }
                    ld[at] = s;
                    li[at] = params.c_offset + c0 + j;
                    worst = min(worst, ld[len - 1u]);
                }
            }
        }
        workgroupBarrier();
        // Read above before this write; read again after the next tile's barriers.
        Wp[t] = ld[len - 1u];
    }
    // Parts 1.. hand their lists over through memory; part 0 keeps its own in registers and,
    // after the last slice, merges them all into its place.
    if (selecting && (part > 0u || params.last == 0u)) {
        for (var s = 0u; s < len; s++) {
            best_d[at0 + s] = ld[s];
            best_i[at0 + s] = li[s];
        }
    }
    if (params.last == 0u) {
        return;
    }
    storageBarrier();
    if (selecting && part == 0u) {
        // Next unread slot of each list; part 0's comes from ld/li.
        var next: array<u32, PARTS>;
        let stride = params.n_q * len;
        var top = INF;
        for (var s = 0u; s < len; s++) {
            var bd = INF;
            var bi = 0xffffffffu;
            var src_part = 0u;
            if (next[0] < len) {
                bd = ld[next[0]];
                bi = li[next[0]];
            }
            for (var p = 1u; p < PARTS; p++) {
                if (next[p] < len) {
                    let d = best_d[at0 + p * stride + next[p]];
                    let i = best_i[at0 + p * stride + next[p]];
                    if (before(d, i, bd, bi)) {
                        bd = d;
                        bi = i;
                        src_part = p;
                    }
                }
            }
            next[src_part] += 1u;
            best_d[at0 + s] = bd;
            best_i[at0 + s] = bi;
            top = bd;
        }
        worst_d[my_q] = top;
    }
}
