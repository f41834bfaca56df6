//! T- and B-cell receptor clonotypes from 10x Genomics VDJ or AIRR contig tables, reproducing
//! scirpy 0.22.5 (docs/vdj.md).
//!
//! The steps, each scirpy's function of the same name with its defaults:
//! 1. read the contigs ([`read_contigs`]: 10x `filtered_contig_annotations.csv` /
//!    `all_contig_annotations.csv`, or an AIRR rearrangement TSV; `read_10x_vdj`,
//!    `read_airr`);
//! 2. per cell, keep the productive chains with a `junction_aa` and an IMGT locus, and index
//!    up to two VJ and two VDJ chains by expression ([`chains::index_chains`],
//!    `pp.index_chains`);
//! 3. label receptor type, subtype and chain pairing ([`chains::chain_qc`], `tl.chain_qc`);
//! 4. define clonotypes by identical junctions ([`clonotypes::define_clonotypes`],
//!    `pp.ir_dist(metric="identity")` + `tl.define_clonotypes`) and size classes
//!    ([`clonotypes::clonal_expansion`], `tl.clonal_expansion`).
//!
//! [`analyse`] runs 2-4 for the cells of a count matrix: cells without contigs are `no IR`,
//! contig barcodes that are not cells of the matrix are counted in [`VdjSummary`] (never an
//! error). By default ([`CloneScope::MatrixCells`]) clonotypes are defined over the matrix's
//! cells only, as scirpy does on an AnnData restricted to them; [`CloneScope::AllVdjCells`]
//! defines them over every VDJ cell first, as scirpy does on the `airr` modality of a MuData.
//!
//! ```no_run
//! use cartscope::vdj::{analyse, read_contigs, VdjOptions};
//! let contigs = read_contigs("filtered_contig_annotations.csv".as_ref())?;
//! let res = analyse(&contigs, None, &VdjOptions::default())?;
//! for (bc, r) in res.barcodes.iter().zip(&res.receptors) {
//!     println!("{bc}\t{}\t{}", r.qc.chain_pairing.as_str(), r.qc.receptor_subtype.as_str());
//! }
//! println!("{} clones", res.summary.n_clones);
//! # Ok::<(), cartscope::Error>(())
//! ```

pub mod chains;
pub mod clonotypes;
mod read;
pub mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use chains::{ChainPairing, ChainQc, Receptor, ReceptorSubtype, ReceptorType, Slot};
pub use clonotypes::{
    ClonotypeOptions, Clonotypes, DualIr, ReceptorArms, SequenceKind, WithinGroup,
    clonal_expansion, define_clonotypes, expansion_categories, expansion_label,
};
pub use read::{read_contigs, read_contigs_merged};
pub use stats::Repertoire;

use crate::error::{Error, Result};
use crate::io::{Column, Frame};

/// An IMGT locus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Locus {
    /// TCR alpha (VJ).
    Tra,
    /// TCR beta (VDJ).
    Trb,
    /// TCR gamma (VJ).
    Trg,
    /// TCR delta (VDJ).
    Trd,
    /// Immunoglobulin heavy (VDJ).
    Igh,
    /// Immunoglobulin kappa (VJ).
    Igk,
    /// Immunoglobulin lambda (VJ).
    Igl,
}

impl Locus {
    /// The locus of an IMGT name (`TRA`, ...).
    pub fn parse(s: &str) -> Option<Locus> {
        Some(match s {
            "TRA" => Locus::Tra,
            "TRB" => Locus::Trb,
            "TRG" => Locus::Trg,
            "TRD" => Locus::Trd,
            "IGH" => Locus::Igh,
            "IGK" => Locus::Igk,
            "IGL" => Locus::Igl,
            _ => return None,
        })
    }

    /// The IMGT name.
    pub fn as_str(self) -> &'static str {
        match self {
            Locus::Tra => "TRA",
            Locus::Trb => "TRB",
            Locus::Trg => "TRG",
            Locus::Trd => "TRD",
            Locus::Igh => "IGH",
            Locus::Igk => "IGK",
            Locus::Igl => "IGL",
        }
    }

    /// Whether the locus has a V-J junction (TRA, TRG, IGK, IGL) rather than V-D-J.
    pub fn is_vj(self) -> bool {
        matches!(self, Locus::Tra | Locus::Trg | Locus::Igk | Locus::Igl)
    }
}

