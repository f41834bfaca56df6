//! A seeded slice of the damaged-input campaign (`tests/fuzz/corpus.py`): a few hundred broken
//! `.h5ad`, 10x `.h5` and MTX inputs - byte flips in metadata and data chunks, truncations at
//! structural boundaries, zeroed and swapped chunks, inflated shapes - each read by the binary.
//! Every case must exit 0 or 2 with one line naming the file, within the time bound, without a
//! signal and within the memory bound. The full campaign (10,000 cases) is the same script
//! with `--count 10000` (docs/inputs.md).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::common::wu2020;
use crate::python_interop::python;

/// Cases in the CI slice; `CARTSCOPE_FUZZ_SLICE` overrides it.
fn slice() -> u64 {
    std::env::var("CARTSCOPE_FUZZ_SLICE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn a_seeded_slice_of_damaged_inputs_gives_clean_errors_only() {
    let real = wu2020();
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("fuzz.json");
    let count = slice();
    let out = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus.py"))
        .arg("--bin")
        .arg(assert_cmd::cargo::cargo_bin("cartscope"))
        .arg("--work")
        .arg(work.path())
        .args(["--seed", "20261206", "--count", &count.to_string()])
        .args(["--jobs", "2", "--timeout", "60", "--run-every", "20"])
        .arg("--real")
        .arg(&real)
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("no report ({e}): {stderr}")),
    )
    .unwrap();
    let counts = &summary["counts"];
    let n = |k: &str| counts[k].as_u64().unwrap_or(0);
    eprintln!("damaged inputs: {counts}");
    assert!(
        summary["failures"].as_array().unwrap().is_empty(),
        "cases that crashed, hung, used too much memory or gave a bad message:\n{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(summary["cases"].as_u64(), Some(count));
    // Every mutation kind of every base file ran, and the corpus does damage: most cases are
    // rejected, some are still readable (damage confined to values that stay valid).
    let kinds = summary["by_base_and_kind"].as_object().unwrap();
    assert!(kinds.len() >= 40, "{} base/kind pairs", kinds.len());
    let runs = summary["runs"].as_u64().unwrap();
    assert_eq!(
        n("ok") + n("error") + n("caught_crash") + n("caught_hang"),
        runs,
        "{counts}"
    );
    assert!(n("error") * 2 > runs, "most cases are rejected: {counts}");
    assert!(n("ok") > 0, "some damage leaves a readable file: {counts}");
}
