//! Repertoire statistics over clone counts: the numbers `summary.csv` and `persistence.csv`
//! report for a sample's (or a time point's) cells with a clone.
//!
//! - **expanded fraction**: cells whose clone has more than `min` cells in the repertoire
//!   (`min` = 2: scirpy's `clonal_expansion` class `> 2`), over the cells with a clone;
//! - **normalised Shannon entropy**: `-sum(p_i ln p_i) / ln(n)` over the `n` clones with
//!   frequencies `p_i`, 0 for a single clone: scirpy's
//!   `tl.alpha_diversity(metric="normalized_shannon_entropy")` (1 = every clone one cell,
//!   towards 0 = one clone dominates);
//! - **largest clone fraction**: cells of the largest clone over the cells with a clone;
//! - **Jaccard** overlap of two repertoires: shared clones over clones in either;
//! - **Morisita-Horn** overlap on clone counts `a_i`, `b_i` with totals `X`, `Y`:
//!   `2 sum(a_i b_i) / ((sum a_i^2 / X^2 + sum b_i^2 / Y^2) X Y)`; 1 for identical clone
//!   frequencies, 0 for no shared clone.
//!
//! Every statistic of an empty repertoire (or a pair with an empty one) is `None`.

use std::collections::BTreeMap;

/// Cells per clone of a set of cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repertoire {
    counts: BTreeMap<u32, u32>,
    cells: u64,
}

impl Repertoire {
    /// The repertoire of cells with these clones (one id per cell with a clone).
    pub fn from_clones(clones: impl IntoIterator<Item = u32>) -> Self {
        let mut r = Repertoire::default();
        for c in clones {
            *r.counts.entry(c).or_insert(0) += 1;
            r.cells += 1;
        }
        r
    }

    /// Cells with a clone.
    pub fn cells(&self) -> u64 {
        self.cells
    }

    /// Distinct clones.
    pub fn n_clones(&self) -> usize {
        self.counts.len()
    }

    /// Cells of `clone` (0 when absent).
    pub fn count(&self, clone: u32) -> u32 {
        self.counts.get(&clone).copied().unwrap_or(0)
    }

    /// The clones and their cells, by clone id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.counts.iter().map(|(&c, &n)| (c, n))
    }

    fn fraction(&self, cells: u64) -> Option<f64> {
        (self.cells > 0).then(|| cells as f64 / self.cells as f64)
    }

    /// Fraction of the cells whose clone has more than `min` cells here.
    pub fn expanded_fraction(&self, min: u32) -> Option<f64> {
        self.fraction(
            self.counts
                .values()
                .filter(|&&n| n > min)
                .map(|&n| u64::from(n))
                .sum(),
        )
    }

    /// Fraction of the cells in the largest clone.
    pub fn largest_fraction(&self) -> Option<f64> {
        self.fraction(self.counts.values().max().map_or(0, |&n| u64::from(n)))
    }

    /// Normalised Shannon entropy of the clone frequencies (scirpy's
    /// `normalized_shannon_entropy`: 0 for one clone).
    pub fn normalized_entropy(&self) -> Option<f64> {
        match self.counts.len() {
            0 => None,
            1 => Some(0.0),
            n => {
                let total = self.cells as f64;
                let ln_n = (n as f64).ln();
                Some(
                    -self
                        .counts
                        .values()
                        .map(|&c| {
                            let p = f64::from(c) / total;
                            p * p.ln() / ln_n
                        })
                        .sum::<f64>(),
                )
            }
        }
    }

    /// Fraction of the cells whose clone is one of `clones`.
    pub fn fraction_in(&self, clones: &Repertoire) -> Option<f64> {
        self.fraction(
            self.counts
                .iter()
                .filter(|(c, _)| clones.counts.contains_key(c))
                .map(|(_, &n)| u64::from(n))
                .sum(),
        )
    }

    /// Clones present in both.
    pub fn shared_clones(&self, other: &Repertoire) -> usize {
        self.counts
            .keys()
            .filter(|c| other.counts.contains_key(c))
            .count()
    }

    /// Jaccard index of the two sets of clones.
    pub fn jaccard(&self, other: &Repertoire) -> Option<f64> {
        if self.cells == 0 || other.cells == 0 {
            return None;
        }
        let shared = self.shared_clones(other);
        let union = self.counts.len() + other.counts.len() - shared;
        Some(shared as f64 / union as f64)
    }

    /// Morisita-Horn overlap of the two clone count vectors.
    pub fn morisita_horn(&self, other: &Repertoire) -> Option<f64> {
        if self.cells == 0 || other.cells == 0 {
            return None;
        }
        let (x, y) = (self.cells as f64, other.cells as f64);
        let squares = |r: &Repertoire| {
            r.counts
                .values()
                .map(|&c| f64::from(c) * f64::from(c))
                .sum::<f64>()
        };
        let cross: f64 = self
            .counts
            .iter()
            .map(|(c, &a)| f64::from(a) * f64::from(other.count(*c)))
            .sum();
        Some(2.0 * cross / ((squares(self) / (x * x) + squares(other) / (y * y)) * x * y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a value");
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn single_repertoire_statistics() {
        // clones 7 x3, 1 x1, 4 x2
        let r = Repertoire::from_clones([7, 1, 7, 4, 7, 4]);
        assert_eq!((r.cells(), r.n_clones()), (6, 3));
        close(r.expanded_fraction(2), 3.0 / 6.0);
        close(r.largest_fraction(), 0.5);
        let p = [0.5f64, 1.0 / 6.0, 2.0 / 6.0];
        let h = -p.iter().map(|p| p * p.ln()).sum::<f64>() / 3f64.ln();
        close(r.normalized_entropy(), h);
        close(Repertoire::from_clones([1, 1]).normalized_entropy(), 0.0);
        close(Repertoire::from_clones([1, 2, 3]).normalized_entropy(), 1.0);
        let empty = Repertoire::default();
        assert_eq!(empty.normalized_entropy(), None);
        assert_eq!(empty.expanded_fraction(2), None);
        assert_eq!(empty.jaccard(&r), None);
        assert_eq!(r.morisita_horn(&empty), None);
    }

    #[test]
    fn overlaps_match_hand_computed_values() {
        // a: {1: 2, 2: 1}; b: {2: 3, 3: 1}
        let a = Repertoire::from_clones([1, 1, 2]);
        let b = Repertoire::from_clones([2, 2, 2, 3]);
        close(a.jaccard(&b), 1.0 / 3.0);
        // 2 * (1 * 3) / ((5/9 + 10/16) * 3 * 4) = 6 / (1.180555... * 12)
        close(
            a.morisita_horn(&b),
            6.0 / ((5.0 / 9.0 + 10.0 / 16.0) * 12.0),
        );
        close(a.morisita_horn(&a), 1.0);
        close(a.fraction_in(&b), 1.0 / 3.0);
        assert_eq!(a.shared_clones(&b), 1);
        let c = Repertoire::from_clones([9]);
        close(a.morisita_horn(&c), 0.0);
        close(a.jaccard(&c), 0.0);
    }
}