/// One contig (a chain) of a cell, with the AIRR fields clonotyping uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contig {
    /// `sequence_id` (10x `contig_id`).
    pub sequence_id: Option<String>,
    /// `locus` (10x `chain`); none for `Multi` or a missing value.
    pub locus: Option<Locus>,
    /// `productive` (a missing value is false).
    pub productive: bool,
    /// Nucleotide junction (10x `cdr3_nt`).
    pub junction: Option<String>,
    /// Amino-acid junction (10x `cdr3`).
    pub junction_aa: Option<String>,
    /// V gene call.
    pub v_call: Option<String>,
    /// D gene call.
    pub d_call: Option<String>,
    /// J gene call.
    pub j_call: Option<String>,
    /// Constant gene call.
    pub c_call: Option<String>,
    /// UMIs (10x `umis`).
    pub umi_count: Option<u64>,
    /// AIRR `duplicate_count` (absent from 10x files).
    pub duplicate_count: Option<u64>,
    /// Reads (10x `reads`).
    pub consensus_count: Option<u64>,
}

/// The format of a contig table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContigFormat {
    /// 10x Genomics `*_contig_annotations.csv`.
    TenxCsv,
    /// AIRR rearrangement TSV.
    Airr,
}

/// The contigs of a table, grouped by cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contigs {
    /// The format (of the first file, when several were merged).
    pub format: ContigFormat,
    /// The files read.
    pub sources: Vec<PathBuf>,
    /// The cells' barcodes (cell ids), in scirpy's order.
    pub barcodes: Vec<String>,
    /// Cell `i`'s contigs are `contigs[offsets[i]..offsets[i + 1]]`.
    pub offsets: Vec<usize>,
    /// Every kept contig, grouped by cell, each cell's in file order.
    pub contigs: Vec<Contig>,
    /// Contigs dropped as not `is_cell` and `high_confidence` (10x `all_contig` tables).
    pub n_filtered_out: usize,
}

impl Contigs {
    /// Builds the table from (barcode, contig) rows, already in cell order for 10x (sorted);
    /// AIRR rows are grouped by first appearance here.
    fn from_rows(
        format: ContigFormat,
        path: &Path,
        rows: Vec<(String, Contig)>,
        n_filtered_out: usize,
    ) -> Self {
        let mut out = Contigs {
            format,
            sources: vec![path.to_path_buf()],
            barcodes: Vec::new(),
            offsets: vec![0],
            contigs: Vec::new(),
            n_filtered_out,
        };
        out.push_rows(rows);
        out
    }

    fn push_rows(&mut self, rows: Vec<(String, Contig)>) {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut per_cell = self.cells_owned();
        let mut order = std::mem::take(&mut self.barcodes);
        for (i, bc) in order.iter().enumerate() {
            index.insert(bc.clone(), i);
        }
        for (bc, c) in rows {
            let i = *index.entry(bc.clone()).or_insert_with(|| {
                order.push(bc);
                per_cell.push(Vec::new());
                per_cell.len() - 1
            });
            per_cell[i].push(c);
        }
        self.barcodes = order;
        self.offsets = vec![0];
        self.contigs.clear();
        for c in per_cell {
            self.contigs.extend(c);
            self.offsets.push(self.contigs.len());
        }
    }

    fn cells_owned(&mut self) -> Vec<Vec<Contig>> {
        let mut contigs = std::mem::take(&mut self.contigs).into_iter();
        self.offsets
            .windows(2)
            .map(|w| contigs.by_ref().take(w[1] - w[0]).collect())
            .collect()
    }

    /// Joins tables: the contigs of a cell found in several tables are concatenated in table
    /// order; cells keep the order of their first appearance.
    pub fn merge(parts: Vec<Contigs>) -> Contigs {
        let mut parts = parts.into_iter();
        let Some(mut out) = parts.next() else {
            return Contigs {
                format: ContigFormat::Airr,
                sources: Vec::new(),
                barcodes: Vec::new(),
                offsets: vec![0],
                contigs: Vec::new(),
                n_filtered_out: 0,
            };
        };
        for mut p in parts {
            let cells = p.cells_owned();
            let rows = p
                .barcodes
                .drain(..)
                .zip(cells)
                .flat_map(|(bc, cs)| cs.into_iter().map(move |c| (bc.clone(), c)))
                .collect();
            out.push_rows(rows);
            out.sources.append(&mut p.sources);
            out.n_filtered_out += p.n_filtered_out;
        }
        out
    }

