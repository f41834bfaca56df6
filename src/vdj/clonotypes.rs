//! Clonotypes as scirpy 0.22.5's `pp.ir_dist(metric="identity")` followed by
//! `tl.define_clonotypes` (nucleotide junctions) or `tl.define_clonotype_clusters(
//! metric="identity")` (amino-acid junctions), with `partitions="connected"`; and
//! `tl.clonal_expansion`.
//!
//! scirpy first collapses cells into *receptor configurations*: the tuple of the junctions
//! (and, with `same_v_gene`/`same_j_gene`, the V/J calls) of the chain slots in use
//! (`receptor_arms` picks VJ, VDJ or both; `dual_ir="primary_only"` only the primary slots)
//! plus the `within_group` labels. A cell takes part if it has an indexed chain and at least
//! one of those values; the others get no clone. Two configurations are neighbours when
//! (identity metric, so "match" means equal upper-case sequences, and V/J calls equal and
//! present where required):
//! - per arm, `dual_ir="any"`: some chain of one matches some chain of the other;
//!   `"primary_only"`: the primary chains match; `"all"`: both have one chain and the primary
//!   chains match, or both have two chains and the chains match as unordered pairs;
//! - `receptor_arms="VJ"`/`"VDJ"`: that arm matches; `"any"`: either arm matches; `"all"`:
//!   when both have both primary chains, both arms match; when both have exactly one primary
//!   chain, that arm matches; configurations with different numbers of primary chains never
//!   match (scirpy's chain-count filters);
//! - and they lie in the same `within_group` group.
//!
//! A clone is a connected component of that graph, so a clone may join cells that share no
//! chain directly (A~B~C under `"any"`). scirpy builds sparse matrices for this; here each
//! configuration emits the hashable keys its matches are made of (a chain, an unordered pair,
//! a (VJ, VDJ) combination, tagged by arm and chain count) and configurations sharing a key
//! are joined in a union-find: linear in the number of cells, with no all-pairs step.
//!
//! Clone ids are numbered 0, 1, ... by the first cell of each clone in cell order (scirpy's
//! string ids depend on igraph's component order; the partition and the sizes are the same).

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::chains::Receptor;
use crate::error::{Error, Result};

/// Which junction sequence identifies a chain.
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
#[serde(rename_all = "lowercase")]
pub enum SequenceKind {
    /// Nucleotide junction (`junction`; 10x `cdr3_nt`): scirpy's `define_clonotypes`.
    #[default]
    Nt,
    /// Amino-acid junction (`junction_aa`; 10x `cdr3`): `define_clonotype_clusters(sequence="aa",
    /// metric="identity")`.
    Aa,
}

/// Which receptor arms must match (scirpy's `receptor_arms`).
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
pub enum ReceptorArms {
    /// Only the VJ chains.
    #[value(name = "VJ")]
    #[serde(rename = "VJ")]
    Vj,
    /// Only the VDJ chains.
    #[value(name = "VDJ")]
    #[serde(rename = "VDJ")]
    Vdj,
    /// Both arms must match (scirpy's default).
    #[default]
    #[value(name = "all")]
    #[serde(rename = "all")]
    All,
    /// Either arm matching suffices.
    #[value(name = "any")]
    #[serde(rename = "any")]
    Any,
}

/// How the secondary chains count (scirpy's `dual_ir`).
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
pub enum DualIr {
    /// Any chain of an arm matching any chain of the other cell's arm (scirpy's default).
    #[default]
    Any,
    /// Only the primary chains.
    #[value(name = "primary_only")]
    PrimaryOnly,
    /// All chains of the arm, as unordered pairs with the same number of chains.
    All,
}

/// The cell groups clonotypes must not cross (scirpy's `within_group`).
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
pub enum WithinGroup {
    /// No constraint (`within_group=None`).
    None,
    /// `receptor_type` (scirpy's default): no clone mixes T and B cells.
    #[default]
    #[value(name = "receptor_type")]
    ReceptorType,
    /// `receptor_subtype`: e.g. no clone mixes alpha-beta and gamma-delta T cells.
    #[value(name = "receptor_subtype")]
    ReceptorSubtype,
}

/// Options of the clonotype definition; the defaults are scirpy's `define_clonotypes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClonotypeOptions {
    /// Nucleotide or amino-acid junctions.
    pub sequence: SequenceKind,
    /// `receptor_arms`.
    pub receptor_arms: ReceptorArms,
    /// `dual_ir`.
    pub dual_ir: DualIr,
    /// `same_v_gene`: matching chains must also have the same V call.
    pub same_v_gene: bool,
    /// `same_j_gene`: matching chains must also have the same J call.
    pub same_j_gene: bool,
    /// `within_group`.
    pub within_group: WithinGroup,
}

