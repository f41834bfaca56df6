//! Cross-sample outputs built from finished sample folders: `batch_summary.csv` (and the same
//! table as `batch_summary.parquet`), `persistence.csv`, `batch_report.html`. Used by `cartscope batch` after its samples ran and
//! by `cartscope aggregate` over folders that other tools (a Snakemake workflow) filled with
//! `cartscope run`.
//!
//! A sample is `ok` when `samples/<id>/summary.csv` exists (the batch publishes a folder only
//! when complete; `cartscope run` writes summary.csv after result.h5ad and summary.json),
//! `failed` when `samples/<id>.error.txt` holds its error, else `missing`.
//!
//! `persistence.csv` has one row per completed sample with patient, time point and day,
//! ordered by patient (manifest order) then day: the CAR+ count and fractions, the CD4:CD8
//! ratio and the double-negative fraction among CAR+ T cells, the fraction of cycling cells
//! (S or G2M), the phenotype fractions among CAR+ T cells, the median scores
//! among CAR+ T cells and the exhaustion-memory balance. Two samples of one patient at one
//! time point (blood and marrow, say) stay two rows: medians do not pool.
//!
//! With VDJ (manifest column `vdj`) the patient-level clonotypes of [`super::clonal`] add
//! `clonotypes.parquet`, `clonotypes.csv`, `clones.csv`, the clonal columns of
//! persistence.csv and the clonal section of the report; an aggregation without VDJ removes
//! those files when an earlier one left them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::clonal::{self, Clonal, PERSISTENCE_COLUMNS};
use super::manifest::Manifest;
use super::rows::{Counts, SampleRow, SampleStatus, by_patient, timepoint_label};
use super::{error_file, sample_dir};
use crate::io::{csv, write_atomic};
use crate::vdj::VdjOptions;
use crate::{Error, Result};

/// The normalised copy of the manifest a batch leaves in OUTDIR (paths absolute), read by
/// `cartscope aggregate OUTDIR` when no manifest is named.
pub(crate) const MANIFEST_COPY: &str = "manifest.csv";

/// Writes [`MANIFEST_COPY`] with absolute input paths (`path`, and `vdj` when the manifest has it).
pub(crate) fn write_manifest_copy(m: &Manifest, outdir: &Path) -> Result<()> {
    let mut cols = vec!["sample_id".to_string(), "path".to_string()];
    if m.has_vdj {
        cols.push("vdj".to_string());
    }
    cols.extend(m.metadata_columns());
    let mut out = csv::record(&cols);
    for s in &m.samples {
        let mut row = vec![s.id.clone(), absolute(&s.path)];
        if m.has_vdj {
            row.push(s.vdj.as_deref().map(absolute).unwrap_or_default());
        }
        row.extend(m.metadata_values(s));
        out += &csv::record(&row);
    }
    write_atomic(&outdir.join(MANIFEST_COPY), out.as_bytes())
}

/// The absolute form of an input path (as given when it cannot be made absolute), so the
/// batch and a later aggregate over its manifest copy write the same text.
pub(crate) fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// Reads a one-sample summary.csv into (columns, fields of the row for `id`, else the first).
fn read_summary_csv(path: &Path, id: &str) -> Result<(Vec<String>, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    let bad = |m: &str| Error::invalid(path, "summary.csv", m);
    // Records, not lines: a quoted field (a sample name) may hold a line break.
    let mut records = csv::Records::new(&text, b',').map(|r| match r {
        Ok(r) => Ok(r.fields.into_iter().map(|f| f.into_owned()).collect()),
        Err(e) => Err(bad(&format!("line {}: {}", e.line, e.message))),
    });
    let header: Vec<String> = records.next().ok_or_else(|| bad("empty"))??;
    let rows: Vec<Vec<String>> = records.collect::<Result<_>>()?;
    let row = rows
        .iter()
        .find(|r| r.first().is_some_and(|s| s == id))
        .or_else(|| rows.first())
        .ok_or_else(|| bad("no sample row"))?;
    if row.len() != header.len() {
        return Err(bad("row and header lengths differ"));
    }
    Ok((
        header.clone(),
        header.iter().cloned().zip(row.iter().cloned()).collect(),
    ))
}

