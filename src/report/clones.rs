//! The report's clonotype section (runs with VDJ contigs): the receptor and clone numbers per
//! sample, the clone size distribution, clonal expansion on the embedding, and expansion by
//! phenotype and CAR status.

use crate::cart::calls::PHENOTYPES;
use crate::cart::summary::CartSummary;
use crate::io::{AnnData, Column};

use super::html::Html;
use super::svg;
use super::{DASH, cells, embedding, figures, labels, shown_cells};

/// Clone size classes of the size distribution: (label, smallest size, largest size).
const SIZE_CLASSES: [(&str, u32, u32); 6] = [
    ("1", 1, 1),
    ("2", 2, 2),
    ("3-5", 3, 5),
    ("6-10", 6, 10),
    ("11-20", 11, 20),
    ("> 20", 21, u32::MAX),
];

fn size_class(size: f64) -> Option<usize> {
    if !size.is_finite() || size < 1.0 {
        return None;
    }
    let s = size as u32;
    SIZE_CLASSES
        .iter()
        .position(|&(_, lo, hi)| (lo..=hi).contains(&s))
}

/// Fractions of `rows` per size class (the cells' clone sizes); None without cells with a
/// clone.
fn class_fractions(sizes: &[f64], rows: impl Iterator<Item = usize>) -> Option<Vec<f64>> {
    let mut counts = [0usize; SIZE_CLASSES.len()];
    for i in rows {
        if let Some(k) = size_class(sizes[i]) {
            counts[k] += 1;
        }
    }
    let total: usize = counts.iter().sum();
    (total > 0).then(|| counts.iter().map(|&c| c as f64 / total as f64).collect())
}

/// Writes the section when obs has the receptor columns.
pub(crate) fn section(body: &mut Html, ad: &AnnData, cart: &CartSummary) {
    let obs = &ad.obs;
    let Some(Column::F64(sizes)) = obs.column("clone_id_size") else {
        return;
    };
    body.raw("<h2>T-cell receptors and clonotypes</h2>");
    table(body, cart);
    let n = obs.len();
    // Without obs `sample` the run has one sample, the summary's.
    let default = cart.samples.first().map_or("", |s| s.sample.as_str());
    let samples = crate::cart::summary::sample_labels(obs, default);
    let car = match obs.column("car_positive") {
        Some(Column::Bool(v)) => Some(v.as_slice()),
        _ => None,
    };
    let cats: Vec<String> = SIZE_CLASSES.iter().map(|c| c.0.to_string()).collect();
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    for s in &cart.samples {
        let of = |keep: &dyn Fn(usize) -> bool| {
            class_fractions(sizes, (0..n).filter(|&i| samples[i] == s.sample && keep(i)))
        };
        if let Some(f) = of(&|_| true) {
            rows.push((format!("{} all", s.sample), f));
        }
        if let Some(car) = car
            && let Some(f) = of(&|i| car[i])
        {
            rows.push((format!("{} CAR+", s.sample), f));
        }
    }
    body.raw("<div class=\"grid\">");
    figures(
        body,
        [svg::stacked_bars(
            "clone_sizes",
            "Cells with a clone by the size of their clone",
            &rows,
            &cats,
        )],
    );
    let expansion = obs.column("clonal_expansion");
    if let (
        Some((name, pts)),
        Some(Column::Categorical {
            codes, categories, ..
        }),
    ) = (embedding(ad), expansion)
    {
        let shown = shown_cells(pts.len());
        let xy: Vec<(f64, f64)> = shown.iter().map(|&i| pts[i]).collect();
        // Cells without a clone (`nan`) are drawn grey, as missing.
        let codes: Vec<Option<usize>> = shown
            .iter()
            .map(|&i| usize::try_from(codes[i]).ok())
            .map(|k| k.filter(|&k| categories[k] != "nan"))
            .collect();
        let axes = (format!("{name}1"), format!("{name}2"));
        figures(
            body,
            [svg::scatter_categorical(
                "embedding_clonal_expansion",
                "Clonal expansion (cells per clone)",
                (&axes.0, &axes.1),
                &xy,
                &codes,
                categories,
            )],
        );
    }
    if let Some(phen) = labels(obs.column("phenotype")) {
        let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
        for p in PHENOTYPES {
            let groups: Vec<(&str, Option<bool>)> = match car {
                Some(_) => vec![("CAR+", Some(true)), ("CAR-", Some(false))],
                None => vec![("", None)],
            };
            for (label, status) in groups {
                let keep = |i: usize| {
                    phen[i] == *p && status.is_none_or(|s| car.is_some_and(|c| c[i] == s))
                };
                if let Some(f) = class_fractions(sizes, (0..n).filter(|&i| keep(i))) {
                    rows.push((format!("{p} {label}").trim_end().to_string(), f));
                }
            }
        }
        figures(
            body,
            [svg::stacked_bars(
                "clone_sizes_phenotype",
                "Clone size by phenotype and CAR status",
                &rows,
                &cats,
            )],
        );
    }
    body.raw("</div><p class=\"note\">Clonotypes as scirpy defines them (identical junctions of both receptor arms by default) over the cells after QC; sizes count the cells of the run. Expanded: clones of more than 2 cells. Entropy: normalised Shannon entropy of the clone sizes (1: every clone one cell).</p>");
}

/// Receptor and clone numbers per sample.
fn table(body: &mut Html, cart: &CartSummary) {
    body.raw("<div class=\"scroll\"><table><tr><th>sample</th><th>cells with a receptor</th><th>single pair</th><th>clonotypes</th><th>expanded % of cells</th><th>clone entropy</th><th>largest clone %</th><th>CAR+ with a receptor</th><th>CAR+ clonotypes</th></tr>");
    let pct = |v: Option<f64>| v.map_or(DASH.to_string(), |x| format!("{:.1}", x * 100.0));
    let num = |v: Option<usize>| v.map_or(DASH.to_string(), |k| k.to_string());
    for s in &cart.samples {
        let Some(c) = &s.vdj else { continue };
        body.raw("<tr>");
        cells(
            body,
            &[
                &s.sample,
                &c.n_cells_with_ir,
                &c.n_single_pair,
                &c.n_clonotypes,
                &pct(c.expanded_fraction),
                &c.clone_entropy
                    .map_or(DASH.to_string(), |x| format!("{x:.3}")),
                &pct(c.largest_clone_fraction),
                &num(c.n_car_with_ir),
                &num(c.n_car_clonotypes),
            ],
        );
        body.raw("</tr>");
    }
    body.raw("</table></div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_every_size_once() {
        assert_eq!(size_class(f64::NAN), None);
        assert_eq!(size_class(1.0), Some(0));
        assert_eq!(size_class(2.0), Some(1));
        assert_eq!(size_class(5.0), Some(2));
        assert_eq!(size_class(6.0), Some(3));
        assert_eq!(size_class(20.0), Some(4));
        assert_eq!(size_class(21.0), Some(5));
        assert_eq!(size_class(1e6), Some(5));
        let f = class_fractions(&[1.0, 1.0, 3.0, f64::NAN], 0..4).unwrap();
        assert_eq!(f, vec![2.0 / 3.0, 0.0, 1.0 / 3.0, 0.0, 0.0, 0.0]);
        assert_eq!(class_fractions(&[f64::NAN], 0..1), None);
    }
}
