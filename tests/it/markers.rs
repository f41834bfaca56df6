//! Marker genes against scanpy: cartscope's `uns["rank_genes_groups"]` on the simulated
//! sample and on 200 real T cells, for every method, compared by
//! `tests/golden/compare_markers.py` with scanpy 1.11.5's `rank_genes_groups` run on the same
//! result.h5ad (same X, same Leiden clusters): identical top-100 gene order per cluster,
//! scores and log fold changes within 1e-5 relative, adjusted p-values within 1e-6.

use std::path::{Path, PathBuf};

use cartscope::pipeline::RunOptions;
use cartscope::tl::markers::MarkerMethod;

use crate::common::wu2020;
use crate::python_interop::python;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs cartscope (CPU, no UMAP) with `method` and checks its markers against scanpy's.
fn check(input: &Path, method: MarkerMethod, tie_correct: bool) {
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        backend: cartscope::backend::BackendChoice::Cpu,
        umap: false,
        markers_method: method,
        markers_tie_correct: tie_correct,
        ..Default::default()
    };
    cartscope::Run::new(input, dir.path())
        .options(opts)
        .execute()
        .unwrap();
    let mut cmd = std::process::Command::new(python());
    cmd.arg(root().join("tests/golden/compare_markers.py"))
        .arg(dir.path().join("result.h5ad"));
    if tie_correct {
        cmd.arg("--tie-correct");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{method:?} tie_correct {tie_correct} on {}: {stdout}\n{}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn t_test_matches_scanpy_on_the_sample() {
    check(
        &root().join("sample_data/P01_day90.h5ad"),
        MarkerMethod::TTest,
        false,
    );
}

#[test]
fn overestimated_variance_t_test_matches_scanpy_on_the_sample() {
    check(
        &root().join("sample_data/P01_day90.h5ad"),
        MarkerMethod::TTestOverestimVar,
        false,
    );
}

#[test]
fn wilcoxon_with_tie_correction_matches_scanpy_on_the_sample() {
    check(
        &root().join("sample_data/P01_day90.h5ad"),
        MarkerMethod::Wilcoxon,
        true,
    );
}

#[test]
fn wilcoxon_and_t_test_match_scanpy_on_real_t_cells() {
    check(&wu2020(), MarkerMethod::Wilcoxon, false);
    check(&wu2020(), MarkerMethod::TTest, false);
}
