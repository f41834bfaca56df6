//! Names: cell names checked unique, gene names made unique as anndata does, and
//! mitochondrial genes.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::{Error, Result};

/// Checks that cell names (obs names, barcodes) are non-empty and unique: they key every
/// per-cell output and the joins with VDJ contigs, so a duplicate would merge two cells.
/// `field` names the element or file they came from.
pub(crate) fn check_cell_names(path: &Path, field: &str, names: &[String]) -> Result<()> {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if n.trim().is_empty() {
            return Err(Error::invalid(
                path,
                field,
                format!("cell name at row {i} is empty"),
            ));
        }
        if let Some(j) = first.insert(n, i) {
            return Err(Error::invalid(
                path,
                field,
                format!("cell name '{n}' appears at rows {j} and {i} (cell names must be unique)"),
            ));
        }
    }
    Ok(())
}

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
    fn cell_names_must_be_present_and_unique() {
        let p = Path::new("f.h5ad");
        assert!(check_cell_names(p, "/obs/_index", &v(&["a", "b"])).is_ok());
        let e = check_cell_names(p, "/obs/_index", &v(&["a", "b", "a"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "f.h5ad: /obs/_index: cell name 'a' appears at rows 0 and 2 (cell names must be unique)"
        );
        let e = check_cell_names(p, "/obs/_index", &v(&["a", " "]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "f.h5ad: /obs/_index: cell name at row 1 is empty");
    }

    #[test]
    fn mito_prefix_is_case_insensitive() {
        assert!(is_mito("MT-CO1"));
        assert!(is_mito("mt-Nd1"));
        assert!(!is_mito("MTOR"));
        assert!(!is_mito("M"));
    }
}
