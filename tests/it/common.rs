//! Shared helpers: fixture paths and the expected values written by make_fixtures.py.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn fixture(name: &str) -> PathBuf {
    data_dir().join(name)
}

/// A file of the real test data `scripts/setup.sh` fetches into `$CARTSCOPE_REAL_DATA`.
pub fn real_data(name: &str) -> PathBuf {
    std::env::var("CARTSCOPE_REAL_DATA")
        .map(PathBuf::from)
        .expect("CARTSCOPE_REAL_DATA unset: run scripts/test.sh, which fetches the real test data")
        .join(name)
}

/// The 200 real T cells of Wu et al. 2020 shipped in the scirpy wheel (BSD-3).
pub fn wu2020() -> PathBuf {
    real_data("wu2020_200_v0_11.h5ad")
}

pub fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("tests/data/expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// The obs frame of a written h5ad.
pub fn obs(result: &Path) -> cartscope::io::Frame {
    cartscope::io::CountSource::open(result, &Default::default())
        .unwrap()
        .obs
}

pub fn cartscope() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("cartscope").expect("binary built")
}

/// Runs `cmd` to the end, asserts exit code 0 (its stderr in the message) and returns what it
/// printed.
pub fn succeeds(cmd: &mut assert_cmd::Command) -> std::process::Output {
    let o = cmd.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Writes each manifest text of `cases` as `dir/m{i}.csv`, runs `cartscope ARGS MANIFEST -o
/// dir/out{i}` and asserts the rejection: exit code 2, one stderr line containing the case's
/// text (and the manifest's file name when `names_manifest`), and no output folder.
pub fn assert_manifests_rejected(
    dir: &Path,
    args: &[&str],
    cases: &[(&str, &str)],
    names_manifest: bool,
) {
    for (i, (text, want)) in cases.iter().enumerate() {
        let m = dir.join(format!("m{i}.csv"));
        std::fs::write(&m, text).unwrap();
        let out = dir.join(format!("out{i}"));
        let r = cartscope()
            .args(args)
            .arg(&m)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "case {i}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "case {i}: {stderr}");
        assert!(stderr.contains(want), "case {i}: {stderr}");
        if names_manifest {
            assert!(stderr.contains(&format!("m{i}.csv")), "case {i}: {stderr}");
        }
        assert!(!out.exists(), "case {i} wrote {}", out.display());
    }
}

/// `cartscope run` through the library's one entry point: `input` into `out` with `opts`.
pub fn run(
    input: &Path,
    out: &Path,
    read: &cartscope::io::ReadOptions,
    opts: &cartscope::RunOptions,
) -> cartscope::Result<cartscope::RunSummary> {
    cartscope::Run::new(input, out)
        .read_options(read.clone())
        .options(opts.clone())
        .execute()
}
