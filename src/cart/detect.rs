//! Finding the CAR construct among a dataset's features.
//!
//! CAR-T single-cell references add the construct as an extra feature (CART_BIOLOGY: `CAR`,
//! `CAT_scFv`, `FMC63-28Z`, `muCD19BBz`, `Kymriah`, `Yescarta`). A feature is a candidate when,
//! case-insensitively,
//! - its name is one of [`CAR_EXACT_NAMES`], or
//! - it contains one of [`CAR_NAME_PATTERNS`] (`scFv`, `FMC63`, `CD19BBz`, `CD19-28z`), or
//! - `CAR` is a whole token of it, tokens being split at `_`, `-`, `.`, `:` and spaces
//!   (`CAR_construct`, `CD19-CAR`), so that human genes such as CARD11, CARM1 or CARS1 are not
//!   mistaken for the construct.

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
    fn ignores_genes_that_merely_contain_car() {
        for n in [
            "CARD11", "CARM1", "CARS1", "CARHSP1", "SCARB1", "CD3E", "MT-CO1",
        ] {
            assert!(!is_car_feature(n), "{n}");
        }
    }
}
