//! Rule-based cell calls from log-normalised marker expression (`log1p(count / total * 1e4)`).
//!
//! "Detected" means a value above zero, i.e. at least one count.
//!
//! **T cell**: more of the pan-T markers `T_MARKERS` (CD3D, CD3E, CD3G and the T-cell
//! receptor constant regions TRAC, TRBC1, TRBC2) detected than of the B, myeloid and NK markers
//! `NON_T_MARKERS`. Stray counts of either set are common (ambient RNA: about 1 in 5
//! 3,500-UMI B cells or monocytes carries a CD3 count, and T cells carry the odd LYZ or CD79B
//! count), so the call is a vote rather than a veto; it also works where the data lack the TCR
//! genes (some studies remove them). On simulated samples it finds 99 % of T cells with 2-4
//! false calls per 640 other cells; on 200 sorted real T cells (Wu et al. 2020) 93 %.
//!
//! **CD4 / CD8**, the per-cell rule (obs `cd4_cd8_cell`; `cd4_cd8` adds the neighbourhood,
//! [`super::lineage`]; T cells only, other cells `non_T`): `CD4` when a CD4-lineage marker
//! (`CD4_MARKERS`: CD4, CD40LG) is detected and neither CD8A nor CD8B; `CD8` when CD8A or
//! CD8B is detected and no CD4-lineage marker; `DN` (double negative) when none is;
//! `DP` when both are (double positive or a doublet). At typical depths CD4 is a
//! low-count gene and CD40LG (the CD4 T-cell CD40 ligand) recovers part of the CD4 cells
//! without it; many CD4 T cells still carry neither and are called `DN`, so the CD4:CD8 ratio
//! counts only decided cells and under-counts CD4 cells.
//!
//! **Phenotype** (T cells only; other cells `non_T`): the mean log-expression of each
//! programme in `PROGRAMMES` is computed (`SHARED_GENES` at reduced weight; once the kNN graph
//! exists, half the cell's own and half its neighbourhood's means, [`super::lineage`]), and the
//! programme with the highest mean wins
//! (ties: the earlier in the list); `unassigned` when every programme is at zero. The memory
//! programme is split by a stem-like score: the log of the mean normalised expression of
//! `STEM_MARKERS` (TCF7, LEF1, CCR7, SELL pooled before the log, so one zero count does not
//! dominate), minus the same pooled log of the antigen-experience genes
//! `EXPERIENCED_MARKERS` (S100A4, ANXA1, ITGB1/CD29: on in central and effector memory, off in
//! naive and stem-like memory cells), minus `STEM_GZMK_WEIGHT` times GZMK log-expression
//! (central memory starts the GZMK effector programme, naive/stem-like memory does not).
//! `naive_stem_memory` when the score is at least `STEM_MIN` (the stem-like genes about 1.6
//! times the experience genes in normalised counts, without GZMK), otherwise `central_memory`.
//! Effector memory is GZMK/CCL5/KLRB1 without the memory programme; effector is the cytotoxic
//! granule programme; exhausted the inhibitory receptors with TOX; Treg-like FOXP3/IL2RA/CCR4/
//! IKZF2 (CTLA4 is left out: exhausted cells express it too).

/// Pan-T markers: the CD3 chains and the T-cell receptor alpha and beta constant regions.
pub(crate) const T_MARKERS: [&str; 6] = ["CD3D", "CD3E", "CD3G", "TRAC", "TRBC1", "TRBC2"];
/// B-cell, myeloid and NK markers that veto a single-marker T call.
pub(crate) const NON_T_MARKERS: [&str; 9] = [
    "CD19", "MS4A1", "CD79A", "CD79B", "CD14", "LYZ", "CSF1R", "KLRF1", "NCAM1",
];
/// The CD4 lineage markers.
pub(crate) const CD4_MARKERS: [&str; 2] = ["CD4", "CD40LG"];
/// The CD8 lineage markers.
pub(crate) const CD8_MARKERS: [&str; 2] = ["CD8A", "CD8B"];
/// Stem-like / naive markers that split the memory programme.
pub(crate) const STEM_MARKERS: [&str; 4] = ["TCF7", "LEF1", "CCR7", "SELL"];
/// Antigen-experience markers, subtracted from the stem-like score.
pub(crate) const EXPERIENCED_MARKERS: [&str; 3] = ["S100A4", "ANXA1", "ITGB1"];
/// Weight of GZMK log-expression subtracted from the stem-like score.
pub(crate) const STEM_GZMK_WEIGHT: f32 = 0.5;
/// Minimum stem-like score for `naive_stem_memory`.
pub(crate) const STEM_MIN: f32 = 0.5;

