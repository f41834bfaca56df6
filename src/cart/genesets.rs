//! Gene sets scored per cell: the CAR-T defaults (docs/cart-calls.md) and GMT files.
//!
//! GMT, the field's standard format (MSigDB): one set per line, tab-separated: name,
//! description, then the genes. Blank lines and lines starting with `#` are skipped.
//! `--gene-sets FILE.gmt` replaces the defaults (`--gene-sets-mode replace`, the default) or
//! adds to them (`extend`, where a set of the same name replaces the default one).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A named list of genes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeneSet {
    /// Set name; its score is written as `<name>_score`.
    pub name: String,
    /// Gene symbols, in the order given.
    pub genes: Vec<String>,
}

/// The default sets (docs/cart-calls.md; the first four are also the reference script's).
pub(crate) const DEFAULT_SETS: [(&str, &[&str]); 5] = [
    (
        "exhaustion",
        &["PDCD1", "HAVCR2", "LAG3", "TIGIT", "CTLA4", "TOX", "ENTPD1"],
    ),
    (
        "memory",
        &["TCF7", "SELL", "CCR7", "IL7R", "LEF1", "CD27", "CD28"],
    ),
    (
        "cytotoxicity",
        &["PRF1", "IFNG", "GZMK", "GZMB", "NKG7", "GNLY"],
    ),
    (
        "proliferation",
        &["MKI67", "TOP2A", "TYMS", "ZWINT", "TUBA1B"],
    ),
    ("treg", &["FOXP3", "IL2RA", "CTLA4", "CCR4"]),
];

/// How a GMT file combines with the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GeneSetsMode {
    /// Only the file's sets.
    #[default]
    Replace,
    /// The defaults plus the file's sets (same name: the file's wins).
    Extend,
}

/// The default gene sets.
pub fn default_sets() -> Vec<GeneSet> {
    DEFAULT_SETS
        .iter()
        .map(|(name, genes)| GeneSet {
            name: (*name).to_string(),
            genes: genes.iter().map(|g| (*g).to_string()).collect(),
        })
        .collect()
}

/// Parses GMT text; `path` names the file in errors.
pub(crate) fn parse_gmt(path: &Path, text: &str) -> Result<Vec<GeneSet>> {
    let bad = |line: usize, message: String| Error::GeneSets {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut sets: Vec<GeneSet> = Vec::new();
    // A byte-order mark, as some editors write, is not part of the first set's name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (k, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 3 {
            return Err(bad(
                k + 1,
                "expected NAME<TAB>DESCRIPTION<TAB>GENE... (tab-separated, at least one gene)"
                    .into(),
            ));
        }
        let name = fields[0].trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(bad(
                k + 1,
                format!("set name '{name}' must be non-empty letters, digits, '_', '-' or '.'"),
            ));
        }
        if sets.iter().any(|s| s.name == name) {
            return Err(bad(k + 1, format!("set '{name}' is defined twice")));
        }
        let mut genes: Vec<String> = Vec::new();
        for g in fields[2..]
            .iter()
            .map(|g| g.trim())
            .filter(|g| !g.is_empty())
        {
            if !genes.iter().any(|x| x == g) {
                genes.push(g.to_string());
            }
        }
        if genes.is_empty() {
            return Err(bad(k + 1, format!("set '{name}' lists no genes")));
        }
        sets.push(GeneSet {
            name: name.to_string(),
            genes,
        });
    }
    if sets.is_empty() {
        return Err(bad(0, "no gene set found".into()));
    }
    Ok(sets)
}

/// The sets to score: the defaults, or a GMT file's sets replacing or extending them.
pub fn load(file: Option<&Path>, mode: GeneSetsMode) -> Result<Vec<GeneSet>> {
    let Some(path) = file else {
        return Ok(default_sets());
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    let from_file = parse_gmt(path, &text)?;
    Ok(match mode {
        GeneSetsMode::Replace => from_file,
        GeneSetsMode::Extend => {
            let mut sets: Vec<GeneSet> = default_sets()
                .into_iter()
                .filter(|d| !from_file.iter().any(|f| f.name == d.name))
                .collect();
            sets.extend(from_file);
            sets
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gmt_and_extends_defaults() {
        let p = Path::new("sets.gmt");
        let sets = parse_gmt(p, "# comment\nifn\tinterferon\tISG15\tIFI6\tISG15\n\n").unwrap();
        assert_eq!(sets[0].genes, vec!["ISG15", "IFI6"]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.gmt");
        std::fs::write(&f, "memory\tmine\tTCF7\nifn\tx\tISG15\n").unwrap();
        let ext = load(Some(&f), GeneSetsMode::Extend).unwrap();
        let names: Vec<&str> = ext.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "exhaustion",
                "cytotoxicity",
                "proliferation",
                "treg",
                "memory",
                "ifn"
            ]
        );
        assert_eq!(load(Some(&f), GeneSetsMode::Replace).unwrap().len(), 2);
    }

    #[test]
    fn a_bom_and_crlf_line_ends_are_not_part_of_the_sets() {
        let p = Path::new("sets.gmt");
        let sets = parse_gmt(p, "\u{feff}ifn\tx\tISG15\tIFI6\r\ntreg\tx\tFOXP3\r\n").unwrap();
        assert_eq!(sets[0].name, "ifn");
        assert_eq!(sets[0].genes, vec!["ISG15", "IFI6"]);
        assert_eq!(sets[1].genes, vec!["FOXP3"]);
    }

    #[test]
    fn bad_gmt_names_the_file_and_line() {
        let err = parse_gmt(Path::new("bad.gmt"), "ok\td\tA\nbroken line without tabs\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err.lines().count(), 1);
        assert!(err.starts_with("bad.gmt: line 2: "), "{err}");
    }
}
