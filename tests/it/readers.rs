//! Every fixture layout (h5ad CSR/CSC/dense, gzip/lzf, int/float dtypes, anndata 0.7 layout,
//! layers and raw, CELLxGENE-style symbols, 10x HDF5 v2/v3 with several genomes and feature
//! types, 10x MTX v2/v3) reads to exactly the matrix and names its generator recorded, in one
//! piece and in row chunks of any size.

use cartscope::info::{InfoOptions, inspect};
use cartscope::io::{Column, CountSource, Format, ReadOptions, Storage};

use crate::common::{expected, fixture, floats, strings};

const GOOD: [&str; 11] = [
    "unsorted.h5ad",
    "csr_f32_gzip.h5ad",
    "csc_i32_lzf.h5ad",
    "dense_f64.h5ad",
    "feature_name.h5ad",
    "legacy_07.h5ad",
    "tenx_v3.h5",
    "tenx_v2.h5",
    "tenx_v2_two_genomes.h5",
    "mtx_v3",
    "mtx_v2",
];

fn check_source(name: &str, opts: &ReadOptions) {
    let exp = &expected()[name];
    let mut src = CountSource::open(&fixture(name), opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        src.n_obs(),
        exp["n_obs"].as_u64().unwrap() as usize,
        "{name} n_obs"
    );
    assert_eq!(
        src.n_vars(),
        exp["n_vars"].as_u64().unwrap() as usize,
        "{name} n_vars"
    );
    assert_eq!(
        src.obs.index,
        strings(&exp["obs_names"]),
        "{name} obs names"
    );
    assert_eq!(
        src.var.index,
        strings(&exp["var_names"]),
        "{name} var names"
    );
    let want = floats(&exp["dense"]);
    let whole = src.read_all().unwrap();
    assert_eq!(whole.nnz(), exp["nnz"].as_u64().unwrap(), "{name} nnz");
    assert_eq!(whole.to_dense(), want, "{name} values");
    for chunk in [1, 3, 7, 1000] {
        let mut acc = cartscope::CsrMatrix::empty(src.n_vars());
        for part in src.chunks(chunk) {
            let (_, m) = part.unwrap();
            for i in 0..m.n_rows {
                assert!(
                    m.row(i).0.windows(2).all(|w| w[0] < w[1]),
                    "{name}: row {i} sorted, no duplicates"
                );
            }
            acc.append_rows(&m);
        }
        assert_eq!(acc, whole, "{name} chunked by {chunk}");
    }
}

#[test]
fn every_layout_reads_the_recorded_matrix() {
    for name in GOOD {
        check_source(name, &ReadOptions::default());
    }
}

#[test]
fn formats_are_sniffed_from_content() {
    let cases = [
        ("csr_f32_gzip.h5ad", Format::H5ad, Storage::Csr),
        ("csc_i32_lzf.h5ad", Format::H5ad, Storage::Csc),
        ("dense_f64.h5ad", Format::H5ad, Storage::Dense),
        ("tenx_v3.h5", Format::TenxH5, Storage::TenxCsc),
        ("mtx_v3", Format::TenxMtx, Storage::Coordinate),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, format, storage) in cases {
        let src = CountSource::open(&fixture(name), &ReadOptions::default()).unwrap();
        assert_eq!((src.format, src.x.storage), (format, storage), "{name}");
        // A misleading extension changes nothing.
        if !fixture(name).is_dir() {
            let renamed = dir.path().join(format!("{name}.txt"));
            std::fs::copy(fixture(name), &renamed).unwrap();
            assert_eq!(
                CountSource::open(&renamed, &ReadOptions::default())
                    .unwrap()
                    .format,
                format
            );
        }
    }
    // The matrix file itself stands for its directory.
    let src = CountSource::open(&fixture("mtx_v3/matrix.mtx.gz"), &ReadOptions::default()).unwrap();
    assert_eq!(src.n_vars(), 5);
}

#[test]
fn dtypes_are_reported_as_stored() {
    let dt = |n: &str| {
        CountSource::open(&fixture(n), &ReadOptions::default())
            .unwrap()
            .x
            .dtype
    };
    assert_eq!(dt("csr_f32_gzip.h5ad"), "float32");
    assert_eq!(dt("csc_i32_lzf.h5ad"), "int32");
    assert_eq!(dt("dense_f64.h5ad"), "float64");
    assert_eq!(dt("tenx_v3.h5"), "int32");
}

