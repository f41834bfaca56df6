//! The report's clusters section: the embedding coloured by Leiden cluster with the cluster
//! numbers on it, a dot plot of each cluster's top marker genes, and a table per cluster with
//! its top markers, majority phenotype and lineage and its CAR+ fraction.

use crate::io::{AnnData, Column};
use crate::pipeline::{MarkerTable, Markers};

use super::html::Html;
use super::svg;
use super::{DASH, cells, embedding, figures, labels, shown_cells};

/// Marker genes per cluster shown in the dot plot.
const DOT_GENES_PER_GROUP: usize = 3;
/// Marker genes per cluster listed in the table.
const TABLE_GENES: usize = 10;

/// Writes the section when the run has Leiden clusters.
pub(crate) fn section(body: &mut Html, ad: &AnnData, markers: Option<&Markers>) {
    let Some(Column::Categorical {
        codes, categories, ..
    }) = ad.obs.column("leiden")
    else {
        return;
    };
    body.raw("<h2>Clusters</h2><div class=\"grid\">");
    if let Some((name, pts)) = embedding(ad) {
        let shown = shown_cells(pts.len());
        let xy: Vec<(f64, f64)> = shown.iter().map(|&i| pts[i]).collect();
        let c: Vec<Option<usize>> = shown
            .iter()
            .map(|&i| usize::try_from(codes[i]).ok())
            .collect();
        let axes = (format!("{name}1"), format!("{name}2"));
        let plot = svg::scatter_labelled(
            "embedding_leiden",
            "Leiden clusters",
            (&axes.0, &axes.1),
            &xy,
            &c,
            categories,
        );
        figures(body, [plot]);
    }
    let table = markers.and_then(|m| m.tables.iter().find(|t| t.groupby == "leiden"));
    if let Some(t) = table {
        dot_plot(body, t, &ad.var.index);
    }
    body.raw("</div>");
    if let Some(t) = table {
        cluster_table(
            body,
            ad,
            t,
            codes,
            markers.map(|m| m.params.method.scanpy_name()),
        );
    }
}

/// The top markers of every cluster (each gene once) by cluster.
fn dot_plot(body: &mut Html, t: &MarkerTable, genes: &[String]) {
    let mut cols: Vec<usize> = Vec::new();
    for g in &t.groups {
        for &j in g.genes.iter().take(DOT_GENES_PER_GROUP) {
            if !cols.contains(&(j as usize)) {
                cols.push(j as usize);
            }
        }
    }
    if cols.is_empty() {
        return;
    }
    let n_genes = genes.len();
    let rows: Vec<usize> = (0..t.labels.len()).filter(|&g| t.sizes[g] > 0).collect();
    let pick = |m: &[f32]| -> Vec<Vec<f64>> {
        rows.iter()
            .map(|&g| {
                cols.iter()
                    .map(|&j| f64::from(m[g * n_genes + j]))
                    .collect()
            })
            .collect()
    };
    let plot = svg::dotplot(
        "markers_dotplot",
        "Top marker genes per cluster",
        &cols.iter().map(|&j| genes[j].clone()).collect::<Vec<_>>(),
        &rows
            .iter()
            .map(|&g| t.labels[g].clone())
            .collect::<Vec<_>>(),
        &pick(&t.fraction),
        &pick(&t.mean),
    );
    figures(body, [plot]);
}

/// The most frequent label among `cells` and its share (none when there are none).
fn majority<'a>(values: &'a [String], cells: &[usize], skip: &[&str]) -> (Option<&'a str>, f64) {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let mut total = 0;
    for &i in cells {
        let v = values[i].as_str();
        if skip.contains(&v) {
            continue;
        }
        total += 1;
        match counts.iter_mut().find(|(l, _)| *l == v) {
            Some(c) => c.1 += 1,
            None => counts.push((v, 1)),
        }
    }
    counts
        .iter()
        .max_by_key(|(_, k)| *k)
        .map_or((None, 0.0), |&(l, k)| (Some(l), k as f64 / total as f64))
}

/// One row per cluster: size, top markers, majority phenotype and CD4/CD8 lineage among its
/// T cells, CAR+ fraction.
fn cluster_table(
    body: &mut Html,
    ad: &AnnData,
    t: &MarkerTable,
    codes: &[i32],
    method: Option<&str>,
) {
    let obs = &ad.obs;
    let phen = labels(obs.column("phenotype"));
    let lineage = labels(obs.column("cd4_cd8"));
    let car = match obs.column("car_positive") {
        Some(Column::Bool(v)) => Some(v),
        _ => None,
    };
    let non_t = [crate::cart::calls::NON_T];
    body.raw("<h3>Marker genes per cluster</h3><div class=\"scroll\"><table><tr><th>cluster</th><th>cells</th><th>top marker genes</th><th>majority phenotype (T cells)</th><th>majority CD4/CD8 (T cells)</th><th>CAR+ %</th></tr>");
    for (k, label) in t.labels.iter().enumerate() {
        let members: Vec<usize> = (0..codes.len()).filter(|&i| codes[i] == k as i32).collect();
        let top = t
            .groups
            .iter()
            .find(|g| &g.group == label)
            .map(|g| {
                g.genes
                    .iter()
                    .take(TABLE_GENES)
                    .map(|&j| ad.var.index[j as usize].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| format!("{DASH} (fewer than two cells)"));
        let share = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map(|v| majority(v, &members, &non_t))
                .and_then(|(l, f)| l.map(|l| format!("{l} ({:.0} %)", f * 100.0)))
                .unwrap_or_else(|| DASH.to_string())
        };
        let car_pct = car
            .filter(|_| !members.is_empty())
            .map_or(DASH.to_string(), |c| {
                let n = members.iter().filter(|&&i| c[i]).count();
                format!("{:.1}", 100.0 * n as f64 / members.len() as f64)
            });
        body.raw("<tr>");
        cells(
            body,
            &[
                label,
                &members.len(),
                &top,
                &share(&phen),
                &share(&lineage),
                &car_pct,
            ],
        );
        body.raw("</tr>");
    }
    body.raw("</table></div>");
    if !t.skipped.is_empty() {
        body.elem(
            "p",
            &[("class", &"note")],
            format_args!(
                "No marker genes for clusters of a single cell: {}.",
                t.skipped.join(", ")
            ),
        );
    }
    body.raw("<p class=\"note\">Marker genes: scanpy <code>rank_genes_groups</code> (")
        .text(method.unwrap_or("t-test"))
        .raw(", each cluster against the rest, Benjamini-Hochberg), best first; the full tables are in <code>markers.csv</code> and <code>uns[\"rank_genes_groups\"]</code> of result.h5ad.</p>");
}
