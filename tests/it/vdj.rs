//! VDJ clonotyping against scirpy 0.22.5: `tests/python/vdj_reference.py` runs scirpy's
//! `read_10x_vdj`/`read_airr`, `pp.index_chains`, `tl.chain_qc`, `pp.ir_dist(metric=
//! "identity")` + `tl.define_clonotypes` (or `define_clonotype_clusters` for amino acids) and
//! `tl.clonal_expansion` on every contig table shipped with scirpy (fetched by
//! `scripts/setup.sh` into `$CARTSCOPE_REAL_DATA/vdj`) and on hand-made edge cases; cartscope
//! must give every cell the same chains in the same slots, the same `receptor_type`,
//! `receptor_subtype` and `chain_pairing`, the same partition into clones (compared after
//! numbering clones by first appearance on both sides), clone sizes and expansion labels, for
//! every combination of `sequence`, `receptor_arms`, `dual_ir` and `same_v_gene`, plus the
//! `within_group` values and `same_j_gene`.
//!
//! Needs the test venv with scirpy (`scripts/test.sh`; `CARTSCOPE_PYTHON` names another
//! interpreter) and the real data; fails, never skips, without them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use cartscope::vdj::{
    CloneScope, ClonotypeOptions, Contigs, DualIr, ReceptorArms, SequenceKind, Slot, VdjOptions,
    WithinGroup, analyse, clonal_expansion, define_clonotypes, read_contigs_merged,
};
use serde_json::{Value, json};

use crate::python_interop::python;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A contig table of the scirpy wheel, as `scripts/setup.sh` extracts them.
pub(crate) fn real(name: &str) -> PathBuf {
    let p = crate::common::real_data("vdj").join(name);
    assert!(
        p.is_file(),
        "{}: missing; run scripts/setup.sh",
        p.display()
    );
    p
}

/// Every combination of sequence, receptor_arms, dual_ir and same_v_gene (within_group
/// receptor_type), then the other within_group values and same_j_gene.
fn grid() -> Vec<ClonotypeOptions> {
    let mut out = Vec::new();
    for sequence in [SequenceKind::Nt, SequenceKind::Aa] {
        for receptor_arms in [
            ReceptorArms::All,
            ReceptorArms::Any,
            ReceptorArms::Vj,
            ReceptorArms::Vdj,
        ] {
            for dual_ir in [DualIr::Any, DualIr::PrimaryOnly, DualIr::All] {
                for same_v_gene in [false, true] {
                    out.push(ClonotypeOptions {
                        sequence,
                        receptor_arms,
                        dual_ir,
                        same_v_gene,
                        ..ClonotypeOptions::default()
                    });
                }
            }
        }
    }
    for within_group in [WithinGroup::None, WithinGroup::ReceptorSubtype] {
        out.push(ClonotypeOptions {
            within_group,
            ..ClonotypeOptions::default()
        });
    }
    out.push(ClonotypeOptions {
        sequence: SequenceKind::Aa,
        receptor_arms: ReceptorArms::Any,
        same_v_gene: true,
        same_j_gene: true,
        within_group: WithinGroup::None,
        ..ClonotypeOptions::default()
    });
    out
}

/// The options as vdj_reference.py takes them (scirpy's argument values).
fn options_json(o: &ClonotypeOptions) -> Value {
    let arms = match o.receptor_arms {
        ReceptorArms::All => "all",
        ReceptorArms::Any => "any",
        ReceptorArms::Vj => "VJ",
        ReceptorArms::Vdj => "VDJ",
    };
    let dual = match o.dual_ir {
        DualIr::Any => "any",
        DualIr::PrimaryOnly => "primary_only",
        DualIr::All => "all",
    };
    let group = match o.within_group {
        WithinGroup::None => Value::Null,
        WithinGroup::ReceptorType => json!("receptor_type"),
        WithinGroup::ReceptorSubtype => json!("receptor_subtype"),
    };
    json!({
        "sequence": if o.sequence == SequenceKind::Nt { "nt" } else { "aa" },
        "receptor_arms": arms,
        "dual_ir": dual,
        "same_v_gene": o.same_v_gene,
        "same_j_gene": o.same_j_gene,
        "within_group": group,
    })
}

