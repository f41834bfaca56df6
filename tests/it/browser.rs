//! Loading a generated HTML page in headless Chromium: it loads nothing external, logs no
//! console message, every `<svg class="plot">` in the rendered DOM has marks, and a screenshot
//! is kept under `<target dir>/test-artifacts/`.

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

/// Marks a plot draws: circles, lines, polylines with points, rects after the frame.
fn marks(svg: &str) -> usize {
    let polylines = svg
        .split("<polyline")
        .skip(1)
        .filter(|p| !p.contains("points=\"\""))
        .count();
    svg.matches("<circle").count()
        + svg.matches("<line").count()
        + polylines
        + svg.matches("<rect").count().saturating_sub(1)
}

/// Loads `page` in headless Chromium and checks it (see the module); keeps a screenshot as
/// `screenshot` under [`artifacts`]. Returns the rendered DOM.
pub fn check_page(page: &Path, screenshot: &str) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    for external in ["<script src", "<link ", "https://", "@import"] {
        assert!(
            !html.contains(external),
            "{} loads {external}",
            page.display()
        );
    }
    let profiles = tempfile::tempdir().unwrap();
    let o = chromium(&profiles.path().join("dom"), &["--dump-dom"], page);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    let log = String::from_utf8_lossy(&o.stderr);
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let plots: Vec<&str> = dom
        .split("<svg class=\"plot\"")
        .skip(1)
        .map(|p| p.split("</svg>").next().unwrap_or(""))
        .collect();
    assert!(!plots.is_empty(), "{} has no plots", page.display());
    for (i, p) in plots.iter().enumerate() {
        assert!(marks(p) > 0, "plot {i} of {} has no marks", page.display());
    }
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
