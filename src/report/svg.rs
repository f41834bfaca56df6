//! Hand-written SVG plots: scatter, histogram, box plots and stacked bars. Each returns one
//! `<svg class="plot">` element with its marks inline (no scripts, no external resources),
//! built through [`Html`], so that names from the data are text and plot keys identifiers.

use super::html::{Html, Num, ident};

/// Categorical colours (Okabe-Ito, then greys), readable by colour-blind readers.
pub const PALETTE: [&str; 10] = [
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#7F3C8D",
    "#999999", "#DDDDDD",
];

const W: f64 = 420.0;
const H: f64 = 300.0;
const M: f64 = 40.0;

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

/// The start tag of a plot of `size` (width, height) with its title for assistive technology;
/// `id` becomes its `data-plot` key (through [`ident`]).
pub(crate) fn plot_start(h: &mut Html, id: &str, size: (f64, f64), title: &str) {
    let (w, ht) = size;
    h.open(
        "svg",
        &[
            ("class", &"plot"),
            ("data-plot", &ident(id)),
            ("xmlns", &"http://www.w3.org/2000/svg"),
            ("viewBox", &format!("0 0 {w} {ht}")),
            ("width", &w),
            ("height", &ht),
            ("role", &"img"),
        ],
    )
    .elem("title", &[], title);
}

/// A text label at (x, y) with its anchor and font size.
pub(crate) fn label(h: &mut Html, (x, y): (f64, f64), anchor: &str, size: u32, text: &str) {
    h.elem(
        "text",
        &[
            ("x", &Num(x, 1)),
            ("y", &Num(y, 1)),
            ("text-anchor", &anchor),
            ("font-size", &size),
        ],
        text,
    );
}

/// A text label at (x, y) anchored at its end and rotated by `degrees` around its anchor.
pub(crate) fn rotated_label(h: &mut Html, (x, y): (f64, f64), degrees: i32, size: u32, text: &str) {
    h.elem(
        "text",
        &[
            ("x", &Num(x, 1)),
            ("y", &Num(y, 1)),
            ("font-size", &size),
            ("text-anchor", &"end"),
            (
                "transform",
                &format!("rotate({degrees} {} {})", Num(x, 1), Num(y, 1)),
            ),
        ],
        text,
    );
}

/// The plot frame with its title and axis labels; `rect` is the frame's (x, y, width,
/// height).
pub(crate) fn frame(
    h: &mut Html,
    rect: (f64, f64, f64, f64),
    title: &str,
    (xlab, ylab): (&str, &str),
) {
    let (x, y, fw, fh) = rect;
    h.empty(
        "rect",
        &[
            ("x", &x),
            ("y", &y),
            ("width", &fw),
            ("height", &fh),
            ("fill", &"none"),
            ("stroke", &"#888"),
        ],
    );
    let cx = x + fw / 2.0;
    let cy = y + fh / 2.0;
    label(h, (cx, 16.0), "middle", 13, title);
    label(h, (cx, y + fh + 34.0), "middle", 11, xlab);
    h.elem(
        "text",
        &[
            ("x", &12),
            ("y", &cy),
            ("text-anchor", &"middle"),
            ("font-size", &11),
            ("transform", &format!("rotate(-90 12 {cy})")),
        ],
        ylab,
    );
}

fn open(id: &str, title: &str, xlab: &str, ylab: &str) -> Html {
    let mut h = Html::new();
    plot_start(&mut h, id, (W, H), title);
    frame(
        &mut h,
        (M, 24.0, W - M - 10.0, H - M - 24.0),
        title,
        (xlab, ylab),
    );
    h
}

/// A tick value with enough decimals that ticks `step` apart read differently.
pub(crate) fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step.is_finite() {
        ((-step.log10()).floor() + 2.0).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    format!("{v:.decimals$}")
}

fn ticks(s: &mut Html, lo: f64, hi: f64, x_axis: bool) {
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        let text = tick_label(v, (hi - lo).abs() / 4.0);
        if x_axis {
            let x = M + (W - M - 10.0) * f64::from(k) / 4.0;
            label(s, (x, H - M + 12.0), "middle", 9, &text);
        } else {
            let y = H - M - (H - M - 24.0) * f64::from(k) / 4.0;
            label(s, (M - 3.0, y), "end", 9, &text);
        }
    }
}

fn sx(v: f64, lo: f64, hi: f64) -> f64 {
    M + (v - lo) / (hi - lo) * (W - M - 10.0)
}

fn sy(v: f64, lo: f64, hi: f64) -> f64 {
    H - M - (v - lo) / (hi - lo) * (H - M - 24.0)
}

