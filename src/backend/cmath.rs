//! The C library's float32 `log1pf` and `expm1f` in vector lanes, bit for bit.
//!
//! scanpy's `log1p` is numpy's, and numpy's float32 `log1p` and `expm1` are the C library's
//! `log1pf` and `expm1f` on processors without AVX-512 (with AVX-512 numpy has its own vector
//! code, which differs from them by one unit in the last place on some values: 6 % of
//! `log1p`'s). cartscope reproduces the C library's values, the ones its golden outputs were
//! computed with, so its normalised matrix and its highly variable genes match them exactly.
//! Called one value at a time, the C functions are scalar calls with branches; here the same
//! algorithms (fdlibm's `s_log1pf.c` and `s_expm1f.c`, which the GNU C library ships for
//! float32) run in vector lanes, every branch computed and selected, with the same float32
//! operations in the same order (no FMA), eight lanes with AVX2 and sixteen with AVX-512.
//! Values outside the range the lanes handle go to the C functions themselves. Tests compare
//! both widths with the C functions on every 97th (`log1p`) or 7th (`expm1`) float32 of the
//! lanes' ranges and on the branches' edges; the whole ranges were compared once, with no
//! difference.
//!
//! - `log1p(x) = k ln 2 + log(1 + f)` with `1 + x = 2^k (1 + f)` and a correction term for the
//!   rounding of `1 + x`; `log(1 + f)` from `s = f / (2 + f)` and a degree-7 polynomial in
//!   `s^2`. Lanes: zero and `[2^-29, 2^53)`.
//! - `expm1(x) = 2^k (expm1(r) + 1) - 1` with `x = k ln 2 + r`, `|r| <= ln 2 / 2` and a
//!   correction term for the reduction; `expm1(r)` from a rational function with a degree-5
//!   polynomial. Lanes: zero and `[2^-25, 27 ln 2)`.

/// Lanes per step with AVX2 or none (sixteen with AVX-512).
const LANES: usize = 8;

/// Bits of the smallest value `log1p`'s lanes take, 2^-29 (the C function returns
/// `x - x^2 / 2` or `x` below it).
const LOG1P_LOW: i32 = 0x3100_0000;
/// Bits of 2^53: from here on `log1pf` skips `1 + x` (`x` alone is exact enough).
const LOG1P_HIGH: i32 = 0x5a00_0000;
/// Bits of 2^-25, the smallest value `expm1`'s lanes take (`expm1f` returns `x` below it).
const EXPM1_LOW: i32 = 0x3300_0000;
/// Bits of 27 ln 2: from here on `expm1f` is `-1` for negative values and near overflow.
const EXPM1_HIGH: i32 = 0x4195_b844;

const LN2_HI: f32 = f32::from_bits(0x3f31_7180);
const LN2_LO: f32 = f32::from_bits(0x3717_f7d1);
const LP: [f32; 7] = [
    f32::from_bits(0x3f2a_aaab),
    f32::from_bits(0x3ecc_cccd),
    f32::from_bits(0x3e92_4925),
    f32::from_bits(0x3e63_8e29),
    f32::from_bits(0x3e3a_3325),
    f32::from_bits(0x3e1c_d04f),
    f32::from_bits(0x3e17_8897),
];

/// `ln(1 + x)` of every value in place, each bit for bit `f32::ln_1p` (the C library's
/// `log1pf`).
pub fn ln_1p_f32(data: &mut [f32]) {
    map::<Log1p>(data)
}

/// `e^x - 1` of every value in place, each bit for bit `f32::exp_m1` (the C library's
/// `expm1f`).
pub fn exp_m1_f32(data: &mut [f32]) {
    map::<Expm1>(data)
}

/// A function of values in vector lanes, the bits of the values it takes (`LO..HI`, and
/// zero) and the C function for the others.
trait LaneFn {
    const LO: i32;
    const HI: i32;
    fn lanes<const N: usize>(x: &[f32; N]) -> [f32; N];
    fn scalar(x: f32) -> f32;
}

struct Log1p;

impl LaneFn for Log1p {
    const LO: i32 = LOG1P_LOW;
    const HI: i32 = LOG1P_HIGH;
    #[inline(always)]
    fn lanes<const N: usize>(x: &[f32; N]) -> [f32; N] {
        log1p_lanes(x)
    }
    fn scalar(x: f32) -> f32 {
        x.ln_1p()
    }
}

struct Expm1;

impl LaneFn for Expm1 {
    const LO: i32 = EXPM1_LOW;
    const HI: i32 = EXPM1_HIGH;
    #[inline(always)]
    fn lanes<const N: usize>(x: &[f32; N]) -> [f32; N] {
        expm1_lanes(x)
    }
    fn scalar(x: f32) -> f32 {
        x.exp_m1()
    }
}

