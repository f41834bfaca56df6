//! `cartscope run` through the binary: outputs, the config file and its precedence, and
//! failures that leave nothing behind.

use crate::common::{cartscope, succeeds};

fn sample() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/P01_infusion.h5ad")
}

#[test]
fn run_writes_result_summary_and_the_config_used() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("in.toml");
    std::fs::write(&cfg, "n_top_genes = 1000\nn_pcs = 20\nmin_cells = 5\n").unwrap();
    let out = dir.path().join("out");
    succeeds(
        cartscope()
            .args([
                "run",
                "--backend",
                "cpu",
                "--quiet",
                "--n-pcs",
                "30",
                "--keep-counts",
                "--no-umap",
                "--resolution",
                "0.8",
                "--seed",
                "3",
                "--config",
            ])
            .arg(&cfg)
            .arg(sample())
            .arg("-o")
            .arg(&out),
    );
    let used: toml::Value =
        toml::from_str(&std::fs::read_to_string(out.join("config.toml")).unwrap()).unwrap();
    assert_eq!(
        used["n_top_genes"].as_integer(),
        Some(1000),
        "from the config file"
    );
    assert_eq!(
        used["n_pcs"].as_integer(),
        Some(30),
        "the flag wins over the file"
    );
    assert_eq!(used["min_cells"].as_integer(), Some(5));
    assert_eq!(used["keep_counts"].as_bool(), Some(true));
    assert_eq!(used["cluster"].as_bool(), Some(true));
    assert_eq!(used["umap"].as_bool(), Some(false), "--no-umap");
    assert_eq!(used["resolution"].as_float(), Some(0.8));
    assert_eq!(used["seed"].as_integer(), Some(3));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["backend"], "cpu");
    assert_eq!(summary["n_hvg"], 1000);
    assert_eq!(summary["n_pcs"], 30);
    assert!(summary["peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["n_cells_in"], 2000);
    let stages: Vec<&str> = summary["stage_seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "read+qc",
            "filter",
            "normalize+log1p",
            "hvg",
            "cart",
            "scale",
            "pca",
            "neighbors",
            "leiden",
            "markers",
            "write"
        ]
    );
    let mut src =
        cartscope::io::CountSource::open(&out.join("result.h5ad"), &Default::default()).unwrap();
    assert_eq!(
        src.n_obs(),
        summary["n_cells_after_qc"].as_u64().unwrap() as usize
    );
    // The written config reproduces the run.
    let again = dir.path().join("again");
    succeeds(
        cartscope()
            .args(["run", "--quiet", "--config"])
            .arg(out.join("config.toml"))
            .arg(sample())
            .arg("-o")
            .arg(&again),
    );
    let first = src.read_all().unwrap();
    let second = cartscope::io::CountSource::open(&again.join("result.h5ad"), &Default::default())
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(first, second);
    let labels = |p: &std::path::Path| {
        cartscope::io::CountSource::open(&p.join("result.h5ad"), &Default::default())
            .unwrap()
            .obs
            .column("leiden")
            .and_then(|c| c.as_strings())
            .unwrap()
    };
    assert_eq!(labels(&out), labels(&again), "same seed, same clusters");
}