    /// The number of cells.
    pub fn n_cells(&self) -> usize {
        self.barcodes.len()
    }

    /// The contigs of cell `i`.
    pub fn cell(&self, i: usize) -> &[Contig] {
        &self.contigs[self.offsets[i]..self.offsets[i + 1]]
    }

    /// `index_chains` and `chain_qc` for every cell, in cell order.
    pub fn receptors(&self) -> Vec<Receptor> {
        (0..self.n_cells())
            .map(|i| Receptor::from_contigs(self.cell(i)))
            .collect()
    }
}

/// Which cells clonotypes are defined over when a matrix's cells are given.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CloneScope {
    /// The cells of the matrix only (scirpy on the AnnData of those cells): clone sizes count
    /// cells of the matrix.
    #[default]
    #[value(name = "matrix_cells")]
    MatrixCells,
    /// Every VDJ cell of the contig table (scirpy on a MuData's `airr` modality): clone sizes
    /// also count VDJ barcodes that are not cells of the matrix.
    #[value(name = "all_vdj_cells")]
    AllVdjCells,
}

/// Options of [`analyse`]; the defaults are scirpy's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VdjOptions {
    /// The clonotype definition.
    pub clonotypes: ClonotypeOptions,
    /// `clonal_expansion` breakpoints (scirpy's default `(1, 2)`).
    pub expansion_breakpoints: Vec<u32>,
    /// Which cells clonotypes are defined over.
    pub scope: CloneScope,
}

impl Default for VdjOptions {
    fn default() -> Self {
        VdjOptions {
            clonotypes: ClonotypeOptions::default(),
            expansion_breakpoints: vec![1, 2],
            scope: CloneScope::default(),
        }
    }
}

/// Counts of an analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VdjSummary {
    /// Contigs kept by the reader.
    pub n_contigs: usize,
    /// Contigs dropped as not `is_cell` and `high_confidence`.
    pub n_contigs_filtered_out: usize,
    /// Cells (barcodes) of the contig table.
    pub n_vdj_cells: usize,
    /// Contig-table cells that are not cells of the matrix (0 without a matrix).
    pub n_vdj_cells_not_in_matrix: usize,
    /// Output cells with contigs.
    pub n_cells_with_contigs: usize,
    /// Output cells with an indexed chain (not `no IR`).
    pub n_cells_with_ir: usize,
    /// Output cells with a clone.
    pub n_cells_with_clone: usize,
    /// Distinct clones among the output cells.
    pub n_clones: usize,
}

/// Per-cell results of [`analyse`], in the order of the output cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdjAnalysis {
    /// The output cells: the matrix's barcodes, or the contig table's cells without a matrix.
    pub barcodes: Vec<String>,
    /// Indexed chains and QC labels.
    pub receptors: Vec<Receptor>,
    /// The clone (numbered by first appearance in this cell order), if any.
    pub clone_id: Vec<Option<u32>>,
    /// The clone's size (scirpy's `clone_id_size`), if any.
    pub clone_size: Vec<Option<u32>>,
    /// scirpy's `clonal_expansion` label (`<= 1`, `<= 2`, `> 2`, `nan`).
    pub clonal_expansion: Vec<String>,
    /// Counts.
    pub summary: VdjSummary,
}

/// The per-chain fields written to obs for each slot (`IR_VJ_1_junction_aa`, ...): the text
/// fields of [`Contig::text_field`], then `umi_count`.
pub const CHAIN_FIELDS: [&str; 5] = ["junction_aa", "junction", "v_call", "j_call", "umi_count"];

impl Contig {
    /// The text field of [`CHAIN_FIELDS`] named `field` (`junction_aa`, `junction`, `v_call`,
    /// `j_call`); None when missing or for any other name.
    pub fn text_field(&self, field: &str) -> Option<&str> {
        match field {
            "junction_aa" => self.junction_aa.as_deref(),
            "junction" => self.junction.as_deref(),
            "v_call" => self.v_call.as_deref(),
            "j_call" => self.j_call.as_deref(),
            _ => None,
        }
    }
}

