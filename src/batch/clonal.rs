//! Clonal persistence across a patient's time points: patient-level clonotypes from the
//! samples' VDJ contig tables (manifest column `vdj`), `clonotypes.parquet`/`.csv`,
//! `clones.csv` and the clonal columns of `persistence.csv` (docs/batch.md).
//!
//! For every completed sample with a `vdj` file, its contigs are read and
//! [`crate::vdj::analyse`]d over the sample's cells after QC (the `barcode` column of
//! `samples/<id>/cells.parquet`). The receptors of a patient's samples are then concatenated
//! (patients in manifest order of first appearance, each patient's samples in manifest order,
//! each sample's cells in cells.parquet order) and clonotypes are defined once over all
//! patients, grouped by the clonotype options' `within_group` and the patient: scirpy's
//! `define_clonotypes(within_group=["receptor_type", "patient"])` on the concatenated cells. A
//! clone therefore has one id at every time point of its patient, ids are unique over the
//! batch, and each patient's clones are numbered consecutively.
//!
//! A sample whose `vdj` file is missing or malformed loses its clonal part only: the error is
//! kept (column `vdj_error` of persistence.csv and the batch report) and the other samples go on.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::{DataFrame, NamedFrom, Series};

use super::manifest::Sample;
use super::rows::{SampleRow, SampleStatus, by_patient, timepoint_label};
use super::sample_dir;
use crate::io::csv;
use crate::vdj::stats::Repertoire;
use crate::vdj::{
    CHAIN_FIELDS, Receptor, Slot, VdjOptions, analyse, define_clonotypes, read_contigs,
};
use crate::{Error, Result};

/// The time-point labels that mark a patient's infusion product (compared ignoring ASCII case)
/// when no `--product-timepoint` is given; a sample with `day` 0 is a product sample too.
pub const PRODUCT_LABELS: [&str; 4] = ["IP", "PROD", "product", "infusion"];

/// Whether a sample is its patient's infusion product: with `label`, its time point is that
/// label (ignoring ASCII case) and nothing else counts; without, its time point is one of
/// [`PRODUCT_LABELS`] or its day is 0.
pub fn is_product(s: &Sample, label: Option<&str>) -> bool {
    match label {
        Some(l) => s.timepoint.eq_ignore_ascii_case(l),
        None => {
            PRODUCT_LABELS
                .iter()
                .any(|p| s.timepoint.eq_ignore_ascii_case(p))
                || s.day == Some(0.0)
        }
    }
}

/// A cell with a receptor, from a sample's contigs and its cells.parquet calls.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    /// Index of the sample's row (manifest order).
    pub row: usize,
    /// The cell barcode (as in cells.parquet).
    pub barcode: String,
    /// The patient-level clone, if any.
    pub clone: Option<u32>,
    /// `car_positive` of cells.parquet.
    pub car: Option<bool>,
    /// `cd4_cd8` of cells.parquet.
    pub cd4_cd8: Option<String>,
    /// `phenotype` of cells.parquet.
    pub phenotype: Option<String>,
}

/// The clonal part of one sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VdjStatus {
    /// Not completed, or no `vdj` file.
    Absent,
    /// Analysed.
    Done,
    /// Its VDJ file or cells.parquet could not be used (one-line error).
    Failed(String),
}

/// Patient-level clonotypes of a batch.
#[derive(Debug, Clone)]
pub(crate) struct Clonal {
    /// Cells with a receptor, patient by patient, samples in manifest order.
    pub cells: Vec<Cell>,
    /// The receptors of `cells`.
    pub receptors: Vec<Receptor>,
    /// Cells per clone (patient level).
    pub sizes: Vec<u32>,
    /// The patient of each clone.
    pub clone_patient: Vec<String>,
    /// Per manifest row: its clonal status.
    pub status: Vec<VdjStatus>,
    /// Per manifest row: whether it is a product sample.
    pub product: Vec<bool>,
    /// Per manifest row: its cells with a clone.
    pub counts: Vec<Repertoire>,
}

