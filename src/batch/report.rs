//! batch_report.html: one self-contained page (inline SVG, no scripts, no external files) with
//! per-patient persistence curves over time, the phenotype composition of CAR+ T cells over
//! time, median scores over time, with VDJ the clone tracking, time-point overlap and product
//! clones' share per patient, and a table of all samples linking each sample's report.
//! Built through [`Html`] like report.html: every name from the manifest or the samples is
//! escaped text, every plot key an identifier, and the page carries the same
//! Content-Security-Policy.

use super::clonal::{Clonal, VdjStatus};
use super::manifest::Manifest;
use super::rows::{SampleRow, SampleStatus, by_patient, timepoint_label};
use crate::report::html::{self, Html, Num};
use crate::report::svg::{
    PALETTE, frame, label, legend, plot_start, rotated_label, stacked_bars, tick_label,
};
use crate::vdj::stats::Repertoire;

const W: f64 = 460.0;
const H: f64 = 300.0;
const L: f64 = 52.0;
const T: f64 = 26.0;
const R: f64 = 12.0;
const B: f64 = 40.0;

/// A named series of points (x, y, label shown on hover).
pub type Series = (String, Vec<(f64, f64, String)>);

fn span(v: impl Iterator<Item = f64>, zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if zero {
        lo = lo.min(0.0);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi)
}

/// A tick label of the axis from `lo` to `hi` (five ticks): as many decimals as it takes for
/// neighbouring ticks to read differently.
fn tick(v: f64, lo: f64, hi: f64) -> String {
    tick_label(v, (hi - lo) / 4.0)
}

/// Lines with markers, one series per entry; points are (x, y, label shown on hover).
pub fn line_plot(
    id: &str,
    title: &str,
    (xlab, ylab): (&str, &str),
    series: &[Series],
    y_from_zero: bool,
) -> Html {
    let (x0, x1) = span(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)), false);
    let (y0, y1) = span(
        series.iter().flat_map(|s| s.1.iter().map(|p| p.1)),
        y_from_zero,
    );
    let pw = W - L - R;
    let ph = H - T - B;
    let sx = |x: f64| L + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| T + ph - (y - y0) / (y1 - y0) * ph;
    let mut s = Html::new();
    plot_start(&mut s, id, (W, H), title);
    frame(&mut s, (L, T, pw, ph), title, (xlab, ylab));
    for k in 0..=4 {
        let f = f64::from(k) / 4.0;
        let (xv, yv) = (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f);
        label(
            &mut s,
            (sx(xv), T + ph + 12.0),
            "middle",
            9,
            &tick(xv, x0, x1),
        );
        label(&mut s, (L - 3.0, sy(yv) + 3.0), "end", 9, &tick(yv, y0, y1));
    }
    let mut names: Vec<(String, &str)> = Vec::new();
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = pts
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        s.empty(
            "polyline",
            &[
                ("fill", &"none"),
                ("stroke", &c),
                ("stroke-width", &2),
                ("points", &path.join(" ")),
            ],
        );
        for p in pts.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
            s.open(
                "circle",
                &[
                    ("cx", &Num(sx(p.0), 1)),
                    ("cy", &Num(sy(p.1), 1)),
                    ("r", &3.5),
                    ("fill", &c),
                ],
            )
            .elem(
                "title",
                &[],
                format_args!("{name}: {} = {}", p.2, tick(p.1, y0, y1)),
            )
            .close("circle");
        }
        names.push((name.clone(), c));
    }
    s.close("svg").append(&legend(&names));
    s
}

/// x of a sample: its day, else its position in the patient's series.
fn x_of(r: &SampleRow, i: usize) -> f64 {
    r.sample.day.unwrap_or(i as f64)
}

