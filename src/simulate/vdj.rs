//! `simulate --vdj`: T-cell receptor contigs of the simulated cells, as a Cell Ranger 7
//! `filtered_contig_annotations.csv`, with the true clone of every cell.
//!
//! # Repertoire
//! A patient's clones depend on `(seed, patient)` only, so every time point of one patient
//! simulated with one seed draws from the same clones. They fall in six pools, by lineage
//! (CD4, CD8, gamma-delta) and origin: the CAR+ clones of the infusion product, and the CAR-
//! clones, which are product clones (fading after infusion) and the patient's endogenous clones
//! (appearing after infusion). Alpha-beta clones have a TRA (VJ) and a TRB (VDJ) chain,
//! gamma-delta clones a TRG and a TRD chain; 10 % of alpha-beta clones carry a second
//! productive alpha (dual TRA), 2 % a second beta, 25 % a non-productive rearrangement of the
//! other allele.
//!
//! A chain is a real IMGT V, (D,) J and C gene (TRAV/TRAJ/TRAC, TRBV/TRBD/TRBJ/TRBC1-2,
//! TRGV/TRGJ/TRGC1-2, TRDV/TRDD/TRDJ/TRDC) and a junction made of the V gene's germline start
//! (`CASS...`), 1-6 random non-template codons (never a stop codon) and the J gene's germline end
//! (`...YEQYF`), back-translated with fixed human codons: junctions of 11-21 amino acids;
//! `cdr3` is the translation of `cdr3_nt` with the standard codon table. Non-productive
//! rearrangements are either out of frame (no `cdr3`) or carry a stop codon (`*`).
//!
//! # Clone sizes over time
//! With `s = d / (d + 30)`, a clone's weight at day `d` is `b (1 + g s)`: `b` is log-normal
//! (sigma 1), `g` is 0 except for the expanders (0.25 % of the CAR+ product clones, growth
//! log-normal around 2,000, ten times as abundant in the product already; 0.5 % of the
//! endogenous clones, growth around 300). Non-expanding product clones are lost when their
//! uniform survival draw falls below `0.9 s` (so a clone lost at day 14 stays lost later),
//! product CAR- clones fade as `1 - s` and endogenous clones rise as `s`. Hence the product is
//! polyclonal with many small clones, and later draws hold fewer, larger clones, dominated by
//! expanded CAR+ clones that were present in the product. The non-responder preset grows its
//! expanders 5 times less and loses product clones faster (`s` instead of `0.9 s`).
//!
//! # Cells
//! Each T cell (not the empty droplets; CD4, CD8, Treg = CD4 lineage, gamma-delta/DN) draws
//! its clone from the pool of its lineage and its `truth_car`. Non-T cells have no contigs.
//! The defects of real tables, each at a fixed rate:
//! - 10 % of T cells have no contig at all (`truth_clone` missing);
//! - the primary VJ chain is detected in 88 % of cells, the primary VDJ in 95 % (about 11 %
//!   orphan beta, 4 % orphan alpha cells), a second alpha in 60 % of its clone's cells, a
//!   second beta or the non-productive allele in 50 %;
//! - 3 % of cells are doublets carrying a second clone of their pool too (multichain when
//!   three or more chains are detected);
//! - 3 % of contigs are low-confidence (`high_confidence False`, dropped by the readers);
//! - UMIs per contig `1 + NB(mean m * depth, theta 2)` with `m` 8 (VDJ), 5 (VJ), 2.5
//!   (second chains, non-productive) and a log-normal cell depth (sigma 0.5); reads are UMIs
//!   times a log-normal 80 reads per UMI;
//! - VDJ barcodes that are not cells of the matrix, 4 % as many as matrix barcodes, each a
//!   copy of the pool of a random matrix T cell.
//!
//! `truth_clone` is `<patient>_C<index>`, the clone the cell drew (a doublet's first clone).
//! Region columns other than CDR3 (`fwr1`, `cdr1`, ...) and the Cell Ranger clonotype columns
//! are `None`. Rows are sorted by barcode; contigs are numbered per barcode.
//!
//! # Determinism
//! The repertoire draws from one Xoshiro256++ stream of `(seed, patient)`, every barcode from
//! its own stream of `(sample seed, barcode index)`, separate from the expression streams, so
//! adding `--vdj` changes no count and the contigs are identical whatever the thread count.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::{Alias, Model, Preset, SimOptions, Truth, barcode, fnv1a, nb};
use crate::error::{Error, Result};
use crate::rng::splitmix;

