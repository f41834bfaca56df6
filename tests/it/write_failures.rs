//! Write failures: a full disk (a real, small tmpfs mounted in a private user and mount
//! namespace, so the test needs no privileges and leaves nothing mounted), a read-only file
//! system, an output path that is a file, and the output folder removed mid-run. Each is exit
//! code 1 with one line naming the path and the cause in words, leaves no partial output, never
//! touches the input, and a rerun with space succeeds.
//!
//! The full disk is hit at every writer of a run in turn (result.h5ad, cells.parquet, the CSV,
//! TOML and JSON files, report.html) by sizing the file system from a run with space, and at
//! the batch tables by a batch whose sample fits but whose tables do not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::cartscope;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/P01_infusion.h5ad")
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("cartscope")
}

/// tmpfs pages are 4 KiB: a file takes its size rounded up.
fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(4096) * 4096
}

/// What happened inside the namespace.
struct Attempt {
    code: i32,
    stderr: String,
    /// Every path left under the mount point after the failed attempt.
    left: Vec<String>,
    /// The exit code of the same command after the file system was given 512 MiB.
    rerun: i32,
}

/// Mounts a tmpfs of `bytes` at `mnt` in a new user and mount namespace (`ro`: read-only),
/// runs `cartscope ARGS` (`@MNT` in an argument is replaced by the mount point), lists what it
/// left, then remounts with space (and writable) and runs the same command again.
fn in_small_fs(mnt: &Path, bytes: u64, ro: bool, args: &[&str]) -> Attempt {
    std::fs::create_dir_all(mnt).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("@MNT", &mnt.to_string_lossy()))
        .collect();
    let script = r#"
        set -u
        mnt=$1; size=$2; ro=$3; shift 3
        mount -t tmpfs -o size=$size tmpfs "$mnt" || exit 90
        mkdir -p "$mnt/in_place"
        if [ "$ro" = ro ]; then mount -o remount,ro "$mnt" || exit 91; fi
        "$@" 2> "$mnt.stderr"
        echo "code=$?"
        (cd "$mnt" && find . -mindepth 1 ! -path ./in_place | sort | sed 's/^/left=/')
        mount -o remount,rw,size=512m "$mnt" || exit 92
        "$@" 2>/dev/null
        echo "rerun=$?"
    "#;
    let o = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(mnt)
        .arg(bytes.to_string())
        .arg(if ro { "ro" } else { "rw" })
        .arg(bin())
        .args(&args)
        .output()
        .expect("unshare (util-linux) runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("rerun="),
        "the namespace could not be set up (user namespaces disabled?): {:?} {stdout} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let field = |key: &str| -> Vec<String> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(key).map(str::to_string))
            .collect()
    };
    let stderr = std::fs::read_to_string(mnt.with_extension("stderr")).unwrap_or_default();
    Attempt {
        code: field("code=")[0].parse().unwrap(),
        stderr,
        left: field("left="),
        rerun: field("rerun=")[0].parse().unwrap(),
    }
}

fn digest(path: &Path) -> (u64, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    (bytes.len() as u64, bytes)
}

/// One error line naming `path_part` and the cause.
fn assert_one_line(stderr: &str, path_part: &str, cause: &str, what: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: {stderr}");
    assert!(lines[0].starts_with("error: "), "{what}: {stderr}");
    assert!(
        lines[0].contains(path_part),
        "{what}: no {path_part:?} in {stderr}"
    );
    assert!(
        lines[0].to_lowercase().contains(cause),
        "{what}: no {cause:?} in {stderr}"
    );
}

const RUN: [&str; 5] = ["run", "--backend", "cpu", "--quiet", "--no-umap"];