fn series(groups: &[(String, Vec<&SampleRow>)], column: &str) -> Vec<Series> {
    groups
        .iter()
        .map(|(p, v)| {
            let name = if p.is_empty() { "samples" } else { p.as_str() };
            let pts = v
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((x_of(r, i), r.num(column)?, timepoint_label(&r.sample))))
                .collect();
            (name.to_string(), pts)
        })
        .collect()
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The persistence curves: CAR+ fraction and count, CD4:CD8, DN and cycling fractions and the
/// median scores of CAR+ T cells over time, one line per patient.
fn persistence_plots(groups: &[(String, Vec<&SampleRow>)], rows: &[SampleRow], xlab: &str) -> Html {
    // (plot id, title, y label, summary column); long-persisting CAR+ cells are reported to
    // drift to CD4-CD8- (double-negative) states.
    let mut curves = vec![
        (
            "car_fraction",
            "CAR+ fraction of cells after QC",
            "CAR+ fraction",
            "car_positive_fraction",
        ),
        ("car_count", "CAR+ cells", "CAR+ cells", "n_car_positive"),
        (
            "cd4_cd8_car",
            "CD4:CD8 among CAR+ T cells",
            "CD4 / CD8",
            "cd4_cd8_ratio_car",
        ),
        (
            "dn_fraction_car",
            "double-negative (CD4-CD8-) fraction of CAR+ T cells",
            "DN fraction",
            "dn_fraction_car",
        ),
    ];
    if rows.iter().any(|r| r.num("gd_fraction_car").is_some()) {
        curves.push((
            "gd_fraction_car",
            "gamma-delta fraction of CAR+ T cells",
            "gd fraction",
            "gd_fraction_car",
        ));
    }
    if rows.iter().any(|r| r.num("cycling_fraction").is_some()) {
        curves.push((
            "cycling_fraction",
            "cycling (S or G2M) fraction of cells after QC",
            "cycling fraction",
            "cycling_fraction",
        ));
    }
    let mut h = Html::new();
    h.raw("<div class=\"plots\">");
    for (id, title, ylab, column) in curves {
        figure(
            &mut h,
            &line_plot(id, title, (xlab, ylab), &series(groups, column), true),
        );
    }
    let score_cols: Vec<String> = rows
        .iter()
        .flat_map(|r| r.columns.iter())
        .filter(|c| c.starts_with("median_car_"))
        .fold(Vec::new(), |mut v, c| {
            if !v.contains(c) {
                v.push(c.clone());
            }
            v
        });
    for c in &score_cols {
        let set = c.trim_start_matches("median_car_");
        figure(
            &mut h,
            &line_plot(
                c,
                &format!("median {set} among CAR+ T cells"),
                (xlab, "median score"),
                &series(groups, c),
                false,
            ),
        );
    }
    h.raw("</div>");
    h
}

/// A plot in its own `<figure>`.
fn figure(h: &mut Html, plot: &Html) {
    h.raw("<figure>").append(plot).raw("</figure>");
}

/// A square matrix of values in [0, 1] as a heatmap with the values written in the cells
/// (empty cells where undefined).
fn heatmap(id: &str, title: &str, labels: &[String], values: &[Vec<Option<f64>>]) -> Html {
    let n = labels.len().max(1) as f64;
    let cell = (220.0 / n).clamp(24.0, 60.0);
    let (left, top) = (90.0, 30.0);
    let side = cell * n;
    let (w, h) = (left + side + 10.0, top + side + 70.0);
    let mut s = Html::new();
    plot_start(&mut s, id, (w, h), title);
    label(&mut s, (w / 2.0, 16.0), "middle", 13, title);
    for (i, name) in labels.iter().enumerate() {
        let y = top + cell * (i as f64 + 0.5);
        let x = left + cell * (i as f64 + 0.5);
        label(&mut s, (left - 4.0, y + 3.0), "end", 10, name);
        rotated_label(&mut s, (x, top + side + 12.0), -45, 10, name);
        for (j, v) in values[i].iter().enumerate() {
            let (x, y) = (left + cell * j as f64, top + cell * i as f64);
            let (fill, text) = match v {
                Some(v) => {
                    // White (0) to dark blue (1).
                    let t = v.clamp(0.0, 1.0);
                    let c = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
                    (
                        format!(
                            "#{:02x}{:02x}{:02x}",
                            c(255.0, 8.0),
                            c(255.0, 48.0),
                            c(255.0, 107.0)
                        ),
                        format!("{v:.2}"),
                    )
                }
                None => ("#eeeeee".to_string(), String::new()),
            };
            let ink = if v.is_some_and(|v| v > 0.5) {
                "#fff"
            } else {
                "#222"
            };
            s.open(
                "rect",
                &[
                    ("x", &Num(x, 1)),
                    ("y", &Num(y, 1)),
                    ("width", &Num(cell, 1)),
                    ("height", &Num(cell, 1)),
                    ("fill", &fill),
                    ("stroke", &"#fff"),
                ],
            )
            .elem("title", &[], format_args!("{name} / {}: {text}", labels[j]))
            .close("rect")
            .elem(
                "text",
                &[
                    ("x", &Num(x + cell / 2.0, 1)),
                    ("y", &Num(y + cell / 2.0 + 3.5, 1)),
                    ("font-size", &10),
                    ("text-anchor", &"middle"),
                    ("fill", &ink),
                ],
                &text,
            );
        }
    }
    s.close("svg");
    s
}

