//! Gene names: uniqueness as anndata makes it, and mitochondrial genes.

use std::collections::{HashMap, HashSet};

/// Makes names unique exactly as anndata's `var_names_make_unique` (`make_index_unique`) does:
/// the first occurrence keeps its name, later ones get `-1`, `-2`, ... per name, skipping any
/// suffix that would collide with a name already present. Returns true if anything changed.
pub(crate) fn make_unique(names: &mut [String]) -> bool {
    let mut seen: HashSet<String> = HashSet::with_capacity(names.len());
    let dup: Vec<bool> = names.iter().map(|n| !seen.insert(n.clone())).collect();
    if !dup.iter().any(|&d| d) {
        return false;
    }
    // `seen` now holds every original value, as anndata's `values_set`.
    let mut counter: HashMap<String, usize> = HashMap::new();
    for (name, _) in names.iter_mut().zip(&dup).filter(|(_, d)| **d) {
        let c = counter.entry(name.clone()).or_insert(0);
        loop {
            *c += 1;
            let candidate = format!("{name}-{c}");
            if seen.insert(candidate.clone()) {
                *name = candidate;
                break;
            }
        }
    }
    true
}

/// Whether a gene is mitochondrial by scanpy's convention (`MT-` prefix, case-insensitive,
/// so mouse `mt-` genes count too).
pub(crate) fn is_mito(name: &str) -> bool {
    name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("MT-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn matches_anndata_make_index_unique() {
        // anndata: pd.Index(["a","a","b","a","a-1"]) -> ["a","a-2","b","a-3","a-1"]
        let mut n = v(&["a", "a", "b", "a", "a-1"]);
        assert!(make_unique(&mut n));
        assert_eq!(n, v(&["a", "a-2", "b", "a-3", "a-1"]));
        let mut u = v(&["x", "y"]);
        assert!(!make_unique(&mut u));
    }

    #[test]
    fn mito_prefix_is_case_insensitive() {
        assert!(is_mito("MT-CO1"));
        assert!(is_mito("mt-Nd1"));
        assert!(!is_mito("MTOR"));
        assert!(!is_mito("M"));
    }
}
