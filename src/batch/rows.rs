//! The rows of the cross-sample tables: one per manifest sample, with its status and the
//! fields of its summary.csv. Shared by the tables ([`super::aggregate`]) and the batch
//! report ([`super::report`]), which both read them and neither of which owns them.

use std::collections::BTreeMap;
use std::fmt;

use super::manifest::Sample;

/// What the output folder says about a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleStatus {
    /// `samples/<id>/summary.csv` exists and was read.
    Ok,
    /// `samples/<id>.error.txt` holds its error, or its summary.csv could not be read.
    Failed,
    /// Neither finished outputs nor an error.
    Missing,
}

impl SampleStatus {
    /// The word written to `batch_summary.csv`, `batch_summary.parquet` and the batch report
    /// (also the CSS class of the sample's table row there).
    pub fn as_str(self) -> &'static str {
        match self {
            SampleStatus::Ok => "ok",
            SampleStatus::Failed => "failed",
            SampleStatus::Missing => "missing",
        }
    }
}

impl fmt::Display for SampleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sample's row of the cross-sample tables.
#[derive(Debug, Clone)]
pub struct SampleRow {
    /// The manifest row.
    pub sample: Sample,
    /// Whether it completed, failed or left nothing.
    pub status: SampleStatus,
    /// The error of a failed or missing sample.
    pub error: String,
    /// The sample's summary.csv fields by column name (empty unless ok).
    pub fields: BTreeMap<String, String>,
    /// summary.csv column order.
    pub columns: Vec<String>,
    /// Whether `samples/<id>/report.html` exists.
    pub has_report: bool,
}

impl SampleRow {
    /// A field parsed as a number (None when empty or absent).
    pub fn num(&self, column: &str) -> Option<f64> {
        self.fields.get(column).and_then(|v| v.parse::<f64>().ok())
    }
}

/// Counts of the statuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Completed samples.
    pub ok: usize,
    /// Failed samples.
    pub failed: usize,
    /// Samples with neither outputs nor an error.
    pub missing: usize,
}

impl Counts {
    /// The statuses of `rows` counted.
    pub fn tally(rows: &[SampleRow]) -> Counts {
        let mut c = Counts::default();
        for r in rows {
            match r.status {
                SampleStatus::Ok => c.ok += 1,
                SampleStatus::Failed => c.failed += 1,
                SampleStatus::Missing => c.missing += 1,
            }
        }
        c
    }
}

/// Completed samples grouped by patient (manifest order of first appearance), each group
/// ordered by day (samples without a day keep manifest order, after the dated ones).
pub fn by_patient(rows: &[SampleRow]) -> Vec<(String, Vec<&SampleRow>)> {
    let mut groups: Vec<(String, Vec<&SampleRow>)> = Vec::new();
    for r in rows.iter().filter(|r| r.status == SampleStatus::Ok) {
        match groups.iter_mut().find(|(p, _)| *p == r.sample.patient) {
            Some((_, v)) => v.push(r),
            None => groups.push((r.sample.patient.clone(), vec![r])),
        }
    }
    for (_, v) in &mut groups {
        v.sort_by(|a, b| match (a.sample.day, b.sample.day) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
    groups
}

/// The time-point label of a sample: the manifest's, else `day N`, else the sample id.
pub fn timepoint_label(s: &Sample) -> String {
    if !s.timepoint.is_empty() {
        s.timepoint.clone()
    } else if let Some(d) = s.day {
        format!("day {d}")
    } else {
        s.id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_written_as_before() {
        // The words the output files have always held.
        let words: Vec<String> = [
            SampleStatus::Ok,
            SampleStatus::Failed,
            SampleStatus::Missing,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(words, ["ok", "failed", "missing"]);
    }
}