/// The clonal section: per patient the top clones' frequencies over time and the
/// Morisita-Horn overlap of its time points, then the product clones' share over time (1 at
/// the product itself; patients without product VDJ have no line).
fn clonal_section(
    groups: &[(String, Vec<&SampleRow>)],
    rows: &[SampleRow],
    c: &Clonal,
    xlab: &str,
) -> Html {
    let index = |r: &SampleRow| rows.iter().position(|x| x.sample.id == r.sample.id);
    let mut h = Html::new();
    h.raw("<h2>Clonal persistence (VDJ)</h2><div class=\"plots\">");
    let fields = c.persistence_fields(rows);
    let mut product: Vec<Series> = Vec::new();
    for (p, v) in groups {
        let done: Vec<(usize, &SampleRow)> = v
            .iter()
            .enumerate()
            .filter(|(_, r)| index(r).is_some_and(|i| c.status[i] == VdjStatus::Done))
            .map(|(k, r)| (k, *r))
            .collect();
        if done.is_empty() {
            continue;
        }
        let name = if p.is_empty() { "samples" } else { p.as_str() };
        let counts: Vec<&Repertoire> = done
            .iter()
            .filter_map(|(_, r)| index(r).map(|i| &c.counts[i]))
            .collect();
        // The patient's 10 largest clones (ties: lower id).
        let mut clones: Vec<u32> = (0..c.sizes.len() as u32)
            .filter(|&k| c.clone_patient[k as usize] == *p)
            .collect();
        clones.sort_by_key(|&k| (std::cmp::Reverse(c.sizes[k as usize]), k));
        clones.truncate(10);
        let series: Vec<Series> = clones
            .iter()
            .map(|&k| {
                let pts = done
                    .iter()
                    .zip(&counts)
                    .map(|((i, r), cc)| {
                        let f = f64::from(cc.count(k)) / cc.cells().max(1) as f64;
                        (x_of(r, *i), f, timepoint_label(&r.sample))
                    })
                    .collect();
                (format!("clone {k}"), pts)
            })
            .collect();
        figure(
            &mut h,
            &line_plot(
                &format!("clones_{name}"),
                &format!("top clones of {name}: fraction of cells with a clone"),
                (xlab, "fraction of clonotyped cells"),
                &series,
                true,
            ),
        );
        let labels: Vec<String> = done
            .iter()
            .map(|(_, r)| timepoint_label(&r.sample))
            .collect();
        let matrix: Vec<Vec<Option<f64>>> = counts
            .iter()
            .map(|a| counts.iter().map(|b| a.morisita_horn(b)).collect())
            .collect();
        figure(
            &mut h,
            &heatmap(
                &format!("overlap_{name}"),
                &format!("{name}: Morisita-Horn overlap"),
                &labels,
                &matrix,
            ),
        );
        // A product sample's cells are all in product clones: its point is 1, so that each
        // line starts at the product.
        let pts: Vec<(f64, f64, String)> = done
            .iter()
            .filter_map(|(i, r)| {
                let k = index(r)?;
                let f = if c.product[k] && c.counts[k].cells() > 0 {
                    1.0
                } else {
                    fields.get(&r.sample.id)?.get(6)?.parse::<f64>().ok()?
                };
                Some((x_of(r, *i), f, timepoint_label(&r.sample)))
            })
            .collect();
        if !pts.is_empty() {
            product.push((name.to_string(), pts));
        }
    }
    if !product.is_empty() {
        figure(
            &mut h,
            &line_plot(
                "product_clone_fraction",
                "share of cells in infusion-product clones",
                (xlab, "product clone fraction"),
                &product,
                true,
            ),
        );
    }
    h.raw("</div>");
    let failed: Vec<(usize, &String)> = c
        .status
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            VdjStatus::Failed(e) => Some((i, e)),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        h.raw("<p>VDJ not analysed:</p><ul>");
        for (i, e) in failed {
            h.elem("li", &[], format_args!("{}: {e}", rows[i].sample.id));
        }
        h.raw("</ul>");
    }
    h
}