/// The calls of a sample's cells, from cells.parquet.
struct CellCalls {
    barcodes: Vec<String>,
    car: Vec<Option<bool>>,
    cd4_cd8: Vec<Option<String>>,
    phenotype: Vec<Option<String>>,
}

fn read_cells(path: &Path) -> Result<CellCalls> {
    use polars::prelude::{ParquetReader, SerReader};
    let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::invalid(path, "parquet", e.to_string()))?;
    let n = df.height();
    let bad = |name: &str, e: &dyn std::fmt::Display| {
        Error::invalid(path, format!("column {name}"), e.to_string())
    };
    let strings = |name: &str| -> Result<Vec<Option<String>>> {
        match df.column(name) {
            Err(_) => Ok(vec![None; n]),
            Ok(c) => {
                let ca = c.str().map_err(|e| bad(name, &e))?;
                Ok((0..n).map(|i| ca.get(i).map(str::to_string)).collect())
            }
        }
    };
    if df.column("barcode").is_err() {
        return Err(Error::invalid(path, "column barcode", "missing"));
    }
    let barcodes = strings("barcode")?
        .into_iter()
        .map(|b| b.ok_or_else(|| Error::invalid(path, "column barcode", "a missing barcode")))
        .collect::<Result<Vec<_>>>()?;
    let car = match df.column("car_positive") {
        Err(_) => vec![None; n],
        Ok(c) => {
            let ca = c.bool().map_err(|e| bad("car_positive", &e))?;
            (0..n).map(|i| ca.get(i)).collect()
        }
    };
    Ok(CellCalls {
        barcodes,
        car,
        cd4_cd8: strings("cd4_cd8")?,
        phenotype: strings("phenotype")?,
    })
}

/// One sample's cells with a receptor, analysed over its cells after QC.
fn load_sample(
    row: usize,
    sample: &Sample,
    vdj: &Path,
    outdir: &Path,
    opts: &VdjOptions,
) -> Result<Vec<(Cell, Receptor)>> {
    let calls = read_cells(&sample_dir(outdir, &sample.id).join("cells.parquet"))?;
    let contigs = read_contigs(vdj)?;
    let a = analyse(&contigs, Some(&calls.barcodes), opts)?;
    let CellCalls {
        barcodes,
        car,
        cd4_cd8,
        phenotype,
    } = calls;
    Ok(barcodes
        .into_iter()
        .zip(a.receptors)
        .zip(car.into_iter().zip(cd4_cd8).zip(phenotype))
        .filter(|((_, r), _)| r.has_ir())
        .map(|((barcode, receptor), ((car, cd4_cd8), phenotype))| {
            (
                Cell {
                    row,
                    barcode,
                    clone: None,
                    car,
                    cd4_cd8,
                    phenotype,
                },
                receptor,
            )
        })
        .collect())
}