/// A legend: one colour swatch and its label per entry.
pub(crate) fn legend(labels: &[(String, &str)]) -> Html {
    let mut out = Html::new();
    out.open("div", &[("class", &"legend")]);
    for (l, c) in labels {
        out.open("span", &[])
            .open("i", &[("style", &format!("background:{c}"))])
            .close("i")
            .text(l)
            .close("span");
    }
    out.close("div");
    out
}

/// Ends the plot `s` and appends its legend.
fn with_legend(mut s: Html, labels: &[(String, &str)]) -> Html {
    s.close("svg").append(&legend(labels));
    s
}

/// A dot at (x, y) of radius `r`.
fn dot(s: &mut Html, (x, y): (f64, f64), r: f64, fill: &str, opacity: Option<f64>) {
    match opacity {
        Some(o) => s.empty(
            "circle",
            &[
                ("cx", &Num(x, 1)),
                ("cy", &Num(y, 1)),
                ("r", &r),
                ("fill", &fill),
                ("fill-opacity", &o),
            ],
        ),
        None => s.empty(
            "circle",
            &[
                ("cx", &Num(x, 1)),
                ("cy", &Num(y, 1)),
                ("r", &Num(r, 2)),
                ("fill", &fill),
            ],
        ),
    };
}

/// Scatter of (x, y) coloured by category codes (`None`: missing, drawn grey).
pub fn scatter_categorical(
    id: &str,
    title: &str,
    labels: (&str, &str),
    xy: &[(f64, f64)],
    codes: &[Option<usize>],
    categories: &[String],
) -> Html {
    scatter_groups(id, title, labels, xy, codes, categories, false)
}

/// [`scatter_categorical`] with each category's label written at the median of its points
/// (clusters, whose colours repeat beyond the palette).
pub fn scatter_labelled(
    id: &str,
    title: &str,
    labels: (&str, &str),
    xy: &[(f64, f64)],
    codes: &[Option<usize>],
    categories: &[String],
) -> Html {
    scatter_groups(id, title, labels, xy, codes, categories, true)
}

