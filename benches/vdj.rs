//! Criterion benches of VDJ clonotyping on 100,000 synthetic T cells (alpha-beta pairs, a
//! tenth with a second alpha chain, 30 % of cells in 2,000 expanded clones, the rest
//! unique): `cargo bench --bench vdj`. `define_clonotypes` alone (scirpy's defaults, and
//! `receptor_arms="any"` with `same_v_gene`), and `analyse` (chain indexing, QC, clonotypes
//! and expansion from parsed contigs).

use std::hint::black_box;
use std::path::PathBuf;

use cartscope::vdj::{
    ClonotypeOptions, Contig, ContigFormat, Contigs, DualIr, Locus, ReceptorArms, VdjOptions,
    analyse, define_clonotypes,
};
use criterion::{Criterion, criterion_group, criterion_main};

const N_CELLS: usize = 100_000;

/// A nucleotide junction of about 45 bases and its translation stand-in, from an id.
fn junction(id: u64, arm: u64) -> (String, String) {
    let mut x = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ arm;
    let nt: String = (0..45)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b"ACGT"[(x >> 62) as usize] as char
        })
        .collect();
    let aa: String = nt
        .as_bytes()
        .chunks(3)
        .map(|c| (b'A' + (c.iter().map(|&b| u32::from(b)).sum::<u32>() % 26) as u8) as char)
        .collect();
    (nt, aa)
}

fn contig(locus: Locus, id: u64, arm: u64, umis: u64) -> Contig {
    let (nt, aa) = junction(id, arm);
    Contig {
        locus: Some(locus),
        productive: true,
        junction: Some(nt),
        junction_aa: Some(aa),
        v_call: Some(format!("{}V{}", locus.as_str(), id % 40)),
        j_call: Some(format!("{}J{}", locus.as_str(), id % 13)),
        umi_count: Some(umis),
        consensus_count: Some(10 * umis),
        ..Contig::default()
    }
}

fn synthetic() -> Contigs {
    let mut state = 11u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut out = Contigs {
        format: ContigFormat::TenxCsv,
        sources: vec![PathBuf::from("synthetic")],
        barcodes: Vec::with_capacity(N_CELLS),
        offsets: vec![0],
        contigs: Vec::new(),
        n_filtered_out: 0,
    };
    for i in 0..N_CELLS {
        let clone = if next() % 10 < 3 {
            next() % 2_000
        } else {
            10_000 + i as u64
        };
        out.contigs
            .push(contig(Locus::Tra, clone, 1, 2 + next() % 5));
        out.contigs
            .push(contig(Locus::Trb, clone, 2, 2 + next() % 9));
        if next() % 10 == 0 {
            out.contigs.push(contig(Locus::Tra, clone + 7, 3, 1));
        }
        out.barcodes.push(format!("CELL{i:07}-1"));
        out.offsets.push(out.contigs.len());
    }
    out
}

fn vdj(c: &mut Criterion) {
    let contigs = synthetic();
    let receptors = contigs.receptors();
    let mut g = c.benchmark_group("vdj");
    g.sample_size(10);
    let defaults = ClonotypeOptions::default();
    g.bench_function("define_clonotypes/100k/defaults", |b| {
        b.iter(|| black_box(define_clonotypes(&receptors, &defaults, None).unwrap()))
    });
    let any = ClonotypeOptions {
        receptor_arms: ReceptorArms::Any,
        dual_ir: DualIr::Any,
        same_v_gene: true,
        ..ClonotypeOptions::default()
    };
    g.bench_function("define_clonotypes/100k/any_same_v", |b| {
        b.iter(|| black_box(define_clonotypes(&receptors, &any, None).unwrap()))
    });
    let opts = VdjOptions::default();
    g.bench_function("analyse/100k", |b| {
        b.iter(|| black_box(analyse(&contigs, None, &opts).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, vdj);
criterion_main!(benches);
