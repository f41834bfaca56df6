//! The batch manifest: one row per sample, CSV or TSV.
//!
//! Required columns `sample_id` and `path` (relative to the manifest's folder, or absolute);
//! optional `patient`, `timepoint` (a label) and `day` (a number that orders the time points),
//! and `vdj`, the sample's VDJ contig table (resolved like `path`; an empty field means none),
//! which is an input, not metadata; every other column is kept as sample metadata and carried
//! into the batch outputs.
//!
//! Validation is structural and covers the whole file before anything runs: a missing required
//! column, a row with the wrong number of fields, an empty or duplicate `sample_id`, a
//! `sample_id` that cannot be a folder name, an empty `path`, or a `day` that is not a finite
//! number is one [`Error::Invalid`] naming the manifest, the row and the column. Whether a
//! sample's file exists or reads is not checked here: that is the sample's own outcome
//! (recorded as failed in `batch_summary.csv`), so one bad file never blocks the others.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Columns with a meaning of their own; the others are metadata.
const KNOWN: [&str; 6] = ["sample_id", "path", "patient", "timepoint", "day", "vdj"];

/// One sample of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unique identifier; the name of its output folder.
    pub id: String,
    /// The path as written in the manifest.
    pub path_text: String,
    /// The input, resolved against the manifest's folder.
    pub path: PathBuf,
    /// Patient identifier (empty when the manifest has none).
    pub patient: String,
    /// Time-point label (empty when the manifest has none).
    pub timepoint: String,
    /// Day after infusion, ordering a patient's time points.
    pub day: Option<f64>,
    /// The VDJ contig table (10x contig CSV or AIRR TSV), resolved against the manifest's
    /// folder; none when the manifest has no `vdj` column or the field is empty.
    pub vdj: Option<PathBuf>,
    /// The other columns' values, in [`Manifest::extra_columns`] order.
    pub extra: Vec<String>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file.
    pub file: PathBuf,
    /// Names of the metadata columns beyond the known ones, in file order.
    pub extra_columns: Vec<String>,
    /// Whether the file has `patient`, `timepoint` and `day` columns.
    pub has_patient: bool,
    /// See `has_patient`.
    pub has_timepoint: bool,
    /// See `has_patient`.
    pub has_day: bool,
    /// Whether the file has a `vdj` column.
    pub has_vdj: bool,
    /// The samples, in file order.
    pub samples: Vec<Sample>,
}

/// Splits one line of delimited text; fields may be double-quoted (`""` inside quotes is a
/// quote). Returns None for an unterminated quote.
pub fn split_line(line: &str, delim: char) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && cur.is_empty() {
            quoted = true;
        } else if c == delim {
            fields.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if quoted {
        return None;
    }
    fields.push(cur);
    Some(fields)
}

/// Tab for `.tsv`/`.tab` files or a header with a tab and no comma; comma otherwise.
fn delimiter(file: &Path, header: &str) -> char {
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("tsv" | "tab") => '\t',
        Some("csv") => ',',
        _ if header.contains('\t') && !header.contains(',') => '\t',
        _ => ',',
    }
}