/// Share of T cells without any contig.
pub const P_NO_CONTIGS: f64 = 0.10;
/// Detection probability of the primary VJ chain (alpha or gamma).
pub const P_DETECT_VJ: f64 = 0.88;
/// Detection probability of the primary VDJ chain (beta or delta).
pub const P_DETECT_VDJ: f64 = 0.95;
/// Detection probability of a clone's second alpha chain.
pub const P_DETECT_SECOND_VJ: f64 = 0.60;
/// Detection probability of a second beta chain or of the non-productive allele.
pub const P_DETECT_MINOR: f64 = 0.50;
/// Share of T cells that are doublets with a second clone.
pub const P_DOUBLET: f64 = 0.03;
/// Share of contigs flagged `high_confidence False`.
pub const P_LOW_CONFIDENCE: f64 = 0.03;
/// VDJ barcodes outside the matrix, per matrix barcode.
pub const EXTRA_BARCODES: f64 = 0.04;
/// Share of alpha-beta clones with a second productive alpha chain.
pub const P_DUAL_ALPHA: f64 = 0.10;
/// Share of alpha-beta clones with a second productive beta chain.
pub const P_DUAL_BETA: f64 = 0.02;
/// Share of clones with a non-productive rearrangement of the other allele.
pub const P_NON_PRODUCTIVE: f64 = 0.25;

/// Cell Ranger 7's `filtered_contig_annotations.csv` header.
pub const HEADER: &str = "barcode,is_cell,contig_id,high_confidence,length,chain,v_gene,d_gene,\
j_gene,c_gene,full_length,productive,fwr1,fwr1_nt,cdr1,cdr1_nt,fwr2,fwr2_nt,cdr2,cdr2_nt,fwr3,\
fwr3_nt,cdr3,cdr3_nt,fwr4,fwr4_nt,reads,umis,raw_clonotype_id,raw_consensus_id,\
exact_subclonotype_id";

/// A germline gene segment: name and the amino acids it gives the junction.
type Segment = (&'static str, &'static str);

