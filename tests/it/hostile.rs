//! Hostile text in every field a user controls, through both reports. One corpus of hostile
//! strings (quotes of both kinds, `<script>`, `javascript:` URLs, event-handler attributes,
//! `</svg>`, `]]>`, CSS `expression(`, comments, text that is already escaped, control
//! characters, bidirectional overrides, line breaks, a 10,000-character value) goes into the
//! manifest's `sample_id` (as far as its validation allows), `patient`, `timepoint`, extra
//! columns (names and values), the obs `sample` and another categorical, gene names, the CAR
//! feature's name, a GMT set's description and genes, and the names of the input, contig, GMT
//! and manifest files. `cartscope run` and `cartscope batch` then write `report.html` and
//! `batch_report.html`, and each page must
//! - tokenize (html5gum, the WHATWG tokenizer) without an error into balanced elements, using
//!   only the elements, attributes and attribute values the project writes itself: no
//!   `<script>`, no `on*` attribute, no `javascript:` URL, no comment; with the
//!   Content-Security-Policy in its head;
//! - show the hostile text as text: each field's value is found in the page's decoded text;
//! - load in headless Chromium, as written and with its Content-Security-Policy removed,
//!   without running a script (the payloads mark the document, and the rendered DOM must not
//!   carry the mark) and without a console message.
//!
//! And no Rust source writes markup through a format string: markup goes through
//! `report::html`, which escapes what it is given.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cartscope::io::{AnnData, Column, CountSource, ReadOptions, WriteOptions, write_h5ad};
use cartscope::simulate::{SimOptions, simulate};
use html5gum::{DefaultEmitter, Token, Tokenizer};

use crate::browser::{CSP_META, assert_plots_have_marks, dom_and_console, rendered_dom};
use crate::common::{cartscope, succeeds};

/// The attribute a payload's script would set on the document.
const MARK: &str = "data-xss";

/// The reports' Content-Security-Policy, as a browser reads it.
const CSP: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; form-action 'none'; base-uri 'none'";

/// A script that marks the document with `how`.
fn mark(how: &str) -> String {
    format!("document.documentElement.setAttribute('{MARK}','{how}')")
}

/// The hostile strings. The first is the one found in the wild; every field gets it, tagged
/// with the field's name, so the test can find it in the page's text.
fn corpus() -> Vec<String> {
    vec![
        r#"x" onmouseover="alert(1)"#.to_string(),
        "x' onmouseover='alert(1)".to_string(),
        format!("<script>{}</script>", mark("script")),
        format!("\"><img src=x onerror=\"{}\">", mark("img")),
        format!("'><svg onload='document.documentElement.setAttribute(\"{MARK}\",\"svg\")'>"),
        format!("javascript:{}", mark("url")),
        format!("</svg></table></p><script>{}</script>", mark("close")),
        format!("]]><![CDATA[<img src=x onerror=\"{}\">", mark("cdata")),
        format!(
            "</title></style></textarea><img src=x onerror=\"{}\">",
            mark("raw")
        ),
        "width:expression(alert(1));background:url(javascript:alert(1))".to_string(),
        format!("<!--<img src=x onerror=\"{}\">-->", mark("comment")),
        "&lt;script&gt; &#60;b&#62; &amp;".to_string(),
        "ctl\u{1}\u{7}\u{8}\u{b}\u{c}\u{1b}[31m\u{7f}\u{85}\u{9f}\u{fffe}end".to_string(),
        "\u{202e}lmth.exe\u{202c} \u{2066}isolate\u{2069}".to_string(),
        "line\r\nbreak\ttab".to_string(),
        format!(
            "{}<img src=x onerror=\"{}\">",
            "L".repeat(10_000),
            mark("long")
        ),
    ]
}

/// Strings a line-based text file (manifest, GMT) can hold in one field: no line break, no
/// tab; a NUL added (these files may hold one, unlike HDF5 strings and file names).
fn line_corpus() -> Vec<String> {
    let mut v: Vec<String> = corpus()
        .into_iter()
        .filter(|s| !s.contains(['\n', '\r', '\t']))
        .collect();
    v.push("nul\u{0}byte".to_string());
    v
}

