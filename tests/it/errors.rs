//! Malformed inputs: exit code 2, one line on stderr naming the file and the offending field,
//! no output left behind, and the input untouched.

use crate::common::{cartscope, fixture};

/// (fixture under bad/, text the message must contain). docs/inputs.md lists the same catalogue.
const CASES: [(&str, &str); 43] = [
    // Regression: a corrupt variable-length string once reached str::from_utf8_unchecked.
    (
        "invalid_utf8.h5ad",
        "/obs/_index: string 2 is not valid UTF-8",
    ),
    // .h5ad: the file and its structure.
    ("truncated.h5ad", "not a readable HDF5 file"),
    ("not_hdf5.h5ad", "not an HDF5 file"),
    ("no_x.h5ad", "/X: missing"),
    ("no_obs.h5ad", "/obs: missing"),
    ("zero_cells.h5ad", "zero cells"),
    ("zero_genes.h5ad", "zero genes"),
    ("obs_fewer_rows.h5ad", "/X: has 6 rows but /obs has 5 cells"),
    (
        "var_more_genes.h5ad",
        "/X: has 5 columns but /var has 7 genes",
    ),
    // .h5ad: the sparse matrix.
    (
        "shape_mismatch.h5ad",
        "/X/indptr: has 25 entries but the shape attribute implies 31",
    ),
    ("index_out_of_range.h5ad", "/X/indices: index 500"),
    ("indptr_decreasing.h5ad", "/X/indptr: is not non-decreasing"),
    (
        "indptr_start_nonzero.h5ad",
        "/X/indptr: must start at 0, starts at 1",
    ),
    (
        "indptr_end_mismatch.h5ad",
        "/X/indptr: ends at 25 but data holds 22 entries",
    ),
    (
        "indices_data_length.h5ad",
        "/X/indices: has 21 entries but data has 22",
    ),
    (
        "dense_3d.h5ad",
        "/X: dense matrix must be 2-d, found shape [6, 5, 1]",
    ),
    (
        "unsupported_encoding.h5ad",
        "/X: unsupported matrix encoding 'coo_matrix'",
    ),
    // .h5ad: values that cannot be counts.
    ("negative.h5ad", "negative value -3 at cell 'cell001'"),
    ("nan.h5ad", "non-finite value NaN"),
    // .h5ad: obs/var dataframes.
    (
        "obs_index_duplicate.h5ad",
        "/obs/_index: cell name 'cell001' appears at rows 1 and 4",
    ),
    (
        "obs_index_empty_name.h5ad",
        "/obs/_index: cell name at row 2 is empty",
    ),
    (
        "obs_index_attr_empty.h5ad",
        "/obs attribute '_index': is empty",
    ),
    ("obs_index_missing.h5ad", "/obs/barcode: missing"),
    (
        "categorical_code_out_of_range.h5ad",
        "/obs/sample/codes: code 7 at row 3 out of range for 3 categories",
    ),
    (
        "categorical_duplicate_categories.h5ad",
        "/obs/sample/categories: category 'day14' appears twice",
    ),
    (
        "string_column_wrong_length.h5ad",
        "/obs/batch_label: has 5 rows but the index /obs/_index has 6",
    ),
    (
        "nullable_mask_length.h5ad",
        "/obs/nullable_int/mask: has 5 entries but /obs/nullable_int/values has 6",
    ),
    // 10x HDF5.
    (
        "tenx_barcodes_count.h5",
        "/matrix/barcodes: has 4 entries but shape implies 5",
    ),
    (
        "tenx_features_count.h5",
        "/matrix/features/name: has 5 entries but shape implies 4",
    ),
    (
        "tenx_duplicate_barcode.h5",
        "/matrix/barcodes: cell name 'ACGTACGT0001-1' appears at rows 1 and 3",
    ),
    // 10x MTX directories.
    (
        "mtx_bad_header",
        "matrix.mtx: header: expected '%%MatrixMarket matrix coordinate",
    ),
    ("mtx_empty_matrix", "matrix.mtx: header: empty file"),
    ("mtx_bad_count", "matrix.mtx.gz: entries: header declares"),
    (
        "mtx_zero_coordinate",
        "matrix.mtx: line 5: entry (0, 2): coordinates start at 1",
    ),
    (
        "mtx_out_of_range",
        "matrix.mtx: line 5: entry (4, 2) outside the declared 3 x 4 matrix",
    ),
    (
        "mtx_duplicate_entry",
        "matrix.mtx: entries: entry (2, 2) is listed more than once",
    ),
    (
        "mtx_malformed_entry",
        "matrix.mtx: line 6: malformed entry '1 4 many'",
    ),
    (
        "mtx_barcodes_count",
        "matrix.mtx: line 2: the size line declares 4 barcodes but barcodes.tsv lists 3",
    ),
    (
        "mtx_features_count",
        "matrix.mtx: line 2: the size line declares 3 features but features.tsv lists 4",
    ),
    (
        "mtx_duplicate_barcode",
        "barcodes.tsv: column 1: cell name 'b1' appears at rows 1 and 3",
    ),
    (
        "mtx_missing_barcodes",
        "barcodes.tsv: missing: no barcodes.tsv[.gz] found",
    ),
    (
        "mtx_truncated_gz",
        "matrix.mtx.gz: line 49: the file ends in the middle of its gzip stream (truncated)",
    ),
    (
        "mtx_truncated_barcodes_gz",
        "barcodes.tsv.gz: line 19: the file ends in the middle of its gzip stream (truncated)",
    ),
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

/// Files that other options read: (option of `run`, fixture under bad/, text the message must
/// contain). Each is rejected before any analysis, so the input is a small valid fixture.
const OPTION_CASES: [(&str, &str, &str); 4] = [
    (
        "--gene-sets",
        "gmt_set_without_genes.gmt",
        "line 2: set 'tcell' lists no genes",
    ),
    (
        "--gene-sets",
        "gmt_no_gene_column.gmt",
        "line 1: expected NAME<TAB>DESCRIPTION<TAB>GENE...",
    ),
    (
        "--config",
        "config_wrong_type.toml",
        "line 1, key n_top_genes: invalid type: string \"2000\", expected usize",
    ),
    (
        "--config",
        "config_wrong_type_in_table.toml",
        "line 4, key cart.car_min_counts: invalid type: floating point `1.5`, expected u32",
    ),
];

#[test]
fn bad_gene_set_and_config_files_exit_2_with_one_line_and_no_output() {
    let input = fixture("csr_f32_gzip.h5ad");
    for (option, name, needle) in OPTION_CASES {
        let path = fixture(&format!("bad/{name}"));
        let before = snapshot(&path);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let o = cartscope()
            .args(["run", "--quiet", "--backend", "cpu", option])
            .arg(&path)
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8(o.stderr).unwrap();
        assert_eq!(o.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: names the file: {stderr}");
        assert!(
            stderr.contains(needle),
            "{name}: expected '{needle}' in {stderr}"
        );
        assert!(o.stdout.is_empty(), "{name}: nothing on stdout");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{name}: no output folder and no temporary left"
        );
        assert_eq!(snapshot(&path), before, "{name}: input modified");
    }
}

/// A manifest saved by a spreadsheet program (UTF-8 byte-order mark, CRLF line ends) is not a
/// bad input: the header's first column is `sample_id` and no value keeps a carriage return.
#[test]
fn a_manifest_with_a_bom_and_crlf_line_ends_is_accepted() {
    let text = std::fs::read(fixture("manifest_bom_crlf.csv")).unwrap();
    assert!(
        text.starts_with("\u{feff}".as_bytes()),
        "the fixture has its BOM"
    );
    assert!(
        text.windows(2).filter(|w| w == b"\r\n").count() == 2,
        "the fixture has CRLF line ends"
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("manifest.csv"), &text).unwrap();
    cartscope()
        .args([
            "simulate", "--cells", "600", "--genes", "800", "--seed", "3",
        ])
        .args(["--timepoint", "infusion", "--sample", "S1", "-o"])
        .arg(d.join("sample.h5ad"))
        .assert()
        .success();
    let out = d.join("out");
    let o = cartscope()
        .arg("batch")
        .arg(d.join("manifest.csv"))
        .arg("-o")
        .arg(&out)
        .args(["--backend", "cpu", "--no-report", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = std::fs::read_to_string(out.join("batch_summary.csv")).unwrap();
    assert!(
        !summary.contains('\r') && !summary.contains('\u{feff}'),
        "{summary:?}"
    );
    let mut lines = summary.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row = lines.next().unwrap();
    let value = |col: &str| -> String {
        let i = header.iter().position(|h| *h == col).unwrap_or_else(|| {
            panic!("batch_summary.csv has no column {col}: {header:?}");
        });
        cartscope::batch::manifest::split_line(row, ',').unwrap()[i].clone()
    };
    assert_eq!(value("sample_id"), "S1");
    assert_eq!(value("status"), "ok");
    assert_eq!(value("patient"), "P7");
    assert_eq!(value("timepoint"), "infusion");
    assert_eq!(value("day"), "0");
    assert_eq!(value("tissue"), "blood, peripheral");
    assert!(lines.next().is_none(), "one sample: {summary}");
}

#[test]
fn control_characters_quoted_from_a_file_stay_on_the_error_line() {
    // Found by the damaged-input campaign: a flipped byte made an MTX entry hold a vertical
    // tab, which the quoted line carried into stderr as a second "line".
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("features.tsv"), "E1\tA\nE2\tB\n").unwrap();
    std::fs::write(dir.path().join("barcodes.tsv"), "b1\nb2\n").unwrap();
    std::fs::write(
        dir.path().join("matrix.mtx"),
        "%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 3\n2\u{b}2\u{2028}x 4\n",
    )
    .unwrap();
    let out = cartscope().arg("info").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains("line 4: malformed entry '2\\u{b}2\\u{2028}x 4'"),
        "{stderr:?}"
    );
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