#[test]
fn layers_and_raw_are_read_on_request() {
    let name = "layers_raw.h5ad";
    let layer = ReadOptions {
        layer: Some("counts".into()),
        ..ReadOptions::default()
    };
    check_source(name, &layer);
    check_source(
        name,
        &ReadOptions {
            use_raw: true,
            ..ReadOptions::default()
        },
    );
    // X itself is log-normalised: not counts.
    let info = inspect(&fixture(name), &InfoOptions::default()).unwrap();
    assert!(!info.raw_counts);
    assert_eq!(info.layers, vec!["counts".to_string()]);
    assert!(info.has_raw);
    let with_layer = InfoOptions {
        read: layer,
        ..InfoOptions::default()
    };
    let info = inspect(&fixture(name), &with_layer).unwrap();
    assert!(info.raw_counts);
    assert_eq!(info.x.element, "/layers/counts");
    assert_eq!(info.x.dtype, "uint16");
}

#[test]
fn obs_columns_keep_their_types() {
    let src = CountSource::open(&fixture("csr_f32_gzip.h5ad"), &ReadOptions::default()).unwrap();
    let types: Vec<(&str, &str)> = src
        .obs
        .columns
        .iter()
        .map(|(n, c)| (n.as_str(), c.type_name()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("sample", "category"),
            // anndata stores string columns as categoricals (strings_to_categoricals).
            ("batch_label", "category"),
            ("n_counts_prev", "float64"),
            ("score32", "float32"),
            ("int_col", "int64"),
            ("is_t", "bool"),
            ("nullable_int", "Int64"),
            ("nullable_bool", "boolean"),
            ("donor", "category"),
        ]
    );
    let Some(Column::Categorical {
        codes, categories, ..
    }) = src.obs.column("donor")
    else {
        panic!("donor")
    };
    assert_eq!(categories, &vec!["d0".to_string(), "d1".to_string()]);
    assert_eq!(codes[0], -1, "missing category is -1");
    assert_eq!(codes[6], -1);
    let Some(Column::NullableInt { values, mask }) = src.obs.column("nullable_int") else {
        panic!("nullable_int")
    };
    assert!(mask[0] && mask[4] && !mask[1]);
    assert_eq!(values[1], 1);
    let Some(Column::I64(ints)) = src.obs.column("int_col") else {
        panic!("int_col")
    };
    assert_eq!(ints, &(0..24).collect::<Vec<i64>>());
}

#[test]
fn anndata_07_categoricals_are_read() {
    let src = CountSource::open(&fixture("legacy_07.h5ad"), &ReadOptions::default()).unwrap();
    let col = src
        .obs
        .column("group")
        .and_then(Column::as_strings)
        .unwrap();
    let a = Some("A".to_string());
    let b = Some("B".to_string());
    assert_eq!(
        col,
        vec![
            a.clone(),
            b.clone(),
            b.clone(),
            a.clone(),
            None,
            a.clone(),
            b.clone(),
            b,
            a
        ]
    );
}

#[test]
fn symbols_replace_ids_and_ids_are_kept() {
    let exp = &expected()["feature_name.h5ad"];
    let src = CountSource::open(&fixture("feature_name.h5ad"), &ReadOptions::default()).unwrap();
    assert_eq!(src.gene_name_source, "var['feature_name']");
    assert!(src.names_made_unique);
    let Some(Column::Str(ids)) = src.var.column("gene_ids") else {
        panic!("gene_ids kept")
    };
    assert_eq!(ids, &strings(&exp["gene_ids"]));
}