/// Patient-level clonotypes of the completed samples with a `vdj` file; None when there is
/// none. `product_timepoint` overrides the product rule ([`is_product`]).
pub(crate) fn compute(
    rows: &[SampleRow],
    outdir: &Path,
    opts: &VdjOptions,
    product_timepoint: Option<&str>,
) -> Result<Option<Clonal>> {
    let with_vdj = |r: &SampleRow| r.status == SampleStatus::Ok && r.sample.vdj.is_some();
    if !rows.iter().any(with_vdj) {
        return Ok(None);
    }
    let mut status = vec![VdjStatus::Absent; rows.len()];
    let mut per_row: Vec<Vec<(Cell, Receptor)>> = vec![Vec::new(); rows.len()];
    for (i, r) in rows.iter().enumerate() {
        let Some(vdj) = r.sample.vdj.as_deref().filter(|_| with_vdj(r)) else {
            continue;
        };
        match load_sample(i, &r.sample, vdj, outdir, opts) {
            Ok(cells) => {
                per_row[i] = cells;
                status[i] = VdjStatus::Done;
            }
            Err(e) => {
                let msg = e.to_string().replace(['\n', '\r'], " ");
                tracing::warn!("sample {}: clonal analysis skipped: {msg}", r.sample.id);
                status[i] = VdjStatus::Failed(msg);
            }
        }
    }
    // Patients in manifest order of first appearance, each with its samples in manifest order.
    let mut patients: Vec<&str> = Vec::new();
    for r in rows {
        if !patients.contains(&r.sample.patient.as_str()) {
            patients.push(&r.sample.patient);
        }
    }
    let (mut cells, mut receptors, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    for p in patients {
        for (i, r) in rows.iter().enumerate() {
            if r.sample.patient == p {
                for (c, rec) in std::mem::take(&mut per_row[i]) {
                    cells.push(c);
                    receptors.push(rec);
                    groups.push(p.to_string());
                }
            }
        }
    }
    let clones = define_clonotypes(&receptors, &opts.clonotypes, Some(&groups))?;
    let mut clone_patient = vec![String::new(); clones.n_clones()];
    let mut per_row_clones: Vec<Vec<u32>> = vec![Vec::new(); rows.len()];
    for ((cell, id), patient) in cells.iter_mut().zip(&clones.clone_id).zip(&groups) {
        cell.clone = *id;
        if let Some(id) = id {
            clone_patient[*id as usize].clone_from(patient);
            per_row_clones[cell.row].push(*id);
        }
    }
    let counts = per_row_clones
        .into_iter()
        .map(Repertoire::from_clones)
        .collect();
    Ok(Some(Clonal {
        cells,
        receptors,
        sizes: clones.sizes,
        clone_patient,
        status,
        product: rows
            .iter()
            .map(|r| is_product(&r.sample, product_timepoint))
            .collect(),
        counts,
    }))
}

/// The columns [`Clonal::persistence_fields`] adds to persistence.csv.
pub(crate) const PERSISTENCE_COLUMNS: [&str; 13] = [
    "vdj_cells",
    "clonotypes",
    "expanded_fraction",
    "clone_entropy",
    "largest_clone_fraction",
    "seen_before_fraction",
    "product_clone_fraction",
    "product_clones_seen",
    "jaccard_product",
    "morisita_horn_product",
    "jaccard_previous",
    "morisita_horn_previous",
    "vdj_error",
];

fn field(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| x.to_string())
}

/// The cells of several samples as one repertoire.
fn pool<'a>(parts: impl Iterator<Item = &'a Repertoire>) -> Repertoire {
    Repertoire::from_clones(parts.flat_map(|r| {
        r.iter()
            .flat_map(|(c, n)| std::iter::repeat_n(c, n as usize))
    }))
}

