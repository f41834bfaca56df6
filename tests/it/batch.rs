//! `cartscope batch` and `cartscope aggregate`: a bad manifest is exit code 2 with nothing
//! written; a corrupt and a missing sample are recorded as failed (exit code 3) while the
//! others complete with exactly the numbers of single `cartscope run`s; persistence.csv
//! recomputed here from each sample's result.h5ad obs; batch_summary.parquet equal to
//! batch_summary.csv; a batch killed mid-run leaves no
//! unfinished sample looking complete and `--resume` redoes only what was unfinished.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cartscope::batch::manifest::split_line;
use cartscope::io::{Column, CountSource, Frame, ReadOptions};

use crate::common::cartscope;

fn simulate(dir: &Path, name: &str, seed: &str, timepoint: &str) -> PathBuf {
    let out = dir.join(format!("{name}.h5ad"));
    cartscope()
        .args([
            "simulate", "--cells", "1500", "--genes", "1000", "--seed", seed,
        ])
        .args(["--timepoint", timepoint, "--sample", name, "-o"])
        .arg(&out)
        .assert()
        .success();
    out
}

/// Rows of a CSV as maps from column to value.
fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = split_line(lines.next().unwrap(), ',').unwrap();
    lines
        .map(|l| {
            let f = split_line(l, ',').unwrap();
            assert_eq!(f.len(), header.len(), "{l}");
            header.iter().cloned().zip(f).collect()
        })
        .collect()
}

fn num(row: &BTreeMap<String, String>, col: &str) -> f64 {
    row.get(col)
        .unwrap_or_else(|| panic!("column {col}"))
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?}", row[col]))
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-12 * b.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

fn obs(result: &Path) -> Frame {
    CountSource::open(result, &ReadOptions::default())
        .unwrap()
        .obs
}

fn bools(f: &Frame, name: &str) -> Vec<bool> {
    match f.column(name) {
        Some(Column::Bool(v)) => v.clone(),
        other => panic!("obs {name}: {other:?}"),
    }
}

fn strings(f: &Frame, name: &str) -> Vec<String> {
    f.column(name)
        .and_then(Column::as_strings)
        .unwrap_or_else(|| panic!("obs {name}"))
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// batch_summary.parquet read back with polars against batch_summary.csv: the same columns in
/// the same order, the same rows; text columns equal to the CSV fields, numeric columns float64
/// with nulls exactly where the CSV field is empty.
fn assert_parquet_matches_csv(out: &Path) {
    use polars::prelude::{DataType, ParquetReader, SerReader};
    let text = std::fs::read_to_string(out.join("batch_summary.csv")).unwrap();
    let header = split_line(text.lines().next().unwrap(), ',').unwrap();
    let rows = read_csv(&out.join("batch_summary.csv"));
    let file = std::fs::File::open(out.join("batch_summary.parquet")).unwrap();
    let df = ParquetReader::new(file).finish().unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, header);
    assert_eq!(df.height(), rows.len());
    for name in &header {
        let c = df.column(name).unwrap();
        match c.dtype() {
            DataType::String => {
                let ca = c.str().unwrap();
                let got: Vec<&str> = (0..ca.len()).map(|i| ca.get(i).unwrap()).collect();
                let want: Vec<&str> = rows.iter().map(|r| r[name].as_str()).collect();
                assert_eq!(got, want, "{name}");
            }
            DataType::Float64 => {
                let ca = c.f64().unwrap();
                let got: Vec<Option<f64>> = (0..ca.len()).map(|i| ca.get(i)).collect();
                let want: Vec<Option<f64>> = rows
                    .iter()
                    .map(|r| (!r[name].is_empty()).then(|| num(r, name)))
                    .collect();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.map(f64::to_bits), w.map(f64::to_bits), "{name}");
                }
            }
            other => panic!("{name}: {other}"),
        }
    }
    for name in ["sample_id", "status", "error", "patient", "car_feature"] {
        assert_eq!(
            df.column(name).unwrap().dtype(),
            &DataType::String,
            "{name}"
        );
    }
    for name in ["day", "n_cells_after_qc", "car_positive_fraction"] {
        assert_eq!(
            df.column(name).unwrap().dtype(),
            &DataType::Float64,
            "{name}"
        );
    }
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

