//! Cell-cycle phase exactly as scanpy's `tl.score_genes_cell_cycle` (docs/algorithms.md
//! section 7), with the S and G2/M genes of Tirosh et al. 2016 (`data/cell_cycle_genes.tsv`,
//! its header names the source and license).
//!
//! - `ctrl_size = min(len(s_genes), len(g2m_genes))` of the lists as given (43), before genes
//!   missing from the data are dropped, as scanpy computes it.
//! - `S_score` and `G2M_score` are `ScorePlan::with_ctrl_size` scores (`score_genes` with
//!   n_bins 25, random_state 0 for each list, pool all genes after filter_genes).
//! - phase: `S`; `G2M` where G2M_score > S_score; `G1` where both scores are below 0.
//! - scanpy raises where a list has no gene in the data or draws no control gene; cartscope
//!   then writes no cell-cycle columns and says why in `summary.json`.

use std::collections::HashMap;

use serde::Serialize;

use super::score::ScorePlan;

/// The gene lists, one `phase<TAB>gene` row per gene in published order, `#` comments first.
const GENES_TSV: &str = include_str!("../../data/cell_cycle_genes.tsv");

/// Phase categories, in the order of the `phase` categorical.
pub const PHASES: [&str; 3] = ["G1", "S", "G2M"];

/// A list with fewer genes in the data than this gets a note in the summary (the score is
/// still scanpy's).
const FEW_GENES: usize = 5;

/// The genes of one phase (`"S"` or `"G2M"`), in published order.
pub fn genes(phase: &str) -> Vec<&'static str> {
    GENES_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .filter(|(p, _)| *p == phase)
        .map(|(_, g)| g.trim())
        .collect()
}

/// scanpy's phase of one cell from its S and G2M scores.
pub fn phase(s: f64, g2m: f64) -> &'static str {
    if s < 0.0 && g2m < 0.0 {
        "G1"
    } else if g2m > s {
        "G2M"
    } else {
        "S"
    }
}

/// What was scored of the cell-cycle lists (`summary.json`, `cart.cell_cycle`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellCycleReport {
    /// Whether `S_score`, `G2M_score` and `phase` were written.
    pub scored: bool,
    /// Why not, or a warning when a list rests on few genes; empty otherwise.
    pub note: String,
    /// Control genes drawn per expression bin: the length of the shorter list.
    pub ctrl_size: usize,
    /// S genes scored, in list order.
    pub s_genes_used: Vec<String>,
    /// S genes not in the data after filter_genes.
    pub s_genes_missing: Vec<String>,
    /// G2/M genes scored, in list order.
    pub g2m_genes_used: Vec<String>,
    /// G2/M genes not in the data after filter_genes.
    pub g2m_genes_missing: Vec<String>,
    /// The control genes of the S score.
    pub s_control_genes: Vec<String>,
    /// The control genes of the G2M score.
    pub g2m_control_genes: Vec<String>,
}

/// Per-cell scores and phases.
#[derive(Debug, Clone, PartialEq)]
pub struct CellCycle {
    /// `S_score`.
    pub s_score: Vec<f64>,
    /// `G2M_score`.
    pub g2m_score: Vec<f64>,
    /// `phase`, one of [`PHASES`].
    pub phase: Vec<&'static str>,
}

impl CellCycle {
    /// The phases of scored cells.
    pub fn new(s_score: Vec<f64>, g2m_score: Vec<f64>) -> Self {
        let phase = s_score
            .iter()
            .zip(&g2m_score)
            .map(|(&s, &g)| phase(s, g))
            .collect();
        CellCycle {
            s_score,
            g2m_score,
            phase,
        }
    }
}

