//! The per-sample CAR-T summary (`summary.json` section `cart`, `summary.csv`).
//!
//! Per sample (obs `sample`, else the input's name): cells in and after QC; median genes,
//! counts and % mitochondrial counts after QC; the CAR feature, CAR+ count and fraction of
//! QC cells and of T cells; the CD4:CD8 ratio (cells called `CD4` over cells called `CD8`)
//! among CAR+ T cells and among all T cells, by the neighbourhood-aware call and by the
//! per-cell rule; the DN and gamma-delta fractions of CAR+ T cells (and gamma-delta of T cells); phenotype fractions among T cells and among CAR+
//! T cells; the median of every score among T cells and among CAR+ T cells; and the
//! exhaustion-to-memory balance, median exhaustion score minus median memory score (among
//! CAR+ T cells when there is a CAR feature, else among T cells; positive: exhausted-leaning);
//! when the cell cycle was scored, the cells after QC per phase and the cycling fraction (S or
//! G2M).

use std::collections::BTreeMap;

use serde::Serialize;

use super::cycle::CellCycleReport;
use super::{CartCells, GeneSetReport, calls};
use crate::io::{Column, Frame, csv};

/// One sample's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleSummary {
    /// Sample label.
    pub sample: String,
    /// Cells read.
    pub n_cells_in: usize,
    /// Cells after QC.
    pub n_cells_after_qc: usize,
    /// Median genes per cell after QC.
    pub median_genes: f64,
    /// Median counts per cell after QC.
    pub median_counts: f64,
    /// Median % mitochondrial counts after QC.
    pub median_pct_mito: f64,
    /// Cells called T cells.
    pub n_t_cells: usize,
    /// CAR+ cells (None without a CAR feature).
    pub n_car_positive: Option<usize>,
    /// CAR+ cells / cells after QC.
    pub car_positive_fraction: Option<f64>,
    /// CAR+ T cells / T cells.
    pub car_positive_fraction_of_t: Option<f64>,
    /// CD4 / CD8 calls among CAR+ T cells (None without CAR or without CD8 cells).
    pub cd4_cd8_ratio_car: Option<f64>,
    /// CD4 / CD8 calls among all T cells.
    pub cd4_cd8_ratio_t: Option<f64>,
    /// CD4 / CD8 among CAR+ T cells by the per-cell rule alone (`cd4_cd8_cell`).
    pub cd4_cd8_cell_ratio_car: Option<f64>,
    /// CD4 / CD8 among all T cells by the per-cell rule alone (`cd4_cd8_cell`).
    pub cd4_cd8_cell_ratio_t: Option<f64>,
    /// Fraction of CAR+ T cells called double-negative (DN) (None without CAR or without CAR+
    /// T cells).
    pub dn_fraction_car: Option<f64>,
    /// Fraction of CAR+ T cells called gamma-delta (None without CAR, without CAR+ T cells, or
    /// when the data carry no TCR constant-region genes).
    pub gd_fraction_car: Option<f64>,
    /// Fraction of T cells called gamma-delta (None without T cells or TCR genes).
    pub gd_fraction_t: Option<f64>,
    /// Phenotype fractions among T cells.
    pub phenotype_fractions_t: BTreeMap<String, f64>,
    /// Phenotype fractions among CAR+ T cells.
    pub phenotype_fractions_car: Option<BTreeMap<String, f64>>,
    /// Median score per set among T cells.
    pub median_scores_t: BTreeMap<String, f64>,
    /// Median score per set among CAR+ T cells.
    pub median_scores_car: Option<BTreeMap<String, f64>>,
    /// Median exhaustion minus median memory score (CAR+ T cells, else T cells).
    pub exhaustion_memory_balance: Option<f64>,
    /// Cells after QC per cell-cycle phase (None when the cell cycle was not scored).
    pub phase_counts: Option<PhaseCounts>,
    /// Cells in S or G2M / cells after QC (None when the cell cycle was not scored).
    pub cycling_fraction: Option<f64>,
    /// Receptors and clones (None without VDJ contigs).
    pub vdj: Option<ClonalSummary>,
}

