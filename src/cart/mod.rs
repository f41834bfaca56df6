//! CAR-T interpretation of a run: the CAR construct ([`detect`]), gene-set scores exactly as
//! scanpy's `score_genes` ([`score`], [`genesets`]), the cell-cycle phase exactly as scanpy's
//! `score_genes_cell_cycle` ([`cycle`]), rule-based cell calls ([`calls`]) and the per-sample
//! summary ([`summary`]).
//!
//! The pipeline feeds this module three things: the CAR candidates' raw counts (gathered while
//! the input is read), the per-gene means of the log-normalised data (for the control-gene
//! bins), and the log-normalised chunks again (for scores and markers). Results become obs
//! columns of `result.h5ad` (`car_positive`, `<set>_score`, `S_score`, `G2M_score`, `phase`,
//! `t_cell`, `cd4_cd8`, `phenotype`) and the `cart` section of `summary.json`.

pub mod calls;
pub mod cycle;
pub mod detect;
pub mod genesets;
pub mod lineage;
pub mod score;
pub mod summary;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use detect::{CAR_EXACT_NAMES, CAR_NAME_PATTERNS, car_feature_candidates};
pub use genesets::{GeneSet, GeneSetsMode};

use crate::error::{Error, Result};
use crate::io::{Column, Frame};
use crate::matrix::CsrMatrix;
use score::{ScorePlan, Scorer};

/// CAR-T options of a run (`[cart]` in config.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CartOptions {
    /// The CAR construct feature; detected from the documented names when None.
    pub car_feature: Option<String>,
    /// Counts of the CAR feature that make a cell CAR+.
    pub car_min_counts: u32,
    /// A GMT file of gene sets.
    pub gene_sets: Option<PathBuf>,
    /// Whether the GMT file replaces or extends the default sets.
    pub gene_sets_mode: GeneSetsMode,
    /// Write report.html.
    pub report: bool,
    /// Let the CAR feature compete for the HVGs like any gene, as scanpy's reference pipeline
    /// does (it knows no CAR). On by default so that a default run reproduces scanpy: on the
    /// sample, keeping the construct out moves PCA (top-10 |r| 0.9967), kNN recall (0.94) and
    /// the connectivities (0.17) beyond the tolerances of docs/algorithms.md section 9.
    /// `--car-out-of-hvg` keeps it out, so it never shapes PCA and the kNN graph.
    pub car_in_hvg: bool,
    /// Score the cell cycle (`S_score`, `G2M_score`, `phase`) as scanpy's
    /// `score_genes_cell_cycle`; `--no-cell-cycle` turns it off.
    pub cell_cycle: bool,
    /// Cells of the neighbourhood the lineage calls smooth over, the cell included
    /// (`--lineage-k`; capped at n_neighbors).
    pub lineage_k: usize,
    /// Smoothed CD4 and CD8 evidence at or below this is `DN` (`--lineage-min`).
    pub lineage_min: f32,
    /// Gamma-delta score above which a T cell is `gd` (`--gd-min`).
    pub gd_min: f32,
}

impl Default for CartOptions {
    fn default() -> Self {
        CartOptions {
            car_feature: None,
            car_min_counts: 1,
            gene_sets: None,
            gene_sets_mode: GeneSetsMode::Replace,
            report: true,
            car_in_hvg: true,
            cell_cycle: true,
            lineage_k: lineage::LineageOptions::default().k,
            lineage_min: lineage::LineageOptions::default().min,
            gd_min: lineage::LineageOptions::default().gd_min,
        }
    }
}

impl CartOptions {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.car_min_counts == 0 {
            return Err(Error::Usage("--car-min-counts must be at least 1".into()));
        }
        self.lineage().validate()
    }

    /// The lineage options.
    pub fn lineage(&self) -> lineage::LineageOptions {
        lineage::LineageOptions {
            k: self.lineage_k,
            min: self.lineage_min,
            gd_min: self.gd_min,
        }
    }
}