/// The obs columns [`VdjAnalysis::annotate`] writes, in order.
pub fn obs_columns() -> Vec<String> {
    let mut names: Vec<String> = [
        "clone_id",
        "clone_id_size",
        "clonal_expansion",
        "receptor_type",
        "receptor_subtype",
        "chain_pairing",
    ]
    .map(String::from)
    .to_vec();
    for slot in Slot::ALL {
        names.extend(CHAIN_FIELDS.iter().map(|f| slot.column(f)));
    }
    names
}

impl VdjAnalysis {
    /// Adds the receptor columns to `obs`, whose rows must be [`VdjAnalysis::barcodes`] in
    /// order: `clone_id` (categorical, missing without a clone), `clone_id_size` (NaN without),
    /// `clonal_expansion` (scirpy's categories, `nan` without), `receptor_type`,
    /// `receptor_subtype`, `chain_pairing`, and per chain slot `IR_<slot>_junction_aa`,
    /// `_junction`, `_v_call`, `_j_call` (categorical, missing without the chain) and
    /// `_umi_count` (NaN without), as scirpy names them.
    pub fn annotate(&self, obs: &mut Frame, breakpoints: &[u32]) -> Result<()> {
        if obs.index != self.barcodes {
            return Err(Error::Internal(
                "VDJ: the receptor table and obs differ in their cells".into(),
            ));
        }
        let ids: Vec<Option<String>> = self
            .clone_id
            .iter()
            .map(|c| c.map(|c| c.to_string()))
            .collect();
        obs.set(
            "clone_id",
            Column::categorical_from_options(ids.iter().map(Option::as_deref)),
        );
        obs.set(
            "clone_id_size",
            Column::F64(
                self.clone_size
                    .iter()
                    .map(|s| s.map_or(f64::NAN, f64::from))
                    .collect(),
            ),
        );
        let categories = expansion_categories(breakpoints);
        let codes = self
            .clonal_expansion
            .iter()
            .map(|l| {
                categories
                    .iter()
                    .position(|c| c == l)
                    .map_or(-1, |k| k as i32)
            })
            .collect();
        obs.set(
            "clonal_expansion",
            Column::Categorical {
                codes,
                categories,
                ordered: false,
            },
        );
        let qc = &self.receptors;
        let labels = |f: &dyn Fn(&Receptor) -> &'static str| {
            Column::categorical_from_options(qc.iter().map(|r| Some(f(r))))
        };
        obs.set("receptor_type", labels(&|r| r.qc.receptor_type.as_str()));
        obs.set(
            "receptor_subtype",
            labels(&|r| r.qc.receptor_subtype.as_str()),
        );
        obs.set("chain_pairing", labels(&|r| r.qc.chain_pairing.as_str()));
        for slot in Slot::ALL {
            for field in &CHAIN_FIELDS[..4] {
                obs.set(
                    slot.column(field),
                    Column::categorical_from_options(
                        qc.iter()
                            .map(|r| r.chain(slot).and_then(|c| c.text_field(field))),
                    ),
                );
            }
            obs.set(
                slot.column("umi_count"),
                Column::F64(
                    qc.iter()
                        .map(|r| {
                            r.chain(slot)
                                .and_then(|c| c.umi_count)
                                .map_or(f64::NAN, |u| u as f64)
                        })
                        .collect(),
                ),
            );
        }
        Ok(())
    }
}

/// Index chains, label QC and define clonotypes for the cells of a matrix (`matrix_barcodes`,
/// which must be unique) or, without one, for the cells of the contig table.
pub fn analyse(
    contigs: &Contigs,
    matrix_barcodes: Option<&[String]>,
    opts: &VdjOptions,
) -> Result<VdjAnalysis> {
    analyse_within(contigs, matrix_barcodes, opts, None)
}