const TRAV: [Segment; 16] = [
    ("TRAV1-2", "CAV"),
    ("TRAV3", "CAVRD"),
    ("TRAV8-4", "CAV"),
    ("TRAV9-2", "CALS"),
    ("TRAV12-1", "CVVN"),
    ("TRAV12-2", "CAV"),
    ("TRAV13-1", "CAA"),
    ("TRAV17", "CATD"),
    ("TRAV19", "CALSE"),
    ("TRAV20", "CAVQ"),
    ("TRAV21", "CAV"),
    ("TRAV24", "CAF"),
    ("TRAV26-1", "CIVRV"),
    ("TRAV29/DV5", "CAAS"),
    ("TRAV38-2/DV8", "CAYR"),
    ("TRAV41", "CAV"),
];
const TRAJ: [Segment; 12] = [
    ("TRAJ20", "SNDYKLSF"),
    ("TRAJ31", "NNARLMF"),
    ("TRAJ33", "DSNYQLIW"),
    ("TRAJ39", "NNAGNMLTF"),
    ("TRAJ42", "NYGGSQGNLIF"),
    ("TRAJ43", "NNNDMRF"),
    ("TRAJ45", "SGGGADGLTF"),
    ("TRAJ49", "NTGNQFYF"),
    ("TRAJ52", "AGGTSYGKLTF"),
    ("TRAJ53", "GGSNYKLTF"),
    ("TRAJ54", "IQGAQKLVF"),
    ("TRAJ9", "GNTGGFKTIF"),
];
const TRBV: [Segment; 16] = [
    ("TRBV2", "CASS"),
    ("TRBV3-1", "CASSQ"),
    ("TRBV4-1", "CASSQ"),
    ("TRBV5-1", "CASS"),
    ("TRBV6-5", "CASS"),
    ("TRBV7-2", "CASSL"),
    ("TRBV7-9", "CASS"),
    ("TRBV9", "CASSV"),
    ("TRBV11-2", "CASSL"),
    ("TRBV12-3", "CASS"),
    ("TRBV15", "CATS"),
    ("TRBV19", "CASSI"),
    ("TRBV20-1", "CSAR"),
    ("TRBV27", "CASS"),
    ("TRBV28", "CASS"),
    ("TRBV29-1", "CSV"),
];
const TRBJ: [Segment; 13] = [
    ("TRBJ1-1", "NTEAFF"),
    ("TRBJ1-2", "NYGYTF"),
    ("TRBJ1-3", "SGNTIYF"),
    ("TRBJ1-4", "TNEKLFF"),
    ("TRBJ1-5", "SNQPQHF"),
    ("TRBJ1-6", "SYNSPLHF"),
    ("TRBJ2-1", "SYNEQFF"),
    ("TRBJ2-2", "NTGELFF"),
    ("TRBJ2-3", "STDTQYF"),
    ("TRBJ2-4", "AKNIQYF"),
    ("TRBJ2-5", "QETQYF"),
    ("TRBJ2-6", "SGANVLTF"),
    ("TRBJ2-7", "SYEQYF"),
];
const TRGV: [Segment; 5] = [
    ("TRGV9", "CALWE"),
    ("TRGV8", "CATWD"),
    ("TRGV4", "CATWD"),
    ("TRGV3", "CATWD"),
    ("TRGV2", "CATWD"),
];
const TRGJ: [Segment; 4] = [
    ("TRGJP", "QELGKKIKVF"),
    ("TRGJ1", "YYKKLF"),
    ("TRGJ2", "YYKKLF"),
    ("TRGJP1", "TTGWFKIF"),
];
const TRDV: [Segment; 3] = [("TRDV2", "CACD"), ("TRDV1", "CALGE"), ("TRDV3", "CAF")];
const TRDJ: [Segment; 3] = [
    ("TRDJ1", "TDKLIF"),
    ("TRDJ2", "LTAQLFF"),
    ("TRDJ3", "SSWDTRQMFF"),
];

/// The standard genetic code, codons in TCAG order (`16 b1 + 4 b2 + b3`).
const CODE: &[u8; 64] = b"FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG";
const BASES: [u8; 4] = [b'T', b'C', b'A', b'G'];

/// Translates `nt` codon by codon (a trailing partial codon is ignored); stops are `*`.
fn translate(nt: &str) -> String {
    let base = |b: u8| BASES.iter().position(|&x| x == b).unwrap_or(0);
    nt.as_bytes()
        .chunks_exact(3)
        .map(|c| CODE[16 * base(c[0]) + 4 * base(c[1]) + base(c[2])] as char)
        .collect()
}

/// A frequent human codon for an amino acid (germline segments are back-translated with it).
fn codon(aa: u8) -> &'static str {
    match aa {
        b'A' => "GCC",
        b'R' => "CGC",
        b'N' => "AAC",
        b'D' => "GAC",
        b'C' => "TGC",
        b'Q' => "CAG",
        b'E' => "GAG",
        b'G' => "GGC",
        b'H' => "CAC",
        b'I' => "ATC",
        b'L' => "CTG",
        b'K' => "AAG",
        b'M' => "ATG",
        b'F' => "TTC",
        b'P' => "CCC",
        b'S' => "AGC",
        b'T' => "ACC",
        b'W' => "TGG",
        b'Y' => "TAC",
        b'V' => "GTG",
        _ => "TAA",
    }
}

fn back_translate(aa: &str, out: &mut String) {
    for &a in aa.as_bytes() {
        out.push_str(codon(a));
    }
}

/// A random sense codon (never a stop).
fn random_codon(rng: &mut impl Rng, out: &mut String) {
    loop {
        let i = rng.random_range(0..64usize);
        if CODE[i] != b'*' {
            out.extend([BASES[i / 16], BASES[i / 4 % 4], BASES[i % 4]].map(char::from));
            return;
        }
    }
}

