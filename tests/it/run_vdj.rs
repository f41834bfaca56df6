//! `cartscope run --vdj`: a real 10x T-cell contig table (the scirpy wheel's
//! `vdj_nextgem_hs_pbmc3_t`), its barcodes renamed onto the cells of a sample_data matrix
//! (the last 122 onto barcodes that are not cells), goes through the whole run. result.h5ad's
//! receptor columns must equal scirpy 0.22.5's on the same contigs restricted to the run's
//! cells after QC (chains, QC labels, clone partition, sizes, expansion), summary.csv's clonal
//! numbers must equal those recomputed here from scirpy's clones, cells.parquet and the report
//! must carry them, and a malformed table must fail before any output exists.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use cartscope::vdj::{ClonotypeOptions, Slot};
use polars::prelude::SerReader;
use serde_json::Value;

use crate::common::{cartscope, obs, succeeds};
use crate::vdj::{canonical, real, reference, root};

/// The sample the contigs are moved onto.
fn sample() -> PathBuf {
    root().join("sample_data/P01_day14.h5ad")
}

/// The real table with its cell barcodes renamed, in order of first appearance, onto
/// `cells` (the rest onto `NOTACELL<k>-1`).
fn renamed_contigs(cells: &[String], out: &Path) {
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(real(
            "10x/vdj_nextgem_hs_pbmc3_t_filtered_contig_annotations.csv.gz",
        ))
        .unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut lines = text.lines();
    let mut csv = lines.next().unwrap().to_string() + "\n";
    for line in lines {
        let (bc, rest) = line.split_once(',').unwrap();
        let k = names.len();
        let new = names
            .entry(bc.to_string())
            .or_insert_with(|| match cells.get(k) {
                Some(c) => c.clone(),
                None => format!("NOTACELL{k}-1"),
            })
            .clone();
        // contig_id repeats the barcode.
        csv += &format!("{new},{}\n", rest.replace(bc, &new));
    }
    std::fs::write(out, csv).unwrap();
}

fn column_strings(f: &cartscope::io::Frame, name: &str) -> Vec<Option<String>> {
    f.column(name)
        .unwrap_or_else(|| panic!("obs has no {name}"))
        .as_strings()
        .unwrap_or_else(|| panic!("{name} is not a string column"))
}

fn column_f64(f: &cartscope::io::Frame, name: &str) -> Vec<f64> {
    match f.column(name) {
        Some(cartscope::io::Column::F64(v)) => v.clone(),
        other => panic!("{name}: not float64: {other:?}"),
    }
}

/// A reference value as obs holds it: strings as they are, numbers as text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// summary.csv's row as column -> field.
fn summary_row(path: &Path) -> HashMap<String, String> {
    let t = std::fs::read_to_string(path).unwrap();
    let mut lines = t.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    header
        .iter()
        .zip(row)
        .map(|(h, v)| (h.to_string(), v.to_string()))
        .collect()
}