/// [`analyse`] with clonotypes that never cross `groups` (one label per matrix cell, e.g. the
/// patient of a joint run's cells), as a further `within_group` column does in scirpy; only
/// with [`CloneScope::MatrixCells`].
pub fn analyse_within(
    contigs: &Contigs,
    matrix_barcodes: Option<&[String]>,
    opts: &VdjOptions,
    groups: Option<&[String]>,
) -> Result<VdjAnalysis> {
    if groups.is_some() && (opts.scope != CloneScope::MatrixCells || matrix_barcodes.is_none()) {
        return Err(Error::Usage(
            "VDJ: clonotype groups need the cells of a matrix and the matrix_cells scope".into(),
        ));
    }
    let vdj_index: HashMap<&str, usize> = contigs
        .barcodes
        .iter()
        .enumerate()
        .map(|(i, b)| (b.as_str(), i))
        .collect();
    let barcodes: Vec<String> = match matrix_barcodes {
        Some(b) => b.to_vec(),
        None => contigs.barcodes.clone(),
    };
    let mut seen: HashMap<&str, ()> = HashMap::with_capacity(barcodes.len());
    for b in &barcodes {
        if seen.insert(b.as_str(), ()).is_some() {
            return Err(Error::Usage(format!(
                "VDJ: cell barcode {b:?} appears twice in the matrix; barcodes must be unique"
            )));
        }
    }
    let to_vdj: Vec<Option<usize>> = barcodes
        .iter()
        .map(|b| vdj_index.get(b.as_str()).copied())
        .collect();
    let in_matrix = to_vdj.iter().flatten().count();
    let receptors: Vec<Receptor> = to_vdj
        .iter()
        .map(|v| match v {
            Some(i) => Receptor::from_contigs(contigs.cell(*i)),
            None => Receptor::no_ir(),
        })
        .collect();
    let clone_id = match (opts.scope, matrix_barcodes) {
        (CloneScope::AllVdjCells, Some(_)) => {
            let all = define_clonotypes(&contigs.receptors(), &opts.clonotypes, None)?;
            let ids: Vec<Option<u32>> = to_vdj
                .iter()
                .map(|v| v.and_then(|i| all.clone_id[i]))
                .collect();
            let sizes: Vec<Option<u32>> = ids
                .iter()
                .map(|c| c.map(|c| all.sizes[c as usize]))
                .collect();
            return finish(
                contigs,
                barcodes,
                receptors,
                renumber(&ids),
                sizes,
                in_matrix,
                opts,
            );
        }
        _ => define_clonotypes(&receptors, &opts.clonotypes, groups)?,
    };
    let sizes = (0..barcodes.len())
        .map(|i| clone_id.clone_size(i))
        .collect();
    finish(
        contigs,
        barcodes,
        receptors,
        clone_id.clone_id,
        sizes,
        in_matrix,
        opts,
    )
}

/// Numbers clones by first appearance.
fn renumber(ids: &[Option<u32>]) -> Vec<Option<u32>> {
    let mut map: HashMap<u32, u32> = HashMap::new();
    ids.iter()
        .map(|c| {
            c.map(|c| {
                let n = map.len() as u32;
                *map.entry(c).or_insert(n)
            })
        })
        .collect()
}