#[test]
fn run_writes_leiden_and_umap_as_scanpy_does() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    succeeds(
        cartscope()
            .args(["run", "--backend", "cpu", "--quiet"])
            .arg(sample())
            .arg("-o")
            .arg(&out),
    );
    crate::python_interop::run_python(&format!(
        r#"
import anndata as ad, numpy as np
a = ad.read_h5ad(r"{}")
l = a.obs["leiden"]
assert l.dtype == "category", l.dtype
cats = list(l.cat.categories)
assert cats == [str(i) for i in range(len(cats))], cats
assert set(l.cat.codes) == set(range(len(cats)))
sizes = l.value_counts(sort=False).reindex(cats).to_numpy()
assert (np.diff(sizes) <= 0).all(), ("cluster '0' is the largest, then by size", sizes)
p = a.uns["leiden"]["params"]
assert (p["resolution"], p["random_state"], p["n_iterations"]) == (1.0, 0, 2), p
assert 0 < a.uns["leiden"]["modularity"] < 1
e = a.obsm["X_umap"]
assert e.dtype == np.float32 and e.shape == (a.n_obs, 2) and np.isfinite(e).all()
assert abs(a.uns["umap"]["params"]["a"] - 0.58303) < 1e-4
assert abs(a.uns["umap"]["params"]["b"] - 1.33417) < 1e-4
"#,
        out.join("result.h5ad").display()
    ));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let stages: Vec<&str> = summary["stage_seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert!(
        stages.ends_with(&["neighbors", "leiden", "umap", "markers", "write"]),
        "{stages:?}"
    );
}

#[test]
fn bad_options_and_inputs_exit_2_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "n_top_genez = 10\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--config".into(), cfg.display().to_string()],
            "unknown field",
        ),
        (vec!["--n-neighbors".into(), "1".into()], "--n-neighbors"),
        (vec!["--resolution".into(), "0".into()], "--resolution"),
        (
            vec!["--umap-min-dist".into(), "2".into()],
            "--umap-min-dist",
        ),
        (vec!["--min-genes".into(), "100000".into()], "too few cells"),
    ];
    let missing = dir.path().join("missing.h5ad");
    let o = cartscope()
        .arg("run")
        .arg(&missing)
        .arg("-o")
        .arg(dir.path().join("out_missing"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.h5ad"));
    assert!(!dir.path().join("out_missing").exists());
    for (k, (extra, needle)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("out{k}"));
        let o = cartscope()
            .arg("run")
            .args(&extra)
            .arg(sample())
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!out.exists(), "{extra:?}: no output folder left");
    }
    // A folder that existed keeps what it held, and gains nothing.
    let out = dir.path().join("existing");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = cartscope()
        .args(["run", "--min-genes", "100000"])
        .arg(sample())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("notes.txt")]);
}

/// The Vulkan loader sees no driver: wgpu finds no adapter at all.
fn without_gpu(cmd: &mut assert_cmd::Command) -> &mut assert_cmd::Command {
    cmd.env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
}

#[test]
fn backend_gpu_without_an_adapter_fails_cleanly_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpu");
    let o = without_gpu(&mut cartscope())
        .args(["run", "--quiet", "--backend", "gpu"])
        .arg(sample())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no GPU adapter"), "{stderr}");
    assert!(!out.exists(), "nothing written");
    let out = dir.path().join("auto");
    succeeds(
        without_gpu(&mut cartscope())
            .args(["run", "--quiet", "--backend", "auto", "--n-pcs", "10"])
            .arg(sample())
            .arg("-o")
            .arg(&out),
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["backend"], "cpu");
    assert!(
        summary["fallback_reason"]
            .as_str()
            .is_some_and(|r| r.contains("no GPU adapter")),
        "{summary}"
    );
}