#[test]
fn run_with_contigs_matches_scirpy() {
    let dir = tempfile::tempdir().unwrap();
    let all_cells = obs(&sample()).index;
    let contigs = dir.path().join("filtered_contig_annotations.csv");
    renamed_contigs(&all_cells, &contigs);
    let out = dir.path().join("out");
    succeeds(
        cartscope()
            .args(["run", "--backend", "cpu", "--quiet", "--no-umap", "--vdj"])
            .arg(&contigs)
            .arg(sample())
            .arg("-o")
            .arg(&out),
    );
    let o = obs(&out.join("result.h5ad"));
    let cells = o.index.clone();
    let refr = reference(
        "10x",
        std::slice::from_ref(&contigs),
        Some(&cells),
        &[ClonotypeOptions::default()],
    );
    let ref_cells = crate::vdj::strings(&refr["cells"]);
    let at: HashMap<&str, usize> = ref_cells
        .iter()
        .enumerate()
        .map(|(k, c)| (c.as_str(), k))
        .collect();
    let run = &refr["runs"][0];
    // Per cell of the run: the reference row, if scirpy has the cell.
    let rows: Vec<Option<usize>> = cells.iter().map(|c| at.get(c.as_str()).copied()).collect();
    let n_ref = rows.iter().flatten().count();
    assert!(n_ref > 1000, "only {n_ref} cells with contigs after QC");
    let mut mismatches: Vec<String> = Vec::new();
    for name in ["receptor_type", "receptor_subtype", "chain_pairing"] {
        let got = column_strings(&o, name);
        for (i, r) in rows.iter().enumerate() {
            let want = r.map_or("no IR".to_string(), |k| {
                refr[name][k].as_str().unwrap().to_string()
            });
            if got[i].as_deref() != Some(&want) {
                mismatches.push(format!("{} {name}: {:?} vs {want}", cells[i], got[i]));
            }
        }
    }
    for slot in Slot::ALL {
        for field in ["junction_aa", "junction", "v_call", "j_call"] {
            let got = column_strings(&o, &slot.column(field));
            let key = format!("{}_{field}", slot.as_str());
            for (i, r) in rows.iter().enumerate() {
                let want = r.and_then(|k| text(&refr["chains"][&key][k]));
                if got[i] != want {
                    mismatches.push(format!("{} {key}: {:?} vs {want:?}", cells[i], got[i]));
                }
            }
        }
        let got = column_f64(&o, &slot.column("umi_count"));
        let key = format!("{}_umi_count", slot.as_str());
        for (i, r) in rows.iter().enumerate() {
            let want = r.and_then(|k| refr["chains"][&key][k].as_f64());
            if want.map_or(!got[i].is_nan(), |w| w != got[i]) {
                mismatches.push(format!("{} {key}: {} vs {want:?}", cells[i], got[i]));
            }
        }
    }
    let ids = column_strings(&o, "clone_id");
    let ref_ids: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.and_then(|k| text(&run["clone_id"][k])))
        .collect();
    if canonical(&ids) != canonical(&ref_ids) {
        mismatches.push("clone partitions differ".into());
    }
    let sizes = column_f64(&o, "clone_id_size");
    let expansion = column_strings(&o, "clonal_expansion");
    for (i, r) in rows.iter().enumerate() {
        let want = r.and_then(|k| run["clone_id_size"][k].as_f64());
        if want.map_or(!sizes[i].is_nan(), |w| w != sizes[i]) {
            mismatches.push(format!("{} size {} vs {want:?}", cells[i], sizes[i]));
        }
        let want_exp = r.map_or("nan".to_string(), |k| {
            run["clonal_expansion"][k].as_str().unwrap().to_string()
        });
        if expansion[i].as_deref() != Some(&want_exp) {
            mismatches.push(format!(
                "{} expansion {:?} vs {want_exp}",
                cells[i], expansion[i]
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches with scirpy, first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );

    // summary.csv from scirpy's clones, computed here.
    let mut counts: HashMap<String, u32> = HashMap::new();
    for id in ref_ids.iter().flatten() {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    let total: u32 = counts.values().sum();
    let n = counts.len() as f64;
    let entropy = -counts
        .values()
        .map(|&c| {
            let p = f64::from(c) / f64::from(total);
            p * p.ln()
        })
        .sum::<f64>()
        / n.ln();
    let expanded = counts.values().filter(|&&c| c > 2).sum::<u32>();
    let largest = *counts.values().max().unwrap();
    let s = summary_row(&out.join("summary.csv"));
    let num = |k: &str| -> f64 { s[k].parse().unwrap_or_else(|_| panic!("{k}: {}", s[k])) };
    let with_ir = rows
        .iter()
        .filter(|r| r.is_some_and(|k| refr["chain_pairing"][k] != "no IR"))
        .count();
    let single = rows
        .iter()
        .filter(|r| r.is_some_and(|k| refr["chain_pairing"][k] == "single pair"))
        .count();
    assert_eq!(num("n_cells_with_ir"), with_ir as f64);
    assert_eq!(num("n_single_pair"), single as f64);
    assert_eq!(num("n_clonotypes"), n);
    let close = |k: &str, want: f64| {
        assert!((num(k) - want).abs() < 1e-12, "{k}: {} vs {want}", num(k));
    };
    close("clone_entropy", entropy);
    close("expanded_fraction", f64::from(expanded) / f64::from(total));
    close(
        "largest_clone_fraction",
        f64::from(largest) / f64::from(total),
    );
    let car = match o.column("car_positive") {
        Some(cartscope::io::Column::Bool(v)) => v.clone(),
        other => panic!("car_positive: {other:?}"),
    };
    let car_ids: std::collections::HashSet<&String> = ref_ids
        .iter()
        .zip(&car)
        .filter_map(|(id, &c)| id.as_ref().filter(|_| c))
        .collect();
    assert_eq!(num("n_car_clonotypes"), car_ids.len() as f64);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // 1,556 contig cells: 122 renamed onto non-cells, the others onto the 2,000 barcodes.
    assert_eq!(json["vdj"]["n_vdj_cells"], 1556);
    assert_eq!(
        json["vdj"]["n_vdj_cells_not_in_matrix"].as_u64().unwrap() as usize,
        1556 - n_ref
    );
    println!(
        "run --vdj: {} cells after QC, {n_ref} with contigs, {with_ir} with a receptor, {} clones, entropy {entropy:.4}",
        cells.len(),
        counts.len()
    );

    // cells.parquet carries the same clone ids; the report draws the clone plots.
    let df = polars::prelude::ParquetReader::new(
        std::fs::File::open(out.join("cells.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    let col = df.column("clone_id").unwrap().str().unwrap();
    let parquet_ids: Vec<Option<String>> = (0..col.len())
        .map(|i| col.get(i).map(String::from))
        .collect();
    assert_eq!(parquet_ids, ids);
    for c in cartscope::vdj::obs_columns() {
        assert!(df.column(&c).is_ok(), "cells.parquet lacks {c}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for plot in [
        "clone_sizes",
        "embedding_clonal_expansion",
        "clone_sizes_phenotype",
    ] {
        assert!(
            html.contains(&format!("data-plot=\"{plot}\"")),
            "report.html lacks the {plot} plot"
        );
    }
}

#[test]
fn malformed_contigs_fail_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let contigs = dir.path().join("contigs.csv");
    // A 10x table without its `productive` column.
    std::fs::write(
        &contigs,
        "barcode,is_cell,contig_id,high_confidence,length,chain,v_gene,d_gene,j_gene,c_gene,full_length,cdr3,cdr3_nt,reads,umis\n\
         AAAC-1,true,AAAC-1_contig_1,true,500,TRA,TRAV1,None,TRAJ1,TRAC,true,CAF,TGTGCTTTT,10,3\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let res = cartscope()
        .args(["run", "--backend", "cpu", "--quiet", "--vdj"])
        .arg(&contigs)
        .arg(sample())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("contigs.csv") && stderr.contains("productive"),
        "{stderr}"
    );
    assert!(!out.exists(), "output folder left behind");
}
