// Shared helpers, prepended to every kernel file by the Rust side (WGSL has no #include).

// Knuth's TwoSum: s + e == a + b exactly (round-to-nearest f32). WGSL cannot mark float
// operations exact, and shader compilers simplify s - (s - a) to a, which zeroes the error
// term; every intermediate is therefore multiplied by `one`, a 1.0 the compiler cannot see
// (it comes from a uniform), so no algebraic identity applies.
fn two_sum(a: f32, b: f32, one: f32) -> vec2<f32> {
    let s = (a + b) * one;
    let bb = (s - a) * one;
    let t = (s - bb) * one;
    let e = (a - t) * one + (b - bb) * one;
    return vec2<f32>(s, e);
}

// Adds v to a double-single number (hi, lo) and renormalises.
fn ds_add(acc: vec2<f32>, v: f32, one: f32) -> vec2<f32> {
    let s = two_sum(acc.x, v, one);
    let lo = (s.y + acc.y) * one;
    let hi = (s.x + lo) * one;
    return vec2<f32>(hi, lo - (hi - s.x) * one);
}

// Adds two double-single numbers.
fn ds_add2(a: vec2<f32>, b: vec2<f32>, one: f32) -> vec2<f32> {
    let s = two_sum(a.x, b.x, one);
    let lo = (s.y + a.y + b.y) * one;
    let hi = (s.x + lo) * one;
    return vec2<f32>(hi, lo - (hi - s.x) * one);
}

// Flat workgroup index of a 2D dispatch (x then y), for more than 65,535 workgroups.
fn flat_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}
