//! Files written by cartscope load in Python anndata (warnings treated as errors) with
//! identical values: X, layers, obs/var of every column type, obsm/varm, obsp and nested uns.
//!
//! Needs the test venv (`scripts/test.sh` creates `.venv` with anndata); `CARTSCOPE_PYTHON`
//! names another interpreter.

use std::path::PathBuf;
use std::process::Command;

use cartscope::CsrMatrix;
use cartscope::io::{AnnData, Column, Dense, Frame, UnsValue, WriteOptions, write_h5ad};
use ndarray::Array2;
use serde_json::{Value, json};

pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CARTSCOPE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with anndata: run scripts/test.sh (creates .venv) or set CARTSCOPE_PYTHON"
    );
    venv
}

/// Runs a Python snippet with the test interpreter; fails the test with its stderr unless it
/// exits 0.
pub fn run_python(code: &str) {
    let out = Command::new(python()).args(["-c", code]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn column_json(c: &Column) -> Value {
    match c {
        Column::Str(v) => json!({"kind": "string", "values": v}),
        Column::Categorical {
            codes, categories, ..
        } => json!({
            "kind": "category",
            "categories": categories,
            "values": codes.iter().map(|&k| usize::try_from(k).ok().map(|k| categories[k].clone())).collect::<Vec<_>>(),
        }),
        Column::F64(v) => json!({"kind": "float64", "values": v}),
        Column::F32(v) => json!({"kind": "float32", "values": v}),
        Column::I64(v) => json!({"kind": "int64", "values": v}),
        Column::I32(v) => json!({"kind": "int32", "values": v}),
        Column::Bool(v) => json!({"kind": "bool", "values": v}),
        Column::NullableInt { values, mask } => json!({
            "kind": "Int64",
            "values": values.iter().zip(mask).map(|(v, m)| (!m).then_some(*v)).collect::<Vec<_>>(),
        }),
        other => panic!("not exercised here: {other:?}"),
    }
}

#[test]
fn anndata_reads_what_we_write() {
    let (n, g) = (7usize, 5usize);
    let mut obs = Frame::new((0..n).map(|i| format!("AAAC-{i}")).collect());
    obs.set(
        "sample",
        Column::categorical_from(&(0..n).map(|i| format!("s{}", i % 2)).collect::<Vec<_>>()),
    );
    obs.set(
        "phenotype",
        Column::Categorical {
            codes: vec![0, 1, -1, 0, 1, 1, 0],
            categories: vec!["memory".into(), "exhausted".into()],
            ordered: false,
        },
    );
    obs.set(
        "total_counts",
        Column::F32((0..n).map(|i| i as f32 * 10.5).collect()),
    );
    obs.set("n_genes", Column::I64((0..n as i64).collect()));
    obs.set(
        "car_positive",
        Column::Bool((0..n).map(|i| i % 2 == 0).collect()),
    );
    obs.set(
        "barcode_note",
        Column::Str((0..n).map(|i| format!("note {i}")).collect()),
    );
    obs.set(
        "clone_size",
        Column::NullableInt {
            values: (0..n as i64).collect(),
            mask: (0..n).map(|i| i == 3).collect(),
        },
    );
    let mut var = Frame::new(
        ["CD3E", "CD8A", "MT-CO1", "CAR", "TOX"]
            .map(String::from)
            .to_vec(),
    );
    var.set(
        "highly_variable",
        Column::Bool(vec![true, false, true, false, true]),
    );
    var.set("means", Column::F64(vec![0.5, 1.25, 2.0, 0.0, 3.5]));
    let dense: Vec<f32> = (0..n * g)
        .map(|k| if k % 3 == 0 { (k % 7) as f32 } else { 0.0 })
        .collect();
    let x = CsrMatrix::from_dense(n, g, &dense);
    let pca = Array2::from_shape_fn((n, 3), |(i, j)| (i * 3 + j) as f32 * 0.5);
    let pcs = Array2::from_shape_fn((g, 3), |(i, j)| (i as f64) - (j as f64) * 0.25);
    let conn_dense: Vec<f32> = (0..n * n)
        .map(|k| if k % (n + 1) == 1 { 0.5 } else { 0.0 })
        .collect();
    let conn = CsrMatrix::from_dense(n, n, &conn_dense);
    let ratio = vec![0.5f32, 0.25, 0.125];
    let dist = CsrMatrix::<f64> {
        n_rows: n,
        n_cols: n,
        indptr: conn.indptr.clone(),
        indices: conn.indices.clone(),
        data: (0..conn.data.len()).map(|k| 0.1 + k as f64 / 3.0).collect(),
    };
    let dist_dense: Vec<f64> = {
        let mut d = vec![0.0; n * n];
        for i in 0..n {
            for p in dist.indptr[i] as usize..dist.indptr[i + 1] as usize {
                d[i * n + dist.indices[p] as usize] = dist.data[p];
            }
        }
        d
    };
    let adata = AnnData {
        obs: obs.clone(),
        var: var.clone(),
        x: Some(x.clone()),
        layers: vec![("counts".into(), x.clone())],
        obsm: vec![("X_pca".into(), Dense::F32(pca.clone()))],
        varm: vec![("PCs".into(), Dense::F64(pcs.clone()))],
        obsp: vec![("connectivities".into(), conn.clone())],
        obsp_f64: vec![("distances".into(), dist.clone())],
        uns: vec![
            (
                "neighbors".into(),
                UnsValue::Map(vec![
                    (
                        "connectivities_key".into(),
                        UnsValue::Str("connectivities".into()),
                    ),
                    (
                        "params".into(),
                        UnsValue::Map(vec![
                            ("n_neighbors".into(), UnsValue::Int(15)),
                            ("method".into(), UnsValue::Str("umap".into())),
                        ]),
                    ),
                ]),
            ),
            (
                "pca".into(),
                UnsValue::Map(vec![(
                    "variance_ratio".into(),
                    UnsValue::F32s(ratio.clone()),
                )]),
            ),
            ("flag".into(), UnsValue::Bool(true)),
            ("names".into(), UnsValue::Strs(vec!["a".into(), "b".into()])),
            ("pi".into(), UnsValue::Float(3.25)),
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("written.h5ad");
    write_h5ad(&path, &adata, WriteOptions { gzip: Some(4) }).unwrap();
    let expected = json!({
        "shape": [n, g],
        "obs_names": obs.index,
        "var_names": var.index,
        "X": dense,
        "obs": obs.columns.iter().map(|(k, c)| (k.clone(), column_json(c))).collect::<serde_json::Map<_, _>>(),
        "layers": {"counts": dense},
        "obsm": {"X_pca": {"dtype": "float32", "values": pca.iter().collect::<Vec<_>>()}},
        "varm": {"PCs": {"dtype": "float64", "values": pcs.iter().collect::<Vec<_>>()}},
        "obsp": {"connectivities": conn_dense},
        "obsp_f64": {"distances": dist_dense},
        "uns_variance_ratio": ratio,
    });
    let exp_path = dir.path().join("expected.json");
    std::fs::write(&exp_path, serde_json::to_string(&expected).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_written.py");
    let out = Command::new(python())
        .arg(script)
        .arg(&path)
        .arg(&exp_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "anndata rejected the file:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