/// One rearranged chain of a clone.
#[derive(Debug, Clone)]
struct Chain {
    locus: &'static str,
    v: &'static str,
    d: Option<&'static str>,
    j: &'static str,
    c: &'static str,
    /// Junction nucleotides (`cdr3_nt`).
    nt: String,
    /// Its translation (`cdr3`); none for an out-of-frame rearrangement.
    aa: Option<String>,
    productive: bool,
    /// Contig length without the per-cell jitter.
    length: u32,
    /// Mean UMIs at depth 1.
    umis: f64,
}

/// The loci of a clone kind: (VJ locus, V, J), (VDJ locus, V, D, J).
struct Loci {
    vj: (&'static str, &'static [Segment], &'static [Segment]),
    vdj: (
        &'static str,
        &'static [Segment],
        &'static [&'static str],
        &'static [Segment],
    ),
}

const AB: Loci = Loci {
    vj: ("TRA", &TRAV, &TRAJ),
    vdj: ("TRB", &TRBV, &["TRBD1", "TRBD2"], &TRBJ),
};
const GD: Loci = Loci {
    vj: ("TRG", &TRGV, &TRGJ),
    vdj: ("TRD", &TRDV, &["TRDD2", "TRDD3"], &TRDJ),
};

/// The constant gene of a locus and J gene.
fn c_gene(locus: &str, j: &str) -> &'static str {
    match locus {
        "TRA" => "TRAC",
        "TRB" if j.starts_with("TRBJ1") => "TRBC1",
        "TRB" => "TRBC2",
        "TRG" if j == "TRGJ1" || j == "TRGJP1" => "TRGC1",
        "TRG" => "TRGC2",
        _ => "TRDC",
    }
}

/// A uniformly chosen element.
fn pick<T: Copy>(rng: &mut impl Rng, s: &[T]) -> T {
    s[rng.random_range(0..s.len())]
}

/// Draws a VJ (`vj`) or VDJ chain of `loci`; `frame` 0 gives a productive chain, 1 or 2 an
/// out-of-frame one, 3 an in-frame one with a stop codon.
fn draw_chain(loci: &Loci, vj: bool, frame: u8, umis: f64, rng: &mut impl Rng) -> Chain {
    let (locus, v, d, j) = if vj {
        let (l, vs, js) = loci.vj;
        (l, pick(rng, vs), None, pick(rng, js))
    } else {
        let (l, vs, ds, js) = loci.vdj;
        // Half of the beta/delta contigs have no D call, as in Cell Ranger's output.
        let d = rng.random_bool(0.5).then(|| pick(rng, ds));
        (l, pick(rng, vs), d, pick(rng, js))
    };
    let mut nt = String::with_capacity(60);
    back_translate(v.1, &mut nt);
    let n_codons = rng.random_range(if vj { 1..=4 } else { 2..=6 });
    for k in 0..n_codons {
        if frame == 3 && k == n_codons / 2 {
            nt.push_str("TAG");
        } else {
            random_codon(rng, &mut nt);
        }
    }
    for _ in 0..(frame % 3) {
        nt.push(char::from(BASES[rng.random_range(0..4)]));
    }
    back_translate(j.1, &mut nt);
    let aa = frame.is_multiple_of(3).then(|| translate(&nt));
    Chain {
        locus,
        v: v.0,
        d,
        j: j.0,
        c: c_gene(locus, j.0),
        nt,
        aa,
        productive: frame == 0,
        length: rng.random_range(480..620),
        umis,
    }
}

/// Lineage of a clone pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lineage {
    Cd4,
    Cd8,
    GammaDelta,
}

/// Where a clone comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A clone of the infusion product.
    Product,
    /// An endogenous clone of the patient (CAR- only), appearing after infusion.
    Endogenous,
}

/// A pool's clone counts: (lineage, CAR+, product clones, endogenous clones).
const POOLS: [(Lineage, bool, usize, usize); 6] = [
    (Lineage::Cd4, true, 12_000, 0),
    (Lineage::Cd8, true, 8_000, 0),
    (Lineage::GammaDelta, true, 400, 0),
    (Lineage::Cd4, false, 5_000, 10_000),
    (Lineage::Cd8, false, 3_000, 8_000),
    (Lineage::GammaDelta, false, 300, 1_500),
];

