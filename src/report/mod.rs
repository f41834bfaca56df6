//! `report.html`: one self-contained page for a biologist reading a CAR-T sample — QC,
//! the embedding (UMAP when present, else PCA) coloured by sample (when there are several,
//! as in `cartscope run --joint`), phenotype, CAR status and each score, score distributions
//! by phenotype, the Leiden clusters with their marker genes (dot plot and table),
//! phenotype fractions, the summary table, with VDJ contigs the receptors and clonotypes
//! (numbers per sample, clone sizes, expansion on the embedding and by phenotype and CAR
//! status), the parameters and the backend.
//! Plots are inline SVG (`svg`); the only script is a short inline check that stamps how
//! many plots have marks (`data-plots-rendered` on `<body>`), which the browser test reads.

mod clones;
mod clusters;
pub(crate) mod svg;
pub mod table;

use std::fmt::Write;

use crate::cart::calls::PHENOTYPES;
use crate::cart::summary::CartSummary;
use crate::io::{AnnData, Column, Dense, Frame};
use crate::pipeline::{Markers, RunOptions, RunSummary};
use svg::esc;

/// At most this many cells are drawn in a scatter (every k-th cell beyond it).
pub(crate) const MAX_POINTS: usize = 6000;

fn numeric(c: Option<&Column>) -> Option<Vec<f64>> {
    Some(match c? {
        Column::F64(v) => v.clone(),
        Column::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Column::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Column::I64(v) => v.iter().map(|&x| x as f64).collect(),
        _ => return None,
    })
}

fn labels(c: Option<&Column>) -> Option<Vec<String>> {
    Some(
        c?.as_strings()?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
    )
}

/// The embedding drawn: X_umap when present, else the first two PCs.
fn embedding(ad: &AnnData) -> Option<(String, Vec<(f64, f64)>)> {
    for (key, name) in [("X_umap", "UMAP"), ("X_pca", "PC")] {
        if let Some((_, d)) = ad.obsm.iter().find(|(k, _)| k == key) {
            let pts: Vec<(f64, f64)> = match d {
                Dense::F32(a) if a.ncols() >= 2 => a
                    .rows()
                    .into_iter()
                    .map(|r| (f64::from(r[0]), f64::from(r[1])))
                    .collect(),
                Dense::F64(a) if a.ncols() >= 2 => {
                    a.rows().into_iter().map(|r| (r[0], r[1])).collect()
                }
                _ => continue,
            };
            return Some((name.to_string(), pts));
        }
    }
    None
}

/// Renders the report.
pub(crate) fn render(
    ad: &AnnData,
    summary: &RunSummary,
    markers: Option<&Markers>,
    opts: &RunOptions,
) -> String {
    let obs = &ad.obs;
    let cart = &summary.cart;
    let mut body = String::new();
    header(&mut body, summary);
    summary_table(&mut body, cart);
    qc_plots(&mut body, obs, opts);
    let phen = labels(obs.column("phenotype"));
    let score_cols: Vec<String> = cart
        .gene_sets
        .iter()
        .filter_map(|g| g.score_column.clone())
        .collect();
    embedding_plots(&mut body, ad, phen.as_deref(), &score_cols);
    if cart.car_feature.is_none() {
        body.push_str("<p class=\"note\">No CAR feature: no CAR status plot.</p>");
    }
    clusters::section(&mut body, ad, markers);
    clones::section(&mut body, ad, cart);
    if let Some(p) = &phen {
        score_boxplots(&mut body, obs, p, &score_cols);
    }
    phenotype_fractions(&mut body, cart);
    gene_sets_and_parameters(&mut body, summary, opts);
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>CAR-T report</title><style>{STYLE}</style></head><body data-plots-rendered=\"pending\">{body}<script>{SCRIPT}</script></body></html>\n"
    )
}

/// The cells drawn in a scatter: every step-th cell, in a fixed pseudo-random order (in cell
/// order the last sample or cluster of the file would be painted over all the others).
fn shown_cells(n: usize) -> Vec<usize> {
    let step = n.div_ceil(MAX_POINTS).max(1);
    let mut shown: Vec<usize> = (0..n).step_by(step).collect();
    shown.sort_by_key(|&i| crate::rng::splitmix(i as u64));
    shown
}

/// Title line and the CAR construct.
fn header(body: &mut String, summary: &RunSummary) {
    let cart = &summary.cart;
    let _ = write!(
        body,
        "<h1>CAR-T report</h1><p class=\"meta\">Input <code>{}</code> &middot; cartscope {} &middot; backend <b>{}</b> ({}) &middot; {} cells in, {} after QC, {} genes</p>",
        esc(&summary.input),
        esc(&summary.cartscope_version),
        esc(&summary.backend),
        esc(&summary.device),
        summary.n_cells_in,
        summary.n_cells_after_qc,
        summary.n_genes_after_filter
    );
    // CAR status.
    let _ = write!(body, "<h2>CAR construct</h2><p>{}</p>", esc(&cart.car_note));
    if !cart.car_other_candidates.is_empty() {
        let others: Vec<String> = cart
            .car_other_candidates
            .iter()
            .map(|(name, k)| format!("{} ({k} cells)", esc(name)))
            .collect();
        let _ = write!(body, "<p>Other candidates: {}</p>", others.join(", "));
    }
}