const FAST: [&str; 4] = ["--backend", "cpu", "--no-report", "--quiet"];

#[test]
fn batch_isolates_failures_matches_single_runs_and_recomputes_persistence() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = simulate(d, "A", "1", "infusion");
    let b = simulate(d, "B", "2", "day28");
    std::fs::write(
        d.join("corrupt.h5ad"),
        b"\x89HDF\r\n\x1a\nthis is not a matrix",
    )
    .unwrap();
    std::fs::write(
        d.join("manifest.csv"),
        "sample_id,path,patient,timepoint,day,tissue\n\
         A,A.h5ad,P1,infusion,0,product\n\
         B,B.h5ad,P1,day28,28,\"blood, peripheral\"\n\
         C,corrupt.h5ad,P2,infusion,0,product\n\
         D,missing.h5ad,P2,day28,28,blood\n",
    )
    .unwrap();
    let out = d.join("out");
    let r = cartscope()
        .arg("batch")
        .arg(d.join("manifest.csv"))
        .arg("-o")
        .arg(&out)
        .args(["--jobs", "2"])
        .args(FAST)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("2 of 4 samples failed"), "{stderr}");

    // The failures are recorded, the others complete with markers.
    let rows = read_csv(&out.join("batch_summary.csv"));
    assert_parquet_matches_csv(&out);
    let status: Vec<&str> = rows.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(status, ["ok", "ok", "failed", "failed"]);
    assert!(rows[2]["error"].contains("corrupt.h5ad"), "{:?}", rows[2]);
    assert!(rows[3]["error"].contains("missing.h5ad"), "{:?}", rows[3]);
    assert_eq!(rows[1]["tissue"], "blood, peripheral");
    assert_eq!(rows[1]["day"], "28");
    for id in ["C", "D"] {
        assert!(!out.join("samples").join(id).exists());
        assert!(out.join(format!("samples/{id}.error.txt")).is_file());
    }
    for id in ["A", "B"] {
        assert!(
            out.join(format!("samples/{id}/.cartscope-complete.json"))
                .is_file()
        );
    }

    // Same numbers as single runs of the same files.
    for (id, input) in [("A", &a), ("B", &b)] {
        let single = d.join(format!("single_{id}"));
        cartscope()
            .arg("run")
            .arg(input)
            .arg("-o")
            .arg(&single)
            .args(FAST)
            .assert()
            .success();
        let ours = std::fs::read_to_string(out.join(format!("samples/{id}/summary.csv"))).unwrap();
        let theirs = std::fs::read_to_string(single.join("summary.csv")).unwrap();
        assert_eq!(ours, theirs, "sample {id}");
        let row = rows.iter().find(|r| r["sample_id"] == id).unwrap();
        let single_row = &read_csv(&single.join("summary.csv"))[0];
        for col in [
            "n_cells_after_qc",
            "n_car_positive",
            "median_car_exhaustion_score",
        ] {
            close(num(row, col), num(single_row, col), col);
        }
    }

    // persistence.csv recomputed from each sample's obs.
    let pers = read_csv(&out.join("persistence.csv"));
    assert_eq!(pers.len(), 2);
    assert_eq!(
        (
            pers[0]["patient"].as_str(),
            pers[0]["day"].as_str(),
            pers[1]["sample_id"].as_str()
        ),
        ("P1", "0", "B")
    );
    for p in &pers {
        let o = obs(&out.join(format!("samples/{}/result.h5ad", p["sample_id"])));
        let car = bools(&o, "car_positive");
        let t = bools(&o, "t_cell");
        let phen = strings(&o, "phenotype");
        let lin = strings(&o, "cd4_cd8");
        let exh = match o.column("exhaustion_score") {
            Some(Column::F64(v)) => v.clone(),
            other => panic!("exhaustion_score: {other:?}"),
        };
        let n = car.len();
        let n_car = car.iter().filter(|&&c| c).count();
        let car_t: Vec<usize> = (0..n).filter(|&i| car[i] && t[i]).collect();
        assert!(n_car > 50, "too few CAR+ cells to test: {n_car}");
        assert_eq!(num(p, "n_cells_after_qc") as usize, n);
        assert_eq!(num(p, "n_car_positive") as usize, n_car);
        close(
            num(p, "car_positive_fraction"),
            n_car as f64 / n as f64,
            "CAR+ fraction",
        );
        let k = |ph: &str| car_t.iter().filter(|&&i| phen[i] == ph).count() as f64;
        for ph in ["exhausted", "central_memory", "effector"] {
            close(
                num(p, &format!("frac_car_{ph}")),
                k(ph) / car_t.len() as f64,
                ph,
            );
        }
        let l = |x: &str| car_t.iter().filter(|&&i| lin[i] == x).count() as f64;
        close(num(p, "cd4_cd8_ratio_car"), l("CD4") / l("CD8"), "CD4:CD8");
        let tl = strings(&o, "t_lineage");
        let gd = car_t.iter().filter(|&&i| tl[i] == "gd").count() as f64;
        close(
            num(p, "gd_fraction_car"),
            gd / car_t.len() as f64,
            "gd of CAR+",
        );
        close(
            num(p, "median_car_exhaustion_score"),
            median(car_t.iter().map(|&i| exh[i]).collect()),
            "median exhaustion",
        );
    }
    // The simulated patient loses CAR+ cells between infusion and day 28.
    assert!(num(&pers[1], "car_positive_fraction") < num(&pers[0], "car_positive_fraction"));

    // The report links every completed sample and names the failures.
    let html = std::fs::read_to_string(out.join("batch_report.html")).unwrap();
    assert!(html.contains("data-plot=\"car_fraction\""));
    assert!(html.contains("missing.h5ad"));
    assert!(!html.contains("<script"));

    // aggregate rebuilds the same tables from the folders alone.
    let before = std::fs::read_to_string(out.join("batch_summary.csv")).unwrap();
    let pers_before = std::fs::read_to_string(out.join("persistence.csv")).unwrap();
    std::fs::remove_file(out.join("batch_summary.csv")).unwrap();
    std::fs::remove_file(out.join("persistence.csv")).unwrap();
    let r = cartscope().arg("aggregate").arg(&out).output().unwrap();
    assert_eq!(r.status.code(), Some(3));
    assert_eq!(
        std::fs::read_to_string(out.join("batch_summary.csv")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(out.join("persistence.csv")).unwrap(),
        pers_before
    );
}

