//! Clonal persistence across a patient's time points: `cartscope batch` with a manifest `vdj`
//! column on two simulated patients (three and four time points, a product sample each, a
//! missing and a malformed contig table) against `tests/python/clonal_reference.py`, which
//! concatenates the samples' cells after QC with scirpy 0.22.5 (`read_10x_vdj`,
//! `index_chains`, `chain_qc`, `ir_dist`, `define_clonotypes(within_group=["receptor_type",
//! "patient"])`) and recomputes every persistence column from scirpy's clones with numpy.
//! cartscope must give the same cells a receptor, the same partition into clones, the same
//! clone sizes and chain pairings, and the same persistence columns (within 1e-14); a bad
//! contig table fails that sample's clonal part only; `aggregate OUTDIR` rebuilds the same
//! tables from the manifest copy; `--product-timepoint` moves the product.
//!
//! The contig tables are generated here for the simulated matrices' barcodes
//! (`cartscope::simulate::barcode`): per patient a pool of alpha-beta and gamma-delta
//! clonotypes (a few shared between the patients, some differing from another only in the
//! nucleotide junction), drawn with skewed weights that shift between time points, with
//! single chains, extra chains, non-productive contigs and barcodes that are not cells.
//!
//! Needs the test venv with scirpy (`CARTSCOPE_PYTHON`); fails, never skips, without it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use cartscope::batch::manifest::split_line;
use serde_json::{Value, json};

use crate::common::{cartscope, succeeds};
use crate::python_interop::python;

/// Cells of each simulated matrix.
const N_CELLS: u64 = 700;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone)]
struct Chain {
    locus: &'static str,
    v: String,
    j: String,
    aa: String,
    nt: String,
}

#[derive(Clone)]
struct Clonotype {
    vj: Chain,
    vdj: Chain,
}

const AA: &[u8] = b"ACDEFGHIKLMNPQRSTVWY";

/// Two codons per amino acid; `alt` picks the second for the first residue after the C.
fn nt_of(aa: &str, alt: bool) -> String {
    const CODONS: [(&str, &str); 20] = [
        ("GCT", "GCC"),
        ("TGT", "TGC"),
        ("GAT", "GAC"),
        ("GAA", "GAG"),
        ("TTT", "TTC"),
        ("GGT", "GGC"),
        ("CAT", "CAC"),
        ("ATT", "ATC"),
        ("AAA", "AAG"),
        ("CTT", "CTC"),
        ("ATG", "ATG"),
        ("AAT", "AAC"),
        ("CCT", "CCC"),
        ("CAA", "CAG"),
        ("CGT", "CGC"),
        ("TCT", "TCC"),
        ("ACT", "ACC"),
        ("GTT", "GTC"),
        ("TGG", "TGG"),
        ("TAT", "TAC"),
    ];
    aa.bytes()
        .enumerate()
        .map(|(i, b)| {
            let k = AA.iter().position(|&a| a == b).unwrap();
            if alt && i == 1 {
                CODONS[k].1
            } else {
                CODONS[k].0
            }
        })
        .collect()
}

fn chain(rng: &mut Rng, locus: &'static str) -> Chain {
    let len = 9 + rng.below(6);
    let mut aa = String::from("C");
    for _ in 0..len {
        aa.push(AA[rng.below(AA.len())] as char);
    }
    aa.push('F');
    Chain {
        locus,
        v: format!("{locus}V{}", 1 + rng.below(12)),
        j: format!("{locus}J{}", 1 + rng.below(8)),
        nt: nt_of(&aa, false),
        aa,
    }
}

/// A patient's clonotypes: alpha-beta, then gamma-delta; `shared` leading ones are the same
/// in every patient (same seed), and every seventh alpha-beta one has a twin that differs only
/// in the nucleotide junction of its beta chain.
fn clonotypes(seed: u64, shared: usize) -> Vec<Clonotype> {
    let mut common = Rng(1000);
    let mut own = Rng(seed);
    let mut out = Vec::new();
    for k in 0..36 {
        let rng = if k < shared { &mut common } else { &mut own };
        let vj = chain(rng, "TRA");
        let vdj = chain(rng, "TRB");
        out.push(Clonotype { vj, vdj });
        if k % 7 == 3 {
            let mut twin = out[out.len() - 1].clone();
            twin.vdj.nt = nt_of(&twin.vdj.aa, true);
            out.push(twin);
        }
    }
    for _ in 0..4 {
        let vj = chain(&mut own, "TRG");
        let vdj = chain(&mut own, "TRD");
        out.push(Clonotype { vj, vdj });
    }
    out
}