fn map<F: LaneFn>(data: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the processor has AVX-512 (checked on the line above).
        unsafe { map_avx512::<F>(data) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked on the line above).
        unsafe { map_avx2::<F>(data) };
        return;
    }
    map_lanes::<F, LANES>(data);
}

/// [`map_lanes`] compiled for AVX-512, sixteen lanes (no FMA either).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn map_avx512<F: LaneFn>(data: &mut [f32]) {
    map_lanes::<F, 16>(data);
}

/// [`map_lanes`] compiled for AVX2 (no FMA: the same roundings as the C functions).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn map_avx2<F: LaneFn>(data: &mut [f32]) {
    map_lanes::<F, LANES>(data);
}

#[inline(always)]
fn map_lanes<F: LaneFn, const N: usize>(data: &mut [f32]) {
    let mut chunks = data.chunks_exact_mut(N);
    for chunk in &mut chunks {
        let x: &mut [f32; N] = chunk.try_into().expect("a full chunk");
        let mut inside = true;
        for v in x.iter() {
            let hx = v.to_bits() as i32;
            inside &= (F::LO..F::HI).contains(&hx) || hx == 0;
        }
        if inside {
            *x = F::lanes(x);
        } else {
            x.iter_mut().for_each(|v| *v = F::scalar(*v));
        }
    }
    chunks
        .into_remainder()
        .iter_mut()
        .for_each(|v| *v = F::scalar(*v));
}

/// fdlibm's `log1pf` of values in `[2^-29, 2^53)` or zero, every branch computed and
/// selected.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn log1p_lanes<const N: usize>(x: &[f32; N]) -> [f32; N] {
    let mut out = [0f32; N];
    for l in 0..N {
        let x = x[l];
        let hx = x.to_bits() as i32;
        // x < 0.41422 (sqrt(2) - 1): k = 0, f = x.
        let small_x = hx < 0x3ed4_13d7;
        let u = 1.0 + x;
        let hu = u.to_bits() as i32;
        let mut k = (hu >> 23) - 127;
        // The rounding error of 1 + x, relative to it.
        let c = if k > 0 { 1.0 - (u - x) } else { x - (u - 1.0) } / u;
        let mut hu = hu & 0x007f_ffff;
        // 1 + x = 2^k m: m normalised into [sqrt(2)/2, sqrt(2)).
        let half = hu >= 0x0035_04f7;
        let m = f32::from_bits((hu | if half { 0x3f00_0000 } else { 0x3f80_0000 }) as u32);
        if half {
            k += 1;
            hu = (0x0080_0000 - hu) >> 2;
        }
        let (f, k, hu, c) = if small_x {
            (x, 0, 1, 0.0)
        } else {
            (m - 1.0, k, hu, c)
        };
        let hfsq = 0.5 * f * f;
        let kf = k as f32;
        // |f| < 2^-20.
        let tiny = if f == 0.0 {
            if k == 0 {
                0.0
            } else {
                kf * LN2_HI + (c + kf * LN2_LO)
            }
        } else {
            let r = hfsq * (1.0 - 0.666_666_7 * f);
            if k == 0 {
                f - r
            } else {
                kf * LN2_HI - ((r - (kf * LN2_LO + c)) - f)
            }
        };
        let s = f / (2.0 + f);
        let z = s * s;
        let r = z
            * (LP[0]
                + z * (LP[1] + z * (LP[2] + z * (LP[3] + z * (LP[4] + z * (LP[5] + z * LP[6]))))));
        let general = if k == 0 {
            f - (hfsq - s * (hfsq + r))
        } else {
            kf * LN2_HI - ((hfsq - (s * (hfsq + r) + (kf * LN2_LO + c))) - f)
        };
        let y = if hu == 0 { tiny } else { general };
        out[l] = if hx == 0 { x } else { y };
    }
    out
}

const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
const Q: [f32; 5] = [
    f32::from_bits(0xbd08_8889),
    f32::from_bits(0x3ad0_0d01),
    f32::from_bits(0xb8a6_70cd),
    f32::from_bits(0x3686_7e54),
    f32::from_bits(0xb457_edbb),
];