/// What happened to one gene set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneSetReport {
    /// Set name.
    pub name: String,
    /// obs column of its score, absent when no gene of the set is in the data.
    pub score_column: Option<String>,
    /// Genes scored.
    pub genes_used: Vec<String>,
    /// Listed genes not in the data after filter_genes.
    pub genes_missing: Vec<String>,
    /// Number of control genes drawn.
    pub n_control_genes: usize,
    /// The control genes (scanpy's binned draw), so the score can be reproduced.
    pub control_genes: Vec<String>,
}

/// The present genes of `list` (positions in `pos`, duplicates once, list order) and the
/// missing ones, as scanpy's `score_genes` restricts a list to var_names.
pub(crate) fn present(pos: &HashMap<&str, usize>, list: &[String]) -> (Vec<usize>, Vec<String>) {
    let mut used: Vec<usize> = Vec::new();
    let mut missing = Vec::new();
    for g in list {
        match pos.get(g.as_str()) {
            Some(&j) if !used.contains(&j) => used.push(j),
            Some(_) => {}
            None => missing.push(g.clone()),
        }
    }
    (used, missing)
}

/// Scores and marker values accumulated over the log-normalised chunks.
#[derive(Debug)]
pub(crate) struct CellAccumulator {
    sets: Vec<GeneSetReport>,
    /// The cell-cycle lists; None when not asked for. When scored, the scorer's last two plans
    /// are S and G2M.
    cycle: Option<cycle::CellCycleReport>,
    scorer: Scorer,
    markers: Vec<(&'static str, usize)>,
    marker_values: Vec<f32>,
}

impl CellAccumulator {
    /// Plans the scores of `sets` (and of the cell cycle with `cell_cycle`) over `genes` (the
    /// filtered var names) with `means` their mean log-normalised expression.
    pub fn new(genes: &[String], means: &[f64], sets: &[GeneSet], cell_cycle: bool) -> Self {
        let pos: HashMap<&str, usize> = genes
            .iter()
            .enumerate()
            .map(|(j, g)| (g.as_str(), j))
            .collect();
        let mut plans = Vec::new();
        let mut reports = Vec::new();
        for set in sets {
            let (used, missing) = present(&pos, &set.genes);
            let mut report = GeneSetReport {
                name: set.name.clone(),
                score_column: None,
                genes_used: used.iter().map(|&j| genes[j].clone()).collect(),
                genes_missing: missing,
                n_control_genes: 0,
                control_genes: Vec::new(),
            };
            if !used.is_empty() {
                let plan = ScorePlan::new(means, used);
                if !plan.control.is_empty() {
                    report.score_column = Some(format!("{}_score", set.name));
                    report.n_control_genes = plan.control.len();
                    report.control_genes = plan.control.iter().map(|&j| genes[j].clone()).collect();
                    plans.push(plan);
                }
            }
            reports.push(report);
        }
        let cycle = cell_cycle.then(|| {
            let (report, cycle_plans) = cycle::plan(genes, &pos, means);
            plans.extend(cycle_plans.into_iter().flatten());
            report
        });
        let markers = calls::marker_genes()
            .into_iter()
            .filter_map(|g| pos.get(g).map(|&j| (g, j)))
            .collect();
        CellAccumulator {
            sets: reports,
            cycle,
            scorer: Scorer::new(plans, genes.len()),
            markers,
            marker_values: Vec::new(),
        }
    }

    /// Adds the next rows of the log-normalised matrix.
    pub fn push(&mut self, x: &CsrMatrix) {
        self.scorer.push(x);
        let k = self.markers.len();
        for i in 0..x.n_rows {
            let base = self.marker_values.len();
            self.marker_values.resize(base + k, 0.0);
            let (idx, val) = x.row(i);
            for (m, &(_, j)) in self.markers.iter().enumerate() {
                if let Ok(p) = idx.binary_search(&(j as u32)) {
                    self.marker_values[base + m] = val[p];
                }
            }
        }
    }