#[test]
fn batch_killed_mid_run_resumes_only_unfinished_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    simulate(d, "A", "3", "infusion");
    simulate(d, "B", "4", "day14");
    std::fs::write(
        d.join("m.tsv"),
        "sample_id\tpath\tday\nA\tA.h5ad\t0\nB\tB.h5ad\t14\n",
    )
    .unwrap();
    let out = d.join("out");
    let bin = assert_cmd::cargo::cargo_bin("cartscope");
    let mut child = std::process::Command::new(&bin)
        .arg("batch")
        .arg(d.join("m.tsv"))
        .arg("-o")
        .arg(&out)
        .args(FAST)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let marker_a = out.join("samples/A/.cartscope-complete.json");
    let started = Instant::now();
    while !marker_a.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "sample A never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the batch finished before it was killed");
    // B is unfinished: nothing under its final name.
    assert!(!out.join("samples/B").exists());
    let a_result = out.join("samples/A/result.h5ad");
    let a_time = mtime(&a_result);

    let r = cartscope()
        .arg("batch")
        .arg(d.join("m.tsv"))
        .arg("-o")
        .arg(&out)
        .arg("--resume")
        .args(["--backend", "cpu", "--no-report"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("A: up to date, skipped"), "{stderr}");
    assert!(stderr.contains("B: done"), "{stderr}");
    assert_eq!(mtime(&a_result), a_time, "A was redone");
    assert!(out.join("samples/B/.cartscope-complete.json").is_file());
    assert!(!out.join("samples/.B.partial").exists());
    let rows = read_csv(&out.join("batch_summary.csv"));
    assert!(rows.iter().all(|r| r["status"] == "ok"));

    // Different parameters: the markers no longer match, both samples are redone.
    let r = cartscope()
        .arg("batch")
        .arg(d.join("m.tsv"))
        .arg("-o")
        .arg(&out)
        .arg("--resume")
        .args(["--backend", "cpu", "--no-report", "--n-pcs", "20"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches(": done in").count(), 2, "{stderr}");
}

/// One sample per way a process can end badly (faults injected with CARTSCOPE_TEST_FAULT at
/// the point where the input is opened): each is recorded with its cause in words, the good
/// sample completes as a single run would, the batch exits 3, and `--resume` without the faults
/// redoes exactly the failed samples.
#[test]
fn a_crashing_killed_or_hanging_sample_fails_alone_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let good = simulate(d, "good", "5", "infusion");
    let faults = [
        ("S", "segv"),
        ("A", "abort"),
        ("U", "segv-unguarded"),
        ("K", "kill"),
        ("H", "hang"),
    ];
    let mut manifest = String::from("sample_id,path,patient,day\nG,good.h5ad,P1,0\n");
    let mut spec = Vec::new();
    for (i, (id, fault)) in faults.iter().enumerate() {
        let name = format!("{fault}.h5ad");
        std::fs::copy(&good, d.join(&name)).unwrap();
        manifest += &format!("{id},{name},P1,{}\n", 7 * (i + 1));
        spec.push(format!("{name}:{fault}"));
    }
    std::fs::write(d.join("m.csv"), manifest).unwrap();
    let out = d.join("out");
    let started = Instant::now();
    let r = cartscope()
        .arg("batch")
        .arg(d.join("m.csv"))
        .arg("-o")
        .arg(&out)
        .args(["--jobs", "2", "--sample-timeout", "30"])
        .args(["--backend", "cpu", "--no-report"])
        .env("CARTSCOPE_TEST_FAULT", spec.join(","))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("5 of 6 samples failed"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the hanging sample held the batch"
    );
    let rows = read_csv(&out.join("batch_summary.csv"));
    let error = |id: &str| {
        let row = rows.iter().find(|r| r["sample_id"] == id).unwrap();
        assert_eq!(row["status"], "failed", "{row:?}");
        let text = std::fs::read_to_string(out.join(format!("samples/{id}.error.txt"))).unwrap();
        assert_eq!(
            row["error"], text,
            "batch_summary.csv and the error file differ"
        );
        assert!(
            !out.join("samples").join(id).exists(),
            "{id} looks complete"
        );
        assert!(!out.join(format!("samples/.{id}.partial")).exists());
        assert!(out.join(format!("samples/{id}.log")).is_file());
        text
    };
    let e = error("S");
    assert!(
        e.contains("segv.h5ad: the HDF5 library crashed (SIGSEGV) while reading /injected (the file is damaged or not a valid HDF5 file)"),
        "{e}"
    );
    let e = error("A");
    assert!(
        e.contains("abort.h5ad: the HDF5 library crashed (SIGABRT) while reading /injected"),
        "{e}"
    );
    let e = error("U");
    assert!(
        e.starts_with("crashed (SIGSEGV) while processing segv-unguarded.h5ad: the file may be damaged (see samples/U.log)"),
        "{e}"
    );
    let e = error("K");
    assert!(e.starts_with("killed"), "{e}");
    assert!(e.contains("kill.h5ad"), "{e}");
    let e = error("H");
    assert_eq!(e, "timed out after 30 s (killed; its log is samples/H.log)");
    let g = rows.iter().find(|r| r["sample_id"] == "G").unwrap();
    assert_eq!(g["status"], "ok", "{g:?}");

    // The good sample is what a single run makes of it.
    let single = d.join("single");
    cartscope()
        .arg("run")
        .arg(&good)
        .arg("-o")
        .arg(&single)
        .args(FAST)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(out.join("samples/G/summary.csv")).unwrap(),
        std::fs::read_to_string(single.join("summary.csv")).unwrap()
    );

    // Without the faults, --resume redoes the five failed samples and only those.
    let r = cartscope()
        .arg("batch")
        .arg(d.join("m.csv"))
        .arg("-o")
        .arg(&out)
        .args(["--jobs", "2", "--resume"])
        .args(["--backend", "cpu", "--no-report"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("G: up to date, skipped"), "{stderr}");
    assert_eq!(stderr.matches(": done in").count(), 5, "{stderr}");
    for (id, _) in faults {
        assert!(!out.join(format!("samples/{id}.error.txt")).exists());
        assert_eq!(
            std::fs::read_to_string(out.join(format!("samples/{id}/summary.csv")))
                .unwrap()
                .lines()
                .nth(1)
                .map(|l| l.split(',').skip(1).collect::<Vec<_>>()),
            std::fs::read_to_string(out.join("samples/G/summary.csv"))
                .unwrap()
                .lines()
                .nth(1)
                .map(|l| l.split(',').skip(1).collect::<Vec<_>>()),
            "sample {id} (a copy of G) differs from G"
        );
    }
}