impl Clonal {
    /// The fields of [`PERSISTENCE_COLUMNS`] per sample id, for the completed samples.
    pub fn persistence_fields(&self, rows: &[SampleRow]) -> HashMap<String, Vec<String>> {
        let index: HashMap<&str, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.sample.id.as_str(), i))
            .collect();
        let mut out = HashMap::new();
        for (_, group) in by_patient(rows) {
            let idx: Vec<usize> = group.iter().map(|r| index[r.sample.id.as_str()]).collect();
            let done: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| self.status[i] == VdjStatus::Done)
                .collect();
            let products: Vec<usize> = done.iter().copied().filter(|&i| self.product[i]).collect();
            let product =
                (!products.is_empty()).then(|| pool(products.iter().map(|&i| &self.counts[i])));
            for (k, &i) in idx.iter().enumerate() {
                let mut f = vec![String::new(); PERSISTENCE_COLUMNS.len()];
                match &self.status[i] {
                    VdjStatus::Absent => {}
                    VdjStatus::Failed(e) => f[12].clone_from(e),
                    VdjStatus::Done => {
                        // The samples with VDJ before this one: by day when both have one,
                        // else by their order in the patient's rows.
                        let earlier: Vec<usize> = idx[..k]
                            .iter()
                            .copied()
                            .filter(|&j| self.status[j] == VdjStatus::Done)
                            .filter(|&j| match (rows[j].sample.day, rows[i].sample.day) {
                                (Some(a), Some(b)) => a < b,
                                _ => true,
                            })
                            .collect();
                        let product = product.as_ref().filter(|_| !self.product[i]);
                        self.sample_fields(i, &earlier, rows, product, &mut f);
                    }
                }
                out.insert(rows[i].sample.id.clone(), f);
            }
        }
        out
    }

    /// The fields of a sample with VDJ; `earlier` its patient's earlier samples with VDJ (in
    /// time order), `product` the pooled product counts unless it is a product sample.
    fn sample_fields(
        &self,
        i: usize,
        earlier: &[usize],
        rows: &[SampleRow],
        product: Option<&Repertoire>,
        f: &mut [String],
    ) {
        let c = &self.counts[i];
        f[0] = c.cells().to_string();
        f[1] = c.n_clones().to_string();
        f[2] = field(c.expanded_fraction(2));
        f[3] = field(c.normalized_entropy());
        f[4] = field(c.largest_fraction());
        if !earlier.is_empty() {
            let before = pool(earlier.iter().map(|&j| &self.counts[j]));
            f[5] = field(c.fraction_in(&before));
        }
        if let Some(p) = product {
            f[6] = field(c.fraction_in(p));
            f[7] = c.shared_clones(p).to_string();
            f[8] = field(c.jaccard(p));
            f[9] = field(c.morisita_horn(p));
        }
        if let Some(&last) = earlier.last() {
            // The immediately earlier time point: every earlier sample on its day.
            let day = rows[last].sample.day;
            let previous = pool(
                earlier
                    .iter()
                    .filter(|&&j| j == last || (day.is_some() && rows[j].sample.day == day))
                    .map(|&j| &self.counts[j]),
            );
            f[10] = field(c.jaccard(&previous));
            f[11] = field(c.morisita_horn(&previous));
        }
    }
}

/// A typed column of the clonal tables, written to Parquet as its type and to CSV as text
/// (missing values empty).
enum Values {
    Str(Vec<Option<String>>),
    U64(Vec<Option<u64>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
}

impl Values {
    fn text(&self, i: usize) -> String {
        match self {
            Values::Str(v) => v[i].clone().unwrap_or_default(),
            Values::U64(v) => v[i].map_or(String::new(), |x| x.to_string()),
            Values::F64(v) => field(v[i]),
            Values::Bool(v) => v[i].map_or(String::new(), |x| x.to_string()),
        }
    }

    fn series(&self, name: &str) -> Series {
        let name = name.into();
        match self {
            Values::Str(v) => Series::new(name, v.as_slice()),
            Values::U64(v) => Series::new(name, v.as_slice()),
            Values::F64(v) => Series::new(name, v.as_slice()),
            Values::Bool(v) => Series::new(name, v.as_slice()),
        }
    }
}

/// Named columns of equal length.
struct Table {
    n: usize,
    columns: Vec<(String, Values)>,
}

impl Table {
    fn csv(&self) -> String {
        let mut out = csv::record(self.columns.iter().map(|(n, _)| n));
        for i in 0..self.n {
            out += &csv::record(self.columns.iter().map(|(_, v)| v.text(i)));
        }
        out
    }