/// The clone of every cell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clonotypes {
    /// Per cell, its clone (numbered by first appearance), or none.
    pub clone_id: Vec<Option<u32>>,
    /// Per clone, its number of cells.
    pub sizes: Vec<u32>,
}

impl Clonotypes {
    /// The size of a cell's clone (scirpy's `clone_id_size`), if it has one.
    pub fn clone_size(&self, cell: usize) -> Option<u32> {
        self.clone_id[cell].map(|c| self.sizes[c as usize])
    }

    /// The number of clones.
    pub fn n_clones(&self) -> usize {
        self.sizes.len()
    }
}

/// A missing value.
const NONE: u32 = u32::MAX;
/// Per configuration: (sequence, V, J) of the four slots, the group and the extra group.
type Config = [u32; 14];
/// A match key: tag, two groups, the VJ and the VDJ arm key.
type MatchKey = [u32; 17];
/// An arm key: kind (1 one chain, 2 an unordered pair), then (sequence, V, J) twice.
type ArmKey = [u32; 7];

/// Interns strings as dense ids.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<Cow<'a, str>, u32>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, s: Option<&'a str>, upper: bool) -> u32 {
        let Some(s) = s else { return NONE };
        let key = if upper && s.bytes().any(|b| b.is_ascii_lowercase()) {
            Cow::Owned(s.to_ascii_uppercase())
        } else {
            Cow::Borrowed(s)
        };
        let n = self.ids.len() as u32;
        *self.ids.entry(key).or_insert(n)
    }
}

/// A disjoint-set forest over configurations.
struct UnionFind(Vec<u32>);

impl UnionFind {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let p = self.0[x as usize];
            self.0[x as usize] = self.0[p as usize];
            x = p;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.0[hi as usize] = lo;
        }
    }
}

/// scirpy's clonotype definition (see the module docs) over cells' receptors. `groups`, one
/// label per cell, adds a grouping of the caller's (e.g. the sample) to `within_group`, as a
/// list of `within_group` columns does in scirpy.
pub fn define_clonotypes(
    cells: &[Receptor],
    opts: &ClonotypeOptions,
    groups: Option<&[String]>,
) -> Result<Clonotypes> {
    if let Some(g) = groups
        && g.len() != cells.len()
    {
        return Err(Error::Usage(format!(
            "clonotype groups: {} labels for {} cells",
            g.len(),
            cells.len()
        )));
    }
    let mut strings = Interner::default();
    let mut config_ids: HashMap<Config, u32> = HashMap::new();
    let mut configs: Vec<Config> = Vec::new();
    let mut cell_config: Vec<u32> = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let cfg = configuration(cell, opts, groups.map(|g| g[i].as_str()), &mut strings);
        let id = match cfg {
            None => NONE,
            Some(cfg) => *config_ids.entry(cfg).or_insert_with(|| {
                configs.push(cfg);
                configs.len() as u32 - 1
            }),
        };
        cell_config.push(id);
    }
    let mut uf = UnionFind((0..configs.len() as u32).collect());
    let mut owner: HashMap<MatchKey, u32> = HashMap::new();
    let mut keys = Vec::new();
    for (ct, cfg) in configs.iter().enumerate() {
        keys.clear();
        match_keys(cfg, opts, &mut keys);
        for k in &keys {
            match owner.entry(*k) {
                Entry::Occupied(e) => uf.union(*e.get(), ct as u32),
                Entry::Vacant(e) => {
                    e.insert(ct as u32);
                }
            }
        }
    }
    let mut number: Vec<u32> = vec![NONE; configs.len()];
    let mut out = Clonotypes {
        clone_id: Vec::with_capacity(cells.len()),
        sizes: Vec::new(),
    };
    for &ct in &cell_config {
        if ct == NONE {
            out.clone_id.push(None);
            continue;
        }
        let root = uf.find(ct) as usize;
        if number[root] == NONE {
            number[root] = out.sizes.len() as u32;
            out.sizes.push(0);
        }
        out.sizes[number[root] as usize] += 1;
        out.clone_id.push(Some(number[root]));
    }
    Ok(out)
}

/// The slots in use: VJ_1, VJ_2, VDJ_1, VDJ_2.
fn slot_used(opts: &ClonotypeOptions, slot: usize) -> bool {
    let arm_ok = match opts.receptor_arms {
        ReceptorArms::Vj => slot < 2,
        ReceptorArms::Vdj => slot >= 2,
        ReceptorArms::All | ReceptorArms::Any => true,
    };
    arm_ok && (opts.dual_ir != DualIr::PrimaryOnly || slot.is_multiple_of(2))
}

