//! `report.html`: one self-contained page for a biologist reading a CAR-T sample — QC,
//! the embedding (UMAP when present, else PCA) coloured by sample (when there are several,
//! as in `cartscope run --joint`), phenotype, CAR status and each score, score distributions
//! by phenotype, the Leiden clusters with their marker genes (dot plot and table),
//! phenotype fractions, the summary table, with VDJ contigs the receptors and clonotypes
//! (numbers per sample, clone sizes, expansion on the embedding and by phenotype and CAR
//! status), the parameters and the backend.
//! Plots are inline SVG (`svg`); the page has no script and carries a Content-Security-Policy
//! that forbids scripts and every load from outside the page. All markup is built through
//! `html::Html`, which escapes every text and attribute value where it is inserted.

mod clones;
mod clusters;
pub(crate) mod html;
pub(crate) mod svg;
pub mod table;

use crate::cart::calls::PHENOTYPES;
use crate::cart::summary::CartSummary;
use crate::io::{AnnData, Column, Dense, Frame};
use crate::pipeline::{Markers, RunOptions, RunSummary};
use html::{Html, Num};

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
    let mut body = Html::new();
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
        body.raw("<p class=\"note\">No CAR feature: no CAR status plot.</p>");
    }
    clusters::section(&mut body, ad, markers);
    clones::section(&mut body, ad, cart);
    if let Some(p) = &phen {
        score_boxplots(&mut body, obs, p, &score_cols);
    }
    phenotype_fractions(&mut body, cart);
    gene_sets_and_parameters(&mut body, summary, opts);
    html::page("CAR-T report", STYLE, &body)
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
fn header(body: &mut Html, summary: &RunSummary) {
    let cart = &summary.cart;
    body.raw("<h1>CAR-T report</h1>")
        .open("p", &[("class", &"meta")])
        .raw("Input ")
        .elem("code", &[], &summary.input)
        .raw(" &middot; cartscope ")
        .text(&summary.cartscope_version)
        .raw(" &middot; backend ")
        .elem("b", &[], &summary.backend)
        .text(format_args!(
            " ({}) \u{b7} {} cells in, {} after QC, {} genes",
            summary.device,
            summary.n_cells_in,
            summary.n_cells_after_qc,
            summary.n_genes_after_filter
        ))
        .close("p");
    // CAR status.
    body.raw("<h2>CAR construct</h2>")
        .elem("p", &[], &cart.car_note);
    if !cart.car_other_candidates.is_empty() {
        let others: Vec<String> = cart
            .car_other_candidates
            .iter()
            .map(|(name, k)| format!("{name} ({k} cells)"))
            .collect();
        body.open("p", &[])
            .raw("Other candidates: ")
            .text(others.join(", "))
            .close("p");
    }
}

/// The per-sample summary table.
fn summary_table(body: &mut Html, cart: &CartSummary) {
    body.raw("<h2>Summary per sample</h2><div class=\"scroll\"><table><tr><th>sample</th><th>cells in</th><th>after QC</th><th>median genes</th><th>median counts</th><th>median % mito</th><th>T cells</th><th>CAR+</th><th>CAR+ % of cells</th><th>CAR+ % of T</th><th>CD4:CD8 CAR+</th><th>CD4:CD8 T</th><th>exhaustion &minus; memory</th></tr>");
    let f = |v: Option<f64>, pct: bool| {
        v.map_or(DASH.to_string(), |x| {
            if pct {
                format!("{:.1}", x * 100.0)
            } else {
                format!("{x:.3}")
            }
        })
    };
    for s in &cart.samples {
        body.raw("<tr>");
        cells(
            body,
            &[
                &s.sample,
                &s.n_cells_in,
                &s.n_cells_after_qc,
                &s.median_genes,
                &s.median_counts,
                &Num(s.median_pct_mito, 2),
                &s.n_t_cells,
                &s.n_car_positive.map_or(DASH.to_string(), |k| k.to_string()),
                &f(s.car_positive_fraction, true),
                &f(s.car_positive_fraction_of_t, true),
                &f(s.cd4_cd8_ratio_car, false),
                &f(s.cd4_cd8_ratio_t, false),
                &f(s.exhaustion_memory_balance, false),
            ],
        );
        body.raw("</tr>");
    }
    body.raw("</table></div><p class=\"note\">CD4:CD8 counts cells called CD4 over cells called CD8; T cells without a CD4/CD8 UMI are double-negative (DN) and not counted. Exhaustion &minus; memory: median exhaustion score minus median memory score among CAR+ T cells (all T cells without a CAR feature); positive leans exhausted.</p>");
}