#[test]
fn bad_manifest_is_exit_2_naming_row_and_column_with_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases = [
        (
            "sample_id,path\nA,a.h5ad\nA,b.h5ad\n",
            "line 3, column sample_id",
        ),
        ("sample_id,file\nA,a.h5ad\n", "column path"),
        ("sample_id,path,day\nA,a.h5ad,day 3\n", "line 2, column day"),
        ("sample_id,path\nA,a.h5ad,extra\n", "line 2"),
    ];
    crate::common::assert_manifests_rejected(d, &["batch"], &cases, true);
}

#[test]
fn second_batch_on_a_folder_in_use_stops_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A live batch's lock: this test process's pid.
    let lock = out.join(".cartscope-batch.lock");
    std::fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/manifest.csv");
    let started = Instant::now();
    let o = cartscope()
        .args(["batch", "--backend", "cpu", "--quiet"])
        .arg(&manifest)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is in use by another cartscope batch")
            && stderr.contains(&format!("(pid {})", std::process::id())),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "not at once");
    // Nothing written, the other batch's lock untouched.
    let entries: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        std::process::id().to_string()
    );
}

/// snakemake from CARTSCOPE_SNAKEMAKE (scripts/setup.sh installs it in the test venv), else
/// on PATH; the test fails without it.
fn snakemake() -> PathBuf {
    let exe = std::env::var_os("CARTSCOPE_SNAKEMAKE")
        .map_or_else(|| PathBuf::from("snakemake"), PathBuf::from);
    let ok = std::process::Command::new(&exe)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "snakemake not found: run scripts/test.sh (it installs snakemake in the test venv) or set CARTSCOPE_SNAKEMAKE"
    );
    exe
}