/// The state of every manifest sample in `outdir`.
pub fn collect(m: &Manifest, outdir: &Path) -> Vec<SampleRow> {
    m.samples
        .iter()
        .map(|s| {
            let dir = sample_dir(outdir, &s.id);
            let mut row = SampleRow {
                sample: s.clone(),
                status: SampleStatus::Missing,
                error: String::new(),
                fields: BTreeMap::new(),
                columns: Vec::new(),
                has_report: dir.join("report.html").is_file(),
            };
            let summary = dir.join("summary.csv");
            if summary.is_file() {
                match read_summary_csv(&summary, &s.id) {
                    Ok((columns, fields)) => {
                        row.status = SampleStatus::Ok;
                        row.columns = columns;
                        row.fields = fields;
                    }
                    Err(e) => {
                        row.status = SampleStatus::Failed;
                        row.error = e.to_string();
                    }
                }
            } else if let Ok(e) = std::fs::read_to_string(error_file(outdir, &s.id)) {
                row.status = SampleStatus::Failed;
                row.error = e.trim().to_string();
            } else {
                row.error = format!("no finished outputs in samples/{}", s.id);
            }
            row
        })
        .collect()
}

/// summary.csv columns of all completed samples, first-seen order, without `sample`.
fn summary_columns(rows: &[SampleRow]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for c in &r.columns {
            if c != "sample" && !cols.contains(c) {
                cols.push(c.clone());
            }
        }
    }
    cols
}

/// The batch summary table: header and one row of fields per sample, as in
/// batch_summary.csv: sample_id, status, error, path (absolute), report, the manifest
/// metadata, then the per-sample summary fields (empty for samples that did not complete).
pub(crate) fn batch_summary_table(
    m: &Manifest,
    rows: &[SampleRow],
) -> (Vec<String>, Vec<Vec<String>>) {
    let cols = summary_columns(rows);
    let mut header: Vec<String> = ["sample_id", "status", "error", "path", "report"]
        .map(String::from)
        .to_vec();
    header.extend(m.metadata_columns());
    header.extend(cols.iter().cloned());
    let table = rows
        .iter()
        .map(|r| {
            let mut f = vec![
                r.sample.id.clone(),
                r.status.to_string(),
                r.error.clone(),
                absolute(&r.sample.path),
                if r.has_report {
                    format!("samples/{}/report.html", r.sample.id)
                } else {
                    String::new()
                },
            ];
            f.extend(m.metadata_values(&r.sample));
            f.extend(
                cols.iter()
                    .map(|c| r.fields.get(c).cloned().unwrap_or_default()),
            );
            f
        })
        .collect();
    (header, table)
}

/// batch_summary.csv (see [`batch_summary_table`]).
pub(crate) fn batch_summary_csv(m: &Manifest, rows: &[SampleRow]) -> String {
    let (header, table) = batch_summary_table(m, rows);
    let mut out = csv::record(&header);
    for f in &table {
        out += &csv::record(f);
    }
    out
}

/// batch_summary.parquet: the columns of batch_summary.csv. Identifiers and text (sample_id,
/// status, error, path, report, patient, timepoint, the manifest's extra columns, the summary's
/// `car_feature`) are strings exactly as in the CSV; every other column is float64
/// when each of its non-empty fields is a number (empty fields become nulls), else strings.
pub(crate) fn batch_summary_frame(
    m: &Manifest,
    rows: &[SampleRow],
) -> Result<polars::prelude::DataFrame> {
    use polars::prelude::{DataFrame, NamedFrom, Series};
    let (header, table) = batch_summary_table(m, rows);
    let mut text: Vec<String> = [
        "sample_id",
        "status",
        "error",
        "path",
        "report",
        "car_feature",
    ]
    .map(String::from)
    .to_vec();
    text.extend(m.metadata_columns().into_iter().filter(|c| c != "day"));
    let mut cols: Vec<polars::prelude::Column> = Vec::with_capacity(header.len());
    for (j, name) in header.iter().enumerate() {
        let fields: Vec<&str> = table.iter().map(|f| f[j].as_str()).collect();
        let numbers: Option<Vec<Option<f64>>> = (!text.contains(name))
            .then(|| {
                fields
                    .iter()
                    .map(|f| {
                        if f.is_empty() {
                            Some(None)
                        } else {
                            f.parse::<f64>().ok().map(Some)
                        }
                    })
                    .collect()
            })
            .flatten();
        let series = match numbers {
            Some(v) => Series::new(name.as_str().into(), v),
            None => Series::new(name.as_str().into(), fields),
        };
        cols.push(series.into());
    }
    DataFrame::new(table.len(), cols)
        .map_err(|e| Error::Usage(format!("building the batch_summary.parquet table: {e}")))
}