/// A sample's receptors and clones (`run --vdj`); the statistics are those of
/// [`crate::vdj::stats`] over the sample's cells with a clone, clone sizes counted within the
/// sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClonalSummary {
    /// Cells with a receptor (an indexed chain; chain pairing not `no IR`).
    pub n_cells_with_ir: usize,
    /// Cells whose chain pairing is `single pair` (one VJ and one VDJ chain).
    pub n_single_pair: usize,
    /// Distinct clonotypes.
    pub n_clonotypes: usize,
    /// Fraction of the cells with a clone whose clone has more than 2 cells.
    pub expanded_fraction: Option<f64>,
    /// Normalised Shannon entropy of the clone sizes (scirpy's).
    pub clone_entropy: Option<f64>,
    /// Fraction of the cells with a clone in the largest clone.
    pub largest_clone_fraction: Option<f64>,
    /// CAR+ cells with a receptor (None without a CAR feature).
    pub n_car_with_ir: Option<usize>,
    /// Clonotypes with at least one CAR+ cell (None without a CAR feature).
    pub n_car_clonotypes: Option<usize>,
}

/// Per cell: its clone (obs `clone_id` code, -1 without), whether it has a receptor and
/// whether it is a single pair; None without the VDJ columns.
struct CellReceptors {
    clone: Vec<i32>,
    has_ir: Vec<bool>,
    single_pair: Vec<bool>,
}

impl CellReceptors {
    fn of(obs: &Frame) -> Option<Self> {
        let Some(Column::Categorical { codes, .. }) = obs.column("clone_id") else {
            return None;
        };
        let pairing = obs.column("chain_pairing").and_then(Column::as_strings)?;
        let is = |p: &Option<String>, what: &str| p.as_deref() == Some(what);
        Some(CellReceptors {
            clone: codes.clone(),
            has_ir: pairing.iter().map(|p| !is(p, "no IR")).collect(),
            single_pair: pairing.iter().map(|p| is(p, "single pair")).collect(),
        })
    }

    fn summary(&self, rows: &[usize], car: Option<&[bool]>) -> ClonalSummary {
        let clones = |set: &mut dyn Iterator<Item = usize>| {
            crate::vdj::Repertoire::from_clones(
                set.filter_map(|i| u32::try_from(self.clone[i]).ok()),
            )
        };
        let all = clones(&mut rows.iter().copied());
        let car_rows = car.map(|c| rows.iter().copied().filter(|&i| c[i]).collect::<Vec<_>>());
        ClonalSummary {
            n_cells_with_ir: rows.iter().filter(|&&i| self.has_ir[i]).count(),
            n_single_pair: rows.iter().filter(|&&i| self.single_pair[i]).count(),
            n_clonotypes: all.n_clones(),
            expanded_fraction: all.expanded_fraction(2),
            clone_entropy: all.normalized_entropy(),
            largest_clone_fraction: all.largest_fraction(),
            n_car_with_ir: car_rows
                .as_ref()
                .map(|r| r.iter().filter(|&&i| self.has_ir[i]).count()),
            n_car_clonotypes: car_rows
                .as_ref()
                .map(|r| clones(&mut r.iter().copied()).n_clones()),
        }
    }
}

/// Cells per cell-cycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PhaseCounts {
    /// Cells in G1.
    #[serde(rename = "G1")]
    pub g1: usize,
    /// Cells in S.
    #[serde(rename = "S")]
    pub s: usize,
    /// Cells in G2/M.
    #[serde(rename = "G2M")]
    pub g2m: usize,
}

impl PhaseCounts {
    /// The phases of the cells `rows`.
    fn of(phase: &[&str], rows: &[usize]) -> Self {
        let n = |p: &str| rows.iter().filter(|&&i| phase[i] == p).count();
        PhaseCounts {
            g1: n("G1"),
            s: n("S"),
            g2m: n("G2M"),
        }
    }
}

