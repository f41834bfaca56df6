//! `cartscope run` through the binary: outputs, the config file and its precedence, and
//! failures that leave nothing behind.

use crate::common::cartscope;

fn sample() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/P01_infusion.h5ad")
}

#[test]
fn run_writes_result_summary_and_the_config_used() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("in.toml");
    std::fs::write(&cfg, "n_top_genes = 1000\nn_pcs = 20\nmin_cells = 5\n").unwrap();
    let out = dir.path().join("out");
    let o = cartscope()
        .args([
            "run",
            "--backend",
            "cpu",
            "--quiet",
            "--n-pcs",
            "30",
            "--keep-counts",
            "--config",
        ])
        .arg(&cfg)
        .arg(sample())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
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
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["backend"], "cpu");
    assert_eq!(summary["n_hvg"], 1000);
    assert_eq!(summary["n_pcs"], 30);
    assert!(summary["peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["n_cells_in"], 2000);
    let mut src =
        cartscope::io::CountSource::open(&out.join("result.h5ad"), &Default::default()).unwrap();
    assert_eq!(
        src.n_obs(),
        summary["n_cells_after_qc"].as_u64().unwrap() as usize
    );
    // The written config reproduces the run.
    let again = dir.path().join("again");
    let o = cartscope()
        .args(["run", "--quiet", "--config"])
        .arg(out.join("config.toml"))
        .arg(sample())
        .arg("-o")
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let first = src.read_all().unwrap();
    let second = cartscope::io::CountSource::open(&again.join("result.h5ad"), &Default::default())
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(first, second);
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
        (vec!["--min-genes".into(), "100000".into()], "too few cells"),
    ];
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
        assert!(
            !out.join("result.h5ad").exists(),
            "{extra:?}: no result left"
        );
    }
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
    let o = without_gpu(&mut cartscope())
        .args(["run", "--quiet", "--backend", "auto", "--n-pcs", "10"])
        .arg(sample())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
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
    let o = without_gpu(&mut cartscope())
        .args(["devices", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
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
        let o = cartscope()
            .args(["run", "--quiet"])
            .args(&extra)
            .arg(sample())
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
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
}
