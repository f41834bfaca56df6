//! The simulator: deterministic for a seed, its truth recoverable from the counts it wrote
//! (CAR+ = CAR counts >= 1, QC failures = the cells made low quality or empty, marker
//! programmes per state), and every output format reading back to the same values.

use std::collections::HashMap;

use cartscope::CsrMatrix;
use cartscope::io::{Column, CountSource, Frame, ReadOptions};
use cartscope::simulate::{SimFormat, SimOptions, simulate};

fn small(format: SimFormat) -> SimOptions {
    SimOptions {
        cells: 400,
        genes: 800,
        seed: 11,
        format,
        ..SimOptions::default()
    }
}

fn read(path: &std::path::Path) -> (CsrMatrix, CountSource) {
    let mut src = CountSource::open(path, &ReadOptions::default()).unwrap();
    (src.read_all().unwrap(), src)
}

fn labels(obs: &Frame, name: &str) -> Vec<String> {
    obs.column(name)
        .and_then(Column::as_strings)
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

#[test]
fn same_seed_same_matrix_other_seed_other_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.h5ad");
    let b = dir.path().join("b.h5ad");
    let c = dir.path().join("c.h5ad");
    simulate(&a, &small(SimFormat::H5ad)).unwrap();
    simulate(
        &b,
        &SimOptions {
            chunk_cells: 37,
            ..small(SimFormat::H5ad)
        },
    )
    .unwrap();
    simulate(
        &c,
        &SimOptions {
            seed: 12,
            ..small(SimFormat::H5ad)
        },
    )
    .unwrap();
    let (ma, sa) = read(&a);
    let (mb, sb) = read(&b);
    assert_eq!(ma, mb, "chunking and threads do not change the output");
    assert_eq!(sa.obs, sb.obs);
    assert_ne!(ma, read(&c).0);
}

#[test]
fn every_format_reads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let h5ad = dir.path().join("s.h5ad");
    let h5 = dir.path().join("s.h5");
    let mtx = dir.path().join("s_mtx");
    simulate(&h5ad, &small(SimFormat::H5ad)).unwrap();
    simulate(&h5, &small(SimFormat::TenxH5)).unwrap();
    simulate(&mtx, &small(SimFormat::TenxMtx)).unwrap();
    let (m0, s0) = read(&h5ad);
    for p in [&h5, &mtx] {
        let (m, s) = read(p);
        assert_eq!(m, m0, "{}", p.display());
        assert_eq!(s.obs.index, s0.obs.index);
        assert_eq!(s.var.index, s0.var.index);
    }
    assert!(dir.path().join("s_truth.csv.gz").is_file());
    assert!(mtx.join("truth.csv.gz").is_file());
}