#[test]
fn tenx_feature_types_and_genomes() {
    let exp = &expected()["tenx_v3.h5"];
    let all = ReadOptions {
        all_features: true,
        ..ReadOptions::default()
    };
    let mut src = CountSource::open(&fixture("tenx_v3.h5"), &all).unwrap();
    assert_eq!(
        src.n_vars(),
        exp["all_features"]["n_vars"].as_u64().unwrap() as usize
    );
    let m = src.read_all().unwrap();
    assert_eq!(m.nnz(), exp["all_features"]["nnz"].as_u64().unwrap());
    assert_eq!(m.to_dense(), floats(&exp["all_features"]["dense"]));
    assert_eq!(
        src.genomes,
        vec!["GRCh38".to_string(), "mm10".to_string(), String::new()]
    );
    let info = inspect(
        &fixture("tenx_v3.h5"),
        &InfoOptions {
            read: all,
            ..InfoOptions::default()
        },
    )
    .unwrap();
    assert_eq!(info.feature_types.get("Antibody Capture"), Some(&2));
    assert_eq!(info.feature_types.get("Gene Expression"), Some(&6));
    // One genome of a v3 file.
    let mm10 = ReadOptions {
        genome: Some("mm10".into()),
        ..ReadOptions::default()
    };
    let src = CountSource::open(&fixture("tenx_v3.h5"), &mm10).unwrap();
    assert_eq!(src.var.index, vec!["mm10_Cd3e".to_string()]);
    // One genome of a v2 file with two: the hg19 part is the recorded matrix's hg19 columns
    // (the first three), with their names and every barcode, as a single-genome file reads.
    let hg19 = ReadOptions {
        genome: Some("hg19".into()),
        ..ReadOptions::default()
    };
    let two = &expected()["tenx_v2_two_genomes.h5"];
    let mut src = CountSource::open(&fixture("tenx_v2_two_genomes.h5"), &hg19).unwrap();
    assert_eq!(src.var.index, ["CD3E", "CD8A", "MT-ND1"]);
    assert_eq!(src.obs.index, strings(&two["obs_names"]));
    let n_all = two["n_vars"].as_u64().unwrap() as usize;
    let hg19_part: Vec<f32> = floats(&two["dense"])
        .chunks(n_all)
        .flat_map(|row| row[..3].to_vec())
        .collect();
    let m = src.read_all().unwrap();
    assert_eq!((m.n_rows, m.n_cols), (src.n_obs(), 3));
    assert_eq!(m.to_dense(), hg19_part);
    assert_eq!(
        m.nnz(),
        hg19_part.iter().filter(|&&x| x != 0.0).count() as u64
    );
    let unknown = ReadOptions {
        genome: Some("dm6".into()),
        ..ReadOptions::default()
    };
    let err = CountSource::open(&fixture("tenx_v2_two_genomes.h5"), &unknown).unwrap_err();
    assert!(err.to_string().contains("dm6"), "{err}");
}

#[test]
fn info_reports_car_and_mito() {
    for name in GOOD {
        let exp = &expected()[name];
        let info = inspect(&fixture(name), &InfoOptions::default()).unwrap();
        assert_eq!(info.nnz, exp["nnz"].as_u64().unwrap(), "{name}");
        assert!(info.raw_counts, "{name}");
        if let Some(car) = exp.get("car_features") {
            assert_eq!(info.car_features, strings(car), "{name}");
        } else {
            assert!(
                info.car_features.is_empty(),
                "{name}: {:?}",
                info.car_features
            );
        }
        if let Some(n) = exp.get("n_mito") {
            assert_eq!(info.n_mito_genes, n.as_u64().unwrap() as usize, "{name}");
        }
    }
}

/// The HDF5 library is not thread-safe: every call into it, including the raw fixed-length
/// string reads that bypass the hdf5 crate, must hold the crate's global lock. Readers on
/// several threads at once (as a batch or a test harness runs them) give the same results as
/// one reader alone.
#[test]
fn concurrent_readers_agree_with_one_reader() {
    let names = ["tenx_v2_two_genomes.h5", "tenx_v3.h5"];
    let alone: Vec<_> = names
        .iter()
        .map(|n| inspect(&fixture(n), &InfoOptions::default()).unwrap())
        .map(|i| (i.nnz, i.car_features, i.n_mito_genes))
        .collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let alone = &alone;
                s.spawn(move || {
                    for round in 0..40 {
                        let k = (t + round) % names.len();
                        let info = inspect(&fixture(names[k]), &InfoOptions::default())
                            .unwrap_or_else(|e| panic!("thread {t} round {round}: {e}"));
                        let got = (info.nnz, info.car_features, info.n_mito_genes);
                        assert_eq!(got, alone[k], "thread {t} round {round} {}", names[k]);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    });
}