#[test]
fn snakefile_records_failed_samples_and_aggregates_like_batch() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The sample manifest plus a truncated and a missing sample.
    for e in std::fs::read_dir(root.join("sample_data")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
    }
    let good = std::fs::read(d.join("P01_day14.h5ad")).unwrap();
    std::fs::write(d.join("broken.h5ad"), &good[..300_000]).unwrap();
    let mut manifest = std::fs::read_to_string(d.join("manifest.csv")).unwrap();
    manifest += "P01_broken,broken.h5ad,P01,day30,30,\nP01_missing,nothere.h5ad,P01,day60,60,\n";
    std::fs::write(d.join("manifest.csv"), manifest).unwrap();
    let out = d.join("results");
    let r = std::process::Command::new(snakemake())
        .arg("-s")
        .arg(root.join("workflow/Snakefile"))
        .args(["--cores", "2", "--directory"])
        .arg(d)
        .arg("--config")
        .arg(format!("manifest={}", d.join("manifest.csv").display()))
        .arg(format!("outdir={}", out.display()))
        .arg(format!(
            "cartscope={}",
            assert_cmd::cargo::cargo_bin("cartscope").display()
        ))
        .arg("run_args=--backend cpu --no-report")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&r.stderr);
    // The workflow ends in an error because two samples failed, after writing every output.
    assert!(!r.status.success(), "{log}");
    assert!(log.contains("2 of 5 samples failed"), "{log}");
    let rows = read_csv(&out.join("batch_summary.csv"));
    let status: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["sample_id"].as_str(), r["status"].as_str()))
        .collect();
    assert_eq!(
        status,
        [
            ("P01_infusion", "ok"),
            ("P01_day14", "ok"),
            ("P01_day90", "ok"),
            ("P01_broken", "failed"),
            ("P01_missing", "failed")
        ]
    );
    assert!(rows[3]["error"].contains("broken.h5ad"), "{:?}", rows[3]);
    assert!(rows[4]["error"].contains("nothere.h5ad"), "{:?}", rows[4]);
    assert!(!out.join("samples/P01_broken").exists());
    for f in ["persistence.csv", "batch_report.html", "clones.csv"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let pers = read_csv(&out.join("persistence.csv"));
    let days: Vec<f64> = pers.iter().map(|p| num(p, "day")).collect();
    assert_eq!(days, [0.0, 14.0, 90.0]);
    for p in &pers {
        let single = &read_csv(&out.join(format!("samples/{}/summary.csv", p["sample_id"])))[0];
        for col in [
            "n_car_positive",
            "car_positive_fraction",
            "cd4_cd8_ratio_car",
            "dn_fraction_car",
            "gd_fraction_car",
            "cycling_fraction",
        ] {
            close(num(p, col), num(single, col), col);
        }
    }
    // The simulated responder's CAR+ fraction falls from infusion to day 90.
    assert!(num(&pers[2], "car_positive_fraction") < num(&pers[0], "car_positive_fraction"));
}

