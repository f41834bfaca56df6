//! Every random generator of the library, each reproducing a stated reference so that a
//! result depends on the seed only:
//!
//! - [`NumpyRandomState`]: numpy's legacy `RandomState` (MT19937), as far as `score_genes` and
//!   Leiden use it. scanpy's `score_genes` seeds the global state with
//!   `np.random.seed(random_state)` and draws each bin's control genes with pandas
//!   `Series.sample(n)`, which is `RandomState.choice(len, n, replace=False)` =
//!   `permutation(len)[:n]`: a Fisher-Yates shuffle of `arange(len)` from the last element
//!   down, each index drawn by numpy's masked rejection sampler (`random_interval`).
//!   python-igraph's Leiden draws from the same generator. Reproducing exactly that stream
//!   makes our control genes and Leiden visiting orders the ones scanpy gets for the same seed.
//! - [`splitmix`]: the output step of SplitMix64 (Steele, Lea & Flood 2014; Vigna's reference
//!   `splitmix64.c`), which derives decorrelated seeds (per cell, per tree, per stage) from one
//!   seed for the xoshiro generators of the simulator, NN-descent and UMAP.
//! - [`pcg_hash`]: the PCG hash of Jarzynski & Olano 2020 ("Hash Functions for GPU
//!   Rendering"), the counter-based generator of UMAP's negative sampling, computed the same
//!   way by the CPU kernel and by `shaders/umap.wgsl`.

/// MT19937 state with numpy's integer seeding (`init_genrand`).
#[derive(Debug, Clone)]
pub(crate) struct NumpyRandomState {
    mt: Box<[u32; 624]>,
    pos: usize,
}

impl NumpyRandomState {
    /// `np.random.seed(seed)` for a seed in `0..2^32`.
    pub fn seed(seed: u32) -> Self {
        let mut mt = Box::new([0u32; 624]);
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        NumpyRandomState { mt, pos: 624 }
    }

    /// `np.random.RandomState([lo, hi])` (numpy's `init_by_array`) for a seed of 2^32 or more,
    /// which `RandomState(seed)` itself rejects; `seed(s)` below 2^32.
    pub fn seed_u64(seed: u64) -> Self {
        let Ok(small) = u32::try_from(seed) else {
            return Self::seed_by_array(&[seed as u32, (seed >> 32) as u32]);
        };
        Self::seed(small)
    }

    /// numpy's `init_by_array(key)`.
    fn seed_by_array(key: &[u32]) -> Self {
        let mut s = Self::seed(19_650_218);
        let mt = &mut s.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        s.pos = 624;
        s
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.mt[i] & UPPER) | (self.mt[(i + 1) % 624] & LOWER);
            let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.pos = 0;
    }

    /// The next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `RandomState.tomaxint()` on a 64-bit `long`: a 64-bit draw (high word first) shifted
    /// right by one.
    pub fn tomaxint(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        let lo = u64::from(self.next_u32());
        ((hi << 32) | lo) >> 1
    }

    /// `RandomState.random()`: 53 random bits in `[0, 1)`.
    pub fn random(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// numpy's `random_interval(max)`: uniform in `0..=max` by masked rejection.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `RandomState.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u32) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// SplitMix64's output for the state `x` (Vigna's `splitmix64.c`: add the golden-ratio
/// increment, then mix): decorrelates seeds derived from one seed. `splitmix(0)` is the
/// reference's first output from state 0.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// PCG hash (Jarzynski & Olano 2020): a 32-bit permutation with good avalanche, used as a
/// counter-based generator (also cheap in WGSL, where `shaders/umap.wgsl` computes the same).
#[inline]
pub(crate) fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_for_seed_zero() {
        // python -c "import numpy as np; np.random.seed(0); print(np.random.randint(0, 2**32, 3, dtype=np.uint64))"
        // draws 32-bit words directly: 2357136044 2546248239 3071714933
        let mut r = NumpyRandomState::seed(0);
        assert_eq!(
            [r.next_u32(), r.next_u32(), r.next_u32()],
            [2_357_136_044, 2_546_248_239, 3_071_714_933]
        );
        // np.random.seed(0); np.random.permutation(10)
        let mut r = NumpyRandomState::seed(0);
        assert_eq!(r.permutation(10), vec![2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
        // r = np.random.RandomState(0); r.tomaxint(), r.random()
        let mut r = NumpyRandomState::seed(0);
        assert_eq!(r.tomaxint(), 5_061_911_111_874_532_631);
        assert_eq!(r.random(), 0.7151893663724195);
        // np.random.RandomState([1, 1]).randint(0, 2**32, 2, dtype=np.uint64)
        let mut r = NumpyRandomState::seed_u64((1 << 32) | 1);
        assert_eq!([r.next_u32(), r.next_u32()], [991_850_117, 2_151_679_444]);
    }

    #[test]
    fn splitmix_is_the_reference_output() {
        // splitmix64.c seeded with 0 and 1: the first next() of each.
        assert_eq!(splitmix(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix(1), 0x910a_2dec_8902_5cc1);
    }

    #[test]
    fn pcg_hash_is_the_reference_permutation() {
        // pcg_hash of Jarzynski & Olano 2020, evaluated in 32-bit unsigned arithmetic.
        assert_eq!(pcg_hash(0), 129_708_002);
        assert_eq!(pcg_hash(1), 2_831_084_092);
        assert_eq!(pcg_hash(u32::MAX), 3_861_530_882);
    }
}