fn scatter_groups(
    id: &str,
    title: &str,
    labels: (&str, &str),
    xy: &[(f64, f64)],
    codes: &[Option<usize>],
    categories: &[String],
    centre_labels: bool,
) -> Html {
    let (x0, x1) = range(xy.iter().map(|p| p.0));
    let (y0, y1) = range(xy.iter().map(|p| p.1));
    let mut s = open(id, title, labels.0, labels.1);
    for (p, c) in xy.iter().zip(codes) {
        let col = c.map_or("#CCCCCC", |c| PALETTE[c % PALETTE.len()]);
        dot(
            &mut s,
            (sx(p.0, x0, x1), sy(p.1, y0, y1)),
            1.8,
            col,
            Some(0.8),
        );
    }
    if centre_labels {
        for (k, name) in categories.iter().enumerate() {
            let mut xs: Vec<f64> = Vec::new();
            let mut ys: Vec<f64> = Vec::new();
            for (p, _) in xy.iter().zip(codes).filter(|(_, c)| **c == Some(k)) {
                xs.push(p.0);
                ys.push(p.1);
            }
            if xs.is_empty() {
                continue;
            }
            let (mx, my) = (median(&mut xs), median(&mut ys));
            s.elem(
                "text",
                &[
                    ("x", &Num(sx(mx, x0, x1), 1)),
                    ("y", &Num(sy(my, y0, y1) + 4.0, 1)),
                    ("text-anchor", &"middle"),
                    ("font-size", &12),
                    ("font-weight", &"bold"),
                    ("stroke", &"#fff"),
                    ("stroke-width", &3),
                    ("paint-order", &"stroke"),
                ],
                name,
            );
        }
    }
    let present: Vec<(String, &str)> = categories
        .iter()
        .enumerate()
        .filter(|(k, _)| codes.contains(&Some(*k)))
        .map(|(k, c)| (c.clone(), PALETTE[k % PALETTE.len()]))
        .collect();
    with_legend(s, &present)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Dot plot of genes (columns) by groups (rows): dot area by the fraction of the group's
/// cells expressing the gene, colour by its mean expression scaled to the gene's maximum
/// over the groups (as scanpy's `dotplot(standard_scale="var")`).
pub fn dotplot(
    id: &str,
    title: &str,
    genes: &[String],
    groups: &[String],
    fraction: &[Vec<f64>],
    mean: &[Vec<f64>],
) -> Html {
    const CELL: f64 = 16.0;
    let (left, top, bottom) = (M + 20.0, 30.0, 70.0);
    let w = left + CELL * genes.len() as f64 + 20.0;
    let h = top + CELL * groups.len() as f64 + bottom;
    let mut s = Html::new();
    plot_start(&mut s, id, (w, h), title);
    label(&mut s, (w / 2.0, 16.0), "middle", 13, title);
    let max_by_gene: Vec<f64> = (0..genes.len())
        .map(|j| mean.iter().map(|m| m[j]).fold(0.0, f64::max))
        .collect();
    for (r, g) in groups.iter().enumerate() {
        let y = top + CELL * (r as f64 + 0.5);
        label(&mut s, (left - 4.0, y + 3.5), "end", 10, g);
        for j in 0..genes.len() {
            let frac = fraction[r][j].clamp(0.0, 1.0);
            if frac <= 0.0 {
                continue;
            }
            let scaled = match max_by_gene[j] > 0.0 {
                true => mean[r][j] / max_by_gene[j],
                false => 0.0,
            };
            dot(
                &mut s,
                (left + CELL * (j as f64 + 0.5), y),
                (CELL / 2.0 - 0.5) * frac.sqrt(),
                &ramp(scaled),
                None,
            );
        }
    }
    let base = top + CELL * groups.len() as f64 + 4.0;
    for (j, gene) in genes.iter().enumerate() {
        let x = left + CELL * (j as f64 + 0.5) + 3.0;
        rotated_label(&mut s, (x, base), -60, 10, gene);
    }
    s.close("svg")
        .append(&legend(&[
            ("mean expression: 0".to_string(), "rgb(68,1,84)"),
            ("gene's highest group mean".to_string(), "rgb(253,231,37)"),
        ]))
        .raw("<div class=\"legend\">dot area: fraction of the group's cells expressing the gene</div>");
    s
}

/// Viridis-like ramp from dark blue to yellow for t in [0, 1].
fn ramp(t: f64) -> String {
    let stops = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let k = (t.floor() as usize).min(3);
    let f = t - k as f64;
    let (a, b) = (stops[k], stops[k + 1]);
    format!(
        "rgb({:.0},{:.0},{:.0})",
        a.0 + (b.0 - a.0) * f,
        a.1 + (b.1 - a.1) * f,
        a.2 + (b.2 - a.2) * f
    )
}

/// Scatter coloured by a continuous value (2nd to 98th percentile mapped to the ramp).
pub fn scatter_continuous(
    id: &str,
    title: &str,
    labels: (&str, &str),
    xy: &[(f64, f64)],
    value: &[f64],
) -> Html {
    let (x0, x1) = range(xy.iter().map(|p| p.0));
    let (y0, y1) = range(xy.iter().map(|p| p.1));
    let mut sorted: Vec<f64> = value.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let q = |f: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * f) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (lo, hi) = (q(0.02), q(0.98).max(q(0.02) + 1e-9));
    let mut order: Vec<usize> = (0..xy.len()).collect();
    order.sort_by(|&a, &b| value[a].total_cmp(&value[b]));
    let mut s = open(id, title, labels.0, labels.1);
    for i in order {
        s.empty(
            "circle",
            &[
                ("cx", &Num(sx(xy[i].0, x0, x1), 1)),
                ("cy", &Num(sy(xy[i].1, y0, y1), 1)),
                ("r", &1.8),
                ("fill", &ramp((value[i] - lo) / (hi - lo))),
            ],
        );
    }
    with_legend(
        s,
        &[
            (format!("{lo:.2}"), "rgb(68,1,84)"),
            (format!("{hi:.2}"), "rgb(253,231,37)"),
        ],
    )
}