/// The S and G2M plans over `genes` (positions in `pos`, means `means`), or None with the
/// reason in the report where scanpy would raise.
pub(crate) fn plan(
    genes: &[String],
    pos: &HashMap<&str, usize>,
    means: &[f64],
) -> (CellCycleReport, Option<[ScorePlan; 2]>) {
    let (s_list, g2m_list) = (genes_of("S"), genes_of("G2M"));
    let ctrl_size = s_list.len().min(g2m_list.len());
    let (s_used, s_missing) = super::present(pos, &s_list);
    let (g_used, g_missing) = super::present(pos, &g2m_list);
    let names = |v: &[usize]| v.iter().map(|&j| genes[j].clone()).collect::<Vec<_>>();
    let mut report = CellCycleReport {
        scored: false,
        note: String::new(),
        ctrl_size,
        s_genes_used: names(&s_used),
        s_genes_missing: s_missing,
        g2m_genes_used: names(&g_used),
        g2m_genes_missing: g_missing,
        s_control_genes: Vec::new(),
        g2m_control_genes: Vec::new(),
    };
    let (n_s, n_g) = (s_used.len(), g_used.len());
    if n_s == 0 || n_g == 0 {
        report.note = format!(
            "not scored: {n_s} of {} S genes and {n_g} of {} G2/M genes are in the data (scanpy raises when a list has none)",
            s_list.len(),
            g2m_list.len()
        );
        return (report, None);
    }
    let s = ScorePlan::with_ctrl_size(means, s_used, ctrl_size);
    let g = ScorePlan::with_ctrl_size(means, g_used, ctrl_size);
    if s.control.is_empty() || g.control.is_empty() {
        report.note =
            "not scored: no control genes in the listed genes' expression bins (scanpy raises)"
                .into();
        return (report, None);
    }
    report.scored = true;
    report.s_control_genes = names(&s.control);
    report.g2m_control_genes = names(&g.control);
    if n_s < FEW_GENES || n_g < FEW_GENES {
        report.note = format!(
            "only {n_s} of {} S genes and {n_g} of {} G2/M genes are in the data: the phases rest on few genes",
            s_list.len(),
            g2m_list.len()
        );
    }
    (report, Some([s, g]))
}

fn genes_of(phase: &str) -> Vec<String> {
    genes(phase).into_iter().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_cycle_lists_are_tirosh_2016() {
        let (s, g) = (genes("S"), genes("G2M"));
        assert_eq!((s.len(), g.len()), (43, 54));
        assert_eq!((s[0], s[42]), ("MCM5", "E2F8"));
        assert_eq!((g[0], g[53]), ("HMGB2", "CENPA"));
        let all: std::collections::HashSet<_> = s.iter().chain(&g).collect();
        assert_eq!(all.len(), 97);
    }

    #[test]
    fn cell_cycle_phase_rule_is_scanpys() {
        assert_eq!(phase(0.1, 0.05), "S");
        assert_eq!(phase(0.1, 0.2), "G2M");
        assert_eq!(phase(-0.1, -0.2), "G1");
        assert_eq!(phase(-0.1, 0.0), "G2M");
        assert_eq!(phase(0.0, -0.1), "S");
        // Ties stay S; NaN compares false everywhere, as in pandas.
        assert_eq!(phase(0.2, 0.2), "S");
        assert_eq!(phase(f64::NAN, -1.0), "S");
    }

    /// 100 genes with distinct means and two short lists: the scores are list mean minus
    /// control mean with ctrl_size = the shorter list's length (here 2) per bin.
    #[test]
    fn cell_cycle_plan_draws_ctrl_size_per_bin_and_skips_without_genes() {
        let names: Vec<String> = (0..100).map(|j| format!("G{j}")).collect();
        let means: Vec<f64> = (0..100).map(|j| f64::from(j) * 0.01).collect();
        let mut pos: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(j, g)| (g.as_str(), j))
            .collect();
        // No listed gene in the data: not scored.
        let (r, p) = plan(&names, &pos, &means);
        assert!(!r.scored && p.is_none() && r.note.contains("0 of 43 S genes"));
        assert_eq!(r.ctrl_size, 43);
        // MCM5 at gene 10 (bin 2 = genes 7..=10), HMGB2 at gene 50 (bin 12 = genes 47..=50):
        // each bin holds 4 genes, fewer than ctrl_size 43, so all of them minus the listed gene.
        pos.insert("MCM5", 10);
        pos.insert("HMGB2", 50);
        let (r, p) = plan(&names, &pos, &means);
        let [s, g] = p.unwrap();
        assert!(r.scored && r.note.contains("only 1 of 43 S genes"));
        assert_eq!((s.genes, s.control), (vec![10], vec![7, 8, 9]));
        assert_eq!((g.genes, g.control), (vec![50], vec![47, 48, 49]));
        assert_eq!(r.s_control_genes, ["G7", "G8", "G9"]);
    }
}