/// batch_report.html of the sample manifest in headless Chromium: no console message, every
/// plot drawn with one point per time point, the sample table complete.
#[test]
fn batch_report_renders_every_plot_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/manifest.csv");
    // The report reads the per-sample summaries only: the embedding stages are skipped.
    let o = cartscope()
        .args(["batch", "--backend", "cpu", "--no-umap", "--no-cluster"])
        .arg(&manifest)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dom = crate::browser::check_page(&out.join("batch_report.html"), "batch_report.png");
    let plots: Vec<&str> = dom
        .split("<svg class=\"plot\"")
        .skip(1)
        .map(|p| p.split("</svg>").next().unwrap_or(""))
        .collect();
    // CAR+ fraction, CAR+ count, CD4:CD8, DN fraction, gamma-delta fraction, cycling fraction
    // and the five median scores over time, one phenotype composition for the one patient;
    // with the samples' VDJ tables, the patient's top-10 clone tracking, its overlap matrix
    // and the product clones' share over time.
    assert_eq!(plots.len(), 15, "{dom}");
    for id in [
        "dn_fraction_car",
        "gd_fraction_car",
        "cycling_fraction",
        "clones_P01",
        "overlap_P01",
        "product_clone_fraction",
    ] {
        assert!(dom.contains(&format!("data-plot=\"{id}\"")), "{id}");
    }
    let plot = |id: &str| {
        *plots
            .iter()
            .find(|p| p.contains(&format!("data-plot=\"{id}\"")))
            .unwrap()
    };
    // Ten clones, each at the three time points; a 3 x 3 overlap matrix.
    assert_eq!(plot("clones_P01").matches("<polyline").count(), 10);
    assert_eq!(plot("clones_P01").matches("<circle").count(), 30);
    assert_eq!(plot("overlap_P01").matches("<rect").count(), 9);
    let lines: Vec<&&str> = plots
        .iter()
        .filter(|p| p.contains("<polyline") && !p.contains("data-plot=\"clones_P01\""))
        .collect();
    assert_eq!(lines.len(), 12);
    for p in lines {
        assert_eq!(
            p.matches("<circle").count(),
            3,
            "one point per time point: {p}"
        );
    }
    for id in ["P01_infusion", "P01_day14", "P01_day90"] {
        assert!(
            dom.contains(&format!("samples/{id}/report.html")),
            "row of {id}"
        );
    }
}