/// The per-sample summary table.
fn summary_table(body: &mut String, cart: &CartSummary) {
    body.push_str("<h2>Summary per sample</h2><div class=\"scroll\"><table><tr><th>sample</th><th>cells in</th><th>after QC</th><th>median genes</th><th>median counts</th><th>median % mito</th><th>T cells</th><th>CAR+</th><th>CAR+ % of cells</th><th>CAR+ % of T</th><th>CD4:CD8 CAR+</th><th>CD4:CD8 T</th><th>exhaustion &minus; memory</th></tr>");
    let f = |v: Option<f64>, pct: bool| {
        v.map_or("&ndash;".to_string(), |x| {
            if pct {
                format!("{:.1}", x * 100.0)
            } else {
                format!("{x:.3}")
            }
        })
    };
    for s in &cart.samples {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.sample),
            s.n_cells_in,
            s.n_cells_after_qc,
            s.median_genes,
            s.median_counts,
            s.median_pct_mito,
            s.n_t_cells,
            s.n_car_positive
                .map_or("&ndash;".to_string(), |k| k.to_string()),
            f(s.car_positive_fraction, true),
            f(s.car_positive_fraction_of_t, true),
            f(s.cd4_cd8_ratio_car, false),
            f(s.cd4_cd8_ratio_t, false),
            f(s.exhaustion_memory_balance, false)
        );
    }
    body.push_str("</table></div><p class=\"note\">CD4:CD8 counts cells called CD4 over cells called CD8; T cells without a CD4/CD8 UMI are double-negative (DN) and not counted. Exhaustion &minus; memory: median exhaustion score minus median memory score among CAR+ T cells (all T cells without a CAR feature); positive leans exhausted.</p>");
}

/// QC histograms with the thresholds.
fn qc_plots(body: &mut String, obs: &Frame, opts: &RunOptions) {
    let mut plots: Vec<String> = Vec::new();
    body.push_str("<h2>Quality control (cells after QC)</h2><div class=\"grid\">");
    for (col, title, thr) in [
        (
            "n_genes_by_counts",
            "Genes per cell",
            Some(f64::from(opts.min_genes)),
        ),
        ("total_counts", "Counts per cell", None),
        (
            "pct_counts_mt",
            "% mitochondrial counts",
            Some(f64::from(opts.max_pct_mt)),
        ),
    ] {
        if let Some(v) = numeric(obs.column(col)) {
            plots.push(svg::histogram(
                &format!("qc_{col}"),
                title,
                col,
                &v,
                40,
                thr,
            ));
        }
    }
    for p in plots.drain(..) {
        let _ = write!(body, "<figure>{p}</figure>");
    }
    body.push_str("</div>");
}

/// The embedding coloured by sample, phenotype, CAR status and each score.
fn embedding_plots(
    body: &mut String,
    ad: &AnnData,
    phen: Option<&[String]>,
    score_cols: &[String],
) {
    let obs = &ad.obs;
    let n = obs.len();
    let shown = shown_cells(n);
    let mut plots: Vec<String> = Vec::new();
    if let Some((name, pts)) = embedding(ad) {
        let xy: Vec<(f64, f64)> = shown.iter().map(|&i| pts[i]).collect();
        let axes = (format!("{name}1"), format!("{name}2"));
        let ax = (axes.0.as_str(), axes.1.as_str());
        let _ = write!(
            body,
            "<h2>{name} embedding</h2><p class=\"note\">{} of {n} cells drawn.</p><div class=\"grid\">",
            shown.len()
        );
        // Several samples in one embedding (`cartscope run --joint`): coloured by sample.
        if let Some(Column::Categorical {
            codes, categories, ..
        }) = obs.column("sample")
            && categories.len() > 1
        {
            let codes: Vec<Option<usize>> = shown
                .iter()
                .map(|&i| usize::try_from(codes[i]).ok())
                .collect();
            plots.push(svg::scatter_categorical(
                "embedding_sample",
                "Sample",
                ax,
                &xy,
                &codes,
                categories,
            ));
        }
        if let Some(p) = phen {
            let cats: Vec<String> = PHENOTYPES.iter().map(|s| s.to_string()).collect();
            let codes: Vec<Option<usize>> = shown
                .iter()
                .map(|&i| PHENOTYPES.iter().position(|c| *c == p[i]))
                .collect();
            plots.push(svg::scatter_categorical(
                "embedding_phenotype",
                "Phenotype",
                ax,
                &xy,
                &codes,
                &cats,
            ));
        }
        if let Some(Column::Bool(car)) = obs.column("car_positive") {
            let cats = vec!["CAR-".to_string(), "CAR+".to_string()];
            let codes: Vec<Option<usize>> =
                shown.iter().map(|&i| Some(usize::from(car[i]))).collect();
            plots.push(svg::scatter_categorical(
                "embedding_car",
                "CAR status",
                ax,
                &xy,
                &codes,
                &cats,
            ));
        }
        for col in score_cols {
            if let Some(v) = numeric(obs.column(col)) {
                let vals: Vec<f64> = shown.iter().map(|&i| v[i]).collect();
                plots.push(svg::scatter_continuous(
                    &format!("embedding_{col}"),
                    col,
                    ax,
                    &xy,
                    &vals,
                ));
            }
        }
        for p in plots.drain(..) {
            let _ = write!(body, "<figure>{p}</figure>");
        }
        body.push_str("</div>");
    }
}