/// Phenotype programmes, in tie-break order; `memory` is split by [`STEM_MARKERS`].
pub(crate) const PROGRAMMES: [(&str, &[&str]); 6] = [
    (
        "proliferating",
        &["MKI67", "TOP2A", "TYMS", "ZWINT", "STMN1", "HMGB2"],
    ),
    (
        "exhausted",
        &["PDCD1", "HAVCR2", "LAG3", "TIGIT", "TOX", "ENTPD1"],
    ),
    ("treg_like", &["FOXP3", "IL2RA", "CCR4", "IKZF2"]),
    (
        "effector",
        &["GZMB", "PRF1", "NKG7", "GNLY", "IFNG", "GZMH"],
    ),
    ("effector_memory", &["GZMK", "CCL5", "KLRB1"]),
    (
        "memory",
        &["TCF7", "LEF1", "CCR7", "SELL", "IL7R", "CD27", "CD28"],
    ),
];

/// Genes shared between programmes, with their weight in the programme that lists them:
/// CCL5 is as abundant in cytotoxic effector (CTL) cells as in effector memory cells, so at
/// full weight it outvoted GZMB/PRF1/NKG7 and called CTLs effector memory.
pub(crate) const SHARED_GENES: [(&str, f32); 1] = [("CCL5", 0.5)];

/// Label of cells that are not called T cells.
pub const NON_T: &str = "non_T";

/// Every phenotype label, in display order.
pub const PHENOTYPES: [&str; 9] = [
    "naive_stem_memory",
    "central_memory",
    "effector_memory",
    "effector",
    "exhausted",
    "proliferating",
    "treg_like",
    "unassigned",
    NON_T,
];

/// Every CD4/CD8 label, in display order.
pub(crate) const LINEAGES: [&str; 5] = ["CD4", "CD8", "DN", "DP", NON_T];

/// Every marker gene the calls read, without duplicates, in a fixed order.
pub(crate) fn marker_genes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let all = T_MARKERS
        .iter()
        .chain(&NON_T_MARKERS)
        .chain(&CD4_MARKERS)
        .chain(&CD8_MARKERS)
        .chain(&super::lineage::GD_MARKERS)
        .chain(&STEM_MARKERS)
        .chain(&EXPERIENCED_MARKERS)
        .chain(PROGRAMMES.iter().flat_map(|(_, g)| g.iter()));
    for g in all {
        if !out.contains(g) {
            out.push(g);
        }
    }
    out
}

/// One cell's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellCall {
    /// T cell or not.
    pub t_cell: bool,
    /// One of `LINEAGES`: the cell's own counts first, its neighbourhood where they do not
    /// decide ([`super::lineage`]); the per-cell rule until the graph exists.
    pub cd4_cd8: &'static str,
    /// One of `LINEAGES`, the per-cell rule alone (obs `cd4_cd8_cell`).
    pub cd4_cd8_cell: &'static str,
    /// One of [`super::lineage::T_LINEAGES`] (`unknown` until the graph exists).
    pub t_lineage: &'static str,
    /// One of [`PHENOTYPES`].
    pub phenotype: &'static str,
}