/// Pool index of a lineage and CAR status.
fn pool_of(lineage: Lineage, car: bool) -> usize {
    POOLS
        .iter()
        .position(|p| p.0 == lineage && p.1 == car)
        .expect("every lineage has both pools")
}

/// One clone: its chains (primary VJ, primary VDJ, then second chains) and its dynamics.
#[derive(Debug, Clone)]
struct TcrClone {
    chains: Vec<Chain>,
    /// A non-productive rearrangement of the other allele.
    silent: Option<Chain>,
    origin: Origin,
    car: bool,
    base: f64,
    growth: f64,
    survival: f64,
}

impl TcrClone {
    /// Whether the clone grows after infusion.
    fn expander(&self) -> bool {
        self.growth > 0.0
    }

    /// The clone's weight at `s = d / (d + 30)`.
    fn weight(&self, s: f64, preset: Preset) -> f64 {
        let (growth, loss) = match preset {
            Preset::Responder => (self.growth, 0.9 * s),
            Preset::NonResponder => (self.growth / 5.0, s),
        };
        let alive = self.expander() || self.origin == Origin::Endogenous || self.survival >= loss;
        if !alive {
            return 0.0;
        }
        let presence = match (self.origin, self.car) {
            (Origin::Product, true) => 1.0,
            (Origin::Product, false) => 1.0 - s,
            (Origin::Endogenous, _) => s,
        };
        self.base * (1.0 + growth * s) * presence
    }
}

/// A patient's clones, grouped in pools.
struct Repertoire {
    clones: Vec<TcrClone>,
    /// Clone indices of each pool of [`POOLS`].
    pools: Vec<Vec<u32>>,
}

impl Repertoire {
    /// The repertoire of `patient` for `seed` (independent of the sample).
    fn new(seed: u64, patient: &str) -> Repertoire {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(
            seed ^ fnv1a(patient.as_bytes()) ^ 0x0076_636c_6f6e_6573,
        ));
        let base = LogNormal::new(0.0, 1.0).expect("valid");
        let car_growth = LogNormal::new(2000f64.ln(), 0.8).expect("valid");
        let endo_growth = LogNormal::new(300f64.ln(), 0.8).expect("valid");
        let mut seen: HashSet<String> = HashSet::new();
        let mut unique = |rng: &mut Xoshiro256PlusPlus, loci: &Loci, vj: bool, umis: f64| loop {
            let c = draw_chain(loci, vj, 0, umis, rng);
            if seen.insert(c.nt.clone()) {
                return c;
            }
        };
        let mut clones = Vec::new();
        let mut pools = Vec::new();
        for &(lineage, car, n_product, n_endo) in &POOLS {
            let loci = if lineage == Lineage::GammaDelta {
                &GD
            } else {
                &AB
            };
            let mut pool = Vec::with_capacity(n_product + n_endo);
            for k in 0..n_product + n_endo {
                let origin = if k < n_product {
                    Origin::Product
                } else {
                    Origin::Endogenous
                };
                let mut chains = vec![
                    unique(&mut rng, loci, true, 5.0),
                    unique(&mut rng, loci, false, 8.0),
                ];
                if lineage != Lineage::GammaDelta {
                    if rng.random_bool(P_DUAL_ALPHA) {
                        chains.push(unique(&mut rng, loci, true, 2.5));
                    }
                    if rng.random_bool(P_DUAL_BETA) {
                        chains.push(unique(&mut rng, loci, false, 2.5));
                    }
                }
                let silent = rng.random_bool(P_NON_PRODUCTIVE).then(|| {
                    let vj = rng.random_bool(0.5);
                    draw_chain(loci, vj, rng.random_range(1..=3), 2.5, &mut rng)
                });
                let (p_expand, growth) = match origin {
                    Origin::Product if car => (0.0025, &car_growth),
                    Origin::Product => (0.0, &car_growth),
                    Origin::Endogenous => (0.005, &endo_growth),
                };
                let expands = rng.random_bool(p_expand);
                let mut b = base.sample(&mut rng);
                if expands && origin == Origin::Product {
                    b *= 10.0;
                }
                let growth = if expands {
                    growth.sample(&mut rng)
                } else {
                    0.0
                };
                pool.push(clones.len() as u32);
                clones.push(TcrClone {
                    chains,
                    silent,
                    origin,
                    car,
                    base: b,
                    growth,
                    survival: rng.random(),
                });
            }
            pools.push(pool);
        }
        Repertoire { clones, pools }
    }
}

