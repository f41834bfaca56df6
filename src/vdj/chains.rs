//! Chains per cell and receptor QC, as scirpy 0.22.5's `pp.index_chains` (default options)
//! and `tl.chain_qc`.
//!
//! `index_chains` keeps the chains that are productive, have a `junction_aa` and one of the
//! seven IMGT loci, splits them into VJ (TRA, TRG, IGK, IGL) and VDJ (TRB, TRD, IGH) chains
//! and orders each arm by its sort keys, highest first: `umi_count`, then `duplicate_count`,
//! then `consensus_count`, then `junction`, then `junction_aa` (a missing number counts as 0,
//! a missing string as `""`). The first two of each arm become `VJ_1`/`VJ_2` and
//! `VDJ_1`/`VDJ_2`; a cell with more than two chains in an arm is `multichain`.
//!
//! scirpy does not sort by the tuple of keys: it runs one stable descending argsort per key
//! with awkward-array, from the last key to the first. awkward keeps ties in their order for
//! numbers but sorts strings descending by reversing an ascending sort, which reverses the
//! order of equal strings. The result differs from a tuple sort only among chains with equal
//! counts: chains with the same `junction` but different `junction_aa` end up in *ascending*
//! `junction_aa` order (the reversal of the `junction` pass undoes the descending order of the
//! `junction_aa` pass), and fully tied chains keep their file order (reversed twice).
//! [`order_arm`] replays those passes.
//!
//! `chain_qc` labels each cell from the loci of its (at most four) indexed chains:
//! [`ReceptorType`], [`ReceptorSubtype`] and [`ChainPairing`], with scirpy's category names
//! and precedence (multichain overrides everything, then ambiguous subtypes make the pairing
//! `ambiguous`).

use super::{Contig, Locus};

/// The indexed chains of one cell: indices into the cell's contigs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainIndices {
    /// The primary and secondary VJ chain.
    pub vj: [Option<usize>; 2],
    /// The primary and secondary VDJ chain.
    pub vdj: [Option<usize>; 2],
    /// More than two chains in one arm.
    pub multichain: bool,
}

impl ChainIndices {
    /// The four chain slots in the order VJ_1, VJ_2, VDJ_1, VDJ_2.
    pub fn slots(&self) -> [Option<usize>; 4] {
        [self.vj[0], self.vj[1], self.vdj[0], self.vdj[1]]
    }

    /// Whether the cell has any indexed chain (scirpy's `_has_ir`).
    pub fn has_ir(&self) -> bool {
        self.vj[0].is_some() || self.vdj[0].is_some()
    }
}

/// scirpy's `pp.index_chains` with its default filter and sort keys, on one cell's contigs in
/// their file order.
pub fn index_chains(contigs: &[Contig]) -> ChainIndices {
    let keep = |c: &Contig| c.productive && c.junction_aa.is_some();
    let arm = |vj: bool| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..contigs.len())
            .filter(|&i| keep(&contigs[i]) && contigs[i].locus.is_some_and(|l| l.is_vj() == vj))
            .collect();
        order_arm(contigs, &mut idx);
        idx
    };
    let (vj, vdj) = (arm(true), arm(false));
    let two = |v: &[usize]| [v.first().copied(), v.get(1).copied()];
    ChainIndices {
        vj: two(&vj),
        vdj: two(&vdj),
        multichain: vj.len() > 2 || vdj.len() > 2,
    }
}

/// Orders one arm's chains (indices into `contigs`) as scirpy does: one stable pass per sort
/// key, lowest priority first; numbers descending with ties kept, strings descending as the
/// reverse of a stable ascending sort (ties reversed), as awkward-array's `argsort` does.
pub fn order_arm(contigs: &[Contig], idx: &mut [usize]) {
    fn text(s: &Option<String>) -> &[u8] {
        s.as_deref().unwrap_or("").as_bytes()
    }
    let by_text = |idx: &mut [usize], key: fn(&Contig) -> &Option<String>| {
        idx.sort_by(|&a, &b| text(key(&contigs[a])).cmp(text(key(&contigs[b]))));
        idx.reverse();
    };
    let by_count = |idx: &mut [usize], key: fn(&Contig) -> Option<u64>| {
        idx.sort_by_key(|&a| std::cmp::Reverse(key(&contigs[a]).unwrap_or(0)));
    };
    by_text(idx, |c| &c.junction_aa);
    by_text(idx, |c| &c.junction);
    by_count(idx, |c| c.consensus_count);
    by_count(idx, |c| c.duplicate_count);
    by_count(idx, |c| c.umi_count);
}

