//! Malformed inputs never panic: each is read or rejected with an error.
//!
//! - Structural corruption of a valid `.h5ad` (arrays replaced by random lengths, dtypes and
//!   values; shapes rewritten; elements deleted), read in-process: exercises every check of
//!   cartscope's own readers.
//! - Random and mutated MatrixMarket text, read in-process (pure Rust).
//! - Random byte flips of `.h5ad` and 10x `.h5` files, read by the binary in a subprocess: no
//!   Rust panic, no unbounded allocation, no death by a signal and no hang. libhdf5 1.10 can
//!   crash (SIGSEGV inside H5Dopen) or loop forever (H5HG_read/H5C_protect) on byte-corrupted
//!   metadata: the crash handler and the stall watch (src/crash.rs) turn both into one-line
//!   errors, and variable-length strings no longer go through H5HG_read at all (src/io/vlen.rs).
//!   The wider campaign is `fuzz` (tests/fuzz/corpus.py).
//!
//! `CARTSCOPE_FUZZ_CASES=N` sets the number of cases per property (default: a quick run).

use std::path::Path;

use cartscope::info::{InfoOptions, inspect};
use proptest::prelude::*;

use crate::common::fixture;

fn cases() -> u32 {
    std::env::var("CARTSCOPE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48)
}

/// Any outcome but a panic is fine.
fn inspect_never_panics(path: &Path) {
    let opts = InfoOptions {
        allow_non_integer: true,
        ..InfoOptions::default()
    };
    if let Ok(info) = inspect(path, &opts) {
        assert!(
            info.n_obs > 0 && info.n_vars > 0,
            "an accepted matrix is non-empty"
        );
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Replace {
        element: usize,
        dtype: usize,
        values: Vec<i64>,
    },
    Shape(Vec<i64>),
    Delete(usize),
}

const ELEMENTS: [&str; 7] = [
    "X/data",
    "X/indices",
    "X/indptr",
    "obs/_index",
    "var/_index",
    "obs/sample/codes",
    "obs/n_counts_prev",
];

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (
            0..ELEMENTS.len(),
            0usize..6,
            proptest::collection::vec(-5i64..200, 0..300)
        )
            .prop_map(|(element, dtype, values)| Edit::Replace {
                element,
                dtype,
                values
            }),
        proptest::collection::vec(-3i64..100, 0..4).prop_map(Edit::Shape),
        (0..ELEMENTS.len()).prop_map(Edit::Delete),
    ]
}