/// A cell's receptor configuration, or none if it takes no part (no indexed chain, or none of
/// the values in use).
fn configuration<'a>(
    cell: &'a Receptor,
    opts: &ClonotypeOptions,
    extra_group: Option<&'a str>,
    strings: &mut Interner<'a>,
) -> Option<Config> {
    if !cell.has_ir() {
        return None;
    }
    let mut cfg = [NONE; 14];
    let mut any = false;
    for slot in 0..4 {
        let (s, v, j) = (3 * slot, 3 * slot + 1, 3 * slot + 2);
        cfg[v] = 0;
        cfg[j] = 0;
        if !slot_used(opts, slot) {
            continue;
        }
        let chain = cell.chains[slot].as_ref();
        let seq = chain.and_then(|c| match opts.sequence {
            SequenceKind::Nt => c.junction.as_deref(),
            SequenceKind::Aa => c.junction_aa.as_deref(),
        });
        cfg[s] = strings.id(seq, true);
        any |= cfg[s] != NONE;
        if opts.same_v_gene {
            cfg[v] = strings.id(chain.and_then(|c| c.v_call.as_deref()), false);
            any |= cfg[v] != NONE;
        }
        if opts.same_j_gene {
            cfg[j] = strings.id(chain.and_then(|c| c.j_call.as_deref()), false);
            any |= cfg[j] != NONE;
        }
    }
    if !any {
        return None;
    }
    cfg[12] = match opts.within_group {
        WithinGroup::None => 0,
        WithinGroup::ReceptorType => cell.qc.receptor_type as u32,
        WithinGroup::ReceptorSubtype => cell.qc.receptor_subtype as u32,
    };
    cfg[13] = extra_group.map_or(0, |g| strings.id(Some(g), false));
    Some(cfg)
}

/// The (sequence, V, J) of a slot if it can match anything: a sequence, and the V/J calls
/// where they must match (a missing call matches nothing, not even another missing one).
fn chain_key(cfg: &Config, slot: usize) -> Option<[u32; 3]> {
    let k = [cfg[3 * slot], cfg[3 * slot + 1], cfg[3 * slot + 2]];
    (!k.contains(&NONE)).then_some(k)
}

/// The arm keys of arm 0 (VJ) or 1 (VDJ): two configurations' arms match iff they share one.
fn arm_keys(cfg: &Config, arm: usize, dual_ir: DualIr) -> Vec<ArmKey> {
    let (s1, s2) = (2 * arm, 2 * arm + 1);
    let single = |k: [u32; 3]| [1, k[0], k[1], k[2], NONE, NONE, NONE];
    match dual_ir {
        DualIr::PrimaryOnly => chain_key(cfg, s1).map(single).into_iter().collect(),
        DualIr::Any => [chain_key(cfg, s1), chain_key(cfg, s2)]
            .into_iter()
            .flatten()
            .map(single)
            .collect(),
        DualIr::All => {
            let n = [s1, s2].iter().filter(|&&s| cfg[3 * s] != NONE).count();
            match (n, chain_key(cfg, s1), chain_key(cfg, s2)) {
                (1, Some(k), _) => vec![single(k)],
                (2, Some(a), Some(b)) => {
                    let (lo, hi) = (a.min(b), a.max(b));
                    vec![[2, lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]]]
                }
                _ => Vec::new(),
            }
        }
    }
}

/// The match keys of a configuration (see the module docs): two configurations are
/// neighbours iff they share one.
fn match_keys(cfg: &Config, opts: &ClonotypeOptions, out: &mut Vec<MatchKey>) {
    let key = |tag: u32, vj: Option<&ArmKey>, vdj: Option<&ArmKey>| {
        let mut k = [NONE; 17];
        k[0] = tag;
        k[1] = cfg[12];
        k[2] = cfg[13];
        if let Some(a) = vj {
            k[3..10].copy_from_slice(a);
        }
        if let Some(a) = vdj {
            k[10..17].copy_from_slice(a);
        }
        k
    };
    let vj = arm_keys(cfg, 0, opts.dual_ir);
    let vdj = arm_keys(cfg, 1, opts.dual_ir);
    match opts.receptor_arms {
        ReceptorArms::Vj => out.extend(vj.iter().map(|a| key(1, Some(a), None))),
        ReceptorArms::Vdj => out.extend(vdj.iter().map(|a| key(2, None, Some(a)))),
        ReceptorArms::Any => {
            out.extend(vj.iter().map(|a| key(1, Some(a), None)));
            out.extend(vdj.iter().map(|a| key(2, None, Some(a))));
        }
        ReceptorArms::All => {
            // scirpy's "arms" chain count: how many of VJ_1, VDJ_1 have a sequence.
            let n = u32::from(cfg[0] != NONE) + u32::from(cfg[6] != NONE);
            if n == 2 {
                for a in &vj {
                    out.extend(vdj.iter().map(|b| key(10, Some(a), Some(b))));
                }
            } else {
                out.extend(vj.iter().map(|a| key(20 + 2 * n + 1, Some(a), None)));
                out.extend(vdj.iter().map(|a| key(20 + 2 * n + 2, None, Some(a))));
            }
        }
    }
}