/// A file name holding a payload (no `/`, at most 255 bytes).
fn hostile_name(field: &str, ext: &str) -> String {
    format!("{field}~\"'><img src=x onerror=\"{}\">{ext}", mark(field))
}

/// Rewrites a simulated `.h5ad` with hostile obs `sample` and `donor` categories and hostile
/// names for the ribosomal genes (expressed in every cell, so they survive QC and reach the
/// gene-set table and the marker genes); returns the hostile gene names.
fn make_hostile(src: &Path, dst: &Path, tag: &str) -> Vec<String> {
    let mut input = CountSource::open(src, &ReadOptions::default()).unwrap();
    let x = input.read_all().unwrap();
    let corpus = corpus();
    let n = input.obs.len();
    let cats = |field: &str| -> Vec<String> {
        (0..n)
            .map(|i| {
                let k = i % corpus.len();
                format!("{tag}{field}{k}~{}", corpus[k])
            })
            .collect()
    };
    let mut obs = input.obs.clone();
    obs.set("sample", Column::categorical_from(&cats("sample")));
    obs.set("donor", Column::categorical_from(&cats("donor")));
    let mut var = input.var.clone();
    let mut genes = Vec::new();
    let mut k = 0;
    for g in var.index.iter_mut() {
        if g.starts_with("RPL") || g.starts_with("RPS") {
            *g = format!("gene{k}~{}", corpus[k % corpus.len()]);
            genes.push(g.clone());
            k += 1;
        }
    }
    assert!(genes.len() >= corpus.len(), "{genes:?}");
    let ad = AnnData {
        obs,
        var,
        x: Some(x),
        ..Default::default()
    };
    write_h5ad(dst, &ad, WriteOptions::default()).unwrap();
    genes
}

/// A GMT file (hostile name) with one set: a hostile description, the hostile genes of the
/// data that a GMT line can hold, and hostile genes the data lack.
fn hostile_gmt(dir: &Path, genes: &[String]) -> PathBuf {
    let path = dir.join(hostile_name("gmt", ".gmt"));
    let line = line_corpus();
    let mut fields = vec!["hostile_set".to_string(), format!("desc~{}", line[0])];
    fields.extend(
        genes
            .iter()
            .filter(|g| !g.contains(['\n', '\r', '\t']) && g.trim() == g.as_str())
            .cloned(),
    );
    fields.extend(
        line.iter()
            .enumerate()
            .map(|(k, s)| format!("absent{k}~{s}"))
            .filter(|g| g.trim() == g.as_str()),
    );
    std::fs::write(&path, fields.join("\t") + "\n").unwrap();
    path
}

/// One CSV field, quoted.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn simulated(dir: &Path, name: &str, seed: u64, timepoint: &str, car: &str) -> PathBuf {
    let path = dir.join(format!("{name}.h5ad"));
    simulate(
        &path,
        &SimOptions {
            cells: 1000,
            genes: 1000,
            seed,
            timepoint: timepoint.into(),
            car_feature: car.into(),
            vdj: true,
            ..Default::default()
        },
    )
    .unwrap();
    path
}

/// What html5gum finds in a page: its decoded text, and every violation of the allow-list.
struct Parsed {
    text: String,
    problems: Vec<String>,
}

const ELEMENTS: [&str; 30] = [
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "code", "b", "table",
    "tr", "th", "td", "div", "figure", "span", "i", "pre", "ul", "li", "a", "svg", "rect", "text",
    "circle", "line", "polyline",
];

/// Elements written self-closing (`<circle .../>`): the SVG shapes, where that is valid, and
/// `<meta>`, which has no end tag. In HTML `<i/>` would stay open.
const SELF_CLOSING: [&str; 5] = ["meta", "rect", "circle", "line", "polyline"];

const CLASSES: [&str; 11] = [
    "plot", "legend", "grid", "scroll", "note", "meta", "plots", "l", "ok", "failed", "missing",
];

fn number(v: &str) -> bool {
    v.parse::<f64>().is_ok_and(f64::is_finite)
}