/// Runs vdj_reference.py on `inputs` (restricted to `barcodes` when given).
pub(crate) fn reference(
    format: &str,
    inputs: &[PathBuf],
    barcodes: Option<&[String]>,
    runs: &[ClonotypeOptions],
) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let runs_path = dir.path().join("runs.json");
    let runs_json: Vec<Value> = runs.iter().map(options_json).collect();
    std::fs::write(&runs_path, serde_json::to_string(&runs_json).unwrap()).unwrap();
    let out = dir.path().join("out.json");
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/python/vdj_reference.py"))
        .args(["--format", format, "--runs"])
        .arg(&runs_path)
        .arg("--out")
        .arg(&out);
    if let Some(b) = barcodes {
        let p = dir.path().join("barcodes.txt");
        std::fs::write(&p, b.join("\n")).unwrap();
        cmd.arg("--barcodes").arg(p);
    }
    cmd.args(inputs);
    let res = cmd.output().unwrap();
    assert!(
        res.status.success(),
        "vdj_reference.py failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Clone labels numbered by first appearance, so that two partitions compare as vectors.
pub(crate) fn canonical<T: std::hash::Hash + Eq + Clone>(ids: &[Option<T>]) -> Vec<Option<usize>> {
    let mut map: HashMap<T, usize> = HashMap::new();
    ids.iter()
        .map(|c| {
            c.as_ref().map(|c| {
                let n = map.len();
                *map.entry(c.clone()).or_insert(n)
            })
        })
        .collect()
}

/// What one comparison found.
#[derive(Default)]
struct Tally {
    cells: usize,
    with_ir: usize,
    runs: usize,
    /// Clones of the default run.
    clones: usize,
    mismatches: Vec<String>,
}

impl Tally {
    fn note(&mut self, what: String) {
        self.mismatches.push(what);
    }

    fn assert_clean(&self, name: &str) {
        println!(
            "{name}: {} cells, {} with IR, {} clones (defaults), {} option sets, {} mismatches",
            self.cells,
            self.with_ir,
            self.clones,
            self.runs,
            self.mismatches.len()
        );
        assert!(
            self.mismatches.is_empty(),
            "{name}: {} mismatches with scirpy, first ones:\n{}",
            self.mismatches.len(),
            self.mismatches[..self.mismatches.len().min(25)].join("\n")
        );
    }
}

/// A chain field as vdj_reference.py writes it.
fn chain_value(r: &cartscope::vdj::Receptor, slot: Slot, field: &str) -> Value {
    let Some(c) = r.chain(slot) else {
        return Value::Null;
    };
    let s = |v: &Option<String>| v.as_ref().map_or(Value::Null, |s| json!(s));
    match field {
        "junction" => s(&c.junction),
        "junction_aa" => s(&c.junction_aa),
        "v_call" => s(&c.v_call),
        "j_call" => s(&c.j_call),
        "umi_count" => c.umi_count.map_or(Value::Null, |u| json!(u)),
        "locus" => c.locus.map_or(Value::Null, |l| json!(l.as_str())),
        _ => unreachable!(),
    }
}

/// Compares cartscope with the reference on the cells of the reference (all of `contigs`).
fn compare(contigs: &Contigs, reference: &Value, runs: &[ClonotypeOptions]) -> Tally {
    let mut t = Tally::default();
    let cells = strings(&reference["cells"]);
    if cells != contigs.barcodes {
        t.note(format!(
            "cells differ: scirpy {} ({:?}...), cartscope {} ({:?}...)",
            cells.len(),
            &cells[..cells.len().min(3)],
            contigs.barcodes.len(),
            &contigs.barcodes[..contigs.barcodes.len().min(3)]
        ));
        return t;
    }
    let receptors = contigs.receptors();
    t.cells = cells.len();
    t.with_ir = receptors.iter().filter(|r| r.has_ir()).count();
    let labels = [
        ("receptor_type", strings(&reference["receptor_type"])),
        ("receptor_subtype", strings(&reference["receptor_subtype"])),
        ("chain_pairing", strings(&reference["chain_pairing"])),
    ];
    for (i, r) in receptors.iter().enumerate() {
        let ours = [
            r.qc.receptor_type.as_str(),
            r.qc.receptor_subtype.as_str(),
            r.qc.chain_pairing.as_str(),
        ];
        for ((name, theirs), o) in labels.iter().zip(ours) {
            if theirs[i] != o {
                t.note(format!(
                    "{}: {name} {o:?}, scirpy {:?}",
                    cells[i], theirs[i]
                ));
            }
        }
        for slot in Slot::ALL {
            for field in [
                "junction",
                "junction_aa",
                "v_call",
                "j_call",
                "umi_count",
                "locus",
            ] {
                let key = format!("{}_{field}", slot.as_str());
                let theirs = &reference["chains"][&key][i];
                let ours = chain_value(r, slot, field);
                if *theirs != ours {
                    t.note(format!("{}: {key} {ours}, scirpy {theirs}", cells[i]));
                }
            }
        }
    }
    for (k, opts) in runs.iter().enumerate() {
        let run = &reference["runs"][k];
        let ours = define_clonotypes(&receptors, opts, None).unwrap();
        let exp = clonal_expansion(&ours.clone_id, None, &[1, 2]).unwrap();
        let sizes: Vec<Option<u32>> = (0..cells.len()).map(|i| ours.clone_size(i)).collect();
        compare_run(&mut t, &cells, opts, run, &ours.clone_id, &sizes, &exp);
        if k == 0 {
            t.clones = ours.n_clones();
        }
    }
    t.runs = runs.len();
    t
}

/// Compares one clonotype run: partition, sizes and expansion labels.
fn compare_run(
    t: &mut Tally,
    cells: &[String],
    opts: &ClonotypeOptions,
    run: &Value,
    clone_id: &[Option<u32>],
    sizes: &[Option<u32>],
    expansion: &[String],
) {
    let theirs: Vec<Option<String>> = run["clone_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect();
    let (a, b) = (canonical(clone_id), canonical(&theirs));
    let tag = options_json(opts);
    for i in 0..cells.len() {
        if a[i] != b[i] {
            t.note(format!(
                "{tag}: {}: clone (canonical) {:?}, scirpy {:?}",
                cells[i], a[i], b[i]
            ));
        }
        let size = run["clone_id_size"][i].as_u64().map(|s| s as u32);
        if size != sizes[i] {
            t.note(format!(
                "{tag}: {}: size {:?}, scirpy {size:?}",
                cells[i], sizes[i]
            ));
        }
        if run["clonal_expansion"][i] != expansion[i].as_str() {
            t.note(format!(
                "{tag}: {}: expansion {}, scirpy {}",
                cells[i], expansion[i], run["clonal_expansion"][i]
            ));
        }
    }
}

fn check(name: &str, format: &str, inputs: &[PathBuf]) -> Tally {
    let contigs = read_contigs_merged(inputs).unwrap();
    let runs = grid();
    let reference = reference(format, inputs, None, &runs);
    let t = compare(&contigs, &reference, &runs);
    t.assert_clean(name);
    t
}

#[test]
fn scirpy_10x_t_cells() {
    let t = check(
        "pbmc3 T cells (10x)",
        "10x",
        &[real(
            "10x/vdj_nextgem_hs_pbmc3_t_filtered_contig_annotations.csv.gz",
        )],
    );
    assert!(t.cells > 1000 && t.clones > 1000, "{} cells", t.cells);
}

#[test]
fn scirpy_10x_b_cells() {
    let t = check(
        "melanoma B cells (10x)",
        "10x",
        &[real(
            "10x/sc5p_v2_hs_melanoma_10k_b_filtered_contig_annotations.csv.gz",
        )],
    );
    assert!(t.cells > 5000, "{} cells", t.cells);
}

#[test]
fn scirpy_10x_small_tables() {
    check(
        "filtered_contig_annotations.csv",
        "10x",
        &[real("10x/filtered_contig_annotations.csv")],
    );
    // An all_contig table (Cell Ranger 6 columns, TRUE/FALSE): non-cells are dropped.
    let all = real("10x/10k_BMMNC_5pv2_nextgem_Multiplex_vdj_t_all_contig_annotations_small.csv");
    let t = check(
        "all_contig_annotations (small)",
        "10x",
        std::slice::from_ref(&all),
    );
    assert_eq!(t.cells, 2);
    assert_eq!(read_contigs_merged(&[all]).unwrap().n_filtered_out, 2);
}

#[test]
fn scirpy_airr_tables() {
    for name in ["issue_625.tsv", "rearrangement_ig.tsv", "tra_issue_280.tsv"] {
        check(name, "airr", &[real(&format!("airr/{name}"))]);
    }
    check(
        "rearrangement_tra.tsv + rearrangement_trb.tsv",
        "airr",
        &[
            real("airr/rearrangement_tra.tsv"),
            real("airr/rearrangement_trb.tsv"),
        ],
    );
}

/// The cells of a made-up count matrix: two of every three VDJ cells plus cells without VDJ
/// data.
fn matrix_cells(contigs: &Contigs) -> (Vec<String>, usize) {
    let mut m: Vec<String> = Vec::new();
    let mut left_out = 0;
    for (i, b) in contigs.barcodes.iter().enumerate() {
        if i % 3 == 2 {
            left_out += 1;
        } else {
            m.push(b.clone());
        }
        if i % 40 == 0 {
            m.push(format!("GEXONLY{i}-1"));
        }
    }
    (m, left_out)
}

#[test]
fn scirpy_on_the_cells_of_a_matrix() {
    let input = real("10x/vdj_nextgem_hs_pbmc3_t_filtered_contig_annotations.csv.gz");
    let contigs = read_contigs_merged(std::slice::from_ref(&input)).unwrap();
    let (matrix, left_out) = matrix_cells(&contigs);
    let runs = [
        ClonotypeOptions::default(),
        ClonotypeOptions {
            receptor_arms: ReceptorArms::Any,
            ..ClonotypeOptions::default()
        },
    ];
    let mut t = Tally::default();
    for scope in [CloneScope::MatrixCells, CloneScope::AllVdjCells] {
        // scirpy restricted to the matrix's cells, or on every VDJ cell.
        let subset = (scope == CloneScope::MatrixCells).then_some(&matrix[..]);
        let reference = reference("10x", std::slice::from_ref(&input), subset, &runs);
        let ref_cells = strings(&reference["cells"]);
        let pos: HashMap<&str, usize> = ref_cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        for (k, opts) in runs.iter().enumerate() {
            let o = VdjOptions {
                clonotypes: *opts,
                scope,
                ..VdjOptions::default()
            };
            let res = analyse(&contigs, Some(&matrix), &o).unwrap();
            assert_eq!(res.barcodes, matrix);
            assert_eq!(res.summary.n_vdj_cells_not_in_matrix, left_out);
            // Cells of the matrix with VDJ data, in scirpy's order; the others have nothing.
            let mut ours = vec![None; ref_cells.len()];
            let mut sizes = vec![None; ref_cells.len()];
            let mut exp = vec![String::new(); ref_cells.len()];
            for (i, b) in res.barcodes.iter().enumerate() {
                match pos.get(b.as_str()) {
                    Some(&j) => {
                        ours[j] = res.clone_id[i];
                        sizes[j] = res.clone_size[i];
                        exp[j] = res.clonal_expansion[i].clone();
                    }
                    None if b.starts_with("GEXONLY") => {
                        assert_eq!(res.receptors[i].qc.chain_pairing.as_str(), "no IR");
                        assert_eq!(
                            (res.clone_id[i], res.clonal_expansion[i].as_str()),
                            (None, "nan")
                        );
                    }
                    None => panic!("{b}: a VDJ cell of the matrix missing from scirpy's output"),
                }
            }
            if scope == CloneScope::AllVdjCells {
                // scirpy ran on every VDJ cell: compare the matrix's cells.
                let run = &reference["runs"][k];
                let theirs: Vec<Option<String>> = ref_cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| matrix.contains(c))
                    .map(|(j, _)| run["clone_id"][j].as_str().map(str::to_string))
                    .collect();
                let mine: Vec<Option<u32>> = ref_cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| matrix.contains(c))
                    .map(|(j, _)| ours[j])
                    .collect();
                assert_eq!(canonical(&mine), canonical(&theirs), "{scope:?} {k}");
                for (j, c) in ref_cells.iter().enumerate() {
                    if matrix.contains(c) {
                        assert_eq!(sizes[j], run["clone_id_size"][j].as_u64().map(|s| s as u32));
                        assert_eq!(run["clonal_expansion"][j], exp[j].as_str(), "{c}");
                    }
                }
            } else {
                let run = &reference["runs"][k];
                compare_run(&mut t, &ref_cells, opts, run, &ours, &sizes, &exp);
            }
        }
    }
    t.cells = matrix.len();
    t.runs = 2 * runs.len();
    t.assert_clean("pbmc3 on the cells of a matrix");
}

