//! Malformed inputs: exit code 2, one line on stderr naming the file and the offending field,
//! no output left behind, and the input untouched.

use crate::common::{cartscope, fixture};

/// (fixture under bad/, text the message must contain)
const CASES: [(&str, &str); 13] = [
    // Regression: a corrupt variable-length string once reached str::from_utf8_unchecked.
    (
        "invalid_utf8.h5ad",
        "/obs/_index: string 2 is not valid UTF-8",
    ),
    ("no_x.h5ad", "/X: missing"),
    (
        "shape_mismatch.h5ad",
        "/X/indptr: has 25 entries but the shape attribute implies 31",
    ),
    ("index_out_of_range.h5ad", "/X/indices: index 500"),
    ("indptr_decreasing.h5ad", "/X/indptr: is not non-decreasing"),
    ("negative.h5ad", "negative value -3 at cell 'cell001'"),
    ("nan.h5ad", "non-finite value NaN"),
    ("zero_cells.h5ad", "zero cells"),
    ("zero_genes.h5ad", "zero genes"),
    ("truncated.h5ad", "not a readable HDF5 file"),
    ("not_hdf5.h5ad", "not an HDF5 file"),
    (
        "mtx_bad_header",
        "matrix.mtx: header: expected '%%MatrixMarket matrix coordinate",
    ),
    ("mtx_bad_count", "matrix.mtx.gz: entries: header declares"),
];

fn snapshot(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    } else {
        vec![(path.display().to_string(), std::fs::read(path).unwrap())]
    }
}

#[test]
fn malformed_inputs_exit_2_with_one_line() {
    for (name, needle) in CASES {
        let path = fixture(&format!("bad/{name}"));
        let before = snapshot(&path);
        let out = cartscope().arg("info").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line, got {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}: message names the file: {stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{name}: expected '{needle}' in {stderr}"
        );
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
        assert_eq!(snapshot(&path), before, "{name}: input modified");
    }
}

#[test]
fn a_folder_without_a_matrix_is_not_an_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let out = cartscope().arg("info").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds no matrix.mtx"), "{stderr}");
}

#[test]
fn missing_path_and_bad_usage_exit_2() {
    let out = cartscope()
        .args(["info", "/no/such/file.h5ad"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.h5ad"));
    let out = cartscope().args(["info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    let out = cartscope()
        .args(["info", "--layer", "nope"])
        .arg(fixture("layers_raw.h5ad"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/layers/nope: missing (layers present: counts)")
    );
}

#[test]
fn non_integer_counts_need_the_flag_and_leave_no_partial_output() {
    let bad = fixture("bad/non_integer.h5ad");
    // info reports non-integer data rather than failing on it.
    let out = cartscope()
        .args(["info", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["raw_counts"], false);
    // convert expects counts.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.h5ad");
    let out = cartscope()
        .arg("convert")
        .arg(&bad)
        .arg("-o")
        .arg(&dest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-integer value 2.5"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no output and no temporary file left"
    );
    // The flag turns the error into a warning.
    let out = cartscope()
        .arg("convert")
        .arg(&bad)
        .arg("-o")
        .arg(&dest)
        .arg("--allow-non-integer")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-integer"));
    assert!(dest.is_file());
}

#[test]
fn negative_values_are_accepted_with_warning_on_request() {
    let out = cartscope()
        .args(["info", "--allow-non-integer", "--json"])
        .arg(fixture("bad/negative.h5ad"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["values"]["n_negative"], 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 negative"));
}

#[test]
fn version_and_help_follow_clap_conventions() {
    let out = cartscope().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("cartscope {}", env!("CARGO_PKG_VERSION"))
    );
    let out = cartscope().arg("--help").output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("info"));
}