fn colour(v: &str) -> bool {
    let hex = v
        .strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let rgb = v
        .strip_prefix("rgb(")
        .and_then(|r| r.strip_suffix(')'))
        .is_some_and(|r| r.split(',').count() == 3 && r.split(',').all(number));
    hex || rgb || v == "none"
}

/// `rotate(A X Y)` with numbers.
fn rotation(v: &str) -> bool {
    v.strip_prefix("rotate(")
        .and_then(|r| r.strip_suffix(')'))
        .is_some_and(|r| r.split(' ').count() == 3 && r.split(' ').all(number))
}

/// Whether the project writes attribute `attr` with `value` on `element`.
fn allowed(element: &str, attr: &str, value: &str) -> bool {
    let shape = matches!(element, "rect" | "text" | "circle" | "line" | "polyline");
    match (element, attr) {
        ("html", "lang") => value == "en",
        ("meta", "charset") => value == "utf-8",
        ("meta", "http-equiv") => value == "Content-Security-Policy",
        ("meta", "name") => value == "referrer",
        ("meta", "content") => value == CSP || value == "no-referrer",
        ("svg" | "div" | "p" | "tr" | "td" | "th", "class") => CLASSES.contains(&value),
        ("svg", "data-plot") => {
            !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        ("svg", "xmlns") => value == "http://www.w3.org/2000/svg",
        ("svg", "viewbox") => value.split(' ').count() == 4 && value.split(' ').all(number),
        ("svg", "width" | "height") => number(value),
        ("svg", "role") => value == "img",
        ("rect" | "text", "x" | "y")
        | ("rect", "width" | "height")
        | ("circle", "cx" | "cy" | "r" | "fill-opacity")
        | ("line", "x1" | "x2" | "y1" | "y2")
        | ("text", "font-size") => number(value),
        (_, "stroke-width") if shape => number(value),
        (_, "fill" | "stroke") if shape => colour(value),
        ("line", "stroke-dasharray") => value == "4 2",
        ("polyline", "points") => value
            .split([' ', ','])
            .filter(|p| !p.is_empty())
            .all(number),
        ("text", "text-anchor") => matches!(value, "start" | "middle" | "end"),
        ("text", "font-weight") => value == "bold",
        ("text", "paint-order") => value == "stroke",
        ("text", "transform") => rotation(value),
        ("i", "style") => value.strip_prefix("background:").is_some_and(colour),
        ("a", "href") => {
            let parts: Vec<&str> = value.split('/').collect();
            parts.len() == 3
                && parts[0] == "samples"
                && parts[2] == "report.html"
                && !parts[1].starts_with('.')
                && parts[1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._~+-%".contains(&b))
        }
        _ => false,
    }
}

/// Tokenizes `html` and checks every token against the allow-list (see the module).
fn parse(html: &str) -> Parsed {
    let mut emitter = DefaultEmitter::default();
    // Raw text in <style> and <title>, as a browser reads them.
    emitter.naively_switch_states(true);
    let mut text = String::new();
    let mut problems = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut csp = 0;
    let lossy = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
    for token in Tokenizer::new_with_emitter(html, emitter) {
        match token.unwrap() {
            Token::StartTag(tag) => {
                let name = lossy(&tag.name.0);
                if !ELEMENTS.contains(&name.as_str()) {
                    problems.push(format!("element <{name}>"));
                }
                if tag.self_closing && !SELF_CLOSING.contains(&name.as_str()) {
                    problems.push(format!("<{name}/> (not an element without content)"));
                }
                for (a, v) in &tag.attributes {
                    let (a, v) = (lossy(&a.0), lossy(&v.value.0));
                    let bare: String = v
                        .chars()
                        .filter(|c| !c.is_whitespace() && !c.is_control())
                        .collect::<String>()
                        .to_ascii_lowercase();
                    if a.starts_with("on") {
                        problems.push(format!("event handler <{name} {a}>"));
                    } else if bare.contains("javascript:") {
                        problems.push(format!("javascript: URL in <{name} {a}>"));
                    } else if !allowed(&name, &a, &v) {
                        problems.push(format!("<{name} {a}={v:?}>"));
                    }
                    if name == "meta" && a == "content" && v == CSP {
                        csp += 1;
                        if !open.iter().any(|e| e == "head") {
                            problems.push("the policy outside <head>".into());
                        }
                    }
                }
                if !tag.self_closing && name != "meta" {
                    open.push(name);
                }
            }
            Token::EndTag(tag) => {
                let name = lossy(&tag.name.0);
                match open.pop() {
                    Some(top) if top == name => {}
                    top => problems.push(format!("</{name}> closes {top:?}")),
                }
            }
            Token::String(s) => {
                if open.last().is_some_and(|e| e == "style") {
                    let css = lossy(&s.value.0).to_ascii_lowercase();
                    for bad in ["url(", "@import", "expression(", "</"] {
                        if css.contains(bad) {
                            problems.push(format!("style sheet holds {bad}"));
                        }
                    }
                }
                text.push_str(&lossy(&s.value.0));
            }
            Token::Comment(c) => problems.push(format!("comment {:?}", lossy(&c.value.0))),
            Token::Doctype(d) => {
                if lossy(&d.name.0) != "html" {
                    problems.push(format!("doctype {:?}", lossy(&d.name.0)));
                }
            }
            Token::Error(e) => problems.push(format!("parse error {:?}", e.value)),
        }
    }
    if !open.is_empty() {
        problems.push(format!("unclosed elements {open:?}"));
    }
    if csp != 1 {
        problems.push(format!("{csp} Content-Security-Policy elements"));
    }
    Parsed { text, problems }
}

/// The checks of the module on one page; `shown` are texts that must be in the page's text.
fn check_report(page: &Path, shown: &[String]) {
    let html = std::fs::read_to_string(page).unwrap();
    let parsed = parse(&html);
    let problems: BTreeSet<&String> = parsed.problems.iter().collect();
    assert!(
        problems.is_empty(),
        "{}: {} problems, e.g. {:?}",
        page.display(),
        problems.len(),
        problems.iter().take(12).collect::<Vec<_>>()
    );
    for s in shown {
        assert!(
            parsed.text.contains(s.as_str()),
            "{}: {s:?} is not in the text",
            page.display()
        );
    }
    // In a browser, as written and with the policy taken out: no script runs, nothing is
    // logged, every plot draws.
    let dom = rendered_dom(page);
    assert!(!dom.contains(&format!("{MARK}=\"")), "{}", page.display());
    assert_plots_have_marks(&dom, page);
    assert!(html.contains(CSP_META));
    let bare = page.with_file_name(format!(
        "bare_{}",
        page.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&bare, html.replace(CSP_META, "")).unwrap();
    let dom = rendered_dom(&bare);
    assert!(
        !dom.contains(&format!("{MARK}=\"")),
        "a script ran in {} without its policy",
        page.display()
    );
}

/// The harness can see a script run: a page with a payload written as markup, without the
/// policy, comes back marked.
fn assert_harness_sees_scripts(dir: &Path) {
    let page = dir.join("control.html");
    let img = format!("<img src=x onerror=\"{}\">", mark("control"));
    std::fs::write(
        &page,
        format!("<!DOCTYPE html><html><head></head><body>{img}</body></html>"),
    )
    .unwrap();
    let (dom, _) = dom_and_console(&page);
    assert!(dom.contains(&format!("{MARK}=\"control\"")), "{dom}");
    // And the parser rejects it.
    let problems = parse(&format!("<p>{img}</p>")).problems;
    assert!(problems.iter().any(|p| p.contains("<img>")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("onerror")),
        "{problems:?}"
    );
}

#[test]
fn hostile_text_in_every_field_stays_text_in_both_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let first = &corpus()[0];
    let car = format!("car~{first}");

    // cartscope run: hostile obs, genes, CAR feature, GMT and file names.
    let plain = simulated(d, "plain_a", 3, "infusion", &car);
    let input = d.join(hostile_name("input", ".h5ad"));
    let genes = make_hostile(&plain, &input, "");
    let contigs = d.join(hostile_name("contigs", ".csv.gz"));
    std::fs::rename(d.join("plain_a_contigs.csv.gz"), &contigs).unwrap();
    let gmt = hostile_gmt(d, &genes);
    let out = d.join("run");
    succeeds(
        cartscope()
            .args(["run", "--quiet", "--backend", "cpu", "--car-feature", &car])
            .arg("--gene-sets")
            .arg(&gmt)
            .args(["--gene-sets-mode", "extend", "--vdj"])
            .arg(&contigs)
            .arg(&input)
            .arg("-o")
            .arg(&out),
    );
    let all_samples: Vec<String> = corpus()
        .iter()
        .enumerate()
        .map(|(k, s)| format!("sample{k}~{s}"))
        .collect();
    // The names a page shows as they are (line breaks are normalised, control characters
    // and bidirectional controls replaced).
    let sample_names: Vec<String> = all_samples
        .iter()
        .filter(|s| !s.contains(['\r', '\u{1}', '\u{202e}', '\u{fffe}']))
        .cloned()
        .collect();
    let mut shown = vec![
        "input~\"'><img src=x onerror=".to_string(),
        "gmt~".to_string(),
        car.clone(),
        format!("gene0~{first}"),
        format!("absent0~{first}"),
    ];
    shown.extend(sample_names.iter().cloned());
    check_report(&out.join("report.html"), &shown);

    // cartscope batch: hostile manifest fields and names, a missing input with a hostile
    // name, a sample whose obs is hostile.
    let b = simulated(d, "plain_b", 4, "day28", &car);
    let line = line_corpus();
    let extra_name = format!("extra~{}", line[2]);
    let manifest = d.join(hostile_name("manifest", ".csv"));
    let mut text = format!(
        "sample_id,path,patient,timepoint,day,vdj,{}\n",
        quoted(&extra_name)
    );
    let missing = format!("missing~{}.h5ad", line[6]);
    let rows = [
        (
            "A+1.x-y_z",
            input.display().to_string(),
            format!("patient~{first}"),
            0,
            contigs.display().to_string(),
        ),
        (
            "B-2",
            b.display().to_string(),
            format!("patient~{first}"),
            28,
            d.join("plain_b_contigs.csv.gz").display().to_string(),
        ),
        (
            "C_3",
            d.join(&missing).display().to_string(),
            format!("patient2~{}", line[3]),
            90,
            String::new(),
        ),
    ];
    for (k, (id, path, patient, day, vdj)) in rows.iter().enumerate() {
        let extra: String = line.iter().map(|s| format!("x{k}~{s} ")).collect();
        text += &[
            id.to_string(),
            quoted(path),
            quoted(patient),
            quoted(&format!("tp{k}~{}", line[(k + 4) % line.len()])),
            day.to_string(),
            quoted(vdj),
            quoted(&extra),
        ]
        .join(",");
        text.push('\n');
    }
    std::fs::write(&manifest, text).unwrap();
    let bout = d.join("batch");
    let r = cartscope()
        .args([
            "batch",
            "--quiet",
            "--backend",
            "cpu",
            "--car-feature",
            &car,
        ])
        .arg("--gene-sets")
        .arg(&gmt)
        .args(["--gene-sets-mode", "extend"])
        .arg(&manifest)
        .arg("-o")
        .arg(&bout)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let html = std::fs::read_to_string(bout.join("batch_report.html")).unwrap();
    assert!(
        html.contains("data-plot=\"car_fraction\""),
        "no persistence curves"
    );
    assert!(
        html.contains("data-plot=\"clones_patient"),
        "no clonal section"
    );
    let shown: Vec<String> = vec![
        "manifest~\"'><img src=x onerror=".to_string(),
        "A+1.x-y_z".to_string(),
        format!("patient~{first}"),
        "patient2~".to_string(),
        format!("tp0~{}", line[4]),
        format!("tp1~{}", line[5]),
        "missing~".to_string(),
    ];
    check_report(&bout.join("batch_report.html"), &shown);
    check_report(
        &bout.join("samples/A+1.x-y_z/report.html"),
        &[format!("sample0~{first}")],
    );
    // The tables keep every hostile field whole.
    let summary = std::fs::read_to_string(bout.join("batch_summary.csv")).unwrap();
    let records = records(&summary);
    assert_eq!(records.len(), 4, "{summary}");
    assert!(records[0].contains(&extra_name), "{:?}", records[0]);
    let col = records[0].iter().position(|c| c == "patient").unwrap();
    assert_eq!(records[1][col], format!("patient~{first}"));

    // Parquet keeps the hostile strings as strings.
    let parquet = |path: &Path| {
        use polars::prelude::{ParquetReader, SerReader};
        ParquetReader::new(std::fs::File::open(path).unwrap())
            .finish()
            .unwrap()
    };
    let df = parquet(&bout.join("batch_summary.parquet"));
    for (column, want) in [
        ("patient", format!("patient~{first}")),
        (
            extra_name.as_str(),
            records[1][records[0].iter().position(|c| *c == extra_name).unwrap()].clone(),
        ),
    ] {
        let c = df.column(column).unwrap();
        assert_eq!(c.dtype(), &polars::prelude::DataType::String, "{column}");
        assert_eq!(c.str().unwrap().get(0), Some(want.as_str()), "{column}");
    }
    let cells = parquet(&out.join("cells.parquet"));
    let samples = cells.column("sample").unwrap().str().unwrap();
    let distinct: BTreeSet<&str> = (0..samples.len()).filter_map(|i| samples.get(i)).collect();
    for name in &all_samples {
        assert!(distinct.contains(name.as_str()), "{name:?}");
    }

    assert_harness_sees_scripts(d);
}

/// The records of CSV text (RFC 4180: quoted fields may hold commas, quotes and line breaks).
fn records(text: &str) -> Vec<Vec<String>> {
    let mut rows = vec![vec![String::new()]];
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let row = rows.last_mut().unwrap();
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                row.last_mut().unwrap().push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => row.last_mut().unwrap().push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(String::new()),
            (false, '\n') => rows.push(vec![String::new()]),
            (false, c) => row.last_mut().unwrap().push(c),
        }
    }
    if rows.last().is_some_and(|r| r.len() == 1 && r[0].is_empty()) {
        rows.pop();
    }
    rows
}

