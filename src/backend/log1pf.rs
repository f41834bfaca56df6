//! `log1p` of float32 values eight at a time, bit for bit the C library's `log1pf`.
//!
//! scanpy's `log1p` is numpy's, and numpy's float32 `log1p` is the C library's `log1pf` on
//! processors without AVX-512 (with AVX-512 numpy has its own vector code, which differs from
//! it by one unit in the last place on about 6 % of values). cartscope reproduces the C
//! library's values, the ones its golden outputs were computed with, so its normalised matrix
//! matches them exactly. Called one value at a time the C function is a scalar call with
//! branches; here the same algorithm (fdlibm's `s_log1pf.c`, which the GNU C library ships
//! for float32: `log1p(x) = k ln 2 + log(1 + f)` with `1 + x = 2^k (1 + f)` and a correction
//! term for the rounding of `1 + x`, `log(1 + f)` from `s = f / (2 + f)` and a degree-7
//! polynomial in `s^2`) runs in vector lanes, every branch computed and selected, with the
//! same float32 operations in the same order (no FMA). Values outside the range the lanes
//! handle (negative, below 2^-29 but not zero, at or above 2^53, infinities, NaN) go to the C
//! function itself. A test compares the two on every 97th float32 of the vector range and on
//! its edges; the whole range (687 million values) was compared once, with no difference.

/// Lanes per step.
const LANES: usize = 8;

/// Bits of the smallest value the lanes take, 2^-29 (the C function returns `x - x^2 / 2` or
/// `x` below it).
const LOW: i32 = 0x3100_0000;
/// Bits of 2^53: from here on the C function skips `1 + x` (`x` alone is exact enough).
const HIGH: i32 = 0x5a00_0000;

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
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked on the line above).
        unsafe { ln_1p_avx2(data) };
        return;
    }
    ln_1p_lanes(data);
}

/// [`ln_1p_lanes`] compiled for AVX2 (no FMA: the same roundings as the C function).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn ln_1p_avx2(data: &mut [f32]) {
    ln_1p_lanes(data);
}

#[inline(always)]
fn ln_1p_lanes(data: &mut [f32]) {
    let mut chunks = data.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        let x: &mut [f32; LANES] = chunk.try_into().expect("a full chunk");
        let mut inside = true;
        for v in x.iter() {
            let hx = v.to_bits() as i32;
            inside &= (LOW..HIGH).contains(&hx) || hx == 0;
        }
        if inside {
            *x = lanes(x);
        } else {
            x.iter_mut().for_each(|v| *v = v.ln_1p());
        }
    }
    chunks
        .into_remainder()
        .iter_mut()
        .for_each(|v| *v = v.ln_1p());
}

/// fdlibm's `log1pf` of eight values in `[2^-29, 2^53)` or zero, every branch computed and
/// selected.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn lanes(x: &[f32; LANES]) -> [f32; LANES] {
    let mut out = [0f32; LANES];
    for l in 0..LANES {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bits: impl Iterator<Item = u32>) {
        let values: Vec<f32> = bits.map(f32::from_bits).collect();
        let mut fast = values.clone();
        ln_1p_f32(&mut fast);
        for (v, got) in values.iter().zip(&fast) {
            let want = v.ln_1p();
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "log1p({v:e}) = {got:e}, the C library {want:e}"
            );
        }
    }

    #[test]
    fn every_97th_value_of_the_vector_range_is_the_c_librarys() {
        check((LOW as u32..HIGH as u32).step_by(97));
    }

    #[test]
    fn the_edges_and_the_values_outside_the_lanes_are_the_c_librarys() {
        let mut bits = vec![0u32, 0x8000_0000, 1, 0x7f80_0000, 0xff80_0000, 0x7fc0_0000];
        for edge in [
            LOW,
            HIGH,
            0x3ed4_13d7,
            0x3f80_0000,
            0x4000_0000,
            0xbe95_f61f_u32 as i32,
        ] {
            for d in -300i32..300 {
                bits.push(edge.wrapping_add(d) as u32);
            }
        }
        // 1 + x just below a power of two, where the normalised mantissa rounds to 1.
        for e in 0..60 {
            let p = 2f32.powi(e);
            for d in 0..40 {
                bits.push((p - 1.0).to_bits().wrapping_sub(d));
                bits.push((p - 1.0).to_bits().wrapping_add(d));
            }
        }
        // Typical normalised counts, with zeros among them (dense rows).
        bits.extend((0..20_000u32).map(|i| {
            if i % 3 == 0 {
                0
            } else {
                (i as f32 * 0.37).to_bits()
            }
        }));
        check(bits.into_iter());
    }
}
