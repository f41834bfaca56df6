//! Finding the CAR construct among a dataset's features.
//!
//! CAR-T single-cell references add the construct as an extra feature (docs/cart-calls.md: `CAR`,
//! `CAT_scFv`, `FMC63-28Z`, `muCD19BBz`, `Kymriah`, `Yescarta`). A feature is a candidate when,
//! case-insensitively,
//! - its name is one of [`CAR_EXACT_NAMES`], or
//! - it contains one of [`CAR_NAME_PATTERNS`] (`scFv`, `FMC63`, `CD19BBz`, `CD19-28z`), or
//! - `CAR` is a whole token of it, tokens being split at `_`, `-`, `.`, `:` and spaces
//!   (`CAR_construct`, `CD19-CAR`), so that human genes such as CARD11, CARM1 or CARS1 are not
//!   mistaken for the construct.
//!
//! Several candidates: the one detected (at least `--car-min-counts` counts) in the most cells
//! wins; ties go to the earlier class (exact name, then pattern, then token) and then to the
//! earlier feature. The others are reported. `--car-feature NAME` names it instead.

use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

/// Names that are the CAR construct (case-insensitive).
pub const CAR_EXACT_NAMES: [&str; 6] = [
    "CAR",
    "CAT_scFv",
    "FMC63-28Z",
    "muCD19BBz",
    "Kymriah",
    "Yescarta",
];

/// Substrings that mark a CAR construct (case-insensitive).
pub const CAR_NAME_PATTERNS: [&str; 4] = ["scFv", "FMC63", "CD19BBz", "CD19-28z"];

/// Whether `name` looks like a CAR construct feature.
pub fn is_car_feature(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    CAR_EXACT_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
        || CAR_NAME_PATTERNS
            .iter()
            .any(|p| lower.contains(&p.to_ascii_lowercase()))
        || lower.split(['_', '-', '.', ':', ' ']).any(|t| t == "car")
}

/// The candidate CAR features among `names`, in their order.
pub fn car_feature_candidates(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| is_car_feature(n))
        .cloned()
        .collect()
}

/// Detection class of a candidate: 0 exact name, 1 pattern, 2 `CAR` token.
fn class(name: &str) -> u8 {
    if CAR_EXACT_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        0
    } else if CAR_NAME_PATTERNS
        .iter()
        .any(|p| name.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    {
        1
    } else {
        2
    }
}

/// The features whose counts decide the CAR call: the requested one, else every candidate.
pub(crate) fn candidate_indices(names: &[String], requested: Option<&str>) -> Result<Vec<usize>> {
    match requested {
        Some(r) => names
            .iter()
            .position(|n| n == r)
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(r)))
            .map(|j| vec![j])
            .ok_or_else(|| {
                let found = car_feature_candidates(names);
                Error::Usage(format!(
                    "--car-feature {r}: no such feature in the input (candidates found: {})",
                    if found.is_empty() {
                        "none".to_string()
                    } else {
                        found.join(", ")
                    }
                ))
            }),
        None => Ok((0..names.len())
            .filter(|&j| is_car_feature(&names[j]))
            .collect()),
    }
}

/// The CAR feature chosen, with its counts in every input cell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CarChoice {
    /// Feature name.
    pub name: String,
    /// Feature index in the input.
    pub index: usize,
    /// Counts per input cell.
    pub counts: Vec<f32>,
    /// The other candidates with the number of cells that would be CAR+ by them.
    pub others: Vec<(String, usize)>,
}

/// Chooses among `candidates` (feature indices, with per-cell counts in the same order) by
/// the rule in the module header.
pub(crate) fn choose(
    names: &[String],
    candidates: &[usize],
    counts: Vec<Vec<f32>>,
    min_counts: u32,
) -> Option<CarChoice> {
    let positive = |c: &[f32]| c.iter().filter(|&&v| v >= min_counts as f32).count();
    let best = (0..candidates.len()).min_by_key(|&k| {
        (
            std::cmp::Reverse(positive(&counts[k])),
            class(&names[candidates[k]]),
            candidates[k],
        )
    })?;
    let others = (0..candidates.len())
        .filter(|&k| k != best)
        .map(|k| (names[candidates[k]].clone(), positive(&counts[k])))
        .collect();
    Some(CarChoice {
        name: names[candidates[best]].clone(),
        index: candidates[best],
        counts: counts.into_iter().nth(best)?,
        others,
    })
}

/// Appends the counts of the `candidates` columns of every row of `m`.
pub(crate) fn gather(m: &CsrMatrix, candidates: &[usize], out: &mut [Vec<f32>]) {
    for i in 0..m.n_rows {
        let (idx, val) = m.row(i);
        for (k, &j) in candidates.iter().enumerate() {
            let v = idx
                .iter()
                .position(|&c| c as usize == j)
                .map_or(0.0, |p| val[p]);
            out[k].push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_published_construct_names() {
        for n in [
            "CAR",
            "car",
            "CAT_scFv",
            "FMC63-28Z",
            "muCD19BBz",
            "KYMRIAH",
            "Yescarta",
            "anti-CD19_scFv",
            "CD19-CAR",
            "CAR_construct",
            "hCD19-28z-CAR",
        ] {
            assert!(is_car_feature(n), "{n}");
        }
    }

    #[test]
    fn several_candidates_pick_the_most_detected_then_the_exact_name() {
        let names: Vec<String> = ["CD3E", "CAR_construct", "CAR"].map(String::from).to_vec();
        let idx = candidate_indices(&names, None).unwrap();
        assert_eq!(idx, vec![1, 2]);
        let c = choose(&names, &idx, vec![vec![1.0, 0.0], vec![2.0, 1.0]], 1).unwrap();
        assert_eq!(c.name, "CAR");
        assert_eq!(c.others, vec![("CAR_construct".to_string(), 1)]);
        let tie = choose(&names, &idx, vec![vec![1.0, 0.0], vec![0.0, 1.0]], 1).unwrap();
        assert_eq!(tie.name, "CAR", "exact names win ties");
        assert!(candidate_indices(&names, Some("car")).unwrap() == vec![2]);
        assert!(candidate_indices(&names, Some("FMC63")).is_err());
    }

    #[test]
    fn ignores_genes_that_merely_contain_car() {
        for n in [
            "CARD11", "CARM1", "CARS1", "CARHSP1", "SCARB1", "CD3E", "MT-CO1",
        ] {
            assert!(!is_car_feature(n), "{n}");
        }
    }
}