fn finish(
    contigs: &Contigs,
    barcodes: Vec<String>,
    receptors: Vec<Receptor>,
    clone_id: Vec<Option<u32>>,
    clone_size: Vec<Option<u32>>,
    in_matrix: usize,
    opts: &VdjOptions,
) -> Result<VdjAnalysis> {
    if opts.expansion_breakpoints.is_empty() {
        return Err(Error::Usage(
            "clonal expansion needs at least one breakpoint".into(),
        ));
    }
    // The label depends on the clone's size only (no `expanded_in`), which with
    // `AllVdjCells` counts cells outside the matrix too, as scirpy on the `airr` modality.
    let clonal_expansion = clone_size
        .iter()
        .map(|s| clonotypes::expansion_label(*s, &opts.expansion_breakpoints))
        .collect();
    let n_clones = clone_id
        .iter()
        .flatten()
        .max()
        .map_or(0, |m| *m as usize + 1);
    let summary = VdjSummary {
        n_contigs: contigs.contigs.len(),
        n_contigs_filtered_out: contigs.n_filtered_out,
        n_vdj_cells: contigs.n_cells(),
        n_vdj_cells_not_in_matrix: contigs.n_cells() - in_matrix,
        n_cells_with_contigs: in_matrix,
        n_cells_with_ir: receptors.iter().filter(|r| r.has_ir()).count(),
        n_cells_with_clone: clone_id.iter().flatten().count(),
        n_clones,
    };
    Ok(VdjAnalysis {
        barcodes,
        receptors,
        clone_id,
        clone_size,
        clonal_expansion,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contig(locus: Locus, nt: &str) -> Contig {
        Contig {
            locus: Some(locus),
            productive: true,
            junction: Some(nt.into()),
            junction_aa: Some(nt.into()),
            umi_count: Some(3),
            ..Contig::default()
        }
    }

    fn table(cells: &[(&str, Vec<Contig>)]) -> Contigs {
        let rows = cells
            .iter()
            .flat_map(|(b, cs)| cs.iter().map(move |c| (b.to_string(), c.clone())))
            .collect();
        Contigs::from_rows(ContigFormat::Airr, Path::new("t.tsv"), rows, 0)
    }

    #[test]
    fn matrix_cells_scope_and_non_cells_counted() {
        let t = table(&[
            ("a", vec![contig(Locus::Tra, "X"), contig(Locus::Trb, "Y")]),
            ("b", vec![contig(Locus::Tra, "X"), contig(Locus::Trb, "Y")]),
            ("c", vec![contig(Locus::Tra, "X"), contig(Locus::Trb, "Y")]),
        ]);
        let m: Vec<String> = ["z", "c", "a"].map(String::from).to_vec();
        let r = analyse(&t, Some(&m), &VdjOptions::default()).unwrap();
        assert_eq!(r.receptors[0].qc.chain_pairing, ChainPairing::NoIr);
        assert_eq!(r.clone_id, vec![None, Some(0), Some(0)]);
        assert_eq!(r.clone_size, vec![None, Some(2), Some(2)]);
        assert_eq!(r.clonal_expansion, vec!["nan", "<= 2", "<= 2"]);
        assert_eq!(r.summary.n_vdj_cells_not_in_matrix, 1);
        assert_eq!(r.summary.n_clones, 1);
        let all = VdjOptions {
            scope: CloneScope::AllVdjCells,
            ..VdjOptions::default()
        };
        let r = analyse(&t, Some(&m), &all).unwrap();
        assert_eq!(r.clone_size, vec![None, Some(3), Some(3)]);
        assert_eq!(r.clonal_expansion, vec!["nan", "> 2", "> 2"]);
        let dup: Vec<String> = ["a", "a"].map(String::from).to_vec();
        assert!(analyse(&t, Some(&dup), &VdjOptions::default()).is_err());
    }

    #[test]
    fn groups_split_clones_and_need_matrix_cells() {
        let t = table(&[
            ("a", vec![contig(Locus::Tra, "X"), contig(Locus::Trb, "Y")]),
            ("b", vec![contig(Locus::Tra, "X"), contig(Locus::Trb, "Y")]),
            ("c", vec![contig(Locus::Tra, "X"), contig(Locus::Trb, "Y")]),
        ]);
        let m: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let g: Vec<String> = ["P1", "P2", "P1"].map(String::from).to_vec();
        let r = analyse_within(&t, Some(&m), &VdjOptions::default(), Some(&g)).unwrap();
        assert_eq!(r.clone_id, vec![Some(0), Some(1), Some(0)]);
        assert_eq!(r.clone_size, vec![Some(2), Some(1), Some(2)]);
        assert!(analyse_within(&t, None, &VdjOptions::default(), Some(&g)).is_err());
        let all = VdjOptions {
            scope: CloneScope::AllVdjCells,
            ..VdjOptions::default()
        };
        assert!(analyse_within(&t, Some(&m), &all, Some(&g)).is_err());
    }

    #[test]
    fn merge_joins_cells_across_tables() {
        let a = table(&[
            ("c1", vec![contig(Locus::Tra, "X")]),
            ("c2", vec![contig(Locus::Tra, "Z")]),
        ]);
        let b = table(&[
            ("c3", vec![contig(Locus::Trb, "Q")]),
            ("c1", vec![contig(Locus::Trb, "Y")]),
        ]);
        let m = Contigs::merge(vec![a, b]);
        assert_eq!(m.barcodes, vec!["c1", "c2", "c3"]);
        assert_eq!(m.cell(0).len(), 2);
        assert_eq!(m.cell(0)[1].locus, Some(Locus::Trb));
        assert_eq!(m.cell(2)[0].junction.as_deref(), Some("Q"));
        assert_eq!(m.sources.len(), 2);
    }
}