/// The coarse receptor type of a cell (scirpy's `receptor_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReceptorType {
    /// Only T-cell receptor chains.
    Tcr,
    /// Only B-cell receptor chains.
    Bcr,
    /// Both TCR and BCR chains.
    Ambiguous,
    /// More than two chains in an arm.
    Multichain,
    /// No indexed chain.
    NoIr,
}

impl ReceptorType {
    /// scirpy's label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceptorType::Tcr => "TCR",
            ReceptorType::Bcr => "BCR",
            ReceptorType::Ambiguous => "ambiguous",
            ReceptorType::Multichain => "multichain",
            ReceptorType::NoIr => "no IR",
        }
    }
}

/// The fine receptor type of a cell (scirpy's `receptor_subtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReceptorSubtype {
    /// Only TRA and/or TRB chains.
    TraTrb,
    /// Only TRG and/or TRD chains.
    TrgTrd,
    /// Only IGH chains.
    Igh,
    /// IGL (with or without IGH), no IGK: scirpy's `IGH+IGL`.
    IghIgl,
    /// IGK (with or without IGH), no IGL: scirpy's `IGH+IGK`.
    IghIgk,
    /// IGH with both IGK and IGL.
    IghIgkl,
    /// Any other combination (e.g. TRA+TRD, TRA+IGH, IGK+IGL without IGH).
    Ambiguous,
    /// More than two chains in an arm.
    Multichain,
    /// No indexed chain.
    NoIr,
}

impl ReceptorSubtype {
    /// scirpy's label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceptorSubtype::TraTrb => "TRA+TRB",
            ReceptorSubtype::TrgTrd => "TRG+TRD",
            ReceptorSubtype::Igh => "IGH",
            ReceptorSubtype::IghIgl => "IGH+IGL",
            ReceptorSubtype::IghIgk => "IGH+IGK",
            ReceptorSubtype::IghIgkl => "IGH+IGK/L",
            ReceptorSubtype::Ambiguous => "ambiguous",
            ReceptorSubtype::Multichain => "multichain",
            ReceptorSubtype::NoIr => "no IR",
        }
    }
}

/// How a cell's chains pair up (scirpy's `chain_pairing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainPairing {
    /// One VJ and one VDJ chain.
    SinglePair,
    /// VJ chains only.
    OrphanVj,
    /// VDJ chains only.
    OrphanVdj,
    /// A pair plus a second VJ chain.
    ExtraVj,
    /// A pair plus a second VDJ chain.
    ExtraVdj,
    /// Two VJ and two VDJ chains.
    TwoFullChains,
    /// An ambiguous receptor subtype.
    Ambiguous,
    /// More than two chains in an arm.
    Multichain,
    /// No indexed chain.
    NoIr,
}

impl ChainPairing {
    /// scirpy's label.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainPairing::SinglePair => "single pair",
            ChainPairing::OrphanVj => "orphan VJ",
            ChainPairing::OrphanVdj => "orphan VDJ",
            ChainPairing::ExtraVj => "extra VJ",
            ChainPairing::ExtraVdj => "extra VDJ",
            ChainPairing::TwoFullChains => "two full chains",
            ChainPairing::Ambiguous => "ambiguous",
            ChainPairing::Multichain => "multichain",
            ChainPairing::NoIr => "no IR",
        }
    }
}

/// The three QC labels of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainQc {
    /// `receptor_type`.
    pub receptor_type: ReceptorType,
    /// `receptor_subtype`.
    pub receptor_subtype: ReceptorSubtype,
    /// `chain_pairing`.
    pub chain_pairing: ChainPairing,
}