/// A sample id becomes a folder name: no separators, no leading dot, nothing a shell or a
/// file system treats specially.
fn valid_id(id: &str) -> bool {
    !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn read(file: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::read(file, e))?;
        Manifest::parse(file, &text)
    }

    /// Parses manifest text; `file` names it in errors and anchors relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Manifest> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
        let Some((hline, header)) = lines.next() else {
            return Err(Error::invalid(file, "header", "the manifest is empty"));
        };
        let delim = delimiter(file, header);
        let columns: Vec<String> = split_line(header, delim)
            .ok_or_else(|| {
                Error::invalid(
                    file,
                    format!("line {hline}"),
                    "unterminated quote in header",
                )
            })?
            .into_iter()
            .map(|c| c.trim().to_string())
            .collect();
        let mut seen = HashSet::new();
        for c in &columns {
            if c.is_empty() {
                return Err(Error::invalid(
                    file,
                    format!("line {hline}"),
                    "empty column name in header",
                ));
            }
            if !seen.insert(c.as_str()) {
                return Err(Error::invalid(
                    file,
                    format!("column {c}"),
                    "column appears twice in the header",
                ));
            }
        }
        let find = |name: &str| columns.iter().position(|c| c == name);
        let required = |name: &str| {
            find(name).ok_or_else(|| {
                Error::invalid(
                    file,
                    format!("column {name}"),
                    format!(
                        "required column missing (header: {}; delimiter {:?})",
                        columns.join(","),
                        delim
                    ),
                )
            })
        };
        let (c_id, c_path) = (required("sample_id")?, required("path")?);
        let (c_pat, c_tp, c_day) = (find("patient"), find("timepoint"), find("day"));
        let c_vdj = find("vdj");
        let extra_idx: Vec<usize> = (0..columns.len())
            .filter(|&i| !KNOWN.contains(&columns[i].as_str()))
            .collect();
        let base = file.parent().unwrap_or(Path::new(""));
        let mut ids = HashSet::new();
        let mut samples = Vec::new();
        for (line, l) in lines {
            let at = |col: &str| format!("line {line}, column {col}");
            let fields = split_line(l, delim).ok_or_else(|| {
                Error::invalid(file, format!("line {line}"), "unterminated quote")
            })?;
            if fields.len() != columns.len() {
                return Err(Error::invalid(
                    file,
                    format!("line {line}"),
                    format!(
                        "{} fields where the header has {} columns",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
            let get = |i: usize| fields[i].trim().to_string();
            let id = get(c_id);
            if id.is_empty() {
                return Err(Error::invalid(file, at("sample_id"), "empty sample_id"));
            }
            if !valid_id(&id) {
                return Err(Error::invalid(
                    file,
                    at("sample_id"),
                    format!(
                        "sample_id {id:?} cannot name a folder (use letters, digits, _ - . +, not starting with .)"
                    ),
                ));
            }
            if !ids.insert(id.clone()) {
                return Err(Error::invalid(
                    file,
                    at("sample_id"),
                    format!("duplicate sample_id {id:?}"),
                ));
            }
            let path_text = get(c_path);
            if path_text.is_empty() {
                return Err(Error::invalid(file, at("path"), "empty path"));
            }
            let day = match c_day.map(get).filter(|d| !d.is_empty()) {
                None => None,
                Some(d) => match d.parse::<f64>() {
                    Ok(v) if v.is_finite() => Some(v),
                    _ => {
                        return Err(Error::invalid(
                            file,
                            at("day"),
                            format!("day {d:?} is not a number"),
                        ));
                    }
                },
            };
            samples.push(Sample {
                path: base.join(&path_text),
                path_text,
                patient: c_pat.map(get).unwrap_or_default(),
                timepoint: c_tp.map(get).unwrap_or_default(),
                day,
                vdj: c_vdj
                    .map(get)
                    .filter(|v| !v.is_empty())
                    .map(|v| base.join(v)),
                extra: extra_idx.iter().map(|&i| get(i)).collect(),
                id,
            });
        }
        if samples.is_empty() {
            return Err(Error::invalid(
                file,
                "rows",
                "the manifest lists no samples",
            ));
        }
        Ok(Manifest {
            file: file.to_path_buf(),
            extra_columns: extra_idx.iter().map(|&i| columns[i].clone()).collect(),
            has_patient: c_pat.is_some(),
            has_timepoint: c_tp.is_some(),
            has_day: c_day.is_some(),
            has_vdj: c_vdj.is_some(),
            samples,
        })
    }

    /// The metadata column names carried into every output: patient, timepoint, day (those the
    /// manifest has), then the extra columns.
    pub fn metadata_columns(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.has_patient {
            v.push("patient".to_string());
        }
        if self.has_timepoint {
            v.push("timepoint".to_string());
        }
        if self.has_day {
            v.push("day".to_string());
        }
        v.extend(self.extra_columns.iter().cloned());
        v
    }

    /// A sample's values for [`Manifest::metadata_columns`].
    pub fn metadata_values(&self, s: &Sample) -> Vec<String> {
        let mut v = Vec::new();
        if self.has_patient {
            v.push(s.patient.clone());
        }
        if self.has_timepoint {
            v.push(s.timepoint.clone());
        }
        if self.has_day {
            v.push(s.day.map_or(String::new(), |d| d.to_string()));
        }
        v.extend(s.extra.iter().cloned());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(Path::new("dir/m.csv"), text)
    }

    #[test]
    fn reads_known_and_extra_columns() {
        let m = parse("sample_id,path,patient,day,tissue\nA,a.h5ad,P1,14,\"blood, PB\"\n").unwrap();
        assert_eq!(m.samples[0].path, Path::new("dir/a.h5ad"));
        assert_eq!(m.samples[0].day, Some(14.0));
        assert_eq!(m.extra_columns, vec!["tissue"]);
        assert_eq!(m.samples[0].extra, vec!["blood, PB"]);
        assert_eq!(m.metadata_columns(), vec!["patient", "day", "tissue"]);
        assert!(!m.has_vdj && m.samples[0].vdj.is_none());
    }

    #[test]
    fn vdj_is_a_path_not_metadata() {
        let m = parse("sample_id,path,vdj,patient\nA,a.h5ad,v/a.csv,P1\nB,b.h5ad,,P1\n").unwrap();
        assert!(m.has_vdj);
        assert_eq!(m.samples[0].vdj.as_deref(), Some(Path::new("dir/v/a.csv")));
        assert_eq!(m.samples[1].vdj, None);
        assert_eq!(m.metadata_columns(), vec!["patient"]);
        assert!(m.extra_columns.is_empty());
    }

    #[test]
    fn tsv_by_extension() {
        let m = Manifest::parse(Path::new("m.tsv"), "sample_id\tpath\nA\ta,b.h5ad\n").unwrap();
        assert_eq!(m.samples[0].path_text, "a,b.h5ad");
    }

    #[test]
    fn structural_errors_name_line_and_column() {
        let e = parse("sample_id,path\nA,a\nA,b\n").unwrap_err().to_string();
        assert!(
            e.contains("line 3, column sample_id") && e.contains("duplicate"),
            "{e}"
        );
        let e = parse("sample_id,file\nA,a\n").unwrap_err().to_string();
        assert!(e.contains("column path"), "{e}");
        let e = parse("sample_id,path,day\nA,a,two\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column day"), "{e}");
        let e = parse("sample_id,path\nA\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("1 fields"), "{e}");
        let e = parse("sample_id,path\n../x,a\n").unwrap_err().to_string();
        assert!(e.contains("cannot name a folder"), "{e}");
        assert!(parse("sample_id,path\n").is_err());
    }
}