/// Histogram with `bins` equal-width bins and an optional threshold line.
pub fn histogram(
    id: &str,
    title: &str,
    xlab: &str,
    v: &[f64],
    bins: usize,
    threshold: Option<f64>,
) -> Html {
    let (lo, hi) = range(v.iter().copied());
    let mut counts = vec![0usize; bins];
    for &x in v.iter().filter(|x| x.is_finite()) {
        let b = (((x - lo) / (hi - lo)) * bins as f64) as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut s = open(id, title, xlab, "cells");
    ticks(&mut s, lo, hi, true);
    ticks(&mut s, 0.0, top, false);
    let bw = (W - M - 10.0) / bins as f64;
    for (k, &c) in counts.iter().enumerate() {
        let h = c as f64 / top * (H - M - 24.0);
        s.empty(
            "rect",
            &[
                ("x", &Num(M + bw * k as f64, 1)),
                ("y", &Num(H - M - h, 1)),
                ("width", &Num((bw - 1.0).max(0.5), 1)),
                ("height", &Num(h, 1)),
                ("fill", &"#0072B2"),
            ],
        );
    }
    if let Some(t) = threshold.filter(|t| *t >= lo && *t <= hi) {
        let x = Num(sx(t, lo, hi), 1);
        s.empty(
            "line",
            &[
                ("x1", &x),
                ("x2", &x),
                ("y1", &24),
                ("y2", &Num(H - M, 1)),
                ("stroke", &"#D55E00"),
                ("stroke-dasharray", &"4 2"),
            ],
        );
    }
    s.close("svg");
    s
}

/// A line from (x1, y1) to (x2, y2).
pub(crate) fn segment(
    s: &mut Html,
    (x1, y1): (f64, f64),
    (x2, y2): (f64, f64),
    stroke: &str,
    width: f64,
) {
    s.empty(
        "line",
        &[
            ("x1", &Num(x1, 1)),
            ("x2", &Num(x2, 1)),
            ("y1", &Num(y1, 1)),
            ("y2", &Num(y2, 1)),
            ("stroke", &stroke),
            ("stroke-width", &width),
        ],
    );
}

/// Box plots (median, quartiles, 5-95 % whiskers) of `v` per group.
pub fn boxplot(id: &str, title: &str, ylab: &str, groups: &[(String, Vec<f64>)]) -> Html {
    let (lo, hi) = range(groups.iter().flat_map(|g| g.1.iter().copied()));
    let mut s = open(id, title, "", ylab);
    ticks(&mut s, lo, hi, false);
    let n = groups.len().max(1) as f64;
    let bw = (W - M - 10.0) / n;
    for (k, (name, vals)) in groups.iter().enumerate() {
        let mut v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
        let cx = M + bw * (k as f64 + 0.5);
        let y = |x: f64| sy(x, lo, hi);
        segment(&mut s, (cx, y(q(0.05))), (cx, y(q(0.95))), "#444", 1.0);
        s.empty(
            "rect",
            &[
                ("x", &Num(cx - bw * 0.3, 1)),
                ("y", &Num(y(q(0.75)), 1)),
                ("width", &Num(bw * 0.6, 1)),
                ("height", &Num((y(q(0.25)) - y(q(0.75))).max(0.5), 1)),
                ("fill", &PALETTE[k % PALETTE.len()]),
                ("stroke", &"#444"),
            ],
        );
        segment(
            &mut s,
            (cx - bw * 0.3, y(q(0.5))),
            (cx + bw * 0.3, y(q(0.5))),
            "#000",
            2.0,
        );
        rotated_label(&mut s, (cx, H - M + 10.0), -30, 8, name);
    }
    s.close("svg");
    s
}

/// Horizontal stacked bars: one bar per row, segments by category fraction.
pub fn stacked_bars(
    id: &str,
    title: &str,
    rows: &[(String, Vec<f64>)],
    categories: &[String],
) -> Html {
    let mut s = open(id, title, "fraction", "");
    let n = rows.len().max(1) as f64;
    let bh = (H - M - 24.0) / n;
    for (r, (name, fr)) in rows.iter().enumerate() {
        let mut x = M;
        let y = 24.0 + bh * r as f64 + bh * 0.15;
        for (k, f) in fr.iter().enumerate() {
            let w = f * (W - M - 10.0);
            if w > 0.0 {
                s.open(
                    "rect",
                    &[
                        ("x", &Num(x, 1)),
                        ("y", &Num(y, 1)),
                        ("width", &Num(w, 1)),
                        ("height", &Num(bh * 0.7, 1)),
                        ("fill", &PALETTE[k % PALETTE.len()]),
                    ],
                )
                .open("title", &[])
                .text(&categories[k])
                .text(format_args!(" {:.1} %", f * 100.0))
                .close("title")
                .close("rect");
            }
            x += w;
        }
        s.elem(
            "text",
            &[
                ("x", &Num(M + 2.0, 1)),
                ("y", &Num(y + bh * 0.45, 1)),
                ("font-size", &9),
            ],
            name,
        );
    }
    let present: Vec<(String, &str)> = categories
        .iter()
        .enumerate()
        .map(|(k, c)| (c.clone(), PALETTE[k % PALETTE.len()]))
        .collect();
    with_legend(s, &present)
}

#[cfg(test)]
mod tick_tests {
    use super::tick_label;

    #[test]
    fn ticks_a_narrow_range_apart_read_differently() {
        let labels: Vec<String> = (0..=4)
            .map(|k| tick_label(-0.09 + 0.01 * f64::from(k) / 4.0, 0.0025))
            .collect();
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{labels:?}");
        assert_eq!(tick_label(1045.0, 261.25), "1045");
        assert_eq!(tick_label(0.57, 0.1425), "0.57");
    }
}