#[test]
fn truth_is_recoverable_from_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.h5ad");
    let opts = SimOptions {
        cells: 4000,
        genes: 3000,
        seed: 5,
        timepoint: "day30".into(),
        ..SimOptions::default()
    };
    simulate(&path, &opts).unwrap();
    let (m, src) = read(&path);
    let genes: HashMap<&str, usize> = src
        .var
        .index
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let car = genes["CAR"];
    let mito: Vec<usize> = src
        .var
        .index
        .iter()
        .enumerate()
        .filter(|(_, g)| g.starts_with("MT-"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(mito.len(), 13);
    let Some(Column::Bool(truth_car)) = src.obs.column("truth_car") else {
        panic!("truth_car")
    };
    let quality = labels(&src.obs, "truth_quality");
    let state = labels(&src.obs, "truth_state");
    let cell_type = labels(&src.obs, "truth_cell_type");
    let mut dense_row = vec![0f32; m.n_cols];
    // Per-cell QC exactly as scanpy computes it, and CAR counts.
    let mut per_state: HashMap<(String, &str), (f64, usize)> = HashMap::new();
    let markers = [
        "PDCD1", "HAVCR2", "TOX", "TCF7", "SELL", "MKI67", "GZMB", "CD8A", "CD4", "FOXP3", "MS4A1",
        "LYZ", "KLRF1", "CD3E",
    ];
    for i in 0..m.n_rows {
        let (idx, val) = m.row(i);
        dense_row.iter_mut().for_each(|v| *v = 0.0);
        for (&j, &v) in idx.iter().zip(val) {
            dense_row[j as usize] = v;
        }
        let total: f64 = val.iter().map(|&v| f64::from(v)).sum();
        let n_genes = val.iter().filter(|&&v| v > 0.0).count();
        let pct_mt = 100.0 * mito.iter().map(|&j| f64::from(dense_row[j])).sum::<f64>() / total;
        let fails_qc = n_genes < 200 || pct_mt >= 20.0;
        assert_eq!(
            fails_qc,
            quality[i] != "good",
            "cell {i}: {n_genes} genes, {pct_mt:.1}% mito, {}",
            quality[i]
        );
        assert_eq!(
            dense_row[car] >= 1.0,
            truth_car[i],
            "cell {i}: CAR counts {}",
            dense_row[car]
        );
        if quality[i] == "good" {
            for g in markers {
                let norm = (1.0 + 1e4 * f64::from(dense_row[genes[g]]) / total).ln();
                let e = per_state.entry((state[i].clone(), g)).or_default();
                e.0 += norm;
                e.1 += 1;
            }
        }
    }
    let mean = |s: &str, g: &str| {
        per_state[&(s.to_string(), g)].0 / per_state[&(s.to_string(), g)].1 as f64
    };
    let others = |s: &str, g: &str| {
        let (sum, n) = per_state
            .iter()
            .filter(|((st, gene), _)| st != s && *gene == g)
            .fold((0.0, 0), |acc, (_, v)| (acc.0 + v.0, acc.1 + v.1));
        sum / n as f64
    };
    for (s, g) in [
        ("exhausted", "PDCD1"),
        ("exhausted", "HAVCR2"),
        ("exhausted", "TOX"),
        ("naive_stem_memory", "TCF7"),
        ("naive_stem_memory", "SELL"),
        ("proliferating", "MKI67"),
        ("effector", "GZMB"),
        ("treg", "FOXP3"),
        ("B", "MS4A1"),
        ("monocyte", "LYZ"),
        ("NK", "KLRF1"),
    ] {
        let (inside, outside) = (mean(s, g), others(s, g));
        println!("{s:>18} {g:<7} mean log-norm {inside:.2} vs {outside:.2} elsewhere");
        assert!(
            inside > 3.0 * outside && inside > 0.5,
            "{s} should carry {g}: {inside:.3} vs {outside:.3}"
        );
    }
    // Lineage: CD8A in CD8 T cells, CD4 in CD4 T cells, CD3E in T but not in B cells.
    let lineage_mean = |t: &str, g: &str| {
        let (mut sum, mut n) = (0.0, 0);
        for i in 0..m.n_rows {
            if cell_type[i] == t && quality[i] == "good" {
                let (idx, val) = m.row(i);
                let total: f64 = val.iter().map(|&v| f64::from(v)).sum();
                let c = idx
                    .iter()
                    .position(|&j| j as usize == genes[g])
                    .map_or(0.0, |k| f64::from(val[k]));
                sum += (1.0 + 1e4 * c / total).ln();
                n += 1;
            }
        }
        sum / n as f64
    };
    assert!(lineage_mean("CD8 T", "CD8A") > 3.0 * lineage_mean("CD4 T", "CD8A"));
    assert!(lineage_mean("CD4 T", "CD4") > 3.0 * lineage_mean("CD8 T", "CD4"));
    assert!(lineage_mean("CD8 T", "CD3E") > 3.0 * lineage_mean("B", "CD3E"));
    // Sparsity: a few hundred to a few thousand genes per good cell.
    let genes_per_cell: Vec<usize> = (0..m.n_rows)
        .filter(|&i| quality[i] == "good")
        .map(|i| m.row(i).0.len())
        .collect();
    let median = {
        let mut v = genes_per_cell.clone();
        v.sort_unstable();
        v[v.len() / 2]
    };
    assert!(
        (300..3000).contains(&median),
        "median genes per cell {median}"
    );
}

#[test]
fn car_fraction_decays_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let frac = |tp: &str, preset| {
        let p = dir.path().join(format!("{tp}.h5ad"));
        let opts = SimOptions {
            cells: 3000,
            genes: 700,
            timepoint: tp.into(),
            preset,
            ..SimOptions::default()
        };
        let s = simulate(&p, &opts).unwrap();
        s.car_positive as f64 / s.cells as f64
    };
    use cartscope::simulate::Preset::{NonResponder, Responder};
    let (ip, d90) = (frac("infusion", Responder), frac("day90", Responder));
    let nr90 = frac("day90", NonResponder);
    assert!(
        ip > 0.4 && d90 < ip && nr90 < d90 / 3.0,
        "infusion {ip:.3}, day90 {d90:.3}, non-responder day90 {nr90:.3}"
    );
}

#[test]
fn anndata_loads_the_simulated_h5ad() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py.h5ad");
    let s = simulate(&path, &small(SimFormat::H5ad)).unwrap();
    let code = format!(
        "import warnings; warnings.simplefilter('error'); import anndata as ad, numpy as np\n\
         a = ad.read_h5ad('{}')\n\
         assert a.shape == ({}, {}), a.shape\n\
         assert a.X.nnz == {}\n\
         assert a.X.indices.dtype == a.X.indptr.dtype\n\
         assert a.obs['truth_car'].dtype == bool and int(a.obs['truth_car'].sum()) == {}\n\
         assert str(a.obs['truth_state'].dtype) == 'category'\n\
         car = np.asarray(a[:, 'CAR'].X.todense()).ravel()\n\
         assert ((car >= 1) == a.obs['truth_car'].to_numpy()).all()\n\
         print('ok')",
        path.display(),
        s.cells,
        s.genes,
        s.nnz,
        s.car_positive
    );
    crate::python_interop::run_python(&code);
}