    fn frame(&self) -> Result<DataFrame> {
        let cols = self
            .columns
            .iter()
            .map(|(n, v)| v.series(n).into())
            .collect();
        DataFrame::new(self.n, cols)
            .map_err(|e| Error::Internal(format!("building the clonotypes table: {e}")))
    }
}

/// One field of [`CHAIN_FIELDS`] in one slot of every receptor.
fn chain_values(receptors: &[&Receptor], slot: Slot, field: &str) -> Values {
    match field {
        "umi_count" => Values::U64(
            receptors
                .iter()
                .map(|r| r.chain(slot).and_then(|c| c.umi_count))
                .collect(),
        ),
        _ => Values::Str(
            receptors
                .iter()
                .map(|r| {
                    r.chain(slot)
                        .and_then(|c| c.text_field(field))
                        .map(String::from)
                })
                .collect(),
        ),
    }
}

impl Clonal {
    /// clonotypes.parquet/.csv: one row per cell with a receptor (see docs/batch.md).
    fn clonotypes_table(&self, rows: &[SampleRow]) -> Table {
        let sample = |f: &dyn Fn(&Sample) -> Option<String>| {
            Values::Str(self.cells.iter().map(|c| f(&rows[c.row].sample)).collect())
        };
        let mut columns = vec![
            ("sample_id", sample(&|s| Some(s.id.clone()))),
            ("patient", sample(&|s| Some(s.patient.clone()))),
            ("timepoint", sample(&|s| Some(timepoint_label(s)))),
            (
                "day",
                Values::F64(self.cells.iter().map(|c| rows[c.row].sample.day).collect()),
            ),
            (
                "barcode",
                Values::Str(self.cells.iter().map(|c| Some(c.barcode.clone())).collect()),
            ),
            (
                "clone_id",
                Values::Str(
                    self.cells
                        .iter()
                        .map(|c| c.clone.map(|k| k.to_string()))
                        .collect(),
                ),
            ),
            (
                "clone_size",
                Values::U64(
                    self.cells
                        .iter()
                        .map(|c| c.clone.map(|k| u64::from(self.sizes[k as usize])))
                        .collect(),
                ),
            ),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect::<Vec<_>>();
        let qc = |f: &dyn Fn(&Receptor) -> &'static str| {
            Values::Str(
                self.receptors
                    .iter()
                    .map(|r| Some(f(r).to_string()))
                    .collect(),
            )
        };
        columns.push(("receptor_type".into(), qc(&|r| r.qc.receptor_type.as_str())));
        columns.push((
            "receptor_subtype".into(),
            qc(&|r| r.qc.receptor_subtype.as_str()),
        ));
        columns.push(("chain_pairing".into(), qc(&|r| r.qc.chain_pairing.as_str())));
        let refs: Vec<&Receptor> = self.receptors.iter().collect();
        for slot in Slot::ALL {
            for f in CHAIN_FIELDS {
                columns.push((slot.column(f), chain_values(&refs, slot, f)));
            }
        }
        columns.push((
            "car_positive".into(),
            Values::Bool(self.cells.iter().map(|c| c.car).collect()),
        ));
        columns.push((
            "cd4_cd8".into(),
            Values::Str(self.cells.iter().map(|c| c.cd4_cd8.clone()).collect()),
        ));
        columns.push((
            "phenotype".into(),
            Values::Str(self.cells.iter().map(|c| c.phenotype.clone()).collect()),
        ));
        Table {
            n: self.cells.len(),
            columns,
        }
    }