fn apply(path: &Path, edit: &Edit) -> hdf5::Result<()> {
    let f = hdf5::File::open_rw(path)?;
    match edit {
        Edit::Replace {
            element,
            dtype,
            values,
        } => {
            let name = ELEMENTS[*element];
            let (parent, leaf) = name.rsplit_once('/').expect("nested");
            let g = f.group(parent)?;
            if g.link_exists(leaf) {
                g.unlink(leaf)?;
            }
            let b = g.new_dataset_builder();
            match dtype {
                0 => b
                    .with_data(&values.iter().map(|&v| v as i8).collect::<Vec<_>>())
                    .create(leaf)?,
                1 => b
                    .with_data(&values.iter().map(|&v| v as i32).collect::<Vec<_>>())
                    .create(leaf)?,
                2 => b.with_data(values).create(leaf)?,
                3 => b
                    .with_data(&values.iter().map(|&v| v as u64).collect::<Vec<_>>())
                    .create(leaf)?,
                4 => b
                    .with_data(&values.iter().map(|&v| v as f32 / 3.0).collect::<Vec<_>>())
                    .create(leaf)?,
                _ => b
                    .with_data(&values.iter().map(|&v| v as f64).collect::<Vec<_>>())
                    .create(leaf)?,
            };
        }
        Edit::Shape(s) => {
            let g = f.group("X")?;
            g.delete_attr("shape")?;
            g.new_attr_builder().with_data(s).create("shape")?;
        }
        Edit::Delete(element) => {
            let name = ELEMENTS[*element];
            let (parent, leaf) = name.rsplit_once('/').expect("nested");
            f.group(parent)?.unlink(leaf)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn structurally_corrupted_h5ad_gives_errors(edits in proptest::collection::vec(edit_strategy(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.h5ad");
        std::fs::copy(fixture("csr_f32_gzip.h5ad"), &p).unwrap();
        for e in &edits {
            let _ = apply(&p, e);
        }
        inspect_never_panics(&p);
    }

    #[test]
    fn corrupted_mtx_files_give_errors(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut in any::<usize>()) {
        let src = fixture("mtx_v2");
        let dir = tempfile::tempdir().unwrap();
        for f in ["genes.tsv", "barcodes.tsv"] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        let mut bytes = std::fs::read(src.join("matrix.mtx")).unwrap();
        let n = bytes.len();
        for (pos, val) in edits {
            bytes[pos % n] = val;
        }
        bytes.truncate(cut % (n + 1));
        std::fs::write(dir.path().join("matrix.mtx"), &bytes).unwrap();
        inspect_never_panics(dir.path());
    }

    #[test]
    fn arbitrary_mtx_text_gives_errors(header in "%%MatrixMarket matrix coordinate (integer|real|pattern) general", dims in "[0-9 ]{0,12}", body in proptest::collection::vec("[-0-9 .eE]{0,14}", 0..12)) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("genes.tsv"), "E1\tA\nE2\tB\nE3\tC\n").unwrap();
        std::fs::write(dir.path().join("barcodes.tsv"), "b1\nb2\nb3\nb4\nb5\nb6\nb7\n").unwrap();
        std::fs::write(dir.path().join("matrix.mtx"), format!("{header}\n{dims}\n{}\n", body.join("\n"))).unwrap();
        inspect_never_panics(dir.path());
    }
}

/// A small deterministic generator, so the byte-flip campaign is reproducible by seed.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 17
}

/// Runs `cartscope info` on `path`; None when it had to be killed after `limit`.
fn run_with_timeout(path: &Path, limit: std::time::Duration) -> Option<std::process::Output> {
    use std::process::Stdio;
    let bin = assert_cmd::cargo::cargo_bin("cartscope");
    let mut child = std::process::Command::new(bin)
        .args(["info", "--allow-non-integer"])
        .arg(path)
        .env("CARTSCOPE_HDF5_STALL_SECONDS", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Some(child.wait_with_output().unwrap())
}

#[test]
fn byte_flipped_hdf5_never_panics_in_cartscope() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x5eed_u64;
    let mut signals = 0;
    let mut hangs = 0;
    let n_cases = cases();
    for case in 0..n_cases {
        let name = ["csr_f32_gzip.h5ad", "tenx_v3.h5", "csc_i32_lzf.h5ad"][case as usize % 3];
        let mut bytes = std::fs::read(fixture(name)).unwrap();
        for _ in 0..1 + lcg(&mut state) % 6 {
            let pos = (lcg(&mut state) as usize) % bytes.len();
            bytes[pos] = lcg(&mut state) as u8;
        }
        let p = dir.path().join(format!("case{case}.h5"));
        std::fs::write(&p, &bytes).unwrap();
        let Some(out) = run_with_timeout(&p, std::time::Duration::from_secs(30)) else {
            hangs += 1;
            std::fs::remove_file(&p).unwrap();
            continue;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "case {case} ({name}): Rust panic: {stderr}"
        );
        assert!(
            !stderr.contains("memory allocation of"),
            "case {case} ({name}): unbounded allocation: {stderr}"
        );
        match out.status.code() {
            Some(0 | 2) => {}
            Some(code) => panic!("case {case} ({name}): unexpected exit code {code}: {stderr}"),
            None => signals += 1,
        }
        std::fs::remove_file(&p).unwrap();
    }
    eprintln!(
        "byte flips: {n_cases} cases, {signals} killed by a signal inside libhdf5, {hangs} hung inside libhdf5"
    );
    assert_eq!((signals, hangs), (0, 0), "deaths by a signal, hangs");
}