/// The persistence columns taken from each sample's summary: fixed ones, then every
/// `frac_car_*` and `median_car_*` column present.
pub(crate) fn persistence_value_columns(rows: &[SampleRow]) -> Vec<String> {
    let cols = summary_columns(rows);
    let mut v: Vec<String> = [
        "n_cells_after_qc",
        "n_t_cells",
        "n_car_positive",
        "car_positive_fraction",
        "car_positive_fraction_of_t",
        "cd4_cd8_ratio_car",
        "dn_fraction_car",
        "gd_fraction_car",
        "cycling_fraction",
        "exhaustion_memory_balance",
    ]
    .map(String::from)
    .to_vec();
    v.extend(cols.iter().filter(|c| c.starts_with("frac_car_")).cloned());
    v.extend(
        cols.iter()
            .filter(|c| c.starts_with("median_car_"))
            .cloned(),
    );
    v
}

/// persistence.csv (see the module documentation), with the clonal columns when the batch
/// has VDJ.
pub(crate) fn persistence_csv(rows: &[SampleRow], clonal: Option<&Clonal>) -> String {
    let values = persistence_value_columns(rows);
    let mut header: Vec<String> = ["patient", "timepoint", "day", "sample_id"]
        .map(String::from)
        .to_vec();
    header.extend(values.iter().cloned());
    let clonal_fields = clonal.map(|c| c.persistence_fields(rows));
    if clonal_fields.is_some() {
        header.extend(PERSISTENCE_COLUMNS.map(String::from));
    }
    let mut out = csv::record(&header);
    for (patient, group) in by_patient(rows) {
        for r in group {
            let mut f = vec![
                patient.clone(),
                timepoint_label(&r.sample),
                r.sample.day.map_or(String::new(), |d| d.to_string()),
                r.sample.id.clone(),
            ];
            f.extend(
                values
                    .iter()
                    .map(|c| r.fields.get(c).cloned().unwrap_or_default()),
            );
            if let Some(cf) = &clonal_fields {
                f.extend(
                    cf.get(&r.sample.id)
                        .cloned()
                        .unwrap_or_else(|| vec![String::new(); PERSISTENCE_COLUMNS.len()]),
                );
            }
            out += &csv::record(&f);
        }
    }
    out
}

/// Options of the cross-sample outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregateOptions {
    /// The clonotype definition of the patient-level clonotypes (`scope` and the expansion
    /// breakpoints do not apply).
    pub vdj: VdjOptions,
    /// The time-point label of the infusion product samples, replacing the default rule
    /// ([`super::clonal::is_product`]).
    pub product_timepoint: Option<String>,
}

/// Writes batch_summary.csv, batch_summary.parquet, persistence.csv and batch_report.html into
/// `outdir`, and with VDJ clonotypes.parquet, clonotypes.csv and clones.csv.
pub(crate) fn write_outputs(
    m: &Manifest,
    outdir: &Path,
    opts: &AggregateOptions,
) -> Result<Counts> {
    let rows = collect(m, outdir);
    let clonal = clonal::compute(&rows, outdir, &opts.vdj, opts.product_timepoint.as_deref())?;
    match &clonal {
        Some(c) => c.write(&rows, outdir)?,
        None => {
            for f in clonal::FILES {
                super::remove_file(&outdir.join(f))?;
            }
        }
    }
    write_atomic(
        &outdir.join("batch_summary.csv"),
        batch_summary_csv(m, &rows).as_bytes(),
    )?;
    let mut frame = batch_summary_frame(m, &rows)?;
    crate::report::table::write_parquet_atomic(&outdir.join("batch_summary.parquet"), &mut frame)?;
    write_atomic(
        &outdir.join("persistence.csv"),
        persistence_csv(&rows, clonal.as_ref()).as_bytes(),
    )?;
    let html = super::report::render(m, &rows, clonal.as_ref());
    write_atomic(&outdir.join("batch_report.html"), html.as_bytes())?;
    Ok(Counts::tally(&rows))
}

/// `cartscope aggregate OUTDIR [--manifest FILE]`: the manifest named, else the copy a batch
/// left in OUTDIR.
pub fn aggregate(outdir: &Path, manifest: Option<&Path>) -> Result<(Manifest, Counts)> {
    aggregate_with(outdir, manifest, &AggregateOptions::default())
}

/// [`aggregate`] with options (clonotype definition, product time point).
pub fn aggregate_with(
    outdir: &Path,
    manifest: Option<&Path>,
    opts: &AggregateOptions,
) -> Result<(Manifest, Counts)> {
    let file: PathBuf = manifest.map_or_else(|| outdir.join(MANIFEST_COPY), Path::to_path_buf);
    let m = Manifest::read(&file)?;
    let samples = outdir.join("samples");
    if !samples.is_dir() {
        return Err(Error::invalid(
            outdir,
            "samples",
            "no samples folder: run the samples first (cartscope run INPUT -o OUTDIR/samples/ID)",
        ));
    }
    let counts = write_outputs(&m, outdir, opts)?;
    Ok((m, counts))
}