#[test]
fn devices_lists_adapters_as_json() {
    let o = succeeds(without_gpu(&mut cartscope()).args(["devices", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(0), "no driver, no adapter");
    if std::env::var("CARTSCOPE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1") {
        return;
    }
    let o = cartscope().args(["devices", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let first = &v[0];
    assert!(first["name"].is_string(), "an adapter is listed: {v}");
    assert!(first["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
    assert!(first["driver"].is_string());
}

#[test]
fn re_reading_the_file_gives_the_in_memory_result() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("mem"), dir.path().join("file"));
    for (out, extra) in [
        (&a, vec![]),
        (&b, vec!["--max-memory", "1", "--chunk-rows", "300"]),
    ] {
        succeeds(
            cartscope()
                .args(["run", "--quiet"])
                .args(&extra)
                .arg(sample())
                .arg("-o")
                .arg(out),
        );
    }
    let read = |p: &std::path::Path| {
        let mut s =
            cartscope::io::CountSource::open(&p.join("result.h5ad"), &Default::default()).unwrap();
        (s.read_all().unwrap(), s.obs.clone(), s.var.clone())
    };
    let (xa, obs_a, var_a) = read(&a);
    let (xb, obs_b, var_b) = read(&b);
    assert_eq!(xa, xb, "X");
    assert_eq!(obs_a, obs_b);
    assert_eq!(var_a, var_b);
    let pca = |p: &std::path::Path| -> Vec<f32> {
        let f = hdf5::File::open(p.join("result.h5ad")).unwrap();
        f.dataset("obsm/X_pca").unwrap().read_raw::<f32>().unwrap()
    };
    let (pa, pb) = (pca(&a), pca(&b));
    let max_diff = pa
        .iter()
        .zip(&pb)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        max_diff < 1e-4,
        "X_pca differs by {max_diff} (only the summation order of the Gram differs)"
    );
    // The read, then one pass each for the HVGs, the CAR-T scores (which also keep the HVG
    // block for PCA and stream X out) and the marker genes.
    let passes = |p: &std::path::Path| {
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.join("summary.json")).unwrap()).unwrap();
        s["input_passes"].as_u64().unwrap()
    };
    assert_eq!((passes(&a), passes(&b)), (1, 4));
}

/// Tiny sizes for `cartscope bench`.
const TINY_BENCH: [&str; 18] = [
    "--cells",
    "300",
    "--genes",
    "400",
    "--nnz-per-cell",
    "40",
    "--hvg",
    "64",
    "--chunk-rows",
    "128",
    "--knn-points",
    "200",
    "--dim",
    "8",
    "--k",
    "5",
    "--umap-epochs",
    "20",
];

#[test]
fn bench_reports_host_times_and_device_times_where_the_device_has_timestamps() {
    // The CPU: host times only, the fields kept, the device ones null, the reason given.
    let o = succeeds(
        cartscope()
            .args(["bench", "--backend", "cpu", "--json"])
            .args(TINY_BENCH),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["device_timing"], false);
    assert_eq!(
        v["device_timing_unavailable"],
        "the cpu backend has no device timer"
    );
    let k = v["kernels"].as_array().unwrap();
    assert_eq!(k.len(), 6);
    assert_eq!(k[5]["kernel"], "umap_20_epochs");
    for r in k {
        assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["gb_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["device_seconds"].is_null(), "{r}");
        assert!(r["device_gb_per_s"].is_null(), "{r}");
    }
    let o = cartscope()
        .args(["bench", "--backend", "cpu"])
        .args(TINY_BENCH)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("device timing: unavailable"), "{text}");
    if std::env::var("CARTSCOPE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1") {
        return;
    }
    // The GPU (lavapipe in CI): both times where the adapter has timestamp queries.
    let o = cartscope().args(["devices", "--json"]).output().unwrap();
    let devices: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let timestamps = devices[0]["timestamp_query"].as_bool().unwrap();
    let o = succeeds(
        cartscope()
            .args(["bench", "--backend", "gpu"])
            .args(TINY_BENCH),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!("{text}");
    if timestamps {
        assert!(text.contains("device ms"), "{text}");
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("normalize_log1p"))
            .unwrap()
            .split_whitespace()
            .collect();
        let device_ms: f64 = row[2].parse().unwrap();
        assert!(device_ms > 0.0, "{text}");
    } else {
        eprintln!(
            "no timestamp queries on {}: host times only",
            devices[0]["name"]
        );
        assert!(text.contains("device timing: unavailable"), "{text}");
    }
}

/// A crash inside the C library while reading (injected with CARTSCOPE_TEST_FAULT where the
/// input is opened) is one line naming the file and element, exit 2, and no output; `info`
/// says the same.
#[test]
fn a_crash_in_the_hdf5_library_is_one_line_exit_2_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("damaged.h5ad");
    std::fs::copy(sample(), &input).unwrap();
    for (fault, signal) in [("segv", "SIGSEGV"), ("abort", "SIGABRT")] {
        let out = dir.path().join(format!("out_{fault}"));
        let expected = format!(
            "error: {}: the HDF5 library crashed ({signal}) while reading /injected (the file is damaged or not a valid HDF5 file)\n",
            input.display()
        );
        let run = ["run", "--backend", "cpu", "--quiet", "-o"];
        for args in [&run[..], &["info"]] {
            let mut cmd = cartscope();
            cmd.args(args);
            if args[0] == "run" {
                cmd.arg(&out);
            }
            let o = cmd
                .arg(&input)
                .env("CARTSCOPE_TEST_FAULT", format!("damaged.h5ad:{fault}"))
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(2), "{args:?} {fault}");
            assert_eq!(String::from_utf8_lossy(&o.stderr), expected, "{args:?}");
            assert!(o.stdout.is_empty());
        }
        assert!(
            !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
            "a crashed run left output in {}",
            out.display()
        );
    }
}