/// The pools of one sample: alias tables over their clones' weights at the sample's day.
struct SampleClones<'r> {
    rep: &'r Repertoire,
    alias: Vec<Alias>,
}

impl<'r> SampleClones<'r> {
    fn new(rep: &'r Repertoire, day: f64, preset: Preset) -> Self {
        let s = day / (day + 30.0);
        let alias = rep
            .pools
            .iter()
            .map(|pool| {
                let w: Vec<f64> = pool
                    .iter()
                    .map(|&k| rep.clones[k as usize].weight(s, preset))
                    .collect();
                Alias::new(&w)
            })
            .collect();
        SampleClones { rep, alias }
    }

    fn draw(&self, pool: usize, rng: &mut impl Rng) -> u32 {
        self.rep.pools[pool][self.alias[pool].sample(rng)]
    }
}

/// One contig of a barcode.
struct Row<'r> {
    chain: &'r Chain,
    umis: u32,
    reads: u32,
    high_confidence: bool,
    length: u32,
}

/// The contigs of one barcode and the clone it drew.
struct CellContigs<'r> {
    clone: Option<u32>,
    rows: Vec<Row<'r>>,
}

impl CellContigs<'_> {
    fn none() -> Self {
        CellContigs {
            clone: None,
            rows: Vec::new(),
        }
    }
}

/// The detected contigs of `clone` in a cell sequenced at `depth`.
fn detect<'r>(clone: &'r TcrClone, depth: f64, rng: &mut impl Rng, rows: &mut Vec<Row<'r>>) {
    let reads_per_umi = LogNormal::new(80f64.ln(), 0.4).expect("valid");
    for (k, chain) in clone.chains.iter().chain(&clone.silent).enumerate() {
        let p = match k {
            _ if !chain.productive => P_DETECT_MINOR,
            0 => P_DETECT_VJ,
            1 => P_DETECT_VDJ,
            _ if chain.locus == "TRA" => P_DETECT_SECOND_VJ,
            _ => P_DETECT_MINOR,
        };
        if !rng.random_bool(p) {
            continue;
        }
        let umis = 1 + nb(rng, chain.umis * depth, 2.0);
        let reads = (f64::from(umis) * reads_per_umi.sample(rng)).round() as u32;
        rows.push(Row {
            chain,
            umis,
            reads: reads.max(umis),
            high_confidence: !rng.random_bool(P_LOW_CONFIDENCE),
            length: chain.length + rng.random_range(0..40),
        });
    }
}

/// The contigs of a T cell of `pool`.
fn cell_contigs<'r>(clones: &SampleClones<'r>, pool: usize, rng: &mut impl Rng) -> CellContigs<'r> {
    if rng.random_bool(P_NO_CONTIGS) {
        return CellContigs::none();
    }
    let depth = LogNormal::new(0.0, 0.5).expect("valid").sample(rng);
    let k = clones.draw(pool, rng);
    let mut rows = Vec::with_capacity(4);
    detect(&clones.rep.clones[k as usize], depth, rng, &mut rows);
    if rows.is_empty() {
        return CellContigs::none();
    }
    if rng.random_bool(P_DOUBLET) {
        let other = clones.draw(pool, rng);
        detect(&clones.rep.clones[other as usize], depth, rng, &mut rows);
    }
    CellContigs {
        clone: Some(k),
        rows,
    }
}

/// The pool of a barcode's truth, if it is a T cell with a receptor.
fn pool_of_truth(model: &Model, t: &Truth) -> Option<usize> {
    let p = &model.pops[t.pop];
    if !p.is_t || t.quality == "empty" {
        return None;
    }
    let lineage = match p.lineage {
        "CD8" => Lineage::Cd8,
        "DN" => Lineage::GammaDelta,
        _ => Lineage::Cd4,
    };
    Some(pool_of(lineage, t.car))
}