/// Writes a 10x filtered_contig_annotations.csv for the cells `barcode(0..N_CELLS)` plus a
/// few barcodes that are not cells of the matrix.
fn write_contigs(path: &Path, seed: u64, pool: &[Clonotype], shift: f64) {
    let mut rng = Rng(seed);
    let weights: Vec<f64> = (0..pool.len())
        .map(|k| 1.0 / (1.0 + (k as f64 - shift).abs()).powf(1.3))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut out = String::from(
        "barcode,is_cell,contig_id,high_confidence,length,chain,v_gene,d_gene,j_gene,c_gene,\
         full_length,productive,cdr3,cdr3_nt,reads,umis,raw_clonotype_id,raw_consensus_id\n",
    );
    for i in 0..N_CELLS + 15 {
        if rng.unit() < 0.3 {
            continue;
        }
        let mut x = rng.unit() * total;
        let mut k = 0;
        while k + 1 < pool.len() && x >= weights[k] {
            x -= weights[k];
            k += 1;
        }
        let c = &pool[k];
        let bc = cartscope::simulate::barcode(i);
        let mut chains: Vec<(&Chain, bool)> = Vec::new();
        let r = rng.unit();
        if r < 0.08 {
            chains.push((&c.vdj, true));
        } else if r < 0.13 {
            chains.push((&c.vj, true));
        } else {
            chains.push((&c.vj, true));
            chains.push((&c.vdj, true));
        }
        let extra = rng.unit();
        if extra < 0.05 {
            // A second alpha of another clonotype.
            chains.push((&pool[rng.below(pool.len())].vj, true));
        } else if extra < 0.09 {
            chains.push((&pool[rng.below(pool.len())].vdj, false));
        }
        for (n, (ch, productive)) in chains.iter().enumerate() {
            let umis = 1 + rng.below(12);
            let _ = std::fmt::Write::write_fmt(
                &mut out,
                format_args!(
                    "{bc},True,{bc}_contig_{},True,500,{},{},,{},,True,{},{},{},{},{},,\n",
                    n + 1,
                    ch.locus,
                    ch.v,
                    ch.j,
                    if *productive { "True" } else { "False" },
                    ch.aa,
                    ch.nt,
                    umis * 7,
                    umis
                ),
            );
        }
    }
    std::fs::write(path, out).unwrap();
}

fn simulate(dir: &Path, name: &str, seed: &str, timepoint: &str) {
    cartscope()
        .args([
            "simulate",
            "--cells",
            &N_CELLS.to_string(),
            "--genes",
            "800",
        ])
        .args([
            "--seed",
            seed,
            "--timepoint",
            timepoint,
            "--sample",
            name,
            "-o",
        ])
        .arg(dir.join(format!("{name}.h5ad")))
        .assert()
        .success();
}

/// Rows of a CSV as maps from column to value, and the header.
fn read_csv(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = split_line(lines.next().unwrap(), ',').unwrap();
    let rows = lines
        .map(|l| {
            let f = split_line(l, ',').unwrap();
            assert_eq!(f.len(), header.len(), "{l}");
            header.iter().cloned().zip(f).collect()
        })
        .collect();
    (header, rows)
}

/// The barcodes of a sample's cells.parquet.
fn parquet_barcodes(path: &Path) -> Vec<String> {
    use polars::prelude::{ParquetReader, SerReader};
    let df = ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap();
    let ca = df.column("barcode").unwrap().str().unwrap().clone();
    (0..ca.len())
        .map(|i| ca.get(i).unwrap().to_string())
        .collect()
}

/// The batch: two patients, a product sample each, a malformed and a missing contig table.
const SAMPLES: [Row; 7] = [
    ("P1_inf", "P1", "infusion", 0.0, "P1_inf.csv"),
    ("P1_d14", "P1", "day14", 14.0, "P1_d14.csv"),
    ("P1_d28", "P1", "day28", 28.0, "P1_d28.csv"),
    ("P2_ip", "P2", "IP", 1.0, "P2_ip.csv"),
    ("P2_d28", "P2", "day28", 28.0, "P2_d28.csv"),
    ("P2_d60", "P2", "day60", 60.0, "bad.csv"),
    ("P2_d90", "P2", "day90", 90.0, "missing.csv"),
];

