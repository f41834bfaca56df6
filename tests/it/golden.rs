//! Golden tests against scanpy 1.11.5: `cartscope run` on inputs whose scanpy reference run is
//! committed (tests/golden/*.npz, made by tests/golden/regenerate.sh), compared by
//! tests/golden/compare.py with tolerances just above what cartscope measures (each commented
//! there with its measured value): QC totals exact, the same HVG set (one swap at the cutoff at
//! most), the log-normalised X, PCA, variances, kNN graph (recall by cartscope's own search:
//! exact or NN-descent), distances and connectivities, and the dtypes scanpy writes.

use std::path::{Path, PathBuf};

use crate::common::run;
use cartscope::io::ReadOptions;
use cartscope::pipeline::{APPROX_KNN_ABOVE, KnnMethod, RunOptions, RunSummary};

/// The reference script's pipeline: it knows no CAR feature, so the construct competes for
/// the HVGs there (cartscope keeps it out by default).
fn reference_defaults() -> RunOptions {
    let mut o = RunOptions::default();
    o.cart.car_in_hvg = true;
    o
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kNN search a run took, as compare.py's `--knn` names it. cartscope's outputs do not
/// record it, so this follows [`KnnMethod`]'s rule (`auto`: exact on the GPU and up to
/// [`APPROX_KNN_ABOVE`] cells); compare.py holds an exact search to brute force on the run's
/// own X_pca, so a run that took the other path fails there.
fn knn_path(opts: &RunOptions, s: &RunSummary) -> &'static str {
    match opts.knn {
        KnnMethod::Exact => "exact",
        KnnMethod::Approx => "approx",
        KnnMethod::Auto if s.backend == "gpu" || s.n_cells_after_qc <= APPROX_KNN_ABOVE => "exact",
        KnnMethod::Auto => "approx",
    }
}