/// A chain of the hand-made tables: locus, V, J, junction_aa, junction.
type Chain = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const A1: Chain = ("TRA", "TRAV1", "TRAJ1", "CAVAF", "TGTGCAGTAGCATTT");
const A1_SILENT: Chain = ("TRA", "TRAV1", "TRAJ1", "CAVAF", "TGTGCGGTAGCATTT");
const A1_OTHER_V: Chain = ("TRA", "TRAV9", "TRAJ1", "CAVAF", "TGTGCAGTAGCATTT");
const A2: Chain = ("TRA", "TRAV2", "TRAJ2", "CAVBF", "TGTGCAGTAGGCTTT");
const A3: Chain = ("TRA", "TRAV3", "TRAJ3", "CAVCF", "TGTGCAGTATGCTTT");
const B1: Chain = ("TRB", "TRBV1", "TRBJ1", "CASSAF", "TGTGCCAGCAGCGCATTT");
const B2: Chain = ("TRB", "TRBV2", "TRBJ2", "CASSBF", "TGTGCCAGCAGCGGATTT");
const B3: Chain = ("TRB", "TRBV3", "TRBJ3", "CASSCF", "TGTGCCAGCAGCTGCTTT");
// Same junctions as A1/B1 on other loci.
const G1: Chain = ("TRG", "TRGV1", "TRGJ1", "CAVAF", "TGTGCAGTAGCATTT");
const D1: Chain = ("TRD", "TRDV1", "TRDJ1", "CASSAF", "TGTGCCAGCAGCGCATTT");
const H1: Chain = ("IGH", "IGHV1", "IGHJ1", "CASSAF", "TGTGCCAGCAGCGCATTT");
const K1: Chain = ("IGK", "IGKV1", "IGKJ1", "CAVAF", "TGTGCAGTAGCATTT");
const L1: Chain = ("IGL", "IGLV1", "IGLJ1", "CQQF", "TGTCAGCAGTTT");
// Equal counts: the order comes from the junctions alone.
const TIE_A: Chain = ("TRA", "TRAV1", "TRAJ1", "CAZBF", "TGTAAATTT");
const TIE_B: Chain = ("TRA", "TRAV1", "TRAJ1", "CAZAF", "TGTAAATTT");
const TIE_C: Chain = ("TRA", "TRAV1", "TRAJ1", "CAZCF", "TGTCCCTTT");