/// Calls a cell from its marker values, `value(gene)` giving the log-normalised expression
/// (None when the gene is absent from the data).
pub(crate) fn call_cell(value: impl Fn(&str) -> Option<f32>) -> CellCall {
    let detected = |g: &&&str| value(g).is_some_and(|v| v > 0.0);
    let n_t = T_MARKERS.iter().filter(detected).count();
    let t_cell = n_t > NON_T_MARKERS.iter().filter(detected).count();
    if !t_cell {
        return CellCall {
            t_cell,
            cd4_cd8: NON_T,
            cd4_cd8_cell: NON_T,
            t_lineage: NON_T,
            phenotype: NON_T,
        };
    }
    let cd4_cd8 = cd4_cd8_rule(
        CD4_MARKERS.iter().any(|g| detected(&g)),
        CD8_MARKERS.iter().any(|g| detected(&g)),
    );
    let phenotype = phenotype(&phenotype_scores(&value));
    CellCall {
        t_cell,
        cd4_cd8,
        cd4_cd8_cell: cd4_cd8,
        t_lineage: "unknown",
        phenotype,
    }
}

/// The per-cell CD4/CD8 rule from whether a CD4-lineage and a CD8-lineage marker are detected.
pub(crate) fn cd4_cd8_rule(cd4: bool, cd8: bool) -> &'static str {
    match (cd4, cd8) {
        (true, false) => "CD4",
        (false, true) => "CD8",
        (false, false) => "DN",
        (true, true) => "DP",
    }
}

/// One cell's programme means (in `PROGRAMMES` order; NaN for a programme none of whose
/// genes is in the data) and its stem-like score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhenotypeScores {
    /// Mean weighted log-expression per programme.
    pub programmes: [f32; PROGRAMMES.len()],
    /// The stem-like score (`stem_score`).
    pub stem: f32,
}

/// The weight of gene `g` in its programme's mean: [`SHARED_GENES`] count less.
fn weight(g: &str) -> f32 {
    SHARED_GENES
        .iter()
        .find(|(s, _)| *s == g)
        .map_or(1.0, |(_, w)| *w)
}

/// The programme means and stem-like score of a cell from `value(gene)`.
pub(crate) fn phenotype_scores(value: &impl Fn(&str) -> Option<f32>) -> PhenotypeScores {
    let mut programmes = [f32::NAN; PROGRAMMES.len()];
    for (m, (_, genes)) in programmes.iter_mut().zip(PROGRAMMES) {
        let v: Vec<f32> = genes
            .iter()
            .filter_map(|g| value(g).map(|x| weight(g) * x))
            .collect();
        if !v.is_empty() {
            *m = v.iter().sum::<f32>() / v.len() as f32;
        }
    }
    PhenotypeScores {
        programmes,
        stem: stem_score(value),
    }
}

/// The phenotype of a T cell from its (possibly smoothed) scores: the highest programme mean
/// wins (ties: the earlier programme), `unassigned` when none is above zero; memory is split
/// by the stem-like score.
pub(crate) fn phenotype(s: &PhenotypeScores) -> &'static str {
    let mut best: Option<(&str, f32)> = None;
    for (&m, (name, _)) in s.programmes.iter().zip(PROGRAMMES) {
        if m > best.map_or(0.0, |b| b.1) {
            best = Some((name, m));
        }
    }
    match best {
        None => "unassigned",
        Some(("memory", _)) => {
            if s.stem >= STEM_MIN {
                "naive_stem_memory"
            } else {
                "central_memory"
            }
        }
        Some((name, _)) => PHENOTYPES
            .iter()
            .copied()
            .find(|p| *p == name)
            .unwrap_or("unassigned"),
    }
}