/// The labels of scirpy's `clonal_expansion` categories for `breakpoints`: `<= b` for each
/// breakpoint, `> last`, and `nan`.
pub fn expansion_categories(breakpoints: &[u32]) -> Vec<String> {
    let mut c: Vec<String> = breakpoints.iter().map(|b| format!("<= {b}")).collect();
    if let Some(last) = breakpoints.last() {
        c.push(format!("> {last}"));
    }
    c.push("nan".into());
    c
}

/// scirpy's `tl.clonal_expansion(breakpoints=...)`: per cell, the size class of its clone
/// (counted within its `expanded_in` group when given): `<= b` for the first breakpoint `b`
/// the size does not exceed, else `> last`; `nan` for a cell without a clone. scirpy's
/// defaults are breakpoints `(1, 2)` over the whole dataset.
pub fn clonal_expansion(
    clone_id: &[Option<u32>],
    expanded_in: Option<&[String]>,
    breakpoints: &[u32],
) -> Result<Vec<String>> {
    if breakpoints.is_empty() {
        return Err(Error::Usage(
            "clonal expansion needs at least one breakpoint".into(),
        ));
    }
    if let Some(g) = expanded_in
        && g.len() != clone_id.len()
    {
        return Err(Error::Usage(format!(
            "clonal expansion: {} group labels for {} cells",
            g.len(),
            clone_id.len()
        )));
    }
    let group = |i: usize| expanded_in.map_or("", |g| g[i].as_str());
    let mut counts: HashMap<(&str, u32), u32> = HashMap::new();
    for (i, c) in clone_id.iter().enumerate() {
        if let Some(c) = c {
            *counts.entry((group(i), *c)).or_insert(0) += 1;
        }
    }
    Ok(clone_id
        .iter()
        .enumerate()
        .map(|(i, c)| expansion_label(c.map(|c| counts[&(group(i), c)]), breakpoints))
        .collect())
}