    /// Scores and calls per cell; `car` holds the CAR counts of the same cells.
    pub fn finish(self, car: Option<(String, Vec<f32>, u32)>) -> CartCells {
        let scores = self.scorer.finish();
        let k = self.markers.len();
        let n = self
            .marker_values
            .len()
            .checked_div(k)
            .unwrap_or_else(|| scores.first().map_or(0, Vec::len));
        let value = |i: usize, g: &str| {
            self.markers
                .iter()
                .position(|(name, _)| *name == g)
                .map(|m| self.marker_values[i * k + m])
        };
        let calls = (0..n).map(|i| calls::call_cell(|g| value(i, g))).collect();
        let evidence = lineage::Evidence::new(n, value);
        let mut score_iter = scores.into_iter();
        let scores = self
            .sets
            .iter()
            .filter_map(|s| Some((s.score_column.clone()?, score_iter.next()?)))
            .collect();
        let cell_cycle = match (&self.cycle, score_iter.next(), score_iter.next()) {
            (Some(r), Some(s), Some(g2m)) if r.scored => Some(cycle::CellCycle::new(s, g2m)),
            _ => None,
        };
        CartCells {
            gene_sets: self.sets,
            scores,
            cycle_report: self.cycle,
            cell_cycle,
            calls,
            evidence,
            smoothed: None,
            car: car.map(|(name, counts, min)| CarCells {
                positive: counts.iter().map(|&c| c >= min as f32).collect(),
                name,
                counts,
            }),
        }
    }
}

/// The CAR feature's per-cell values.
#[derive(Debug, Clone, PartialEq)]
pub struct CarCells {
    /// Feature name.
    pub name: String,
    /// Raw counts per cell.
    pub counts: Vec<f32>,
    /// counts >= `--car-min-counts`.
    pub positive: Vec<bool>,
}

/// Per-cell CAR-T results for the cells after QC.
#[derive(Debug, Clone)]
pub struct CartCells {
    /// Each gene set and what was scored of it.
    pub gene_sets: Vec<GeneSetReport>,
    /// (obs column, score per cell) for each scored set.
    pub scores: Vec<(String, Vec<f64>)>,
    /// What was scored of the cell-cycle lists; None when the cell cycle was not asked for.
    pub cycle_report: Option<cycle::CellCycleReport>,
    /// Cell-cycle scores and phases, when scored.
    pub cell_cycle: Option<cycle::CellCycle>,
    /// Calls per cell.
    pub calls: Vec<calls::CellCall>,
    /// Each cell's own lineage evidence.
    pub evidence: lineage::Evidence,
    /// The evidence smoothed over the kNN graph, once it exists.
    pub smoothed: Option<lineage::Smoothed>,
    /// CAR status, None when the data have no CAR feature.
    pub car: Option<CarCells>,
}

impl CartCells {
    /// The calls from the kNN graph (`distances`, `obsp["distances"]`): smooths the evidence,
    /// calls T cells whose own markers tie by their neighbourhood, and sets `cd4_cd8`,
    /// `t_lineage` and `phenotype` of every T cell ([`lineage`]).
    pub fn call_lineages(&mut self, distances: &CsrMatrix<f64>, opts: &lineage::LineageOptions) {
        let mut s = lineage::smooth(&self.evidence, distances, opts.k);
        for (i, c) in self.calls.iter_mut().enumerate() {
            if !c.t_cell && lineage::t_cell_by_neighbourhood(&self.evidence, &s, i) {
                c.t_cell = true;
                c.cd4_cd8_cell = lineage::cd4_cd8_cell(&self.evidence, i);
            }
        }
        let t_cell: Vec<bool> = self.calls.iter().map(|c| c.t_cell).collect();
        s.balance(&t_cell);
        for (i, c) in self.calls.iter_mut().enumerate() {
            if c.t_cell {
                c.cd4_cd8 = lineage::cd4_cd8(c.cd4_cd8_cell, &s, i, opts);
                c.t_lineage = lineage::t_lineage(&self.evidence, &s, i, opts);
                c.phenotype = lineage::phenotype(&self.evidence, &s, i);
            }
        }
        self.smoothed = Some(s);
    }