/// QC histograms with the thresholds.
fn qc_plots(body: &mut Html, obs: &Frame, opts: &RunOptions) {
    let mut plots: Vec<Html> = Vec::new();
    body.raw("<h2>Quality control (cells after QC)</h2><div class=\"grid\">");
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
    figures(body, plots.drain(..));
    body.raw("</div>");
}

/// The embedding coloured by sample, phenotype, CAR status and each score.
fn embedding_plots(body: &mut Html, ad: &AnnData, phen: Option<&[String]>, score_cols: &[String]) {
    let obs = &ad.obs;
    let n = obs.len();
    let shown = shown_cells(n);
    let mut plots: Vec<Html> = Vec::new();
    if let Some((name, pts)) = embedding(ad) {
        let xy: Vec<(f64, f64)> = shown.iter().map(|&i| pts[i]).collect();
        let axes = (format!("{name}1"), format!("{name}2"));
        let ax = (axes.0.as_str(), axes.1.as_str());
        body.elem("h2", &[], format_args!("{name} embedding"))
            .elem(
                "p",
                &[("class", &"note")],
                format_args!("{} of {n} cells drawn.", shown.len()),
            )
            .raw("<div class=\"grid\">");
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
        figures(body, plots.drain(..));
        body.raw("</div>");
    }
}

/// Score distributions per phenotype among T cells.
fn score_boxplots(body: &mut Html, obs: &Frame, p: &[String], score_cols: &[String]) {
    let n = obs.len();
    let mut plots: Vec<Html> = Vec::new();
    body.raw("<h2>Scores by phenotype (T cells)</h2><div class=\"grid\">");
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
    figures(body, plots.drain(..));
    body.raw("</div>");
}

/// Stacked phenotype fractions per sample, T cells and CAR+ T cells.
fn phenotype_fractions(body: &mut Html, cart: &CartSummary) {
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
    body.raw("<h2>Phenotype fractions</h2>");
    figures(
        body,
        [svg::stacked_bars(
            "phenotype_fractions",
            "Phenotypes among T cells and CAR+ T cells",
            &rows,
            &cats,
        )],
    );
}

/// The gene sets scored and the parameters of the run.
fn gene_sets_and_parameters(body: &mut Html, summary: &RunSummary, opts: &RunOptions) {
    let cart = &summary.cart;
    body.raw("<h2>Gene sets</h2><table><tr><th>set</th><th>genes scored</th><th>missing from the data</th><th>control genes</th></tr>");
    for g in &cart.gene_sets {
        let missing = if g.genes_missing.is_empty() {
            "none".to_string()
        } else {
            g.genes_missing.join(", ")
        };
        body.raw("<tr>");
        cells(
            body,
            &[
                &g.name,
                &g.genes_used.join(", "),
                &missing,
                &g.n_control_genes,
            ],
        );
        body.raw("</tr>");
    }
    body.raw("</table><p class=\"note\">Scores: scanpy <code>score_genes</code> (ctrl_size 50, n_bins 25, random_state 0) on the log-normalised data of all genes after filter_genes. Calls: see the cartscope documentation of <code>cart::calls</code> (T cell: two of CD3D/E/G, TRAC; phenotype: highest programme mean).</p>");
    let params = toml::to_string(opts).unwrap_or_default();
    body.raw("<h2>Parameters</h2>")
        .elem("pre", &[], params)
        .elem(
            "p",
            &[("class", &"meta")],
            format_args!(
                "Backend {} \u{b7} total {:.2} s",
                summary.backend, summary.total_seconds
            ),
        );
}

/// An en dash: a value that does not exist.
const DASH: &str = "\u{2013}";

/// Table cells (`<td>`), one per value, escaped.
pub(crate) fn cells(body: &mut Html, values: &[&dyn std::fmt::Display]) {
    for v in values {
        body.elem("td", &[], v);
    }
}

/// Each plot in its own `<figure>`.
pub(crate) fn figures(body: &mut Html, plots: impl IntoIterator<Item = Html>) {
    for p in plots {
        body.raw("<figure>").append(&p).raw("</figure>");
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}.legend{font-size:11px;max-width:420px}\
.legend span{margin-right:10px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;margin-right:3px}\
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}\
td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto}.note,.meta{font-size:12px;color:#555}pre{background:#f6f6f6;padding:8px;font-size:11px}";