#[test]
fn a_full_disk_at_every_writer_of_a_run_is_exit_1_with_nothing_left() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.h5ad");
    std::fs::copy(sample(), &input).unwrap();
    let before = digest(&input);
    // The outputs of a run with space, in the order they are written.
    let full = tmp.path().join("full");
    let mut args: Vec<String> = RUN.iter().map(|s| s.to_string()).collect();
    args.extend([input.to_string_lossy().into_owned(), "-o".into()]);
    let o = Command::new(bin()).args(&args).arg(&full).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let order = [
        "result.h5ad",
        "cells.parquet",
        "markers.csv",
        "config.toml",
        "summary.json",
        "summary.csv",
        "report.html",
    ];
    let sizes: Vec<u64> = order
        .iter()
        .map(|f| std::fs::metadata(full.join(f)).unwrap().len())
        .collect();
    let mut failed_at = Vec::new();
    for (k, name) in order.iter().enumerate() {
        let before_k: u64 = sizes[..k].iter().map(|&s| pages(s)).sum();
        // Half of a large file, or not one page of a small one.
        let room = if sizes[k] > 64 * 1024 {
            pages(sizes[k] / 2)
        } else {
            0
        };
        let mnt = tmp.path().join(format!("fs{k}"));
        let mut run_args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_args.push("@MNT/out");
        let a = in_small_fs(&mnt, (before_k + room).max(4096), false, &run_args);
        let what = format!("disk full at {name} ({} bytes)", before_k + room);
        assert_eq!(a.code, 1, "{what}: {}", a.stderr);
        assert_one_line(&a.stderr, "/out", "no space left on device", &what);
        assert!(a.left.is_empty(), "{what}: left {:?}", a.left);
        assert_eq!(a.rerun, 0, "{what}: the rerun with space failed");
        let line = a.stderr.trim_end().to_string();
        if let Some(hit) = order.iter().find(|f| line.contains(*f)) {
            failed_at.push(hit.to_string());
        }
    }
    // Every writer met the full disk at least once (the failing file is named).
    for name in order {
        assert!(
            failed_at.iter().any(|f| f == name),
            "no attempt failed while writing {name}: {failed_at:?}"
        );
    }
    assert_eq!(digest(&input), before, "the input changed");
}

#[test]
fn a_full_disk_at_the_batch_tables_is_exit_1_naming_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::copy(sample(), d.join("S1.h5ad")).unwrap();
    std::fs::write(
        d.join("m.csv"),
        "sample_id,path,patient,day\nS1,S1.h5ad,P1,0\n",
    )
    .unwrap();
    let batch = |out: &str| -> Vec<String> {
        let mut a: Vec<String> = ["batch", "--backend", "cpu", "--quiet", "--no-umap"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(d.join("m.csv").to_string_lossy().into_owned());
        a.extend(["-o".into(), out.into()]);
        a
    };
    let full = d.join("full");
    let o = Command::new(bin())
        .args(batch(&full.to_string_lossy()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Room for the sample folder, its log and the manifest copy, not for the tables.
    let mut used = 0;
    for entry in walk(&full.join("samples")) {
        used += pages(std::fs::metadata(entry).unwrap().len());
    }
    used += pages(std::fs::metadata(full.join("manifest.csv")).unwrap().len());
    used += 4096; // the lock file
    let mnt = d.join("fs");
    let args = batch("@MNT/out");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = in_small_fs(&mnt, used, false, &args);
    assert_eq!(a.code, 1, "{}", a.stderr);
    assert_one_line(
        &a.stderr,
        "/out/",
        "no space left on device",
        "batch tables",
    );
    assert!(
        ["batch_summary", "persistence", "batch_report", "clon"]
            .iter()
            .any(|t| a.stderr.contains(t)),
        "the failing table is not named: {}",
        a.stderr
    );
    assert!(
        !a.left.iter().any(|p| p.contains(".partial")),
        "temporary files left: {:?}",
        a.left
    );
    assert!(
        !a.left.iter().any(|p| p.ends_with(".cartscope-batch.lock")),
        "the lock was left: {:?}",
        a.left
    );
    assert_eq!(a.rerun, 0, "the rerun with space failed");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_read_only_file_system_and_an_output_path_that_is_a_file_are_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sample();
    let before = digest(&input);
    let mnt = tmp.path().join("ro");
    let input_text = input.to_string_lossy().into_owned();
    let mut args: Vec<&str> = RUN.to_vec();
    args.extend([input_text.as_str(), "-o", "@MNT/in_place/out"]);
    let a = in_small_fs(&mnt, 64 << 20, true, &args);
    assert_eq!(a.code, 1, "{}", a.stderr);
    assert_one_line(
        &a.stderr,
        "/in_place/out",
        "read-only file system",
        "read-only",
    );
    assert!(a.left.is_empty(), "left {:?}", a.left);
    assert_eq!(a.rerun, 0);

    let file = tmp.path().join("taken");
    std::fs::write(&file, b"a file, not a folder").unwrap();
    let o = cartscope()
        .args(RUN)
        .arg(&input)
        .arg("-o")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_one_line(
        &String::from_utf8_lossy(&o.stderr),
        "taken",
        "not a folder",
        "output is a file",
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"a file, not a folder");
    assert_eq!(digest(&input), before, "the input changed");
}

#[test]
fn the_output_folder_removed_mid_run_is_exit_1_and_a_rerun_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let child = Command::new(bin())
        .args(RUN)
        .arg(sample())
        .arg("-o")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no output folder"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_dir_all(&out).unwrap();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_one_line(
        &stderr,
        "out",
        "no such file or directory",
        "folder removed",
    );
    assert!(!out.exists(), "a partial folder was recreated");
    crate::common::succeeds(cartscope().args(RUN).arg(sample()).arg("-o").arg(&out));
    assert!(out.join("report.html").is_file());
}