/// Score distributions per phenotype among T cells.
fn score_boxplots(body: &mut String, obs: &Frame, p: &[String], score_cols: &[String]) {
    let n = obs.len();
    let mut plots: Vec<String> = Vec::new();
    body.push_str("<h2>Scores by phenotype (T cells)</h2><div class=\"grid\">");
    for col in score_cols {
        if let Some(v) = numeric(obs.column(col)) {
            let groups: Vec<(String, Vec<f64>)> = PHENOTYPES
                .iter()
                .filter(|c| **c != crate::cart::calls::NON_T)
                .map(|c| {
                    (
                        c.to_string(),
                        (0..n)
                            .filter(|&i| p[i] == *c)
                            .map(|i| v[i])
                            .collect::<Vec<f64>>(),
                    )
                })
                .filter(|g| !g.1.is_empty())
                .collect();
            plots.push(svg::boxplot(&format!("box_{col}"), col, "score", &groups));
        }
    }
    for p in plots.drain(..) {
        let _ = write!(body, "<figure>{p}</figure>");
    }
    body.push_str("</div>");
}

/// Stacked phenotype fractions per sample, T cells and CAR+ T cells.
fn phenotype_fractions(body: &mut String, cart: &CartSummary) {
    let cats: Vec<String> = PHENOTYPES
        .iter()
        .filter(|c| **c != crate::cart::calls::NON_T)
        .map(|s| s.to_string())
        .collect();
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    for s in &cart.samples {
        rows.push((
            format!("{} T", s.sample),
            cats.iter()
                .map(|c| s.phenotype_fractions_t.get(c).copied().unwrap_or(0.0))
                .collect(),
        ));
        if let Some(m) = &s.phenotype_fractions_car {
            rows.push((
                format!("{} CAR+", s.sample),
                cats.iter()
                    .map(|c| m.get(c).copied().unwrap_or(0.0))
                    .collect(),
            ));
        }
    }
    let _ = write!(
        body,
        "<h2>Phenotype fractions</h2><figure>{}</figure>",
        svg::stacked_bars(
            "phenotype_fractions",
            "Phenotypes among T cells and CAR+ T cells",
            &rows,
            &cats
        )
    );
}

/// The gene sets scored and the parameters of the run.
fn gene_sets_and_parameters(body: &mut String, summary: &RunSummary, opts: &RunOptions) {
    let cart = &summary.cart;
    body.push_str("<h2>Gene sets</h2><table><tr><th>set</th><th>genes scored</th><th>missing from the data</th><th>control genes</th></tr>");
    for g in &cart.gene_sets {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.name),
            esc(&g.genes_used.join(", ")),
            if g.genes_missing.is_empty() {
                "none".to_string()
            } else {
                esc(&g.genes_missing.join(", "))
            },
            g.n_control_genes
        );
    }
    body.push_str("</table><p class=\"note\">Scores: scanpy <code>score_genes</code> (ctrl_size 50, n_bins 25, random_state 0) on the log-normalised data of all genes after filter_genes. Calls: see the cartscope documentation of <code>cart::calls</code> (T cell: two of CD3D/E/G, TRAC; phenotype: highest programme mean).</p>");
    let params = toml::to_string(opts).unwrap_or_default();
    let _ = write!(
        body,
        "<h2>Parameters</h2><pre>{}</pre><p class=\"meta\">Backend {} &middot; total {:.2} s</p>",
        esc(&params),
        esc(&summary.backend),
        summary.total_seconds
    );
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}.legend{font-size:11px;max-width:420px}\
.legend span{margin-right:10px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;margin-right:3px}\
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}\
td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto}.note,.meta{font-size:12px;color:#555}pre{background:#f6f6f6;padding:8px;font-size:11px}";

/// Counts plots with at least one mark and stamps the result on <body>.
const SCRIPT: &str = "(function(){var s=document.querySelectorAll('svg.plot');var ok=0;\
s.forEach(function(p){if(p.querySelectorAll('circle,rect:not(:first-of-type),line').length>0){ok++;p.setAttribute('data-marks','yes');}});\
document.body.setAttribute('data-plots-rendered',ok+'/'+s.length);})();";