/// fdlibm's `expm1f` of values in `[2^-25, 27 ln 2)` or zero, every branch computed and
/// selected.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn expm1_lanes<const N: usize>(x: &[f32; N]) -> [f32; N] {
    let mut out = [0f32; N];
    for l in 0..N {
        let x0 = x[l];
        let hx = x0.to_bits() as i32;
        // x = k ln 2 + r: k = 0 up to ln 2 / 2, 1 up to 3 ln 2 / 2, else the nearest integer.
        let k = if hx <= 0x3eb1_7218 {
            0
        } else if hx < 0x3f85_1592 {
            1
        } else {
            (INV_LN2 * x0 + 0.5) as i32
        };
        let kf = k as f32;
        let (hi, lo) = if k == 1 {
            (x0 - LN2_HI, LN2_LO)
        } else {
            (x0 - kf * LN2_HI, kf * LN2_LO)
        };
        let r = hi - lo;
        let c = (hi - r) - lo;
        let x = if k == 0 { x0 } else { r };
        let hfx = 0.5 * x;
        let hxs = x * hfx;
        let r1 = 1.0 + hxs * (Q[0] + hxs * (Q[1] + hxs * (Q[2] + hxs * (Q[3] + hxs * Q[4]))));
        let t = 3.0 - r1 * hfx;
        let e = hxs * ((r1 - t) / (6.0 - x * t));
        let k0 = x - (x * e - hxs);
        let e = (x * (e - c) - c) - hxs;
        let k1 = if x < -0.25 {
            -2.0 * (e - (x + 0.5))
        } else {
            1.0 + 2.0 * (x - e)
        };
        // 2^k (1 + expm1(r)) - 1 with 1 - 2^-k (k < 23) or 2^-k folded in first, the power of
        // two added to the exponent bits.
        let small_k = k < 23;
        let t = f32::from_bits(if small_k {
            (0x3f80_0000 - (0x0100_0000 >> k.clamp(0, 31))) as u32
        } else {
            ((0x7f - k) << 23) as u32
        });
        let y = if small_k {
            t - (e - x)
        } else {
            (x - (e + t)) + 1.0
        };
        let kn = f32::from_bits((y.to_bits() as i32).wrapping_add(k << 23) as u32);
        let y = match k {
            0 => k0,
            1 => k1,
            _ => kn,
        };
        out[l] = if hx == 0 { x0 } else { y };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Apply = fn(&mut [f32]);

    /// `F` on `bits` as the processor runs it (AVX-512, AVX2 or baseline) and in 8 and 16
    /// lanes of the baseline build, against the C function.
    fn check<F: LaneFn>(name: &str, f: Apply, bits: impl Iterator<Item = u32>) {
        let values: Vec<f32> = bits.map(f32::from_bits).collect();
        let widths: [(&str, Apply); 3] = [
            ("dispatched", f),
            ("8 lanes", map_lanes::<F, 8>),
            ("16 lanes", map_lanes::<F, 16>),
        ];
        for (width, f) in widths {
            let mut fast = values.clone();
            f(&mut fast);
            for (v, got) in values.iter().zip(&fast) {
                let want = F::scalar(*v);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{name}({v:e}) = {got:e} ({width}), the C library {want:e}"
                );
            }
        }
    }

    /// Values around the edges of the lanes' ranges and of the algorithms' branches, values
    /// outside the lanes, and typical log-normalised values with zeros among them.
    fn edges(branches: &[i32], powers_minus_one: bool) -> Vec<u32> {
        let mut bits = vec![0u32, 0x8000_0000, 1, 0x7f80_0000, 0xff80_0000, 0x7fc0_0000];
        for &edge in branches {
            for d in -300i32..300 {
                bits.push(edge.wrapping_add(d) as u32);
            }
        }
        if powers_minus_one {
            // 1 + x just below a power of two, where the normalised mantissa rounds to 1.
            for e in 0..60 {
                let p = (2f32.powi(e) - 1.0).to_bits();
                bits.extend((0..40).flat_map(|d| [p.wrapping_sub(d), p.wrapping_add(d)]));
            }
        }
        bits.extend((0..20_000u32).map(|i| {
            if i % 3 == 0 {
                0
            } else {
                (i as f32 * 0.000_37).to_bits()
            }
        }));
        bits.extend((0..20_000u32).map(|i| (i as f32 * 0.37).to_bits()));
        bits
    }

    #[test]
    fn log1p_of_every_97th_value_of_its_lanes_is_the_c_librarys() {
        let range = LOG1P_LOW as u32..LOG1P_HIGH as u32;
        check::<Log1p>("log1p", ln_1p_f32, range.step_by(97));
    }

    #[test]
    fn log1p_at_the_edges_and_outside_the_lanes_is_the_c_librarys() {
        let branches = [LOG1P_LOW, LOG1P_HIGH, 0x3ed4_13d7, 0x3f80_0000, 0x4000_0000];
        check::<Log1p>("log1p", ln_1p_f32, edges(&branches, true).into_iter());
    }

    #[test]
    fn expm1_of_every_7th_value_of_its_lanes_is_the_c_librarys() {
        let range = EXPM1_LOW as u32..EXPM1_HIGH as u32;
        check::<Expm1>("expm1", exp_m1_f32, range.step_by(7));
    }

    #[test]
    fn expm1_at_the_edges_and_outside_the_lanes_is_the_c_librarys() {
        let mut branches = vec![EXPM1_LOW, EXPM1_HIGH, 0x3eb1_7218, 0x3f85_1592];
        // Where k, the multiple of ln 2, steps, and where 23 starts.
        branches
            .extend((2..28).map(|k| ((k as f32 - 0.5) * std::f32::consts::LN_2).to_bits() as i32));
        check::<Expm1>("expm1", exp_m1_f32, edges(&branches, false).into_iter());
    }
}