/// A row of a hand-made 10x table: (chain, umis, productive, is_cell, high_confidence).
type TenxRow = (
    Chain,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn ok(chain: Chain, umis: &'static str) -> TenxRow {
    (chain, umis, "True", "True", "True")
}

/// A Cell Ranger 3 style all_contig table exercising the rules: chain order and ties,
/// every chain pairing, receptor subtype and QC filter, dual chains, silent mutations,
/// orphan and missing junctions, booleans in several spellings, quoted fields.
fn tenx_edge_table() -> String {
    let cells: Vec<(&str, Vec<TenxRow>)> = vec![
        ("c01", vec![ok(A1, "5"), ok(B1, "5")]),
        ("c02", vec![ok(A1, "3"), ok(B1, "9")]),
        ("c03", vec![ok(A1, "5"), ok(A2, "2"), ok(B1, "4")]),
        ("c04", vec![ok(A1, "3"), ok(A2, "6"), ok(B1, "4")]),
        ("c05", vec![ok(A1, "5"), ok(B2, "5")]),
        ("c06", vec![ok(A3, "5"), ok(B2, "5")]),
        ("c07", vec![ok(A1, "5")]),
        ("c08", vec![ok(B1, "5")]),
        ("c09", vec![ok(A1_OTHER_V, "5"), ok(B1, "5")]),
        ("c10", vec![ok(A1, "5"), ok(B1, "5"), ok(B3, "2")]),
        (
            "c11",
            vec![ok(A1, "5"), ok(A2, "4"), ok(A3, "3"), ok(B1, "5")],
        ),
        ("c12", vec![ok(A1, "5"), ok(D1, "5")]),
        ("c13", vec![ok(G1, "5"), ok(D1, "5")]),
        ("c14", vec![ok(K1, "5"), ok(H1, "5")]),
        ("c15", vec![ok(H1, "5"), ok(K1, "5"), ok(L1, "2")]),
        ("c16", vec![ok(K1, "5"), ok(L1, "5")]),
        ("c17", vec![ok(A1, "5"), ok(H1, "5")]),
        (
            "c18",
            vec![
                (A1, "5", "False", "True", "True"),
                (B1, "5", "false", "True", "True"),
            ],
        ),
        (
            "c19",
            vec![(
                ("Multi", "None", "TRAJ1", "None", "None"),
                "1",
                "None",
                "True",
                "True",
            )],
        ),
        (
            "c20",
            vec![
                (A1, "5", "True", "False", "True"),
                (B1, "5", "True", "False", "False"),
            ],
        ),
        ("c21", vec![(A1, "5", "True", "True", "False"), ok(B1, "5")]),
        (
            "c22",
            vec![ok(TIE_A, "2"), ok(TIE_B, "2"), ok(TIE_C, "2"), ok(B1, "1")],
        ),
        (
            "c23",
            vec![ok(TIE_A, "2"), ok(TIE_C, "2"), ok(TIE_B, "2"), ok(B2, "1")],
        ),
        (
            "c24",
            vec![
                ok(("TRA", "TRAV1", "TRAJ1", "CAVAF", "None"), "5"),
                ok(B1, "5"),
            ],
        ),
        ("c25", vec![ok(A1_SILENT, "5"), ok(B1, "5")]),
        ("c26", vec![ok(A1, "5"), ok(B3, "7"), ok(B1, "5")]),
        (
            "c27",
            vec![
                (A1, "4", "true", "TRUE", "true"),
                (B1, "None", "TRUE", "true", "True"),
            ],
        ),
        ("c28", vec![ok(A2, "5"), ok(B2, "5")]),
        ("c29", vec![ok(A1, "5"), ok(A1, "5"), ok(B1, "5")]),
        (
            "c30",
            vec![
                ok(("None", "TRAV1", "TRAJ1", "CAVAF", "TGTGCAGTAGCATTT"), "5"),
                ok(B2, "3"),
            ],
        ),
        ("c31", vec![ok(A2, "1"), ok(A1, "1"), ok(B2, "1")]),
    ];
    let mut s = String::from(
        "barcode,is_cell,contig_id,high_confidence,length,chain,v_gene,d_gene,j_gene,c_gene,\
         full_length,productive,cdr3,cdr3_nt,reads,umis,raw_clonotype_id,raw_consensus_id\n",
    );
    // Cells out of barcode order: scirpy (pandas' groupby) sorts them.
    for (bc, rows) in cells.iter().rev() {
        for (k, ((locus, v, j, aa, nt), umis, prod, is_cell, hc)) in rows.iter().enumerate() {
            let reads = if *umis == "None" {
                "None".to_string()
            } else {
                format!("{}", 100 + k)
            };
            s.push_str(&format!(
                "{bc}-1,{is_cell},\"{bc}-1_contig_{k}\",{hc},500,{locus},{v},None,{j},None,True,\
                 {prod},{aa},{nt},{reads},{umis},\"clonotype,{k}\",None\n"
            ));
        }
    }
    s
}

/// An AIRR table without `locus` (inferred from the genes) and `umi_count` (chains ordered by
/// `duplicate_count`, then `consensus_count`), with productive as T/F/empty.
fn airr_edge_table() -> String {
    let rows: &[[&str; 9]] = &[
        // cell, productive, v, j, c, junction, junction_aa, duplicate_count, consensus_count
        ["x1", "T", "TRAV1", "TRAJ1", "TRAC", A1.4, A1.3, "5", "10"],
        ["x1", "T", "TRBV1", "TRBJ1", "TRBC1", B1.4, B1.3, "5", "10"],
        ["x2", "T", "TRAV1", "TRAJ1", "TRAC", A1.4, A1.3, "3", "50"],
        ["x2", "T", "TRAV2", "TRAJ2", "TRAC", A2.4, A2.3, "3", "60"],
        ["x2", "T", "TRBV1", "TRBJ1", "TRBC1", B1.4, B1.3, "1", "1"],
        ["x3", "F", "TRAV1", "TRAJ1", "TRAC", A1.4, A1.3, "5", "10"],
        ["x3", "", "TRBV1", "TRBJ1", "TRBC1", B1.4, B1.3, "5", "10"],
        ["x3", "T", "TRBV2", "TRBJ2", "TRBC1", B2.4, B2.3, "5", "10"],
        [
            "x4",
            "T",
            "TRAV29/DV5",
            "TRDJ1",
            "TRDC",
            B2.4,
            B2.3,
            "5",
            "10",
        ],
        ["x4", "T", "TRAV1", "TRAJ1", "TRAC", A1.4, A1.3, "5", "10"],
        [
            "x5",
            "T",
            "TRAV29/DV5",
            "TRAJ1",
            "TRAC",
            A1.4,
            A1.3,
            "5",
            "10",
        ],
        ["x5", "T", "TRBV1", "TRBJ1", "TRBC1", B1.4, B1.3, "5", "10"],
        ["x6", "T", "TRAV1", "TRAJ1", "TRAC", A1.4, "None", "5", "10"],
        ["x6", "T", "TRBV1", "TRBJ1", "TRBC1", B1.4, B1.3, "5", "10"],
        ["x7", "T", "IGHV1", "IGHJ1", "IGHM", H1.4, H1.3, "5", "10"],
        ["x7", "T", "IGLV1", "IGLJ1", "IGLC1", L1.4, L1.3, "9", "10"],
        ["x8", "T", "TRAV1", "TRBJ1", "", A1.4, A1.3, "5", "10"],
        ["x8", "T", "TRBV1", "TRBJ1", "TRBC1", B1.4, B1.3, "5", "10"],
        [
            "\"x9\"", "T", "TRAV1", "TRAJ1", "TRAC", A1.4, A1.3, "5", "10",
        ],
        ["x9", "T", "TRBV1", "TRBJ1", "TRBC1", B1.4, B1.3, "", "10"],
        ["x10", "T", "TRAV1", "TRAJ1", "TRAC", A1.4, A1.3, "", "10"],
        ["x10", "T", "TRAV2", "TRAJ2", "TRAC", A2.4, A2.3, "1", ""],
        ["x10", "T", "TRBV1", "TRBJ1", "TRBC1", B1.4, B1.3, "5", "10"],
    ];
    let mut s = String::from(
        "cell_id\tsequence_id\tproductive\tv_call\td_call\tj_call\tc_call\tjunction\t\
         junction_aa\tduplicate_count\tconsensus_count\n",
    );
    for (k, [cell, prod, v, j, c, nt, aa, dup, cons]) in rows.iter().enumerate() {
        s.push_str(&format!(
            "{cell}\ts{k}\t{prod}\t{v}\t\t{j}\t{c}\t{nt}\t{aa}\t{dup}\t{cons}\n"
        ));
    }
    s
}

#[test]
fn scirpy_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    let tenx = dir.path().join("all_contig_annotations.csv");
    std::fs::write(&tenx, tenx_edge_table()).unwrap();
    let t = check("hand-made 10x table", "10x", std::slice::from_ref(&tenx));
    assert_eq!(t.cells, 30, "c20 is not a cell");
    let airr = dir.path().join("edge.tsv");
    std::fs::write(&airr, airr_edge_table()).unwrap();
    let t = check("hand-made AIRR table", "airr", &[airr]);
    assert_eq!(t.cells, 10);
}