/// scirpy's `tl.chain_qc` for one cell.
pub fn chain_qc(contigs: &[Contig], idx: &ChainIndices) -> ChainQc {
    if !idx.has_ir() {
        return ChainQc {
            receptor_type: ReceptorType::NoIr,
            receptor_subtype: ReceptorSubtype::NoIr,
            chain_pairing: ChainPairing::NoIr,
        };
    }
    if idx.multichain {
        return ChainQc {
            receptor_type: ReceptorType::Multichain,
            receptor_subtype: ReceptorSubtype::Multichain,
            chain_pairing: ChainPairing::Multichain,
        };
    }
    let has = |l: Locus| {
        idx.slots()
            .iter()
            .flatten()
            .any(|&i| contigs[i].locus == Some(l))
    };
    let (tra, trg, igk, igl) = (
        has(Locus::Tra),
        has(Locus::Trg),
        has(Locus::Igk),
        has(Locus::Igl),
    );
    let (trb, trd, igh) = (has(Locus::Trb), has(Locus::Trd), has(Locus::Igh));
    let tr = tra || trg || trb || trd;
    let ig = igk || igl || igh;
    let receptor_type = match (tr, ig) {
        (true, false) => ReceptorType::Tcr,
        (false, true) => ReceptorType::Bcr,
        _ => ReceptorType::Ambiguous,
    };
    // scirpy assigns the masks in this order, later ones winning.
    let mut subtype = ReceptorSubtype::Ambiguous;
    let rules = [
        ((tra || trb) && !(trg || trd || ig), ReceptorSubtype::TraTrb),
        ((trg || trd) && !(tra || trb || ig), ReceptorSubtype::TrgTrd),
        (igh && !(igk || igl || tr), ReceptorSubtype::Igh),
        (igl && !(tr || igk), ReceptorSubtype::IghIgl),
        (igk && !(tr || igl), ReceptorSubtype::IghIgk),
        (igl && igk && !tr && igh, ReceptorSubtype::IghIgkl),
    ];
    for (applies, s) in rules {
        if applies {
            subtype = s;
        }
    }
    let (vj1, vj2) = (idx.vj[0].is_some(), idx.vj[1].is_some());
    let (vdj1, vdj2) = (idx.vdj[0].is_some(), idx.vdj[1].is_some());
    let chain_pairing = if subtype == ReceptorSubtype::Ambiguous {
        ChainPairing::Ambiguous
    } else if vj1 && vdj1 {
        match (vj2, vdj2) {
            (true, true) => ChainPairing::TwoFullChains,
            (false, true) => ChainPairing::ExtraVdj,
            (true, false) => ChainPairing::ExtraVj,
            (false, false) => ChainPairing::SinglePair,
        }
    } else if vdj1 {
        ChainPairing::OrphanVdj
    } else {
        ChainPairing::OrphanVj
    };
    ChainQc {
        receptor_type,
        receptor_subtype: subtype,
        chain_pairing,
    }
}

/// A chain slot of scirpy's receptor model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The primary VJ chain.
    Vj1,
    /// The secondary VJ chain.
    Vj2,
    /// The primary VDJ chain.
    Vdj1,
    /// The secondary VDJ chain.
    Vdj2,
}

impl Slot {
    /// The four slots in scirpy's order.
    pub const ALL: [Slot; 4] = [Slot::Vj1, Slot::Vj2, Slot::Vdj1, Slot::Vdj2];

    /// scirpy's name of the slot (`VJ_1`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Vj1 => "VJ_1",
            Slot::Vj2 => "VJ_2",
            Slot::Vdj1 => "VDJ_1",
            Slot::Vdj2 => "VDJ_2",
        }
    }

    /// The obs column of one field of this slot, as scirpy names them (`IR_VJ_1_junction_aa`).
    pub fn column(self, field: &str) -> String {
        format!("IR_{}_{field}", self.as_str())
    }
}

/// One cell's receptor: its indexed chains (copies of the contigs) and QC labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receptor {
    /// The chains in the slots VJ_1, VJ_2, VDJ_1, VDJ_2 (see [`Slot`]).
    pub chains: [Option<Contig>; 4],
    /// More than two chains in an arm.
    pub multichain: bool,
    /// The `chain_qc` labels.
    pub qc: ChainQc,
}

impl Receptor {
    /// `index_chains` and `chain_qc` on one cell's contigs (in file order).
    pub fn from_contigs(contigs: &[Contig]) -> Self {
        let idx = index_chains(contigs);
        Receptor {
            chains: idx.slots().map(|i| i.map(|i| contigs[i].clone())),
            multichain: idx.multichain,
            qc: chain_qc(contigs, &idx),
        }
    }

    /// A cell without any contig.
    pub fn no_ir() -> Self {
        Receptor::from_contigs(&[])
    }

    /// Whether the cell has an indexed chain.
    pub fn has_ir(&self) -> bool {
        self.chains[0].is_some() || self.chains[2].is_some()
    }