/// The `cart` section of summary.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CartSummary {
    /// The CAR feature used; None when the data have none.
    pub car_feature: Option<String>,
    /// Why there is no CAR status, or how the feature was chosen.
    pub car_note: String,
    /// Other CAR candidates and the cells they would call CAR+.
    pub car_other_candidates: Vec<(String, usize)>,
    /// `--car-min-counts`.
    pub car_min_counts: u32,
    /// Gene sets, with genes used and missing.
    pub gene_sets: Vec<GeneSetReport>,
    /// The cell-cycle lists, with genes used and missing and whether they were scored; None
    /// with `--no-cell-cycle`.
    pub cell_cycle: Option<CellCycleReport>,
    /// Per-sample numbers.
    pub samples: Vec<SampleSummary>,
}

/// numpy's median (mean of the two middle values), None for no values; NaNs are skipped.
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Per-cell sample labels: obs `sample` when present, else `default`.
pub(crate) fn sample_labels(obs: &Frame, default: &str) -> Vec<String> {
    obs.column("sample")
        .and_then(Column::as_strings)
        .map(|v| {
            v.into_iter()
                .map(|s| s.unwrap_or_else(|| default.to_string()))
                .collect()
        })
        .unwrap_or_else(|| vec![default.to_string(); obs.len()])
}