/// What `simulate --vdj` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VdjSimSummary {
    /// The contig table.
    pub path: std::path::PathBuf,
    /// Contig rows written.
    pub contigs: usize,
    /// Matrix barcodes with contigs (with a `truth_clone`).
    pub cells_with_contigs: usize,
    /// Barcodes of the table that are not barcodes of the matrix.
    pub barcodes_not_in_matrix: usize,
    /// Distinct true clones among the matrix barcodes.
    pub clones: usize,
}

/// Draws the contigs of every barcode of the sample (`sample_seed`, `day`) and writes the
/// table to `path` (gzipped unless the name ends in `.csv`); returns the true clone of each
/// matrix barcode, labelled `<patient>_C<k>`.
pub(super) fn write_contigs(
    path: &Path,
    model: &Model,
    truths: &[Truth],
    opts: &SimOptions,
    sample_seed: u64,
    day: f64,
) -> Result<(Vec<Option<String>>, VdjSimSummary)> {
    let patient = opts.patient.as_str();
    let rep = Repertoire::new(opts.seed, patient);
    let clones = SampleClones::new(&rep, day, opts.preset);
    let vdj_seed = splitmix(sample_seed ^ 0x5444_4a5f_636f_6e74);
    let n = truths.len();
    let n_extra = (n as f64 * EXTRA_BARCODES).round() as usize;
    let rng_of =
        |i: usize| Xoshiro256PlusPlus::seed_from_u64(splitmix(vdj_seed ^ splitmix(i as u64)));
    let t_cells: Vec<usize> = (0..n)
        .filter(|&i| pool_of_truth(model, &truths[i]).is_some())
        .collect();
    let cells: Vec<CellContigs> = (0..n + n_extra)
        .into_par_iter()
        .map(|i| {
            let mut rng = rng_of(i);
            let pool = if i < n {
                pool_of_truth(model, &truths[i])
            } else if t_cells.is_empty() {
                None
            } else {
                pool_of_truth(model, &truths[t_cells[rng.random_range(0..t_cells.len())]])
            };
            pool.map_or_else(CellContigs::none, |p| cell_contigs(&clones, p, &mut rng))
        })
        .collect();
    let barcodes: Vec<String> = (0..(n + n_extra) as u64).map(barcode).collect();
    let mut order: Vec<usize> = (0..n + n_extra)
        .filter(|&i| !cells[i].rows.is_empty())
        .collect();
    order.sort_unstable_by(|&a, &b| barcodes[a].cmp(&barcodes[b]));
    let gzip = !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let blocks: Vec<Vec<u8>> = order
        .par_chunks(4096)
        .enumerate()
        .map(|(k, chunk)| {
            let mut text = Vec::with_capacity(chunk.len() * 600);
            if k == 0 {
                text.extend_from_slice(HEADER.as_bytes());
                text.push(b'\n');
            }
            for &i in chunk {
                format_rows(&mut text, &barcodes[i], &cells[i].rows);
            }
            if gzip {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(text.len() / 4),
                    flate2::Compression::default(),
                );
                enc.write_all(&text).and_then(|_| enc.finish())
            } else {
                Ok(text)
            }
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::write(path, "contigs", e))?;
    write_blocks(path, &blocks)?;
    let truth: Vec<Option<String>> = cells[..n]
        .iter()
        .map(|c| c.clone.map(|k| format!("{patient}_C{k:05}")))
        .collect();
    let distinct: HashSet<u32> = cells[..n].iter().filter_map(|c| c.clone).collect();
    let summary = VdjSimSummary {
        path: path.to_path_buf(),
        contigs: cells.iter().map(|c| c.rows.len()).sum(),
        cells_with_contigs: cells[..n].iter().filter(|c| !c.rows.is_empty()).count(),
        barcodes_not_in_matrix: cells[n..].iter().filter(|c| !c.rows.is_empty()).count(),
        clones: distinct.len(),
    };
    Ok((truth, summary))
}