/// A read stuck inside libhdf5 (an endless loop on damaged metadata, burning CPU) ends after
/// the stall bound with one line and exit 2; a metadata-only access (an attribute) after a
/// thirtieth of it, at least 1 s. A read that waits without burning CPU (a stalled disk) is
/// never ended by the watch.
#[test]
fn a_read_stuck_in_the_hdf5_library_ends_after_the_stall_bound() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("looping.h5ad");
    std::fs::copy(sample(), &input).unwrap();
    for (fault, bound, element, waited) in [
        ("spin", "3", "/injected", 3.0),
        ("spin-attribute", "60", "/injected attribute", 2.0),
    ] {
        let started = std::time::Instant::now();
        let o = cartscope()
            .arg("info")
            .arg(&input)
            .env("CARTSCOPE_TEST_FAULT", format!("looping.h5ad:{fault}"))
            .env("CARTSCOPE_HDF5_STALL_SECONDS", bound)
            .output()
            .unwrap();
        let took = started.elapsed().as_secs_f64();
        assert_eq!(o.status.code(), Some(2), "{fault}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            format!(
                "error: {}: the HDF5 library made no progress for {} s while reading {element} (the file is damaged or not a valid HDF5 file; CARTSCOPE_HDF5_STALL_SECONDS sets this bound)\n",
                input.display(),
                waited as u64
            )
        );
        assert!(
            took >= waited && took < waited + 20.0,
            "{fault}: ended after {took:.1} s"
        );
    }
    // Waiting (sleeping) inside the guard for twice the bound: still running, not ended.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cartscope"))
        .arg("info")
        .arg(&input)
        .env("CARTSCOPE_TEST_FAULT", "looping.h5ad:hang")
        .env("CARTSCOPE_HDF5_STALL_SECONDS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(5));
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "a waiting read was ended by the stall watch");
}

/// Temporary files left by a run that was killed or crashed mid-write (`.NAME.partial-PID` of
/// a process that no longer runs) are removed by the next run into the folder; those of a live
/// process stay.
#[test]
fn the_next_run_removes_temporary_files_of_a_killed_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = gone.id();
    let stale = [
        format!(".result.h5ad.partial-{dead}"),
        format!(".summary.json.partial-{dead}"),
    ];
    for name in &stale {
        std::fs::write(out.join(name), b"half").unwrap();
    }
    let live = format!(".result.h5ad.partial-{}", std::process::id());
    std::fs::write(out.join(&live), b"still being written").unwrap();
    succeeds(
        cartscope()
            .args([
                "run",
                "--backend",
                "cpu",
                "--quiet",
                "--no-report",
                "--no-umap",
            ])
            .arg(sample())
            .arg("-o")
            .arg(&out),
    );
    for name in &stale {
        assert!(!out.join(name).exists(), "{name} left behind");
    }
    assert!(
        out.join(&live).is_file(),
        "a live process's file was removed"
    );
    assert!(out.join("result.h5ad").is_file());
}