    /// The batch's time points with VDJ: labels ordered by their earliest day (labels without
    /// a day last, in manifest order).
    pub fn timepoints(&self, rows: &[SampleRow]) -> Vec<String> {
        let mut tps: Vec<(String, Option<f64>)> = Vec::new();
        for (r, st) in rows.iter().zip(&self.status) {
            if *st != VdjStatus::Done {
                continue;
            }
            let label = timepoint_label(&r.sample);
            match tps.iter_mut().find(|(l, _)| *l == label) {
                Some((_, d)) => {
                    if let Some(x) = r.sample.day {
                        *d = Some(d.map_or(x, |y: f64| y.min(x)));
                    }
                }
                None => tps.push((label, r.sample.day)),
            }
        }
        tps.sort_by(|a, b| match (a.1, b.1) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        tps.into_iter().map(|(l, _)| l).collect()
    }

    /// clones.csv: one row per patient clonotype (see docs/batch.md).
    fn clones_table(&self, rows: &[SampleRow]) -> Table {
        let n = self.sizes.len();
        let tps = self.timepoints(rows);
        // The representative: the clone's first cell (manifest, then cells.parquet order).
        let mut first: Vec<Option<usize>> = vec![None; n];
        let mut cells = vec![vec![0u64; tps.len()]; n];
        let mut car = vec![vec![0u64; tps.len()]; n];
        let mut days: Vec<Option<(f64, f64)>> = vec![None; n];
        let mut in_product = vec![false; n];
        let tp_index: HashMap<String, usize> = tps
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        for (i, c) in self.cells.iter().enumerate() {
            let Some(k) = c.clone.map(|k| k as usize) else {
                continue;
            };
            first[k].get_or_insert(i);
            let s = &rows[c.row].sample;
            let t = tp_index[&timepoint_label(s)];
            cells[k][t] += 1;
            car[k][t] += u64::from(c.car == Some(true));
            if let Some(d) = s.day {
                days[k] = Some(days[k].map_or((d, d), |(a, b)| (a.min(d), b.max(d))));
            }
            in_product[k] |= self.product[c.row];
        }
        let reps: Vec<&Receptor> = first
            .iter()
            .map(|f| &self.receptors[f.unwrap_or_default()])
            .collect();
        let mut columns: Vec<(String, Values)> = vec![
            (
                "patient".into(),
                Values::Str(self.clone_patient.iter().cloned().map(Some).collect()),
            ),
            (
                "clone_id".into(),
                Values::Str((0..n).map(|k| Some(k.to_string())).collect()),
            ),
        ];
        for slot in [Slot::Vj1, Slot::Vdj1] {
            for f in &CHAIN_FIELDS[..4] {
                columns.push((slot.column(f), chain_values(&reps, slot, f)));
            }
        }
        columns.push((
            "n_cells".into(),
            Values::U64(self.sizes.iter().map(|&s| Some(u64::from(s))).collect()),
        ));
        for (prefix, m) in [("cells", &cells), ("car_cells", &car)] {
            for (t, label) in tps.iter().enumerate() {
                columns.push((
                    format!("{prefix}_{label}"),
                    Values::U64(m.iter().map(|v| Some(v[t])).collect()),
                ));
            }
        }
        columns.push((
            "first_day".into(),
            Values::F64(days.iter().map(|d| d.map(|d| d.0)).collect()),
        ));
        columns.push((
            "last_day".into(),
            Values::F64(days.iter().map(|d| d.map(|d| d.1)).collect()),
        ));
        columns.push((
            "in_product".into(),
            Values::Bool(in_product.into_iter().map(Some).collect()),
        ));
        Table { n, columns }
    }

    /// Writes clonotypes.parquet, clonotypes.csv and clones.csv into `outdir`.
    pub fn write(&self, rows: &[SampleRow], outdir: &Path) -> Result<()> {
        let cells = self.clonotypes_table(rows);
        crate::report::table::write_parquet_atomic(
            &outdir.join("clonotypes.parquet"),
            &mut cells.frame()?,
        )?;
        crate::io::write_atomic(&outdir.join("clonotypes.csv"), cells.csv().as_bytes())?;
        let clones = self.clones_table(rows);
        crate::io::write_atomic(&outdir.join("clones.csv"), clones.csv().as_bytes())
    }
}

/// The files [`Clonal::write`] writes, removed by an aggregation without VDJ so that none is
/// left from an earlier one.
pub(crate) const FILES: [&str; 3] = ["clonotypes.parquet", "clonotypes.csv", "clones.csv"];

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(timepoint: &str, day: Option<f64>) -> Sample {
        Sample {
            id: "S".into(),
            path_text: "s.h5ad".into(),
            path: "s.h5ad".into(),
            patient: "P".into(),
            timepoint: timepoint.into(),
            day,
            vdj: None,
            extra: Vec::new(),
        }
    }

    fn row(id: &str, timepoint: &str, day: Option<f64>) -> SampleRow {
        SampleRow {
            sample: Sample {
                id: id.into(),
                ..sample(timepoint, day)
            },
            status: SampleStatus::Ok,
            error: String::new(),
            fields: std::collections::BTreeMap::new(),
            columns: Vec::new(),
            has_report: false,
        }
    }