/// Appends the CSV rows of one barcode.
fn format_rows(out: &mut Vec<u8>, bc: &str, rows: &[Row]) {
    let tf = |b: bool| if b { "True" } else { "False" };
    for (k, r) in rows.iter().enumerate() {
        let c = r.chain;
        // Writes into a Vec cannot fail.
        let _ = writeln!(
            out,
            "{bc},True,{bc}_contig_{},{},{},{},{},{},{},{},{},{},None,None,None,None,None,None,\
             None,None,None,None,{},{},None,None,{},{},None,None,None",
            k + 1,
            tf(r.high_confidence),
            r.length,
            c.locus,
            c.v,
            c.d.unwrap_or("None"),
            c.j,
            c.c,
            tf(c.productive || c.aa.is_some()),
            tf(c.productive),
            c.aa.as_deref().unwrap_or("None"),
            if c.aa.is_some() {
                c.nt.as_str()
            } else {
                "None"
            },
            r.reads,
            r.umis,
        );
    }
}

/// Writes the blocks to `path` through a temporary file.
fn write_blocks(path: &Path, blocks: &[Vec<u8>]) -> Result<()> {
    let tmp = crate::io::h5ad_write::temporary_path(path)?;
    let io = |e: std::io::Error| Error::write(path, "contigs", e);
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    for b in blocks {
        w.write_all(b).map_err(io)?;
    }
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn germline_segments_translate_without_stops() {
        for (name, aa) in TRAV
            .iter()
            .chain(&TRBV)
            .chain(&TRGV)
            .chain(&TRDV)
            .chain(&TRAJ)
            .chain(&TRBJ)
            .chain(&TRGJ)
            .chain(&TRDJ)
        {
            let mut nt = String::new();
            back_translate(aa, &mut nt);
            assert_eq!(translate(&nt), *aa, "{name}");
        }
        assert_eq!(translate("TGTGCCAGCAGTTAGTTT"), "CASS*F");
    }

    #[test]
    fn productive_chains_are_junctions_without_stops() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for k in 0..2000 {
            let loci = if k % 2 == 0 { &AB } else { &GD };
            let c = draw_chain(loci, k % 3 == 0, 0, 1.0, &mut rng);
            let aa = c.aa.unwrap();
            assert_eq!(c.nt.len(), 3 * aa.len());
            assert!(
                aa.starts_with('C') && (aa.ends_with('F') || aa.ends_with('W')),
                "{aa}"
            );
            assert!(!aa.contains('*') && (11..=21).contains(&aa.len()), "{aa}");
            let bad = draw_chain(loci, true, 1 + (k % 3) as u8, 1.0, &mut rng);
            assert!(!bad.productive);
            assert!(bad.aa.is_none() || bad.aa.unwrap().contains('*'));
        }
    }

    #[test]
    fn repertoire_depends_on_seed_and_patient_only() {
        let a = Repertoire::new(5, "P01");
        let b = Repertoire::new(5, "P01");
        let c = Repertoire::new(5, "P02");
        assert_eq!(a.clones.len(), b.clones.len());
        assert!(
            a.clones
                .iter()
                .zip(&b.clones)
                .all(|(x, y)| x.chains[1].nt == y.chains[1].nt)
        );
        assert!(
            a.clones
                .iter()
                .zip(&c.clones)
                .any(|(x, y)| x.chains[1].nt != y.chains[1].nt)
        );
        let dual = a.clones.iter().filter(|c| c.chains.len() > 2).count() as f64;
        assert!((dual / a.clones.len() as f64 - 0.11).abs() < 0.02, "{dual}");
    }

    #[test]
    fn expanders_take_over_after_infusion() {
        let rep = Repertoire::new(1, "P01");
        let share = |day: f64| {
            let s = day / (day + 30.0);
            let pool = &rep.pools[pool_of(Lineage::Cd8, true)];
            let w = |k: &u32| rep.clones[*k as usize].weight(s, Preset::Responder);
            let total: f64 = pool.iter().map(w).sum();
            let exp: f64 = pool
                .iter()
                .filter(|&&k| rep.clones[k as usize].expander())
                .map(w)
                .sum();
            exp / total
        };
        assert!(share(0.0) < 0.05 && share(14.0) > 0.3 && share(90.0) > share(14.0));
    }
}