    /// The chain in a slot.
    pub fn chain(&self, slot: Slot) -> Option<&Contig> {
        self.chains[slot as usize].as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(locus: Locus, aa: &str, nt: &str, umi: u64, reads: u64) -> Contig {
        Contig {
            locus: Some(locus),
            productive: true,
            junction_aa: Some(aa.into()),
            junction: (!nt.is_empty()).then(|| nt.into()),
            umi_count: Some(umi),
            consensus_count: Some(reads),
            ..Contig::default()
        }
    }

    #[test]
    fn filters_and_orders_by_umis_then_reads() {
        let mut c = vec![
            chain(Locus::Tra, "CA", "TGT", 2, 10),
            chain(Locus::Trb, "CB", "TGA", 5, 10),
            chain(Locus::Tra, "CC", "TGC", 7, 1),
            chain(Locus::Tra, "CD", "TGG", 2, 30),
        ];
        let mut np = chain(Locus::Tra, "CE", "TTT", 99, 99);
        np.productive = false;
        c.push(np);
        let mut no_aa = chain(Locus::Trb, "x", "TTT", 99, 99);
        no_aa.junction_aa = None;
        c.push(no_aa);
        let mut multi = chain(Locus::Trb, "CF", "TTT", 99, 99);
        multi.locus = None;
        c.push(multi);
        let idx = index_chains(&c);
        assert_eq!(idx.vj, [Some(2), Some(3)]);
        assert_eq!(idx.vdj, [Some(1), None]);
        assert!(idx.multichain, "three productive TRA chains");
    }

    #[test]
    fn string_ties_follow_awkwards_reversed_descending_sort() {
        // Equal counts: junction descending, but equal junctions leave junction_aa ascending,
        // and full ties keep file order (checked against scirpy 0.22.5).
        let c = vec![
            chain(Locus::Tra, "CB", "TGT", 1, 1),
            chain(Locus::Tra, "CA", "TGT", 1, 1),
            chain(Locus::Tra, "CZ", "TGA", 1, 1),
            chain(Locus::Tra, "CC", "TGT", 1, 1),
        ];
        let mut idx: Vec<usize> = (0..4).collect();
        order_arm(&c, &mut idx);
        assert_eq!(idx, vec![1, 0, 3, 2]);
        let same = vec![chain(Locus::Tra, "CA", "TGT", 1, 1); 3];
        let mut idx: Vec<usize> = (0..3).collect();
        order_arm(&same, &mut idx);
        assert_eq!(idx, vec![0, 1, 2]);
    }

    #[test]
    fn qc_labels_follow_scirpys_precedence() {
        let qc = |loci: &[Locus]| {
            let c: Vec<Contig> = loci.iter().map(|&l| chain(l, "CA", "T", 1, 1)).collect();
            let q = chain_qc(&c, &index_chains(&c));
            (
                q.receptor_type.as_str(),
                q.receptor_subtype.as_str(),
                q.chain_pairing.as_str(),
            )
        };
        assert_eq!(qc(&[]), ("no IR", "no IR", "no IR"));
        assert_eq!(
            qc(&[Locus::Tra, Locus::Trb]),
            ("TCR", "TRA+TRB", "single pair")
        );
        assert_eq!(
            qc(&[Locus::Tra, Locus::Tra]),
            ("TCR", "TRA+TRB", "orphan VJ")
        );
        assert_eq!(qc(&[Locus::Trb]), ("TCR", "TRA+TRB", "orphan VDJ"));
        assert_eq!(
            qc(&[Locus::Tra, Locus::Tra, Locus::Trb]),
            ("TCR", "TRA+TRB", "extra VJ")
        );
        assert_eq!(
            qc(&[Locus::Tra, Locus::Tra, Locus::Trb, Locus::Trb]),
            ("TCR", "TRA+TRB", "two full chains")
        );
        assert_eq!(
            qc(&[Locus::Tra, Locus::Trd]),
            ("TCR", "ambiguous", "ambiguous")
        );
        assert_eq!(
            qc(&[Locus::Trg, Locus::Trd]),
            ("TCR", "TRG+TRD", "single pair")
        );
        assert_eq!(
            qc(&[Locus::Tra, Locus::Igh]),
            ("ambiguous", "ambiguous", "ambiguous")
        );
        assert_eq!(qc(&[Locus::Igk]), ("BCR", "IGH+IGK", "orphan VJ"));
        assert_eq!(
            qc(&[Locus::Igl, Locus::Igh]),
            ("BCR", "IGH+IGL", "single pair")
        );
        assert_eq!(qc(&[Locus::Igh]), ("BCR", "IGH", "orphan VDJ"));
        assert_eq!(
            qc(&[Locus::Igk, Locus::Igl]),
            ("BCR", "ambiguous", "ambiguous")
        );
        assert_eq!(
            qc(&[Locus::Igk, Locus::Igl, Locus::Igh]),
            ("BCR", "IGH+IGK/L", "extra VJ")
        );
        assert_eq!(
            qc(&[Locus::Tra, Locus::Tra, Locus::Tra, Locus::Igh]),
            ("multichain", "multichain", "multichain")
        );
    }
}