fn numeric(obs: &Frame, name: &str) -> Vec<f64> {
    match obs.column(name) {
        Some(Column::F32(v)) => v.iter().map(|&x| f64::from(x)).collect(),
        Some(Column::F64(v)) => v.clone(),
        Some(Column::I32(v)) => v.iter().map(|&x| f64::from(x)).collect(),
        Some(Column::I64(v)) => v.iter().map(|&x| x as f64).collect(),
        _ => vec![f64::NAN; obs.len()],
    }
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Builds the summary from the annotated obs of the cells after QC, their sample labels, and
/// the sample labels of all input cells.
pub(crate) fn summarise(
    obs: &Frame,
    labels: &[String],
    labels_in: &[String],
    cells: &CartCells,
    car_note: String,
    car_other_candidates: Vec<(String, usize)>,
    car_min_counts: u32,
) -> CartSummary {
    let mut order: Vec<String> = Vec::new();
    for l in labels_in {
        if !order.contains(l) {
            order.push(l.clone());
        }
    }
    let genes = numeric(obs, "n_genes_by_counts");
    let counts = numeric(obs, "total_counts");
    let mito = numeric(obs, "pct_counts_mt");
    let car = cells.car.as_ref();
    let receptors = CellReceptors::of(obs);
    let samples = order
        .iter()
        .map(|s| {
            let rows: Vec<usize> = (0..labels.len()).filter(|&i| &labels[i] == s).collect();
            let t: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&i| cells.calls[i].t_cell)
                .collect();
            let car_t: Option<Vec<usize>> =
                car.map(|c| t.iter().copied().filter(|&i| c.positive[i]).collect());
            // Cells of `set` called `lin` by the neighbourhood-aware call, and by the per-cell
            // rule alone.
            let count_by =
                |call: fn(&calls::CellCall) -> &'static str, set: &[usize], lin: &str| {
                    set.iter()
                        .filter(|&&i| call(&cells.calls[i]) == lin)
                        .count()
                };
            let count = |set: &[usize], lin: &str| count_by(|c| c.cd4_cd8, set, lin);
            let count_cell = |set: &[usize], lin: &str| count_by(|c| c.cd4_cd8_cell, set, lin);
            let gd = |set: &[usize]| {
                let n = set
                    .iter()
                    .filter(|&&i| cells.calls[i].t_lineage == "gd")
                    .count();
                ratio(n, set.len()).filter(|_| cells.evidence.has_tcr)
            };
            let fractions = |set: &[usize]| -> BTreeMap<String, f64> {
                calls::PHENOTYPES
                    .iter()
                    .filter(|p| **p != calls::NON_T)
                    .map(|p| {
                        let k = set
                            .iter()
                            .filter(|&&i| cells.calls[i].phenotype == *p)
                            .count();
                        (
                            p.to_string(),
                            if set.is_empty() {
                                0.0
                            } else {
                                k as f64 / set.len() as f64
                            },
                        )
                    })
                    .collect()
            };
            let medians = |set: &[usize]| -> BTreeMap<String, f64> {
                cells
                    .scores
                    .iter()
                    .filter_map(|(name, v)| {
                        Some((name.clone(), median(set.iter().map(|&i| v[i]))?))
                    })
                    .collect()
            };
            let n_car = car.map(|c| rows.iter().filter(|&&i| c.positive[i]).count());
            let balance_set = car_t.as_deref().unwrap_or(&t);
            let m = medians(balance_set);
            let phases = cells
                .cell_cycle
                .as_ref()
                .map(|c| PhaseCounts::of(&c.phase, &rows));
            SampleSummary {
                sample: s.clone(),
                n_cells_in: labels_in.iter().filter(|l| *l == s).count(),
                n_cells_after_qc: rows.len(),
                median_genes: median(rows.iter().map(|&i| genes[i])).unwrap_or(f64::NAN),
                median_counts: median(rows.iter().map(|&i| counts[i])).unwrap_or(f64::NAN),
                median_pct_mito: median(rows.iter().map(|&i| mito[i])).unwrap_or(f64::NAN),
                n_t_cells: t.len(),
                n_car_positive: n_car,
                car_positive_fraction: n_car.and_then(|k| ratio(k, rows.len())),
                car_positive_fraction_of_t: car_t.as_ref().and_then(|c| ratio(c.len(), t.len())),
                cd4_cd8_ratio_car: car_t
                    .as_ref()
                    .and_then(|c| ratio(count(c, "CD4"), count(c, "CD8"))),
                cd4_cd8_ratio_t: ratio(count(&t, "CD4"), count(&t, "CD8")),
                cd4_cd8_cell_ratio_car: car_t
                    .as_ref()
                    .and_then(|c| ratio(count_cell(c, "CD4"), count_cell(c, "CD8"))),
                cd4_cd8_cell_ratio_t: ratio(count_cell(&t, "CD4"), count_cell(&t, "CD8")),
                dn_fraction_car: car_t.as_ref().and_then(|c| ratio(count(c, "DN"), c.len())),
                gd_fraction_car: car_t.as_deref().and_then(gd),
                gd_fraction_t: gd(&t),
                phenotype_fractions_t: fractions(&t),
                phenotype_fractions_car: car_t.as_deref().map(fractions),
                median_scores_t: medians(&t),
                median_scores_car: car_t.as_deref().map(medians),
                exhaustion_memory_balance: m
                    .get("exhaustion_score")
                    .zip(m.get("memory_score"))
                    .map(|(e, mm)| e - mm),
                phase_counts: phases,
                cycling_fraction: phases.and_then(|p| ratio(p.s + p.g2m, rows.len())),
                vdj: receptors
                    .as_ref()
                    .map(|r| r.summary(&rows, car.map(|c| c.positive.as_slice()))),
            }
        })
        .collect();
    CartSummary {
        car_feature: car.map(|c| c.name.clone()),
        car_note,
        car_other_candidates,
        car_min_counts,
        gene_sets: cells.gene_sets.clone(),
        cell_cycle: cells.cycle_report.clone(),
        samples,
    }
}

/// summary.csv's columns of [`ClonalSummary`], present when a sample has VDJ contigs.
const CLONAL_COLUMNS: [&str; 8] = [
    "n_cells_with_ir",
    "n_single_pair",
    "n_clonotypes",
    "expanded_fraction",
    "clone_entropy",
    "largest_clone_fraction",
    "n_car_with_ir",
    "n_car_clonotypes",
];

fn clonal_fields(c: Option<&ClonalSummary>) -> Vec<String> {
    let Some(c) = c else {
        return vec![String::new(); CLONAL_COLUMNS.len()];
    };
    let n = |k: Option<usize>| k.map_or(String::new(), |k| k.to_string());
    vec![
        c.n_cells_with_ir.to_string(),
        c.n_single_pair.to_string(),
        c.n_clonotypes.to_string(),
        fmt_opt(c.expanded_fraction),
        fmt_opt(c.clone_entropy),
        fmt_opt(c.largest_clone_fraction),
        n(c.n_car_with_ir),
        n(c.n_car_clonotypes),
    ]
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x}"))
}