fn compare(result: &Path, golden: &str, knn: &str) {
    let out = std::process::Command::new(crate::python_interop::python())
        .arg(root().join("tests/golden/compare.py"))
        .arg(result)
        .arg(root().join("tests/golden").join(golden))
        .args(["--knn", knn])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exactly the input tests/golden/regenerate.sh gave scanpy for sim9k_scanpy.npz.
fn simulate_sim9k(path: &Path) {
    let sim = cartscope::simulate::SimOptions {
        cells: 9500,
        genes: 4000,
        seed: 9,
        timepoint: "day30".into(),
        patient: "P02".into(),
        preset: cartscope::simulate::Preset::NonResponder,
        ..Default::default()
    };
    cartscope::simulate::simulate(path, &sim).unwrap();
}

#[test]
fn sample_matches_scanpy_on_the_exact_knn_path() {
    let dir = tempfile::tempdir().unwrap();
    let input = root().join("sample_data/P01_day90.h5ad");
    let opts = RunOptions {
        backend: cartscope::backend::BackendChoice::Cpu,
        ..reference_defaults()
    };
    let s = run(&input, dir.path(), &ReadOptions::default(), &opts).unwrap();
    assert_eq!((s.n_cells_after_qc, s.n_hvg, s.n_pcs), (1857, 2000, 50));
    assert_eq!(knn_path(&opts, &s), "exact");
    compare(
        &dir.path().join("result.h5ad"),
        "P01_day90_scanpy.npz",
        knn_path(&opts, &s),
    );
}

/// The same run on the GPU backend (lavapipe in CI) meets compare.py's GPU tolerances and
/// agrees with the CPU backend: measured on lavapipe, max |X difference| 4.8e-7, top-10 PCA
/// 1 - |r| 8.2e-13, variance_ratio 3.6e-7 relative, the same neighbours (fraction 1.0).
#[test]
fn sample_on_the_gpu_matches_scanpy_and_the_cpu() {
    if std::env::var("CARTSCOPE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1") {
        return;
    }
    let input = root().join("sample_data/P01_day90.h5ad");
    let run_on = |backend| {
        let dir = tempfile::tempdir().unwrap();
        let opts = RunOptions {
            backend,
            ..RunOptions::default()
        };
        let s = run(&input, dir.path(), &ReadOptions::default(), &opts).unwrap();
        assert_eq!(knn_path(&opts, &s), "exact");
        (dir, s)
    };
    let (gdir, g) = run_on(cartscope::backend::BackendChoice::Gpu);
    assert_eq!(g.backend, "gpu");
    assert_eq!(g.fallback_reason, None, "every kernel ran on the GPU");
    assert_eq!((g.n_cells_after_qc, g.n_hvg, g.n_pcs), (1857, 2000, 50));
    compare(
        &gdir.path().join("result.h5ad"),
        "P01_day90_scanpy.npz",
        "exact",
    );
    let (cdir, _) = run_on(cartscope::backend::BackendChoice::Cpu);
    agrees_with_the_cpu(
        &gdir.path().join("result.h5ad"),
        &cdir.path().join("result.h5ad"),
    );
}

/// A GPU run's result against the CPU's on the same input and options: the same HVGs, X within
/// 6e-7, the first ten PCs correlated to 1 - 1e-12, variance ratios within 5e-7 and the same
/// neighbours (fraction >= 0.9995).
fn agrees_with_the_cpu(g: &Path, c: &Path) {
    let code = format!(
        "import warnings; warnings.simplefilter('ignore'); import anndata as ad, numpy as np\n\
         g = ad.read_h5ad('{}'); c = ad.read_h5ad('{}')\n\
         assert (g.var['highly_variable'] == c.var['highly_variable']).all()\n\
         dx = abs(g.X - c.X).max(); print('X', dx); assert dx <= 6e-7, dx\n\
         for i in range(10):\n\
         \x20   r = abs(np.corrcoef(g.obsm['X_pca'][:, i], c.obsm['X_pca'][:, i])[0, 1]); assert 1 - r <= 1e-12, (i, r)\n\
         vr = np.abs(g.uns['pca']['variance_ratio'] / c.uns['pca']['variance_ratio'] - 1).max(); print('vr', vr); assert vr <= 5e-7, vr\n\
         a, b = g.obsp['distances'], c.obsp['distances']\n\
         same = sum(len(set(a[i].indices) & set(b[i].indices)) for i in range(a.shape[0])) / b.nnz; print('knn', same); assert same >= 0.9995, same\n\
         print('ok')",
        g.display(),
        c.display()
    );
    crate::python_interop::run_python(&code);
}

/// The sample on the GPU with every storage binding capped at 128 KiB (the smallest that holds
/// the Gram accumulator of 100 HVGs), so that each kernel splits its work into many chunks
/// (normalize and the moments in batches, the scaled block in batches, the kNN search in 6 x 6
/// slices, UMAP's edges in parts), set through the command line as a user sets it, on the
/// streamed path a million cells take: every kernel still runs on the GPU and the result agrees
/// with the CPU's in-memory run as closely as an uncapped GPU run's does. A bad cap is refused
/// by name.
#[test]
fn sample_on_a_gpu_with_small_bindings_agrees_with_the_cpu() {
    if std::env::var("CARTSCOPE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_on = |backend: &str, cap: &str, extra: &[&str]| {
        let out = dir.path().join(backend);
        let mut cmd = crate::common::cartscope();
        if !cap.is_empty() {
            cmd.env(cartscope::backend::gpu::BINDING_CAP_ENV, cap);
        }
        crate::common::succeeds(
            cmd.args([
                "run",
                "--quiet",
                "--n-top-genes",
                "100",
                "--backend",
                backend,
            ])
            .args(extra)
            .arg(root().join("sample_data/P01_day90.h5ad"))
            .arg("-o")
            .arg(&out),
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["backend"], backend);
        assert_eq!(summary["fallback_reason"], serde_json::Value::Null);
        (
            out.join("result.h5ad"),
            summary["input_passes"].as_u64().unwrap(),
        )
    };
    // The GPU run also takes the path of data that exceed --max-memory, as a million cells do:
    // the input re-read in chunks, the kernels fed chunk by chunk.
    let streamed = ["--max-memory", "1", "--chunk-rows", "300"];
    let (gpu, passes) = run_on("gpu", "131072", &streamed);
    assert_eq!(passes, 4);
    let (cpu, passes) = run_on("cpu", "", &[]);
    assert_eq!(passes, 1);
    agrees_with_the_cpu(&gpu, &cpu);
    let bad = dir.path().join("bad");
    let o = crate::common::cartscope()
        .env(cartscope::backend::gpu::BINDING_CAP_ENV, "12k")
        .args(["run", "--quiet", "--backend", "gpu"])
        .arg(root().join("sample_data/P01_day90.h5ad"))
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CARTSCOPE_GPU_MAX_BINDING must be a number of bytes"),
        "{stderr}"
    );
    assert!(!bad.exists(), "nothing written");
}

#[test]
fn simulated_9500_cells_match_scanpy_and_exact_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sim9k.h5ad");
    simulate_sim9k(&input);
    let out = dir.path().join("out");
    let opts = reference_defaults();
    let s = run(&input, &out, &ReadOptions::default(), &opts).unwrap();
    assert!(
        s.n_cells_after_qc > 8192,
        "exercises scanpy's approximate-kNN regime"
    );
    // Below APPROX_KNN_ABOVE cartscope searches exactly where scanpy takes pynndescent.
    assert_eq!(knn_path(&opts, &s), "exact");
    compare(
        &out.join("result.h5ad"),
        "sim9k_scanpy.npz",
        knn_path(&opts, &s),
    );
}