/// The page's style sheet.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px;color:#222}\
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0}\
.legend span{margin-right:10px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}\
td.l,th.l{text-align:left}tr.failed td{background:#fde8e8}tr.missing td{background:#fff6dd}";

/// The whole page.
pub fn render(m: &Manifest, rows: &[SampleRow], clonal: Option<&Clonal>) -> String {
    let groups = by_patient(rows);
    let xlab = if m.has_day {
        "day after infusion"
    } else {
        "time point (manifest order)"
    };
    let ok = rows.iter().filter(|r| r.status == SampleStatus::Ok).count();
    let mut h = Html::new();
    h.raw("<h1>CAR-T batch report</h1><p>Manifest ")
        .elem("code", &[], m.file.display())
        .text(format_args!(
            ": {} samples, {ok} completed, {} failed or missing.",
            rows.len(),
            rows.len() - ok
        ))
        .raw("</p>");
    let has_car = rows.iter().any(|r| r.num("n_car_positive").is_some());
    h.raw("<h2>Persistence over time</h2>");
    if groups.is_empty() {
        h.raw("<p>No completed samples.</p>");
    } else if !has_car {
        h.raw("<p>No CAR feature in any completed sample: no CAR+ persistence curves.</p>");
    } else {
        h.append(&persistence_plots(&groups, rows, xlab));
        h.raw("<h2>Phenotype composition of CAR+ T cells over time</h2><div class=\"plots\">");
        for (p, v) in &groups {
            figure(&mut h, &phenotype_bars(p, v));
        }
        h.raw("</div>");
    }
    if let Some(c) = clonal {
        h.append(&clonal_section(&groups, rows, c, xlab));
    }
    samples_table(&mut h, rows);
    html::page("cartscope batch report", STYLE, &h)
}

/// The phenotype composition of a patient's CAR+ T cells at each time point.
fn phenotype_bars(p: &str, v: &[&SampleRow]) -> Html {
    let cats: Vec<String> = v
        .iter()
        .flat_map(|r| r.columns.iter())
        .filter_map(|c| c.strip_prefix("frac_car_"))
        .fold(Vec::new(), |mut acc, c| {
            if !acc.iter().any(|x: &String| x == c) {
                acc.push(c.to_string());
            }
            acc
        });
    let bars: Vec<(String, Vec<f64>)> = v
        .iter()
        .map(|r| {
            (
                timepoint_label(&r.sample),
                cats.iter()
                    .map(|c| r.num(&format!("frac_car_{c}")).unwrap_or(0.0))
                    .collect(),
            )
        })
        .collect();
    let title = if p.is_empty() {
        "all samples".to_string()
    } else {
        format!("patient {p}")
    };
    stacked_bars(&format!("phenotypes_{p}"), &title, &bars, &cats)
}

/// The table of all samples, each linking its report or naming its error.
fn samples_table(h: &mut Html, rows: &[SampleRow]) {
    h.raw("<h2>Samples</h2><table><tr><th class=\"l\">sample</th><th class=\"l\">patient</th><th class=\"l\">time point</th><th>day</th><th class=\"l\">status</th><th>cells in</th><th>cells after QC</th><th>T cells</th><th>CAR+</th><th>CAR+ fraction</th><th>CD4:CD8 CAR+</th><th>DN of CAR+</th><th>gd of CAR+</th><th>cycling</th><th class=\"l\">report / error</th></tr>");
    for r in rows {
        let st = r.status.as_str();
        let left = |h: &mut Html, v: &dyn std::fmt::Display| {
            h.elem("td", &[("class", &"l")], v);
        };
        h.open("tr", &[("class", &st)]);
        left(h, &r.sample.id);
        left(h, &r.sample.patient);
        left(h, &r.sample.timepoint);
        h.elem(
            "td",
            &[],
            r.sample.day.map_or(String::new(), |d| d.to_string()),
        );
        left(h, &st);
        for (column, digits) in [
            ("n_cells_in", 0),
            ("n_cells_after_qc", 0),
            ("n_t_cells", 0),
            ("n_car_positive", 0),
            ("car_positive_fraction", 3),
            ("cd4_cd8_ratio_car", 2),
            ("dn_fraction_car", 3),
            ("gd_fraction_car", 3),
            ("cycling_fraction", 3),
        ] {
            h.elem("td", &[], fmt(r.num(column), digits));
        }
        h.open("td", &[("class", &"l")]);
        if r.status == SampleStatus::Ok && r.has_report {
            let href = html::relative_href(&["samples", &r.sample.id, "report.html"]);
            h.elem("a", &[("href", &href)], &href);
        } else {
            h.text(&r.error);
        }
        h.raw("</td></tr>");
    }
    h.raw("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_score_axes_label_every_tick_differently() {
        let series: Vec<Series> = vec![(
            "P01".to_string(),
            vec![
                (0.0, -0.0812, "a".to_string()),
                (14.0, -0.0795, "b".to_string()),
                (90.0, -0.0801, "c".to_string()),
            ],
        )];
        let svg = line_plot("t", "t", ("day", "score"), &series, false).into_string();
        // The y ticks are the right-aligned labels.
        let labels: Vec<&str> = svg
            .split("text-anchor=\"end\" font-size=\"9\">")
            .skip(1)
            .map(|t| &t[..t.find('<').unwrap()])
            .collect();
        assert_eq!(labels.len(), 5, "{labels:?}");
        let mut distinct = labels.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "{labels:?}");
    }
}