    /// Adds the obs columns: `car_counts`/`car_positive` (only with a CAR feature), the
    /// scores, `S_score`, `G2M_score` and `phase` (when scored), `t_cell`, `t_lineage`,
    /// `cd4_cd8`, `cd4_cd8_cell` and `phenotype` (categoricals in a fixed order), and the
    /// smoothed lineage evidence (`cd4_smoothed`, `cd8_smoothed`, `gd_smoothed`,
    /// `trac_smoothed`, `t_smoothed`) once the graph exists.
    pub fn annotate(&self, obs: &mut Frame) {
        if let Some(car) = &self.car {
            obs.set("car_counts", Column::F32(car.counts.clone()));
            obs.set("car_positive", Column::Bool(car.positive.clone()));
        }
        for (name, s) in &self.scores {
            obs.set(name.clone(), Column::F64(s.clone()));
        }
        if let Some(c) = &self.cell_cycle {
            obs.set("S_score", Column::F64(c.s_score.clone()));
            obs.set("G2M_score", Column::F64(c.g2m_score.clone()));
            obs.set(
                "phase",
                categorical(c.phase.iter().copied(), &cycle::PHASES),
            );
        }
        obs.set(
            "t_cell",
            Column::Bool(self.calls.iter().map(|c| c.t_cell).collect()),
        );
        obs.set(
            "t_lineage",
            categorical(self.calls.iter().map(|c| c.t_lineage), &lineage::T_LINEAGES),
        );
        obs.set(
            "cd4_cd8",
            categorical(self.calls.iter().map(|c| c.cd4_cd8), &calls::LINEAGES),
        );
        obs.set(
            "cd4_cd8_cell",
            categorical(self.calls.iter().map(|c| c.cd4_cd8_cell), &calls::LINEAGES),
        );
        if let Some(s) = &self.smoothed {
            for (name, v) in [
                ("cd4_smoothed", &s.cd4),
                ("cd8_smoothed", &s.cd8),
                ("gd_smoothed", &s.gd),
                ("trac_smoothed", &s.trac),
                ("t_smoothed", &s.t_vote),
            ] {
                obs.set(name, Column::F32(v.clone()));
            }
        }
        obs.set(
            "phenotype",
            categorical(self.calls.iter().map(|c| c.phenotype), &calls::PHENOTYPES),
        );
    }
}

fn categorical<'a>(values: impl Iterator<Item = &'a str>, order: &[&str]) -> Column {
    Column::Categorical {
        codes: values
            .map(|v| order.iter().position(|o| *o == v).map_or(-1, |p| p as i32))
            .collect(),
        categories: order.iter().map(|s| s.to_string()).collect(),
        ordered: false,
    }
}

/// Takes gene `excluded` (the CAR feature) out of the HVG selection; the best-ranked gene not
/// yet selected by `ranking` (dispersions_norm or variances_norm) takes its place.
pub(crate) fn exclude_from_hvg(highly_variable: &mut [bool], ranking: &[f64], excluded: usize) {
    if !highly_variable.get(excluded).copied().unwrap_or(false) {
        return;
    }
    highly_variable[excluded] = false;
    let next = (0..ranking.len())
        .filter(|&j| j != excluded && !highly_variable[j] && ranking[j].is_finite())
        .max_by(|&a, &b| ranking[a].total_cmp(&ranking[b]).then(b.cmp(&a)));
    if let Some(j) = next {
        highly_variable[j] = true;
    }
}