/// A small deterministic generator (SplitMix64) for the random tables.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One random contig: (locus, v, j, junction_aa, junction, umis, reads, productive).
type RandomContig = (&'static str, String, String, String, String, u64, u64, bool);

/// Random cells drawn from `pool` amino-acid junctions and few genes and counts, so that chains collide across
/// cells and loci, dual chains and ties abound and clones form long chains under `"any"`.
/// Every chain has a V and J call and both junctions (scirpy's clonotypes are undefined or
/// crash otherwise; those cases are in the hand-made tables).
fn random_cells(seed: u64, n_cells: usize, pool: u64) -> Vec<(String, Vec<RandomContig>)> {
    const LOCI: [&str; 12] = [
        "TRA", "TRA", "TRA", "TRB", "TRB", "TRB", "TRG", "TRD", "IGH", "IGK", "IGL", "Multi",
    ];
    let mut r = Mix(seed);
    (0..n_cells)
        .map(|i| {
            let n = [1, 2, 2, 2, 3, 3, 4, 5][r.below(8) as usize];
            let contigs = (0..n)
                .map(|_| {
                    let locus = LOCI[r.below(LOCI.len() as u64) as usize];
                    let gene = if locus == "Multi" { "TRA" } else { locus };
                    let aa = r.below(pool);
                    // Two nucleotide spellings of some amino-acid junctions.
                    let nt = aa * 2 + u64::from(aa < 2 && r.below(3) == 0);
                    let letters = |mut x: u64, alphabet: &[u8]| -> String {
                        (0..4)
                            .map(|_| {
                                let c = alphabet[(x % alphabet.len() as u64) as usize] as char;
                                x /= alphabet.len() as u64;
                                c
                            })
                            .collect()
                    };
                    (
                        locus,
                        format!("{gene}V{}", r.below(2)),
                        format!("{gene}J{}", r.below(2)),
                        format!("CAS{}F", letters(aa, b"ACDEGHKLMNPQRSTVWY")),
                        format!("TGTGCAAGC{}TTT", letters(nt, b"ACGT")),
                        1 + r.below(3),
                        1 + r.below(2),
                        r.below(10) != 0,
                    )
                })
                .collect();
            (format!("R{:05}-1", (i * 7919) % 100_000), contigs)
        })
        .collect()
}

fn random_tenx(cells: &[(String, Vec<RandomContig>)]) -> String {
    let mut s = String::from(
        "barcode,is_cell,contig_id,high_confidence,length,chain,v_gene,d_gene,j_gene,c_gene,\
         full_length,productive,cdr3,cdr3_nt,reads,umis,raw_clonotype_id,raw_consensus_id\n",
    );
    for (bc, contigs) in cells {
        for (k, (locus, v, j, aa, nt, umis, reads, prod)) in contigs.iter().enumerate() {
            let prod = if *prod { "True" } else { "False" };
            s.push_str(&format!(
                "{bc},True,{bc}_contig_{k},True,500,{locus},{v},None,{j},None,True,{prod},{aa},\
                 {nt},{reads},{umis},None,None\n"
            ));
        }
    }
    s
}

fn random_airr(cells: &[(String, Vec<RandomContig>)]) -> String {
    let mut s = String::from(
        "cell_id\tsequence_id\tlocus\tproductive\tv_call\tj_call\tjunction\tjunction_aa\t\
         umi_count\tconsensus_count\n",
    );
    for (bc, contigs) in cells {
        for (k, (locus, v, j, aa, nt, umis, reads, prod)) in contigs.iter().enumerate() {
            let locus = if *locus == "Multi" { "" } else { locus };
            let prod = if *prod { "T" } else { "F" };
            s.push_str(&format!(
                "{bc}\t{bc}_{k}\t{locus}\t{prod}\t{v}\t{j}\t{nt}\t{aa}\t{umis}\t{reads}\n"
            ));
        }
    }
    s
}

#[test]
fn scirpy_random_tables() {
    let dir = tempfile::tempdir().unwrap();
    // Few junctions: large clones joined through shared chains.
    let tenx = dir.path().join("random.csv");
    std::fs::write(&tenx, random_tenx(&random_cells(7, 800, 5))).unwrap();
    let t = check("random 10x table, 5 junctions", "10x", &[tenx]);
    assert!(
        t.with_ir > 600 && t.clones < t.with_ir / 10,
        "{} clones",
        t.clones
    );
    let airr = dir.path().join("random.tsv");
    std::fs::write(&airr, random_airr(&random_cells(11, 800, 5))).unwrap();
    check("random AIRR table, 5 junctions", "airr", &[airr]);
    // More junctions: many small clones.
    let tenx = dir.path().join("random30.csv");
    std::fs::write(&tenx, random_tenx(&random_cells(13, 800, 30))).unwrap();
    let t = check("random 10x table, 30 junctions", "10x", &[tenx]);
    assert!(t.clones > 100, "{} clones", t.clones);
}

/// `simulate --vdj` contigs: scirpy and cartscope agree on every VDJ cell for the whole option
/// grid, and on the cells of the simulated matrix (chain QC labels, partition, sizes); the
/// simulated defects all show up as scirpy labels them.
#[test]
fn scirpy_on_simulated_contigs() {
    let dir = tempfile::tempdir().unwrap();
    let h5ad = dir.path().join("P01_day14.h5ad");
    let sim = cartscope::simulate::SimOptions {
        cells: 2000,
        genes: 800,
        seed: 2026,
        timepoint: "day14".into(),
        vdj: true,
        ..Default::default()
    };
    cartscope::simulate::simulate(&h5ad, &sim).unwrap();
    let input = cartscope::simulate::default_vdj_path(&h5ad);
    let t = check(
        "simulated day 14 (10x)",
        "10x",
        std::slice::from_ref(&input),
    );
    assert!(t.cells > 1000 && t.clones > 500, "{} cells", t.cells);
    let contigs = read_contigs_merged(std::slice::from_ref(&input)).unwrap();
    let src = cartscope::io::CountSource::open(&h5ad, &Default::default()).unwrap();
    let matrix = src.obs.index.clone();
    let res = analyse(&contigs, Some(&matrix), &VdjOptions::default()).unwrap();
    let runs = [ClonotypeOptions::default()];
    let reference = reference("10x", std::slice::from_ref(&input), Some(&matrix), &runs);
    let ref_cells = strings(&reference["cells"]);
    let row: HashMap<&str, usize> = matrix
        .iter()
        .enumerate()
        .map(|(i, b)| (b.as_str(), i))
        .collect();
    let idx: Vec<usize> = ref_cells.iter().map(|c| row[c.as_str()]).collect();
    assert_eq!(idx.len(), res.summary.n_cells_with_contigs);
    let mut tally = Tally::default();
    let pairing = strings(&reference["chain_pairing"]);
    for (name, theirs) in [
        ("receptor_type", strings(&reference["receptor_type"])),
        ("receptor_subtype", strings(&reference["receptor_subtype"])),
        ("chain_pairing", pairing.clone()),
    ] {
        for (j, &i) in idx.iter().enumerate() {
            let q = &res.receptors[i].qc;
            let ours = match name {
                "receptor_type" => q.receptor_type.as_str(),
                "receptor_subtype" => q.receptor_subtype.as_str(),
                _ => q.chain_pairing.as_str(),
            };
            if ours != theirs[j] {
                tally.note(format!(
                    "{}: {name} {ours}, scirpy {}",
                    ref_cells[j], theirs[j]
                ));
            }
        }
    }
    let pick = |v: &[Option<u32>]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let exp: Vec<String> = idx
        .iter()
        .map(|&i| res.clonal_expansion[i].clone())
        .collect();
    compare_run(
        &mut tally,
        &ref_cells,
        &runs[0],
        &reference["runs"][0],
        &pick(&res.clone_id),
        &pick(&res.clone_size),
        &exp,
    );
    tally.cells = idx.len();
    tally.runs = runs.len();
    tally.assert_clean("simulated day 14 on the cells of the matrix");
    let count = |label: &str| pairing.iter().filter(|p| *p == label).count();
    let counts: Vec<(&str, usize)> = [
        "single pair",
        "orphan VDJ",
        "orphan VJ",
        "extra VJ",
        "extra VDJ",
        "two full chains",
        "multichain",
        "no IR",
    ]
    .iter()
    .map(|&l| (l, count(l)))
    .collect();
    println!("simulated chain pairing: {counts:?}");
    for (label, n) in &counts[..5] {
        assert!(*n > 0, "no {label} cell: {counts:?}");
    }
    assert!(count("multichain") > 0 && count("single pair") > ref_cells.len() / 2);
    assert!(contigs.n_filtered_out > 0 && res.summary.n_vdj_cells_not_in_matrix > 0);
    let subtypes = strings(&reference["receptor_subtype"]);
    assert!(subtypes.iter().any(|s| s == "TRG+TRD"));
}
