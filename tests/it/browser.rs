//! Loading a generated HTML page in headless Chromium: it has no script, carries the reports'
//! Content-Security-Policy, loads nothing external, logs no console message (a script the
//! policy blocked would log one), every `<svg class="plot">` in the rendered DOM draws data
//! marks (not only its frame or threshold lines), and a screenshot is kept under
//! `<target dir>/test-artifacts/`.

use std::path::{Path, PathBuf};

/// Where test artifacts are kept: `<target dir>/test-artifacts`.
pub fn artifacts() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium(profile: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium not found: run scripts/setup.sh (installs Debian's chromium)");
    std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

/// The attribute `name` of an element's start tag (`attrs`: the text after the tag name).
fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let at = attrs.find(&format!(" {name}=\""))? + name.len() + 3;
    attrs[at..].split('"').next()
}

fn positive(attrs: &str, name: &str) -> bool {
    attr(attrs, name)
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(|v| v > 0.0)
}

/// Data marks a plot draws: circles with a radius, polylines with points, rects with an area
/// other than the plot frame (the first rect) and solid lines (box whiskers and medians).
/// Dashed lines are thresholds drawn whatever the data, and are not marks.
fn marks(svg: &str) -> usize {
    let mut rects = 0;
    let mut n = 0;
    for element in svg.split('<').skip(1) {
        let (tag, rest) = element.split_once([' ', '>', '/']).unwrap_or((element, ""));
        let attrs = format!(" {}", rest.split('>').next().unwrap_or(""));
        n += usize::from(match tag {
            "circle" => positive(&attrs, "r"),
            "polyline" => attr(&attrs, "points").is_some_and(|p| !p.trim().is_empty()),
            "line" => attr(&attrs, "stroke-dasharray").is_none(),
            "rect" => {
                rects += 1;
                rects > 1 && positive(&attrs, "width") && positive(&attrs, "height")
            }
            _ => false,
        });
    }
    n
}

#[test]
fn thresholds_frames_and_empty_shapes_are_not_marks() {
    let frame = r##"<rect x="48" y="24" width="300" height="200" fill="none" stroke="#888"/>"##;
    let threshold =
        r##"<line x1="60" x2="60" y1="24" y2="224" stroke="#D55E00" stroke-dasharray="4 2"/>"##;
    let empty_bar = r##"<rect x="50" y="224" width="9" height="0.0" fill="#0072B2"/>"##;
    assert_eq!(marks(&format!("{frame}{threshold}{empty_bar}")), 0);
    assert_eq!(marks(r#"<polyline fill="none" points=""/>"#), 0);
    let bar = r##"<rect x="50" y="200" width="9" height="24.0" fill="#0072B2"/>"##;
    let dot = r#"<circle cx="1.0" cy="2.0" r="1.8" fill="red"></circle>"#;
    let whisker = r##"<line x1="5" x2="5" y1="1" y2="9" stroke="#444"/>"##;
    assert_eq!(marks(&format!("{frame}{threshold}{bar}{dot}{whisker}")), 3);
}

/// The DOM of `page` after Chromium loaded it, asserting that the browser logged no console
/// message and no uncaught error.
pub fn rendered_dom(page: &Path) -> String {
    let (dom, console) = dom_and_console(page);
    assert!(
        console.is_empty(),
        "{}: console messages: {console:?}",
        page.display()
    );
    dom
}

/// The DOM of `page` after Chromium loaded it, and the console messages and uncaught errors
/// it logged.
pub fn dom_and_console(page: &Path) -> (String, Vec<String>) {
    let profiles = tempfile::tempdir().unwrap();
    let o = chromium(&profiles.path().join("dom"), &["--dump-dom"], page);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let console = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&o.stdout).into_owned(), console)
}

/// Asserts that the rendered `dom` of `page` has plots and that each draws data marks.
pub fn assert_plots_have_marks(dom: &str, page: &Path) {
    let plots: Vec<&str> = dom
        .split("<svg class=\"plot\"")
        .skip(1)
        .map(|p| p.split("</svg>").next().unwrap_or(""))
        .collect();
    assert!(!plots.is_empty(), "{} has no plots", page.display());
    for (i, p) in plots.iter().enumerate() {
        assert!(marks(p) > 0, "plot {i} of {} has no marks", page.display());
    }
}

/// The Content-Security-Policy every report carries, as its `<meta>` element is written.
pub const CSP_META: &str = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src &#39;none&#39;; img-src data:; style-src &#39;unsafe-inline&#39;; script-src &#39;none&#39;; form-action &#39;none&#39;; base-uri &#39;none&#39;\"/>";

/// Loads `page` in headless Chromium and checks it (see the module); keeps a screenshot as
/// `screenshot` under [`artifacts`]. Returns the rendered DOM.
pub fn check_page(page: &Path, screenshot: &str) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    let head = html.split("</head>").next().unwrap();
    assert!(
        head.contains(CSP_META),
        "{} lacks the Content-Security-Policy",
        page.display()
    );
    for external in ["<script", "<link ", "https://", "@import"] {
        assert!(
            !html.contains(external),
            "{} loads {external}",
            page.display()
        );
    }
    let dom = rendered_dom(page);
    assert_plots_have_marks(&dom, page);
    let profiles = tempfile::tempdir().unwrap();
    let shot = artifacts().join(screenshot);
    let _ = std::fs::remove_file(&shot);
    let o = chromium(
        &profiles.path().join("shot"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,3000",
        ],
        page,
    );
    assert!(o.status.success());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot kept at {}",
        shot.display()
    );
    dom
}