/// One manifest row: (sample_id, patient, timepoint, day, vdj file name).
type Row = (&'static str, &'static str, &'static str, f64, &'static str);

/// The cells after QC of the batch in `out`.
fn batch_barcodes(out: &Path) -> Vec<Vec<String>> {
    SAMPLES
        .iter()
        .map(|s| parquet_barcodes(&out.join(format!("samples/{}/cells.parquet", s.0))))
        .collect()
}

/// Runs clonal_reference.py on `rows` restricted to `barcodes` (per row).
fn reference(
    d: &Path,
    rows: &[Row],
    barcodes: &[Vec<String>],
    product_timepoint: Option<&str>,
) -> Value {
    let mut samples = Vec::new();
    for (&(id, patient, tp, day, vdj), bcs) in rows.iter().zip(barcodes) {
        let bc_file = d.join(format!("{id}.barcodes.txt"));
        std::fs::write(&bc_file, bcs.join("\n")).unwrap();
        samples.push(json!({
            "sample_id": id, "patient": patient, "timepoint": tp, "day": day,
            "vdj": d.join("vdj").join(vdj), "barcodes": bc_file,
        }));
    }
    let spec = d.join("spec.json");
    let spec_json = json!({"samples": samples, "product_timepoint": product_timepoint});
    std::fs::write(&spec, spec_json.to_string()).unwrap();
    let res_path = d.join("reference.json");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let res = Command::new(python())
        .arg(root.join("tests/python/clonal_reference.py"))
        .arg(&spec)
        .arg(&res_path)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "clonal_reference.py: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(res_path).unwrap()).unwrap();
    assert_eq!(v["scirpy"], "0.22.5");
    v
}

const CLONAL_COLUMNS: [&str; 12] = [
    "vdj_cells",
    "clonotypes",
    "expanded_fraction",
    "clone_entropy",
    "largest_clone_fraction",
    "seen_before_fraction",
    "product_clone_fraction",
    "product_clones_seen",
    "jaccard_product",
    "morisita_horn_product",
    "jaccard_previous",
    "morisita_horn_previous",
];

/// Every clonal column of persistence.csv against the reference; returns the largest
/// difference.
fn assert_persistence(out: &Path, want: &Value) -> f64 {
    let (_, rows) = read_csv(&out.join("persistence.csv"));
    assert_eq!(rows.len(), SAMPLES.len());
    let mut worst = 0.0f64;
    for r in &rows {
        let id = r["sample_id"].as_str();
        let Some(w) = want["persistence"].get(id) else {
            // No clonal part: every clonal column empty, the error names the file.
            for c in CLONAL_COLUMNS {
                assert_eq!(r[c], "", "{id} {c}");
            }
            let file = SAMPLES.iter().find(|s| s.0 == id).unwrap().4;
            assert!(r["vdj_error"].contains(file), "{id}: {:?}", r["vdj_error"]);
            continue;
        };
        assert_eq!(r["vdj_error"], "", "{id}");
        for c in CLONAL_COLUMNS {
            match w.get(c).and_then(Value::as_f64) {
                None => assert_eq!(r[c], "", "{id} {c}: reference has none"),
                Some(x) => {
                    let got: f64 = r[c]
                        .parse()
                        .unwrap_or_else(|_| panic!("{id} {c} = {:?}, want {x}", r[c]));
                    let diff = (got - x).abs();
                    // Measured: 1.1e-15 at most.
                    assert!(diff <= 1e-14, "{id} {c}: {got} vs {x}");
                    worst = worst.max(diff);
                }
            }
        }
    }
    worst
}