/// The stem-like score: `ln(1 + mean(expm1(v)))` over [`STEM_MARKERS`], minus the same over
/// [`EXPERIENCED_MARKERS`], minus [`STEM_GZMK_WEIGHT`] times GZMK log-expression (absent genes
/// are left out).
pub(crate) fn stem_score(value: &impl Fn(&str) -> Option<f32>) -> f32 {
    let pooled = |genes: &[&str]| {
        let v: Vec<f32> = genes
            .iter()
            .filter_map(|g| value(g))
            .map(f32::exp_m1)
            .collect();
        if v.is_empty() {
            0.0
        } else {
            (v.iter().sum::<f32>() / v.len() as f32).ln_1p()
        }
    };
    pooled(&STEM_MARKERS)
        - pooled(&EXPERIENCED_MARKERS)
        - STEM_GZMK_WEIGHT * value("GZMK").unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(pairs: &[(&str, f32)]) -> CellCall {
        call_cell(|g| Some(pairs.iter().find(|p| p.0 == g).map_or(0.0, |p| p.1)))
    }

    #[test]
    fn t_cells_need_more_pan_t_markers_than_other_lineage_markers() {
        assert!(cell(&[("CD3D", 1.0), ("TRAC", 1.0)]).t_cell);
        assert!(cell(&[("CD3E", 1.0)]).t_cell);
        assert!(cell(&[("TRBC2", 1.0)]).t_cell);
        assert!(!cell(&[]).t_cell);
        assert!(!cell(&[("CD3E", 1.0), ("LYZ", 2.0)]).t_cell);
        assert!(cell(&[("CD3E", 1.0), ("TRBC1", 1.0), ("LYZ", 2.0)]).t_cell);
        assert!(!cell(&[("CD3E", 1.0), ("TRBC1", 1.0), ("LYZ", 2.0), ("CD14", 1.0)]).t_cell);
        assert_eq!(cell(&[("LYZ", 2.0)]).phenotype, NON_T);
    }

    #[test]
    fn lineage_and_phenotype_rules() {
        let t = [("CD3D", 1.0), ("CD3E", 1.0)];
        let with = |extra: &[(&str, f32)]| {
            let mut v = t.to_vec();
            v.extend_from_slice(extra);
            cell(&v)
        };
        assert_eq!(with(&[("CD4", 1.0)]).cd4_cd8, "CD4");
        assert_eq!(with(&[("CD40LG", 1.0)]).cd4_cd8, "CD4");
        assert_eq!(with(&[("CD40LG", 1.0), ("CD8B", 1.0)]).cd4_cd8, "DP");
        assert_eq!(with(&[("CD8B", 1.0)]).cd4_cd8, "CD8");
        assert_eq!(with(&[]).cd4_cd8, "DN");
        assert_eq!(with(&[("CD4", 1.0), ("CD8A", 1.0)]).cd4_cd8, "DP");
        assert_eq!(with(&[]).phenotype, "unassigned");
        assert_eq!(with(&[("MKI67", 3.0)]).phenotype, "proliferating");
        assert_eq!(with(&[("PDCD1", 3.0), ("TOX", 2.0)]).phenotype, "exhausted");
        assert_eq!(
            with(&[("TCF7", 2.0), ("LEF1", 1.0), ("SELL", 1.0)]).phenotype,
            "naive_stem_memory"
        );
        // Pooled stem-like genes ln(1 + 2.89) = 1.36; with GZMK at 2: 1.36 - 1 < 0.5.
        let stem = [("TCF7", 2.0), ("LEF1", 1.0), ("SELL", 1.0), ("CCR7", 1.0)];
        assert_eq!(
            with(&[stem.as_slice(), &[("GZMK", 2.0)]].concat()).phenotype,
            "central_memory"
        );
        // Without CCR7 the pool is ln(1 + 2.46) = 1.24: with GZMK at 1 the score is 0.74, still
        // naive/stem-like, until S100A4 (pooled over the three experience genes:
        // ln(1 + 6.39 / 3) = 1.14) marks antigen experience.
        assert_eq!(
            with(&[("TCF7", 2.0), ("LEF1", 1.0), ("SELL", 1.0), ("GZMK", 1.0)]).phenotype,
            "naive_stem_memory"
        );
        assert_eq!(
            with(&[("TCF7", 2.0), ("LEF1", 1.0), ("SELL", 1.0), ("S100A4", 2.0)]).phenotype,
            "central_memory"
        );
        assert_eq!(
            with(&[("IL7R", 2.0), ("CD27", 1.0)]).phenotype,
            "central_memory"
        );
        assert_eq!(with(&[("GZMK", 2.0)]).phenotype, "effector_memory");
        assert_eq!(with(&[("FOXP3", 2.0)]).phenotype, "treg_like");
    }
}