/// The `clonal_expansion` label of a clone of `size` cells (`nan` without a clone):
/// `<= b` for the first breakpoint `b` the size does not exceed, else `> last`.
/// `breakpoints` must not be empty.
pub fn expansion_label(size: Option<u32>, breakpoints: &[u32]) -> String {
    let Some(n) = size else {
        return "nan".into();
    };
    match breakpoints.iter().find(|&&b| n <= b) {
        Some(b) => format!("<= {b}"),
        None => format!("> {}", breakpoints[breakpoints.len() - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vdj::chains::{ChainIndices, chain_qc};
    use crate::vdj::{Contig, Locus};

    /// A cell from (locus, junction) pairs, the first chain of an arm the primary one.
    fn cell(chains: &[(Locus, &str)]) -> Receptor {
        let contigs: Vec<Contig> = chains
            .iter()
            .enumerate()
            .map(|(k, &(l, j))| Contig {
                locus: Some(l),
                productive: true,
                junction: Some(j.into()),
                junction_aa: Some(j.into()),
                v_call: Some(format!("{}V1", l.as_str())),
                umi_count: Some(100 - k as u64),
                ..Contig::default()
            })
            .collect();
        Receptor::from_contigs(&contigs)
    }

    fn clones(cells: &[Receptor], opts: ClonotypeOptions) -> Vec<Option<u32>> {
        define_clonotypes(cells, &opts, None).unwrap().clone_id
    }

    fn opts(arms: ReceptorArms, dual: DualIr) -> ClonotypeOptions {
        ClonotypeOptions {
            receptor_arms: arms,
            dual_ir: dual,
            ..ClonotypeOptions::default()
        }
    }

    use Locus::{Igh, Tra, Trb};

    #[test]
    fn defaults_need_both_arms_and_any_dual_chain() {
        let cells = [
            cell(&[(Tra, "A1"), (Trb, "B1")]),
            cell(&[(Tra, "A2"), (Tra, "A1"), (Trb, "B1")]),
            cell(&[(Tra, "A1"), (Trb, "B2")]),
            cell(&[(Tra, "A1")]),
            cell(&[(Tra, "A1")]),
            cell(&[]),
        ];
        let c = clones(&cells, ClonotypeOptions::default());
        assert_eq!(c, vec![Some(0), Some(0), Some(1), Some(2), Some(2), None]);
        let d = define_clonotypes(&cells, &ClonotypeOptions::default(), None).unwrap();
        assert_eq!(d.sizes, vec![2, 1, 2]);
        assert_eq!(d.clone_size(4), Some(2));
        assert_eq!(d.clone_size(5), None);
    }

    #[test]
    fn any_arm_chains_transitively() {
        // A~B by TRA, B~C by TRB: one clone although A and C share nothing.
        let cells = [
            cell(&[(Tra, "A1"), (Trb, "B1")]),
            cell(&[(Tra, "A1"), (Trb, "B2")]),
            cell(&[(Tra, "A3"), (Trb, "B2")]),
            cell(&[(Trb, "B1")]),
        ];
        let c = clones(&cells, opts(ReceptorArms::Any, DualIr::Any));
        assert_eq!(c, vec![Some(0); 4]);
        // VJ only: the orphan VDJ cell takes no part.
        let c = clones(&cells, opts(ReceptorArms::Vj, DualIr::Any));
        assert_eq!(c, vec![Some(0), Some(0), Some(1), None]);
    }

    #[test]
    fn dual_ir_all_matches_unordered_pairs_of_equal_size() {
        let cells = [
            cell(&[(Tra, "A1"), (Tra, "A2"), (Trb, "B1")]),
            cell(&[(Tra, "A2"), (Tra, "A1"), (Trb, "B1")]),
            cell(&[(Tra, "A1"), (Trb, "B1")]),
        ];
        let c = clones(&cells, opts(ReceptorArms::All, DualIr::All));
        assert_eq!(c, vec![Some(0), Some(0), Some(1)]);
        let c = clones(&cells, opts(ReceptorArms::All, DualIr::PrimaryOnly));
        assert_eq!(c, vec![Some(0), Some(1), Some(0)]);
    }

    #[test]
    fn within_group_and_missing_v_genes() {
        let t = cell(&[(Trb, "X")]);
        let b = cell(&[(Igh, "X")]);
        assert_eq!(
            clones(
                &[t.clone(), b.clone()],
                opts(ReceptorArms::Vdj, DualIr::Any)
            ),
            vec![Some(0), Some(1)]
        );
        let o = ClonotypeOptions {
            receptor_arms: ReceptorArms::Vdj,
            within_group: WithinGroup::None,
            ..ClonotypeOptions::default()
        };
        assert_eq!(clones(&[t.clone(), b], o), vec![Some(0), Some(0)]);
        // A missing V call matches nothing under same_v_gene, not even another missing one,
        // but identical configurations still share their clone.
        let mut nv = t.clone();
        nv.chains[2].as_mut().unwrap().v_call = None;
        let mut nv2 = nv.clone();
        nv2.chains[2].as_mut().unwrap().junction = Some("Y".into());
        let o = ClonotypeOptions {
            same_v_gene: true,
            ..opts(ReceptorArms::Vdj, DualIr::Any)
        };
        assert_eq!(
            clones(&[t, nv.clone(), nv, nv2], o),
            vec![Some(0), Some(1), Some(1), Some(2)]
        );
    }

    #[test]
    fn expansion_labels() {
        let ids = [Some(0), Some(1), Some(1), Some(2), Some(2), Some(2), None];
        let e = clonal_expansion(&ids, None, &[1, 2]).unwrap();
        assert_eq!(e, vec!["<= 1", "<= 2", "<= 2", "> 2", "> 2", "> 2", "nan"]);
        let g: Vec<String> = ["a", "a", "b", "a", "a", "b", "a"]
            .map(String::from)
            .to_vec();
        let e = clonal_expansion(&ids, Some(&g), &[1]).unwrap();
        assert_eq!(e, vec!["<= 1", "<= 1", "<= 1", "> 1", "> 1", "<= 1", "nan"]);
        assert_eq!(
            expansion_categories(&[1, 2]),
            vec!["<= 1", "<= 2", "> 2", "nan"]
        );
        assert!(clonal_expansion(&ids, None, &[]).is_err());
    }

    #[test]
    fn qc_feeds_the_receptor() {
        let r = cell(&[(Tra, "A"), (Trb, "B")]);
        let idx = ChainIndices::default();
        assert_eq!(chain_qc(&[], &idx).receptor_type.as_str(), "no IR");
        assert_eq!(r.qc.chain_pairing.as_str(), "single pair");
    }
}