#[test]
fn batch_clonotypes_and_persistence_match_scirpy() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    simulate(d, "m1", "11", "infusion");
    simulate(d, "m2", "12", "day28");
    simulate(d, "m3", "13", "day90");
    std::fs::create_dir(d.join("vdj")).unwrap();
    let p1 = clonotypes(1, 3);
    let p2 = clonotypes(2, 3);
    write_contigs(&d.join("vdj/P1_inf.csv"), 21, &p1, 0.0);
    write_contigs(&d.join("vdj/P1_d14.csv"), 22, &p1, 4.0);
    write_contigs(&d.join("vdj/P1_d28.csv"), 23, &p1, 9.0);
    write_contigs(&d.join("vdj/P2_ip.csv"), 24, &p2, 0.0);
    write_contigs(&d.join("vdj/P2_d28.csv"), 25, &p2, 6.0);
    std::fs::write(d.join("vdj/bad.csv"), "barcode,contig_id,chain\nAAAC-1\n").unwrap();
    let matrix = ["m1", "m2", "m3", "m1", "m2", "m3", "m3"];
    let mut manifest = String::from("sample_id,path,patient,timepoint,day,vdj\n");
    for ((id, p, tp, day, vdj), m) in SAMPLES.iter().zip(matrix) {
        manifest += &format!("{id},{m}.h5ad,{p},{tp},{day},vdj/{vdj}\n");
    }
    std::fs::write(d.join("manifest.csv"), manifest).unwrap();
    let out = d.join("out");
    succeeds(
        cartscope()
            .arg("batch")
            .arg(d.join("manifest.csv"))
            .arg("-o")
            .arg(&out)
            .args(["--backend", "cpu", "--no-report", "--quiet"])
            .args(["--no-umap", "--no-cluster", "--jobs", "2"]),
    );
    // Every sample completed: the bad contig tables fail their clonal part only.
    let (summary_header, summary) = read_csv(&out.join("batch_summary.csv"));
    assert!(summary.iter().all(|r| r["status"] == "ok"), "{summary:?}");
    assert!(
        !summary_header.contains(&"vdj".to_string()),
        "vdj is not metadata"
    );

    let want = reference(d, &SAMPLES, &batch_barcodes(&out), None);
    let (header, cells) = read_csv(&out.join("clonotypes.csv"));
    for c in [
        "IR_VJ_1_junction_aa",
        "IR_VDJ_2_umi_count",
        "car_positive",
        "phenotype",
    ] {
        assert!(header.contains(&c.to_string()), "{c}");
    }
    let theirs = want["cells"].as_array().unwrap();
    assert!(cells.len() > 1500, "too few cells to test: {}", cells.len());
    assert_eq!(cells.len(), theirs.len(), "cells with a receptor");
    let ours: HashMap<(String, String), &BTreeMap<String, String>> = cells
        .iter()
        .map(|r| ((r["sample_id"].clone(), r["barcode"].clone()), r))
        .collect();
    // The same partition: the clone maps are one-to-one.
    let mut fwd: HashMap<String, String> = HashMap::new();
    let mut back: HashMap<String, String> = HashMap::new();
    for t in theirs {
        let key = (
            t["sample_id"].as_str().unwrap().to_string(),
            t["barcode"].as_str().unwrap().to_string(),
        );
        let o = ours.get(&key).unwrap_or_else(|| panic!("{key:?} missing"));
        for f in ["chain_pairing", "receptor_type", "receptor_subtype"] {
            assert_eq!(o[f], t[f].as_str().unwrap(), "{key:?} {f}");
        }
        let size = t["clone_id_size"].as_u64().map(|s| s.to_string());
        assert_eq!(o["clone_size"], size.unwrap_or_default(), "{key:?}");
        match t["clone_id"].as_str() {
            None => assert_eq!(o["clone_id"], "", "{key:?}"),
            Some(c) => {
                let a = fwd.entry(o["clone_id"].clone()).or_insert(c.to_string());
                assert_eq!(a, c, "{key:?}: one cartscope clone, two scirpy clones");
                let b = back.entry(c.to_string()).or_insert(o["clone_id"].clone());
                assert_eq!(
                    *b, o["clone_id"],
                    "{key:?}: one scirpy clone, two cartscope clones"
                );
            }
        }
    }
    let n_clones = fwd.len();
    assert!(n_clones > 40, "{n_clones} clones");
    // Clone ids unique over the batch: no clone in two patients, though P1 and P2 share
    // three receptors.
    let mut patient_of: HashMap<&str, &str> = HashMap::new();
    for r in &cells {
        if !r["clone_id"].is_empty() {
            let p = patient_of.entry(&r["clone_id"]).or_insert(&r["patient"]);
            assert_eq!(*p, r["patient"], "clone {}", r["clone_id"]);
        }
    }
    let worst = assert_persistence(&out, &want);
    eprintln!("persistence: largest difference from the reference {worst:e}");
    // The data exercise what they should: several chain pairings, gamma-delta cells, clones
    // partly carried over from the product.
    let mut pairings: Vec<&str> = cells.iter().map(|r| r["chain_pairing"].as_str()).collect();
    pairings.sort_unstable();
    pairings.dedup();
    assert!(pairings.len() >= 5, "{pairings:?}");
    assert!(cells.iter().any(|r| r["receptor_subtype"] == "TRG+TRD"));
    let (_, pers) = read_csv(&out.join("persistence.csv"));
    for id in ["P1_d14", "P1_d28", "P2_d28"] {
        let r = pers.iter().find(|r| r["sample_id"] == id).unwrap();
        let f: f64 = r["product_clone_fraction"].parse().unwrap();
        let mh: f64 = r["morisita_horn_previous"].parse().unwrap();
        assert!(
            f > 0.05 && f < 0.999 && mh > 0.0 && mh < 0.999,
            "{id}: {f} {mh}"
        );
    }

    // clonotypes.parquet holds the CSV's rows and columns, typed.
    {
        use polars::prelude::{DataType, ParquetReader, SerReader};
        let df = ParquetReader::new(std::fs::File::open(out.join("clonotypes.parquet")).unwrap())
            .finish()
            .unwrap();
        assert_eq!(df.height(), cells.len());
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, header);
        assert_eq!(df.column("clone_size").unwrap().dtype(), &DataType::UInt64);
        assert_eq!(
            df.column("car_positive").unwrap().dtype(),
            &DataType::Boolean
        );
        assert_eq!(df.column("clone_id").unwrap().dtype(), &DataType::String);
    }

    // clones.csv: per clone its cells per time point, in day order, with VDJ only.
    let (ch, clones) = read_csv(&out.join("clones.csv"));
    let tps: Vec<&str> = ch.iter().filter_map(|c| c.strip_prefix("cells_")).collect();
    assert_eq!(tps, ["infusion", "IP", "day14", "day28"]);
    assert_eq!(clones.len(), n_clones);
    for c in &clones {
        let mine: Vec<&BTreeMap<String, String>> = cells
            .iter()
            .filter(|r| r["clone_id"] == c["clone_id"])
            .collect();
        assert_eq!(c["n_cells"], mine.len().to_string());
        for tp in &tps {
            let k = mine.iter().filter(|r| r["timepoint"] == *tp).count();
            let car = mine
                .iter()
                .filter(|r| r["timepoint"] == *tp && r["car_positive"] == "true")
                .count();
            assert_eq!(c[&format!("cells_{tp}")], k.to_string(), "{tp}");
            assert_eq!(c[&format!("car_cells_{tp}")], car.to_string(), "{tp}");
        }
        let in_product = mine
            .iter()
            .any(|r| r["timepoint"] == "infusion" || r["timepoint"] == "IP");
        assert_eq!(c["in_product"], in_product.to_string());
        let first = mine[0];
        assert_eq!(c["IR_VDJ_1_junction"], first["IR_VDJ_1_junction"]);
        assert_eq!(c["patient"], first["patient"]);
    }

    // The report (drawn in headless Chromium, no console message, every plot with marks):
    // clone tracking and overlap per patient, the product clones' share.
    let html = crate::browser::check_page(&out.join("batch_report.html"), "clonal_report.png");
    for id in [
        "clones_P1",
        "overlap_P1",
        "clones_P2",
        "overlap_P2",
        "product_clone_fraction",
    ] {
        assert!(html.contains(&format!("data-plot=\"{id}\"")), "{id}");
    }
    assert!(html.contains("missing.csv") && html.contains("bad.csv"));

    // aggregate rebuilds the same tables from the manifest copy (vdj paths absolute).
    let before: Vec<String> = ["persistence.csv", "clonotypes.csv", "clones.csv"]
        .iter()
        .map(|f| std::fs::read_to_string(out.join(f)).unwrap())
        .collect();
    for f in ["persistence.csv", "clonotypes.csv", "clones.csv"] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let copy = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    assert!(
        copy.contains(&d.join("vdj/P1_inf.csv").display().to_string()),
        "{copy}"
    );
    succeeds(cartscope().arg("aggregate").arg(&out));
    for (f, b) in ["persistence.csv", "clonotypes.csv", "clones.csv"]
        .iter()
        .zip(&before)
    {
        assert_eq!(&std::fs::read_to_string(out.join(f)).unwrap(), b, "{f}");
    }

    // --product-timepoint: day14 is now P1's product, and P2 has none.
    succeeds(
        cartscope()
            .arg("aggregate")
            .arg(&out)
            .args(["--product-timepoint", "DAY14"]),
    );
    let want = reference(d, &SAMPLES, &batch_barcodes(&out), Some("DAY14"));
    assert!(
        want["persistence"]["P2_d28"]
            .get("product_clone_fraction")
            .is_none()
    );
    assert!(
        want["persistence"]["P1_inf"]
            .get("product_clone_fraction")
            .is_some()
    );
    assert_persistence(&out, &want);

    // --joint: the stacked cells after QC get the patient-level clones in obs.
    let good = &SAMPLES[..5];
    let mut manifest = String::from("sample_id,path,patient,timepoint,day,vdj\n");
    for ((id, p, tp, day, vdj), m) in good.iter().zip(matrix) {
        manifest += &format!("{id},{m}.h5ad,{p},{tp},{day},vdj/{vdj}\n");
    }
    std::fs::write(d.join("good.csv"), manifest).unwrap();
    let joint = d.join("joint");
    succeeds(
        cartscope()
            .arg("run")
            .arg(d.join("good.csv"))
            .arg("--joint")
            .arg("-o")
            .arg(&joint)
            .args([
                "--backend",
                "cpu",
                "--no-report",
                "--quiet",
                "--no-umap",
                "--no-cluster",
            ]),
    );
    // scirpy on the stacked cells after QC: each sample's cells of the joint result.
    let joint_cells = crate::common::obs(&joint.join("result.h5ad")).index;
    let inputs: Vec<Vec<String>> = good
        .iter()
        .map(|(id, ..)| {
            let suffix = format!("-{id}");
            joint_cells
                .iter()
                .filter_map(|c| c.strip_suffix(&suffix).map(String::from))
                .collect()
        })
        .collect();
    let want = reference(d, good, &inputs, None);
    assert_joint_obs(&joint.join("result.h5ad"), &want);
}

