//! Write -> read round trips through cartscope's own reader: fixed cases with every column
//! type, streaming writes in chunks, and proptest over random matrices and frames.

use cartscope::CsrMatrix;
use cartscope::io::{
    AnnData, Column, CountSource, Frame, H5adWriter, ReadOptions, WriteOptions, write_h5ad,
};
use proptest::prelude::*;

fn frame(n: usize, prefix: &str) -> Frame {
    let mut f = Frame::new((0..n).map(|i| format!("{prefix}{i}")).collect());
    f.set(
        "label",
        Column::Str((0..n).map(|i| format!("ü-{}", i % 3)).collect()),
    );
    f.set(
        "group",
        Column::categorical_from(&(0..n).map(|i| format!("g{}", i % 2)).collect::<Vec<_>>()),
    );
    f.set("x64", Column::F64((0..n).map(|i| i as f64 * 0.5).collect()));
    f.set(
        "x32",
        Column::F32((0..n).map(|i| i as f32 * 0.25).collect()),
    );
    f.set("i64", Column::I64((0..n).map(|i| i as i64 - 3).collect()));
    f.set("i32", Column::I32((0..n).map(|i| i as i32 * 7).collect()));
    f.set("flag", Column::Bool((0..n).map(|i| i % 3 == 0).collect()));
    f.set(
        "nint",
        Column::NullableInt {
            values: (0..n as i64).collect(),
            mask: (0..n).map(|i| i % 4 == 1).collect(),
        },
    );
    f.set(
        "nbool",
        Column::NullableBool {
            values: vec![true; n],
            mask: (0..n).map(|i| i % 2 == 1).collect(),
        },
    );
    f.set(
        "nstr",
        Column::NullableStr {
            values: vec!["s".into(); n],
            mask: (0..n).map(|i| i == 0).collect(),
        },
    );
    f
}

fn csr(n_rows: usize, n_cols: usize, seed: u64) -> CsrMatrix {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let dense: Vec<f32> = (0..n_rows * n_cols)
        .map(|_| {
            if next() % 3 == 0 {
                (next() % 50 + 1) as f32
            } else {
                0.0
            }
        })
        .collect();
    CsrMatrix::from_dense(n_rows, n_cols, &dense)
}

#[test]
fn every_column_type_survives_a_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.h5ad");
    let ad = AnnData {
        obs: frame(9, "c"),
        var: frame(6, "g"),
        x: Some(csr(9, 6, 1)),
        ..AnnData::default()
    };
    write_h5ad(&path, &ad, WriteOptions::default()).unwrap();
    let mut src = CountSource::open(&path, &ReadOptions::default()).unwrap();
    assert_eq!(src.obs, ad.obs);
    assert_eq!(src.var, ad.var);
    assert_eq!(src.read_all().unwrap(), ad.x.unwrap());
}

#[test]
fn chunked_gzip_writes_equal_one_shot_writes() {
    let dir = tempfile::tempdir().unwrap();
    let m = csr(100, 17, 7);
    let obs = Frame::new((0..100).map(|i| format!("c{i}")).collect());
    let var = Frame::new((0..17).map(|i| format!("g{i}")).collect());
    let path = dir.path().join("chunked.h5ad");
    let mut w = H5adWriter::create(&path, 17, WriteOptions { gzip: Some(4) }).unwrap();
    for a in (0..100).step_by(13) {
        w.append_x(&m.slice_rows(a..(a + 13).min(100))).unwrap();
    }
    assert!(!path.exists(), "nothing under the final name before finish");
    w.finish(&AnnData {
        obs,
        var,
        ..AnnData::default()
    })
    .unwrap();
    let got = CountSource::open(&path, &ReadOptions::default())
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(got, m);
}

#[test]
fn a_failed_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fail.h5ad");
    // var says 3 genes but X has 4 columns: rejected before anything is renamed into place.
    let ad = AnnData {
        obs: Frame::new(vec!["a".into()]),
        var: Frame::new(vec!["x".into(); 3]),
        x: Some(csr(1, 4, 3)),
        ..AnnData::default()
    };
    assert!(write_h5ad(&path, &ad, WriteOptions::default()).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_matrices_round_trip(n_rows in 1usize..40, n_cols in 1usize..30, seed in any::<u64>(), chunk in 1usize..50, gzip in proptest::option::of(0u8..9)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.h5ad");
        let m = csr(n_rows, n_cols, seed);
        let ad = AnnData {
            obs: frame(n_rows, "cell"),
            var: Frame::new((0..n_cols).map(|i| format!("gene{i}")).collect()),
            x: Some(m.clone()),
            ..AnnData::default()
        };
        write_h5ad(&path, &ad, WriteOptions { gzip }).unwrap();
        let mut src = CountSource::open(&path, &ReadOptions::default()).unwrap();
        prop_assert_eq!(&src.obs, &ad.obs);
        let mut acc = CsrMatrix::empty(n_cols);
        for part in src.chunks(chunk) {
            acc.append_rows(&part.unwrap().1);
        }
        prop_assert_eq!(acc, m);
    }
}