#[test]
fn real_t_cells_match_scanpy() {
    // 200 T cells of Wu et al. 2020 from the scirpy wheel (BSD-3), fetched by scripts/setup.sh.
    let input = crate::common::wu2020();
    let dir = tempfile::tempdir().unwrap();
    let opts = reference_defaults();
    let s = run(&input, dir.path(), &ReadOptions::default(), &opts).unwrap();
    assert_eq!(s.n_cells_after_qc, 196);
    compare(
        &dir.path().join("result.h5ad"),
        "wu2020_200_scanpy.npz",
        knn_path(&opts, &s),
    );
}

/// Runs the pipeline with an HVG flavor and checks the selection against scanpy's: Jaccard of
/// the selected genes >= `min_jaccard` and the per-gene score (dispersions_norm, or
/// variances_norm for seurat_v3) within `score_tol` (absolute) / relative for seurat_v3.
fn check_hvg_flavor(
    flavor: cartscope::pp::hvg::HvgFlavor,
    golden: &str,
    score_col: &str,
    min_jaccard: f64,
    tol: f64,
) {
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        hvg_flavor: flavor,
        ..reference_defaults()
    };
    run(
        &root().join("sample_data/P01_day90.h5ad"),
        dir.path(),
        &ReadOptions::default(),
        &opts,
    )
    .unwrap();
    let code = format!(
        "import warnings; warnings.simplefilter('ignore'); import anndata as ad, numpy as np\n\
         r = ad.read_h5ad('{}'); z = np.load('{}')\n\
         assert list(r.var_names) == list(z['var_names'])\n\
         a, b = set(np.flatnonzero(r.var['highly_variable'].to_numpy())), set(np.flatnonzero(z['highly_variable']))\n\
         jac = len(a & b) / len(a | b); print('jaccard', jac)\n\
         assert jac >= {min_jaccard}, jac\n\
         ours, ref = r.var['{score_col}'].to_numpy().astype(float), z['score']\n\
         assert np.array_equal(np.isnan(ours), np.isnan(ref)), 'NaN at different genes'\n\
         ok = ~np.isnan(ref)\n\
         d = np.abs(ours - ref)[ok] / (np.abs(ref[ok]) if '{score_col}' == 'variances_norm' else 1.0)\n\
         print('max diff', d.max(), 'of', ok.sum(), 'genes')\n\
         assert d.max() <= {tol}, d.max()\n\
         print('ok')",
        dir.path().join("result.h5ad").display(),
        root().join("tests/golden").join(golden).display()
    );
    crate::python_interop::run_python(&code);
}

#[test]
fn cell_ranger_hvg_flavor_matches_scanpy() {
    check_hvg_flavor(
        cartscope::pp::hvg::HvgFlavor::CellRanger,
        "P01_day90_cell_ranger_hvg.npz",
        "dispersions_norm",
        // The same genes; |d_norm| measured 4.8e-6 (float32 of magnitude ~1-20).
        1.0,
        6e-6,
    );
}

#[test]
fn seurat_v3_hvg_flavor_matches_scanpy_within_loess_tolerance() {
    // Direct LOESS vs skmisc's interpolated surface: measured Jaccard 0.99601 (4 swaps of
    // 2,000) and 0.35 % on the normalised variances (docs/algorithms.md allows 0.99 and 0.8 %).
    check_hvg_flavor(
        cartscope::pp::hvg::HvgFlavor::SeuratV3,
        "P01_day90_seurat_v3_hvg.npz",
        "variances_norm",
        0.996,
        0.004,
    );
}

#[test]
fn nn_descent_path_meets_the_recall_target_on_scanpy_pca() {
    // The approximate search (used above 150,000 cells, forced here) judged by the same golden
    // with the NN-descent bar of compare.py: recall against exact neighbours on scanpy's PCA.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sim9k.h5ad");
    simulate_sim9k(&input);
    let out = dir.path().join("out");
    let opts = RunOptions {
        knn: cartscope::pipeline::KnnMethod::Approx,
        ..reference_defaults()
    };
    let s = run(&input, &out, &ReadOptions::default(), &opts).unwrap();
    assert_eq!(knn_path(&opts, &s), "approx");
    compare(
        &out.join("result.h5ad"),
        "sim9k_scanpy.npz",
        knn_path(&opts, &s),
    );
}