/// The clonal obs of a joint result.h5ad against the reference over its cells.
fn assert_joint_obs(result: &Path, want: &Value) {
    use cartscope::io::Column;
    let obs = crate::common::obs(result);
    let text = |name: &str| -> Vec<Option<String>> {
        obs.column(name)
            .and_then(Column::as_strings)
            .unwrap_or_else(|| panic!("obs {name}"))
    };
    let (ids, pairing) = (text("clone_id"), text("chain_pairing"));
    let sizes = match obs.column("clone_id_size") {
        Some(Column::F64(v)) => v.clone(),
        other => panic!("clone_id_size: {other:?}"),
    };
    let theirs: HashMap<String, &Value> = want["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let key = format!(
                "{}-{}",
                c["barcode"].as_str().unwrap(),
                c["sample_id"].as_str().unwrap()
            );
            (key, c)
        })
        .collect();
    let (mut fwd, mut back) = (HashMap::new(), HashMap::new());
    let mut with_clone = 0;
    for (i, cell) in obs.index.iter().enumerate() {
        let Some(t) = theirs.get(cell) else {
            assert_eq!(ids[i], None, "{cell}");
            assert_eq!(pairing[i].as_deref(), Some("no IR"), "{cell}");
            continue;
        };
        assert_eq!(pairing[i].as_deref(), t["chain_pairing"].as_str(), "{cell}");
        match (t["clone_id"].as_str(), &ids[i]) {
            (None, None) => assert!(sizes[i].is_nan(), "{cell}"),
            (Some(c), Some(o)) => {
                with_clone += 1;
                assert_eq!(sizes[i], t["clone_id_size"].as_f64().unwrap(), "{cell}");
                assert_eq!(fwd.entry(o.clone()).or_insert(c), &c, "{cell}");
                assert_eq!(back.entry(c).or_insert(o.clone()), o, "{cell}");
            }
            other => panic!("{cell}: {other:?}"),
        }
    }
    assert!(
        with_clone > 1000,
        "{with_clone} cells with a clone after QC"
    );
}