/// summary.csv: one row per sample; empty fields where a value does not exist (no CAR
/// feature, no CD8 cells).
pub(crate) fn to_csv(s: &CartSummary) -> String {
    let set_names: Vec<String> = s
        .gene_sets
        .iter()
        .filter_map(|g| g.score_column.clone())
        .collect();
    let phen: Vec<&str> = calls::PHENOTYPES
        .iter()
        .copied()
        .filter(|p| *p != calls::NON_T)
        .collect();
    let mut header: Vec<String> = [
        "sample",
        "n_cells_in",
        "n_cells_after_qc",
        "median_genes",
        "median_counts",
        "median_pct_mito",
        "car_feature",
        "n_t_cells",
        "n_car_positive",
        "car_positive_fraction",
        "car_positive_fraction_of_t",
        "cd4_cd8_ratio_car",
        "cd4_cd8_ratio_t",
        "cd4_cd8_cell_ratio_car",
        "cd4_cd8_cell_ratio_t",
        "dn_fraction_car",
        "gd_fraction_car",
        "gd_fraction_t",
        "exhaustion_memory_balance",
        "cycling_fraction",
        "n_phase_G1",
        "n_phase_S",
        "n_phase_G2M",
    ]
    .map(String::from)
    .to_vec();
    let vdj = s.samples.iter().any(|r| r.vdj.is_some());
    if vdj {
        header.extend(CLONAL_COLUMNS.map(String::from));
    }
    header.extend(phen.iter().map(|p| format!("frac_t_{p}")));
    header.extend(phen.iter().map(|p| format!("frac_car_{p}")));
    header.extend(set_names.iter().map(|n| format!("median_t_{n}")));
    header.extend(set_names.iter().map(|n| format!("median_car_{n}")));
    let mut out = csv::record(&header);
    for r in &s.samples {
        let mut row: Vec<String> = vec![
            r.sample.clone(),
            r.n_cells_in.to_string(),
            r.n_cells_after_qc.to_string(),
            r.median_genes.to_string(),
            r.median_counts.to_string(),
            r.median_pct_mito.to_string(),
            s.car_feature.clone().unwrap_or_default(),
            r.n_t_cells.to_string(),
            r.n_car_positive.map_or(String::new(), |k| k.to_string()),
            fmt_opt(r.car_positive_fraction),
            fmt_opt(r.car_positive_fraction_of_t),
            fmt_opt(r.cd4_cd8_ratio_car),
            fmt_opt(r.cd4_cd8_ratio_t),
            fmt_opt(r.cd4_cd8_cell_ratio_car),
            fmt_opt(r.cd4_cd8_cell_ratio_t),
            fmt_opt(r.dn_fraction_car),
            fmt_opt(r.gd_fraction_car),
            fmt_opt(r.gd_fraction_t),
            fmt_opt(r.exhaustion_memory_balance),
            fmt_opt(r.cycling_fraction),
        ];
        let counts = r.phase_counts.map(|p| [p.g1, p.s, p.g2m]);
        row.extend((0..3).map(|k| counts.map_or(String::new(), |c| c[k].to_string())));
        if vdj {
            row.extend(clonal_fields(r.vdj.as_ref()));
        }
        row.extend(
            phen.iter()
                .map(|p| fmt_opt(r.phenotype_fractions_t.get(*p).copied())),
        );
        row.extend(phen.iter().map(|p| {
            fmt_opt(
                r.phenotype_fractions_car
                    .as_ref()
                    .and_then(|m| m.get(*p).copied()),
            )
        }));
        row.extend(
            set_names
                .iter()
                .map(|n| fmt_opt(r.median_scores_t.get(n).copied())),
        );
        row.extend(
            set_names
                .iter()
                .map(|n| fmt_opt(r.median_scores_car.as_ref().and_then(|m| m.get(n).copied()))),
        );
        out += &csv::record(&row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_numpys() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }
}