    #[test]
    fn earlier_previous_and_product_by_hand() {
        let rows = vec![
            row("S0", "infusion", Some(0.0)),
            row("S1a", "day14", Some(14.0)),
            row("S1b", "day14", Some(14.0)),
            row("S2", "day28", Some(28.0)),
            row("S3", "late", None),
            row("S4", "day40", Some(40.0)),
        ];
        let counts = [
            vec![1, 1, 2],
            vec![1, 3],
            vec![3, 3],
            vec![3, 4],
            vec![4, 4, 4, 5],
            vec![],
        ];
        let mut status = vec![VdjStatus::Done; 5];
        status.push(VdjStatus::Failed("v.csv: missing".into()));
        let c = Clonal {
            cells: Vec::new(),
            receptors: Vec::new(),
            sizes: Vec::new(),
            clone_patient: Vec::new(),
            status,
            product: rows.iter().map(|r| is_product(&r.sample, None)).collect(),
            counts: counts.into_iter().map(Repertoire::from_clones).collect(),
        };
        let f = c.persistence_fields(&rows);
        let col = |id: &str, name: &str| {
            let k = PERSISTENCE_COLUMNS.iter().position(|c| *c == name).unwrap();
            f[id][k].clone()
        };
        // The product has no earlier sample and no product columns.
        assert_eq!(col("S0", "seen_before_fraction"), "");
        assert_eq!(col("S0", "product_clone_fraction"), "");
        assert_eq!(col("S0", "expanded_fraction"), "0");
        // S1b: S1a is on the same day, so only the product is earlier.
        assert_eq!(col("S1b", "seen_before_fraction"), "0");
        assert_eq!(col("S1b", "jaccard_previous"), "0");
        assert_eq!(col("S1a", "product_clone_fraction"), "0.5");
        // S2 = {3: 1, 4: 1} against the pooled day 14 {1: 1, 3: 3}: Jaccard 1/3, MH 2 * 3 /
        // ((2/4 + 10/16) * 2 * 4) = 2/3; clone 3 was seen before, no cell is in the product.
        assert_eq!(col("S2", "jaccard_previous"), (1.0f64 / 3.0).to_string());
        let mh: f64 = col("S2", "morisita_horn_previous").parse().unwrap();
        assert!((mh - 2.0 / 3.0).abs() < 1e-15, "{mh}");
        assert_eq!(col("S2", "seen_before_fraction"), "0.5");
        assert_eq!(col("S2", "product_clones_seen"), "0");
        assert_eq!(col("S2", "morisita_horn_product"), "0");
        // S4 (day 40) is before the undated S3, but its VDJ failed: S3 = {4: 3, 5: 1} is
        // compared with S2 = {3: 1, 4: 1} (Jaccard 1/3).
        assert_eq!(col("S4", "vdj_cells"), "");
        assert_eq!(col("S4", "vdj_error"), "v.csv: missing");
        assert_eq!(col("S3", "jaccard_previous"), (1.0f64 / 3.0).to_string());
        assert_eq!(col("S3", "expanded_fraction"), "0.75");
        assert_eq!(col("S3", "largest_clone_fraction"), "0.75");
        assert_eq!(col("S3", "seen_before_fraction"), "0.75");
    }

    #[test]
    fn product_rule_and_override() {
        for tp in ["IP", "ip", "PROD", "Product", "INFUSION"] {
            assert!(is_product(&sample(tp, Some(3.0)), None), "{tp}");
        }
        assert!(is_product(&sample("baseline", Some(0.0)), None));
        assert!(!is_product(&sample("day14", Some(14.0)), None));
        assert!(!is_product(&sample("", None), None));
        // The override is the only rule: neither day 0 nor the default labels count.
        assert!(is_product(&sample("D0-bag", Some(1.0)), Some("d0-BAG")));
        assert!(!is_product(&sample("infusion", Some(0.0)), Some("D0-bag")));
    }
}