/// The Rust files under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The first string literal of the call starting at `from` (none when the statement ends
/// first).
fn first_literal(src: &str, from: usize) -> Option<&str> {
    let q = from + src[from..].find('"')?;
    if src[from..q].contains(';') {
        return None;
    }
    let bytes = src.as_bytes();
    let mut k = q + 1;
    while k < bytes.len() && bytes[k] != b'"' {
        k += if bytes[k] == b'\\' { 2 } else { 1 };
    }
    Some(&src[q + 1..k.min(src.len())])
}

/// Markup in a literal: `<` before a letter, `/` or `!`.
fn has_markup(literal: &str) -> bool {
    literal
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'))
}

#[test]
fn no_format_string_writes_markup() {
    const CALLS: [&str; 8] = [
        "format!(",
        "write!(",
        "writeln!(",
        "format_args!(",
        "concat!(",
        "push_str(",
        "String::from(",
        "print!(",
    ];
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 50);
    let mut found = Vec::new();
    for f in &files {
        // The builder itself, the one place markup is assembled.
        if f.ends_with("src/report/html.rs") {
            continue;
        }
        let src = std::fs::read_to_string(f).unwrap();
        for call in CALLS {
            for (at, _) in src.match_indices(call) {
                let line_start = src[..at].rfind('\n').map_or(0, |k| k + 1);
                if src[line_start..at].trim_start().starts_with("//") {
                    continue;
                }
                if let Some(lit) = first_literal(&src, at + call.len())
                    && has_markup(lit)
                {
                    let line = src[..at].matches('\n').count() + 1;
                    found.push(format!(
                        "{}:{line}: {call} {:?}",
                        f.strip_prefix(&root).unwrap().display(),
                        lit.chars().take(60).collect::<String>()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "markup written through a format string instead of report::html: {found:#?}"
    );
    // The check finds what it looks for.
    let sample = "let s = format!(\n  \"<td>{}</td>\", x);";
    let at = sample.find("format!(").unwrap() + "format!(".len();
    assert!(has_markup(first_literal(sample, at).unwrap()));
    assert!(!has_markup("a < b, x<1"));
}
