//! `cartscope simulate`: synthetic CAR-T trial samples with known truth.
//!
//! # Model
//! **Genes.** Real human symbols from `genes` (housekeeping, ribosomal, lineage and
//! CAR-T programme markers, the 13 `MT-` genes), background genes `SIMBG00001...` up to the
//! requested number, and the CAR construct as the last feature (default name `CAR`).
//!
//! **Populations.** CD4 and CD8 T cells in six states (naive/stem-like memory, central memory,
//! effector memory, effector, exhausted, proliferating), CD4 Treg, gamma-delta/double-negative
//! T cells, and non-T contaminants (B cells, monocytes, NK cells). Each population multiplies a
//! shared baseline expression profile by its marker programme (see [`programme`]): e.g.
//! exhausted T cells raise PDCD1, HAVCR2, LAG3, TIGIT, TOX, CTLA4, ENTPD1 and lower the
//! memory genes; naive/stem-like memory raise TCF7, SELL, CCR7, LEF1, IL7R, CD27, CD28, and
//! central memory raises them less while switching on the antigen-experience genes S100A4,
//! ANXA1 and ITGB1 (CD29) that effector memory and effector cells carry too.
//!
//! **Counts.** A cell's library size is log-normal (population-specific median, sigma 0.45,
//! clipped at 2.5 sigma);
//! its mitochondrial fraction is 1.5-6.5 % for healthy cells. Gene `g` has mean
//! `mu = L * (1 - f_mt) * w_pop[g] / Z_pop` and its count is negative binomial, drawn as a
//! gamma-Poisson mixture with a gene-specific dispersion (`theta` log-normal around 2.5), for
//! every named gene and the 1,500 most expressed background genes. The long tail of rarely
//! expressed background genes is Poisson: their total is Poisson and each count is placed by an
//! alias table over their baseline weights (exactly multinomial-Poisson, without over-dispersion),
//! which keeps a 1,000,000 x 30,000 simulation linear in the counts drawn rather than in the
//! genes. Cells then hold a few hundred to a few thousand genes.
//!
//! **Quality.** 3 % of barcodes are empty droplets (about 120 UMIs, far under 200 genes) and
//! 5 % are low-quality cells (35 % of a normal library, 30-60 % mitochondrial reads): exactly
//! the barcodes the standard QC (min_genes 200, pct_counts_mt < 20) removes.
//!
//! **CAR.** Only T cells carry the construct. The CAR+ fraction among T cells decays with the
//! day after infusion (responder: `0.05 + 0.55 e^(-d/90)`; non-responder: `0.01 + 0.55
//! e^(-d/20)`) and is raised in activated states (effector, exhausted, proliferating). A CAR+
//! cell's construct counts are `1 + NB(mean 1, r 1.5)`, so many CAR+ cells have 1-3 UMIs;
//! `truth_car` is exactly "construct detected", i.e. CAR counts >= 1.
//!
//! **Time.** With `s = d / (d + 30)`, composition moves from the infusion product (97 % T
//! cells, memory-rich) towards a blood draw (55 % T cells, with B cells, monocytes and NK
//! cells), and T-cell states from memory towards effector/exhausted; the non-responder preset
//! ends with 40 % exhausted cells and more Tregs.
//!
//! **Truth.** obs columns `truth_cell_type`, `truth_state`, `truth_lineage`, `truth_car`,
//! `truth_quality` (never read by the analysis), and `truth_clone` with `--vdj`. In 10x
//! formats, which have no obs table, the truth is written beside the matrix as CSV.
//!
//! **TCR contigs.** With `--vdj` ([`SimOptions::vdj`]) every T cell draws a clone from a
//! repertoire fixed by `(seed, patient)`, shared by the patient's time points, and the sample's
//! contigs are written as a Cell Ranger `filtered_contig_annotations.csv` with the defects of
//! real tables at documented rates (orphan, dual and non-productive chains, doublets,
//! low-confidence contigs, barcodes outside the matrix, T cells without contigs): see [`vdj`].
//!
//! **Determinism.** Every cell draws from its own Xoshiro256++ stream seeded by
//! `(seed, cell index)`, so the output is identical for a seed whatever the thread count. The
//! contigs draw from streams of their own, so `--vdj` leaves every count unchanged.

pub(crate) mod genes;
pub mod vdj;

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma, LogNormal, Normal, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::h5ad_write::WriteOptions;
use crate::io::tenx_write::{MtxWriter, TenxFeatures, TenxH5Writer};
use crate::io::{AnnData, Column, Frame, H5adWriter};
use crate::matrix::CsrMatrix;
use crate::rng::splitmix;

/// Trajectory of the sample's patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// CAR-T cells persist with a memory compartment.
    Responder,
    /// CAR-T cells decline quickly and become exhausted.
    NonResponder,
}

/// Output format of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum SimFormat {
    /// AnnData `.h5ad` with truth in obs.
    #[value(name = "h5ad")]
    H5ad,
    /// 10x HDF5 v3 with truth in `<stem>_truth.csv.gz`.
    #[value(name = "10x-h5")]
    TenxH5,
    /// 10x MTX directory with truth in `truth.csv.gz`.
    #[value(name = "10x-mtx")]
    TenxMtx,
}

/// Options of one simulated sample.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Barcodes to generate (cells, low-quality cells and empty droplets together).
    pub cells: usize,
    /// Features including the CAR construct.
    pub genes: usize,
    /// Random seed.
    pub seed: u64,
    /// Time-point label, e.g. `infusion`, `day14`, `month3`.
    pub timepoint: String,
    /// Day after infusion; parsed from the label when not given.
    pub day: Option<f64>,
    /// Patient identifier.
    pub patient: String,
    /// Sample identifier written to obs (default: `<patient>_<timepoint>`).
    pub sample: Option<String>,
    /// Response trajectory.
    pub preset: Preset,
    /// Name of the CAR construct feature.
    pub car_feature: String,
    /// Output format.
    pub format: SimFormat,
    /// gzip level for the output (None: uncompressed h5ad/10x-h5; MTX is always gzipped).
    pub gzip: Option<u8>,
    /// Cells generated per chunk (bounds memory).
    pub chunk_cells: usize,
    /// Also write T-cell receptor contigs and `truth_clone` ([`vdj`]).
    pub vdj: bool,
    /// Where the contig table goes (default: [`default_vdj_path`]); plain CSV when the name
    /// ends in `.csv`, gzipped otherwise.
    pub vdj_output: Option<PathBuf>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            cells: 3000,
            genes: 4000,
            seed: 0,
            timepoint: "infusion".into(),
            day: None,
            patient: "P01".into(),
            sample: None,
            preset: Preset::Responder,
            car_feature: "CAR".into(),
            format: SimFormat::H5ad,
            gzip: None,
            chunk_cells: 4096,
            vdj: false,
            vdj_output: None,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    /// Output path.
    pub path: PathBuf,
    /// Barcodes written.
    pub cells: usize,
    /// Features written.
    pub genes: usize,
    /// Stored entries.
    pub nnz: u64,
    /// Day after infusion used.
    pub day: f64,
    /// Barcodes with `truth_car`.
    pub car_positive: usize,
    /// Barcodes made low-quality or empty.
    pub qc_failing: usize,
    /// The contig table, with `--vdj`.
    pub vdj: Option<vdj::VdjSimSummary>,
}

/// The default contig table of `simulate --vdj`: `<stem>_contigs.csv.gz` beside the output
/// (beside, not inside, an MTX directory, as Cell Ranger keeps VDJ and expression outputs
/// apart), e.g. `P01_day14_contigs.csv.gz` for `P01_day14.h5ad`.
pub fn default_vdj_path(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!("{stem}_contigs.csv.gz"))
}

/// Parses a day from a time-point label: `infusion`/`IP`/`product` = 0, `day14`/`d14`,
/// `week2`/`w2` (x7), `month3`/`m3` (x30).
pub(crate) fn day_from_label(label: &str) -> Option<f64> {
    let l = label.to_ascii_lowercase().replace(['_', '-', ' '], "");
    if ["infusion", "ip", "product", "infusionproduct", "baseline"].contains(&l.as_str()) {
        return Some(0.0);
    }
    for (prefix, scale) in [
        ("day", 1.0),
        ("week", 7.0),
        ("month", 30.0),
        ("d", 1.0),
        ("w", 7.0),
        ("m", 30.0),
    ] {
        if let Some(rest) = l.strip_prefix(prefix)
            && let Ok(n) = rest.parse::<f64>()
        {
            return Some(n * scale);
        }
    }
    None
}

/// T-cell functional states.
const T_STATES: [&str; 6] = [
    "naive_stem_memory",
    "central_memory",
    "effector_memory",
    "effector",
    "exhausted",
    "proliferating",
];

/// A simulated population: labels, share of barcodes, library-size median, CAR propensity and
/// marker programme.
#[derive(Debug, Clone)]
struct Population {
    cell_type: &'static str,
    state: &'static str,
    lineage: &'static str,
    share: f64,
    lib_median: f64,
    car_mult: f64,
    is_t: bool,
    programme: Vec<(&'static str, f64)>,
}

/// Marker programme of a population: (gene, fold over baseline).
pub fn programme(cell_type: &str, state: &str) -> Vec<(&'static str, f64)> {
    let mut p: Vec<(&'static str, f64)> = Vec::new();
    let pan_t = [
        "CD3D", "CD3E", "CD3G", "TRAC", "TRBC1", "TRBC2", "CD2", "CD5", "CD7", "LCK",
    ];
    let memory = ["TCF7", "SELL", "CCR7", "IL7R", "LEF1", "CD27", "CD28"];
    match cell_type {
        "CD4 T" | "CD8 T" | "Treg" | "gdT/DN T" => {
            p.extend(pan_t.iter().map(|&g| (g, 40.0)));
            if cell_type == "gdT/DN T" {
                p.extend([
                    ("TRAC", 4.0),
                    ("TRDC", 40.0),
                    ("TRGC1", 30.0),
                    ("TRGC2", 30.0),
                    ("NKG7", 10.0),
                    ("KLRB1", 15.0),
                ]);
            }
        }
        "B" => {
            p.extend(["CD19", "MS4A1", "CD79A", "CD79B", "PAX5", "IGHM", "IGKC"].map(|g| (g, 40.0)))
        }
        "Monocyte" => p.extend(
            [
                "CD14", "LYZ", "S100A8", "S100A9", "CSF1R", "CD68", "FCN1", "VCAN", "FCER1G",
                "TYROBP",
            ]
            .map(|g| (g, 40.0)),
        ),
        "NK" => p.extend(
            [
                "NCAM1", "KLRD1", "KLRF1", "NKG7", "GNLY", "PRF1", "GZMB", "FCER1G", "TYROBP",
                "XCL1", "IL2RB", "FCGR3A",
            ]
            .map(|g| (g, 35.0)),
        ),
        _ => {}
    }
    match cell_type {
        "CD4 T" => p.push(("CD4", 35.0)),
        "CD8 T" => p.extend([("CD8A", 35.0), ("CD8B", 30.0)]),
        "Treg" => p.extend([
            ("CD4", 35.0),
            ("FOXP3", 40.0),
            ("IL2RA", 35.0),
            ("CTLA4", 25.0),
            ("CCR4", 25.0),
            ("IKZF2", 20.0),
        ]),
        _ => {}
    }
    let cytotoxic = cell_type == "CD8 T";
    match state {
        "naive_stem_memory" => p.extend(memory.iter().map(|&g| (g, 30.0))),
        "central_memory" => p.extend([
            ("CCR7", 15.0),
            ("SELL", 15.0),
            ("IL7R", 30.0),
            ("CD27", 20.0),
            ("CD28", 20.0),
            ("TCF7", 8.0),
            ("LEF1", 6.0),
            ("GZMK", 4.0),
        ]),
        "effector_memory" => {
            p.extend([
                ("GZMK", 30.0),
                ("IL7R", 10.0),
                ("CCL5", 25.0),
                ("CD27", 6.0),
                ("KLRB1", 10.0),
            ]);
            if cytotoxic {
                p.extend([("NKG7", 10.0), ("GZMA", 15.0)]);
            }
        }
        "effector" => p.extend([
            ("GZMB", 40.0),
            ("PRF1", 35.0),
            ("NKG7", 35.0),
            ("GNLY", 35.0),
            ("IFNG", 25.0),
            ("CCL5", 25.0),
            ("GZMH", 25.0),
            ("GZMA", 25.0),
            ("CST7", 20.0),
        ]),
        "exhausted" => p.extend([
            ("PDCD1", 40.0),
            ("HAVCR2", 40.0),
            ("LAG3", 40.0),
            ("TIGIT", 35.0),
            ("TOX", 35.0),
            ("CTLA4", 20.0),
            ("ENTPD1", 30.0),
            ("CXCL13", 20.0),
            ("LAYN", 15.0),
            ("GZMB", 10.0),
        ]),
        "proliferating" => p.extend([
            ("MKI67", 45.0),
            ("TOP2A", 45.0),
            ("TYMS", 35.0),
            ("ZWINT", 30.0),
            ("TUBA1B", 10.0),
            ("STMN1", 20.0),
            ("HMGB2", 15.0),
            ("GZMB", 8.0),
        ]),
        _ => {}
    }
    // Effector and exhausted cells lose the memory programme.
    if matches!(state, "effector" | "exhausted") {
        p.extend(memory.iter().map(|&g| (g, 0.15)));
    }
    // Antigen experience: S100A4, ANXA1 and ITGB1 (CD29) rise from central memory on and stay
    // off in naive and stem-like memory cells, the classic naive vs memory split of blood T
    // cells at the RNA level. Monocytes and NK cells express them too.
    let experienced: &[(&str, f64)] = match (cell_type, state) {
        ("CD4 T" | "CD8 T", "central_memory") => {
            &[("S100A4", 40.0), ("ANXA1", 25.0), ("ITGB1", 15.0)]
        }
        ("CD4 T" | "CD8 T", "effector_memory" | "effector") => {
            &[("S100A4", 60.0), ("ANXA1", 40.0), ("ITGB1", 20.0)]
        }
        ("CD4 T" | "CD8 T", "exhausted" | "proliferating") => {
            &[("S100A4", 25.0), ("ANXA1", 15.0), ("ITGB1", 15.0)]
        }
        ("Treg" | "gdT/DN T", _) | ("NK", _) => {
            &[("S100A4", 40.0), ("ANXA1", 30.0), ("ITGB1", 15.0)]
        }
        ("Monocyte", _) => &[("S100A4", 80.0), ("ANXA1", 50.0), ("ITGB1", 10.0)],
        _ => &[],
    };
    p.extend_from_slice(experienced);
    p
}

/// Linear interpolation of state shares between the infusion product and a late draw.
fn lerp(a: &[f64], b: &[f64], s: f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + (y - x) * s).collect()
}

fn populations(day: f64, preset: Preset) -> Vec<Population> {
    let s = day / (day + 30.0);
    let nr = preset == Preset::NonResponder;
    let t_share = 0.97 + (0.55 - 0.97) * s;
    let t_split = lerp(
        &[0.48, 0.44, 0.04, 0.04],
        &if nr {
            [0.40, 0.48, 0.08, 0.04]
        } else {
            [0.38, 0.54, 0.04, 0.04]
        },
        s,
    );
    let cd8_late = if nr {
        [0.04, 0.08, 0.22, 0.22, 0.40, 0.04]
    } else {
        [0.12, 0.18, 0.30, 0.22, 0.12, 0.06]
    };
    let cd8 = lerp(&[0.28, 0.24, 0.18, 0.12, 0.06, 0.12], &cd8_late, s);
    // CD4 cells exhaust less: half their exhausted share goes to central memory.
    let mut cd4 = cd8.clone();
    cd4[1] += cd4[4] / 2.0;
    cd4[4] /= 2.0;
    let car_state = [0.8, 0.9, 1.0, 1.2, 1.4, 1.5];
    let mut pops = Vec::new();
    for (cell_type, lineage, split, states) in [
        ("CD4 T", "CD4", t_split[0], &cd4),
        ("CD8 T", "CD8", t_split[1], &cd8),
    ] {
        for (k, state) in T_STATES.iter().enumerate() {
            pops.push(Population {
                cell_type,
                state,
                lineage,
                share: t_share * split * states[k],
                lib_median: if *state == "proliferating" {
                    6000.0
                } else {
                    3500.0
                },
                car_mult: car_state[k],
                is_t: true,
                programme: programme(cell_type, state),
            });
        }
    }
    let other = |cell_type, state, lineage, share, lib_median, car_mult, is_t| Population {
        cell_type,
        state,
        lineage,
        share,
        lib_median,
        car_mult,
        is_t,
        programme: programme(cell_type, state),
    };
    pops.push(other(
        "Treg",
        "treg",
        "CD4",
        t_share * t_split[2],
        3500.0,
        0.8,
        true,
    ));
    pops.push(other(
        "gdT/DN T",
        "gamma_delta_dn",
        "DN",
        t_share * t_split[3],
        3500.0,
        0.5,
        true,
    ));
    let non_t = 1.0 - t_share;
    pops.push(other("B", "B", "B", non_t * 0.30, 3000.0, 0.0, false));
    pops.push(other(
        "Monocyte",
        "monocyte",
        "myeloid",
        non_t * 0.45,
        6000.0,
        0.0,
        false,
    ));
    pops.push(other("NK", "NK", "NK", non_t * 0.25, 3500.0, 0.0, false));
    pops
}

/// Fraction of T cells carrying a detectable CAR at `day`.
pub fn car_fraction(day: f64, preset: Preset) -> f64 {
    match preset {
        Preset::Responder => 0.05 + 0.55 * (-day / 90.0).exp(),
        Preset::NonResponder => 0.01 + 0.55 * (-day / 20.0).exp(),
    }
}

/// Vose's alias table for O(1) draws from a fixed discrete distribution.
struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn new(weights: &[f64]) -> Alias {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in large.into_iter().chain(small) {
            prob[i] = 1.0;
        }
        Alias { prob, alias }
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let i = rng.random_range(0..self.prob.len());
        if rng.random::<f64>() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// Per-population expression weights over the negative-binomial genes.
struct PopProfile {
    weights: Vec<f64>,
    total: f64,
}

/// Everything fixed for a sample: genes, profiles, dispersions, composition.
struct Model {
    gene_names: Vec<String>,
    /// Genes drawn negative-binomially (indices into gene_names).
    nb_genes: Vec<u32>,
    theta: Vec<f64>,
    profiles: Vec<PopProfile>,
    pops: Vec<Population>,
    cum_share: Vec<f64>,
    tail_genes: Vec<u32>,
    tail: Option<Alias>,
    tail_weight: f64,
    mito: Vec<u32>,
    car: u32,
    car_frac: f64,
}

const N_NB_BACKGROUND: usize = 1500;
const P_EMPTY: f64 = 0.03;
const P_LOW_QUALITY: f64 = 0.05;

impl Model {
    fn new(opts: &SimOptions, day: f64) -> Result<Model> {
        let named = genes::named_genes();
        let n_named_non_mito = named.len() - genes::MITO.len();
        let min_genes = named.len() + 1;
        if opts.genes < min_genes {
            return Err(Error::Usage(format!(
                "--genes must be at least {min_genes} (the named genes plus the CAR)"
            )));
        }
        if named
            .iter()
            .any(|g| g.eq_ignore_ascii_case(&opts.car_feature))
        {
            return Err(Error::Usage(format!(
                "--car-feature {} collides with a gene name",
                opts.car_feature
            )));
        }
        let n_background = opts.genes - named.len() - 1;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(opts.seed ^ 0x6765_6e65_7321));
        // Baseline weights: housekeeping and ribosomal genes high, markers nearly off,
        // background log-normal with a long tail. Units: ~10,000 per cell-equivalent.
        let mut base: Vec<f64> = Vec::with_capacity(opts.genes);
        let hk = LogNormal::new(250f64.ln(), 0.6).expect("valid");
        let ribo = LogNormal::new(45f64.ln(), 0.5).expect("valid");
        for _ in genes::HOUSEKEEPING {
            base.push(hk.sample(&mut rng));
        }
        for _ in genes::RIBOSOMAL {
            base.push(ribo.sample(&mut rng));
        }
        // Markers are nearly off in the baseline; programmes switch them on.
        base.extend(std::iter::repeat_n(0.2, genes::MARKERS.len()));
        let background_total = 6000.0;
        let bg = LogNormal::new(0.0, 1.5).expect("valid");
        let raw: Vec<f64> = (0..n_background).map(|_| bg.sample(&mut rng)).collect();
        let raw_sum: f64 = raw.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let mut names: Vec<String> = named[..n_named_non_mito]
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.extend((1..=n_background).map(|k| format!("{}{k:05}", genes::BACKGROUND_PREFIX)));
        base.extend(raw.iter().map(|w| w * background_total / raw_sum));
        let mito: Vec<u32> = (0..genes::MITO.len())
            .map(|k| (names.len() + k) as u32)
            .collect();
        names.extend(genes::MITO.iter().map(|s| s.to_string()));
        let car = names.len() as u32;
        names.push(opts.car_feature.clone());
        // Negative-binomial genes: all named ones and the most expressed background genes.
        let mut bg_order: Vec<usize> =
            (n_named_non_mito..n_named_non_mito + n_background).collect();
        bg_order.sort_by(|&a, &b| base[b].total_cmp(&base[a]));
        let n_nb_bg = N_NB_BACKGROUND.min(n_background);
        let mut nb_genes: Vec<u32> = (0..n_named_non_mito as u32).collect();
        nb_genes.extend(bg_order[..n_nb_bg].iter().map(|&g| g as u32));
        nb_genes.sort_unstable();
        let mut tail_genes: Vec<u32> = bg_order[n_nb_bg..].iter().map(|&g| g as u32).collect();
        tail_genes.sort_unstable();
        let tail_w: Vec<f64> = tail_genes.iter().map(|&g| base[g as usize]).collect();
        let tail_weight: f64 = tail_w.iter().sum();
        let tail = (!tail_genes.is_empty()).then(|| Alias::new(&tail_w));
        let theta_d = LogNormal::new(2.5f64.ln(), 0.6).expect("valid");
        let theta: Vec<f64> = nb_genes.iter().map(|_| theta_d.sample(&mut rng)).collect();
        let pops = populations(day, opts.preset);
        let index: std::collections::HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let profiles = pops
            .iter()
            .map(|p| {
                let mut w: Vec<f64> = nb_genes.iter().map(|&g| base[g as usize]).collect();
                for &(gene, fold) in &p.programme {
                    let gi = index[gene] as u32;
                    if let Ok(k) = nb_genes.binary_search(&gi) {
                        w[k] = base[gi as usize] * fold;
                    }
                }
                let total = w.iter().sum::<f64>() + tail_weight;
                PopProfile { weights: w, total }
            })
            .collect();
        let total_share: f64 = pops.iter().map(|p| p.share).sum();
        let mut acc = 0.0;
        let cum_share = pops
            .iter()
            .map(|p| {
                acc += p.share / total_share;
                acc
            })
            .collect();
        Ok(Model {
            gene_names: names,
            nb_genes,
            theta,
            profiles,
            pops,
            cum_share,
            tail_genes,
            tail,
            tail_weight,
            mito,
            car,
            car_frac: car_fraction(day, opts.preset),
        })
    }
}

/// FNV-1a hash of a label (stable across platforms and releases, unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Ground truth of one barcode.
#[derive(Debug, Clone)]
struct Truth {
    pop: usize,
    quality: &'static str,
    car: bool,
}

/// Negative binomial with mean `mean` and dispersion `theta` (variance mean + mean^2/theta).
///
/// Small means, the vast majority, use inversion of the CDF with the pmf recurrence
/// `p(k+1) = p(k) (k + theta) / (k + 1) * mean / (mean + theta)`: one uniform and a few
/// multiplications. Larger means use the gamma-Poisson mixture.
fn nb(rng: &mut impl Rng, mean: f64, theta: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean < 30.0 {
        let q = mean / (mean + theta);
        let mut p = (theta / (mean + theta)).powf(theta);
        let mut cdf = p;
        let u: f64 = rng.random();
        let mut k = 0u32;
        while u > cdf && k < 100_000 {
            p *= (f64::from(k) + theta) / f64::from(k + 1) * q;
            k += 1;
            cdf += p;
            if p < 1e-300 {
                break;
            }
        }
        return k;
    }
    let lambda = Gamma::new(theta, mean / theta)
        .map(|g| g.sample(rng))
        .unwrap_or(mean);
    poisson(rng, lambda)
}

fn poisson(rng: &mut impl Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 || !lambda.is_finite() {
        return 0;
    }
    Poisson::new(lambda)
        .map(|p| p.sample(rng) as u32)
        .unwrap_or(0)
}

fn simulate_cell(model: &Model, seed: u64, cell: u64) -> (Vec<(u32, f32)>, Truth) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(seed ^ splitmix(cell)));
    let u: f64 = rng.random();
    let quality = if u < P_EMPTY {
        "empty"
    } else if u < P_EMPTY + P_LOW_QUALITY {
        "low_quality"
    } else {
        "good"
    };
    let r: f64 = rng.random();
    let pop = model
        .cum_share
        .iter()
        .position(|&c| r < c)
        .unwrap_or(model.pops.len() - 1);
    let p = &model.pops[pop];
    // Clipped at 2.5 sigma so that no healthy cell falls under the QC thresholds by chance.
    let z: f64 = Normal::new(0.0, 1.0).expect("valid").sample(&mut rng);
    let z = z.clamp(-2.5, 2.5);
    let (lib, f_mt) = match quality {
        "empty" => ((120f64.ln() + 0.4 * z).exp(), 0.05),
        "low_quality" => (
            0.35 * (p.lib_median.ln() + 0.45 * z).exp(),
            0.30 + 0.30 * rng.random::<f64>(),
        ),
        _ => (
            (p.lib_median.ln() + 0.45 * z).exp(),
            0.015 + 0.05 * rng.random::<f64>(),
        ),
    };
    let prof = &model.profiles[pop];
    let scale = lib * (1.0 - f_mt) / prof.total;
    let mut entries: Vec<(u32, f32)> = Vec::with_capacity(1024);
    for (k, &g) in model.nb_genes.iter().enumerate() {
        let c = nb(&mut rng, scale * prof.weights[k], model.theta[k]);
        if c > 0 {
            entries.push((g, c as f32));
        }
    }
    if let Some(alias) = &model.tail {
        let n = poisson(&mut rng, scale * model.tail_weight);
        let mut hits: Vec<u32> = (0..n)
            .map(|_| model.tail_genes[alias.sample(&mut rng)])
            .collect();
        hits.sort_unstable();
        for chunk in hits.chunk_by(|a, b| a == b) {
            entries.push((chunk[0], chunk.len() as f32));
        }
    }
    let mito_mean = lib * f_mt / model.mito.len() as f64;
    for &g in &model.mito {
        let c = nb(&mut rng, mito_mean, 8.0);
        if c > 0 {
            entries.push((g, c as f32));
        }
    }
    let car = p.is_t
        && quality != "empty"
        && rng.random::<f64>() < (model.car_frac * p.car_mult).min(0.95);
    if car {
        entries.push((model.car, (1 + nb(&mut rng, 1.0, 1.5)) as f32));
    }
    entries.sort_unstable_by_key(|e| e.0);
    (entries, Truth { pop, quality, car })
}

/// A deterministic, unique 16-base barcode for cell `i` (a bijection of the index).
pub fn barcode(i: u64) -> String {
    let x = (i as u32) ^ 0x9E37_79B9;
    let x = x.rotate_left(13) ^ 0x5A5A_A5A5;
    let bases = [b'A', b'C', b'G', b'T'];
    let s: String = (0..16)
        .map(|k| bases[((x >> (2 * (15 - k))) & 3) as usize] as char)
        .collect();
    format!("{s}-1")
}

enum Sink {
    H5ad(H5adWriter),
    TenxH5(TenxH5Writer),
    Mtx(MtxWriter),
}

/// Generates one sample into `output`.
pub fn simulate(output: &Path, opts: &SimOptions) -> Result<SimSummary> {
    if opts.cells == 0 {
        return Err(Error::Usage("--cells must be at least 1".into()));
    }
    if opts.cells > u32::MAX as usize {
        return Err(Error::Usage("--cells must be below 2^32".into()));
    }
    let day = match opts.day {
        Some(d) => d,
        None => day_from_label(&opts.timepoint).ok_or_else(|| {
            Error::Usage(format!(
                "cannot read a day from time point '{}' (use infusion, dayN, weekN, monthN or pass --day)",
                opts.timepoint
            ))
        })?,
    };
    let model = Model::new(opts, day)?;
    let g = model.gene_names.len();
    let sample = opts
        .sample
        .clone()
        .unwrap_or_else(|| format!("{}_{}", opts.patient, opts.timepoint));
    // Gene-level parameters depend on the seed alone, so the time points of a patient simulated
    // with one seed share their genes; the cells of each sample draw from their own streams.
    let cell_seed = splitmix(opts.seed ^ fnv1a(sample.as_bytes()));
    let wopts = WriteOptions { gzip: opts.gzip };
    let mut sink = match opts.format {
        SimFormat::H5ad => Sink::H5ad(H5adWriter::create(output, g, wopts)?),
        SimFormat::TenxH5 => Sink::TenxH5(TenxH5Writer::create(output, g, wopts)?),
        SimFormat::TenxMtx => Sink::Mtx(MtxWriter::create(output, g, wopts)?),
    };
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(opts.cells as u64),
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    let mut truths: Vec<Truth> = Vec::with_capacity(opts.cells);
    let mut nnz = 0u64;
    let step = opts.chunk_cells.max(1);
    for a in (0..opts.cells).step_by(step) {
        let b = (a + step).min(opts.cells);
        let cells: Vec<(Vec<(u32, f32)>, Truth)> = (a..b)
            .into_par_iter()
            .map(|i| simulate_cell(&model, cell_seed, i as u64))
            .collect();
        let mut m = CsrMatrix::empty(g);
        for (entries, truth) in cells {
            for (j, v) in entries {
                m.indices.push(j);
                m.data.push(v);
            }
            m.indptr.push(m.data.len() as u64);
            truths.push(truth);
        }
        m.n_rows = b - a;
        nnz += m.nnz();
        match &mut sink {
            Sink::H5ad(w) => w.append_x(&m)?,
            Sink::TenxH5(w) => w.append(&m)?,
            Sink::Mtx(w) => w.append(&m)?,
        }
        progress.inc((b - a) as u64);
    }
    progress.finish_and_clear();
    let barcodes: Vec<String> = (0..opts.cells as u64).map(barcode).collect();
    let mut obs = truth_frame(&model, &truths, barcodes.clone(), opts, day);
    let vdj = if opts.vdj {
        let path = opts
            .vdj_output
            .clone()
            .unwrap_or_else(|| default_vdj_path(output));
        let (clones, summary) = vdj::write_contigs(&path, &model, &truths, opts, cell_seed, day)?;
        obs.set("truth_clone", optional_categorical(&clones));
        Some(summary)
    } else {
        None
    };
    let mut features = TenxFeatures::default();
    for (j, name) in model.gene_names.iter().enumerate() {
        features.ids.push(if j as u32 == model.car {
            format!("{name}_construct")
        } else {
            format!("SIM{j:06}")
        });
        features.names.push(name.clone());
        features.types.push("Gene Expression".into());
        features.genome.push("GRCh38".into());
    }
    match sink {
        Sink::H5ad(w) => {
            let mut var = Frame::new(model.gene_names.clone());
            var.set("gene_ids", Column::Str(features.ids.clone()));
            var.set("feature_types", Column::Str(features.types.clone()));
            w.finish(&AnnData {
                obs: obs.clone(),
                var,
                ..AnnData::default()
            })?;
        }
        Sink::TenxH5(w) => {
            w.finish(&barcodes, &features)?;
            let stem = output
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            write_truth_csv(&output.with_file_name(format!("{stem}_truth.csv.gz")), &obs)?;
        }
        Sink::Mtx(w) => {
            w.finish(&barcodes, &features)?;
            write_truth_csv(&output.join("truth.csv.gz"), &obs)?;
        }
    }
    Ok(SimSummary {
        path: output.to_path_buf(),
        cells: opts.cells,
        genes: g,
        nnz,
        day,
        car_positive: truths.iter().filter(|t| t.car).count(),
        qc_failing: truths.iter().filter(|t| t.quality != "good").count(),
        vdj,
    })
}

/// A categorical column with missing values (code -1), categories sorted.
fn optional_categorical(values: &[Option<String>]) -> Column {
    let mut categories: Vec<String> = values.iter().flatten().cloned().collect();
    categories.sort_unstable();
    categories.dedup();
    let codes = values
        .iter()
        .map(|v| {
            v.as_ref().map_or(-1, |v| {
                categories.binary_search(v).expect("a category") as i32
            })
        })
        .collect();
    Column::Categorical {
        codes,
        categories,
        ordered: false,
    }
}

fn truth_frame(
    model: &Model,
    truths: &[Truth],
    barcodes: Vec<String>,
    opts: &SimOptions,
    day: f64,
) -> Frame {
    let n = truths.len();
    let mut obs = Frame::new(barcodes);
    let sample = opts
        .sample
        .clone()
        .unwrap_or_else(|| format!("{}_{}", opts.patient, opts.timepoint));
    let constant = |v: &str| Column::Categorical {
        codes: vec![0; n],
        categories: vec![v.to_string()],
        ordered: false,
    };
    obs.set("sample", constant(&sample));
    obs.set("patient", constant(&opts.patient));
    obs.set("timepoint", constant(&opts.timepoint));
    obs.set("day", Column::F64(vec![day; n]));
    let label = |f: &dyn Fn(&Truth) -> &'static str| -> Column {
        Column::categorical_from(&truths.iter().map(|t| f(t).to_string()).collect::<Vec<_>>())
    };
    let empty = |t: &Truth| t.quality == "empty";
    obs.set(
        "truth_cell_type",
        label(&|t| {
            if empty(t) {
                "empty"
            } else {
                model.pops[t.pop].cell_type
            }
        }),
    );
    obs.set(
        "truth_state",
        label(&|t| {
            if empty(t) {
                "empty"
            } else {
                model.pops[t.pop].state
            }
        }),
    );
    obs.set(
        "truth_lineage",
        label(&|t| {
            if empty(t) {
                "none"
            } else {
                model.pops[t.pop].lineage
            }
        }),
    );
    obs.set(
        "truth_car",
        Column::Bool(truths.iter().map(|t| t.car).collect()),
    );
    obs.set("truth_quality", label(&|t| t.quality));
    obs
}

/// Writes the obs table as gzipped CSV (barcode first), atomically.
fn write_truth_csv(path: &Path, obs: &Frame) -> Result<()> {
    use std::io::Write;
    let tmp = crate::io::h5ad_write::temporary_path(path)?;
    let io = |e: std::io::Error| Error::write(path, "truth", e);
    let f = std::fs::File::create(&tmp).map_err(io)?;
    let mut w =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::default());
    let header: Vec<&str> = std::iter::once("barcode")
        .chain(obs.columns.iter().map(|(n, _)| n.as_str()))
        .collect();
    w.write_all(crate::io::csv::record(&header).as_bytes())
        .map_err(io)?;
    let text: Vec<Vec<String>> = obs
        .columns
        .iter()
        .map(|(_, c)| match c {
            Column::Bool(v) => v.iter().map(|b| b.to_string()).collect(),
            Column::F64(v) => v.iter().map(|x| x.to_string()).collect(),
            other => other
                .as_strings()
                .unwrap_or_default()
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
        })
        .collect();
    for (i, bc) in obs.index.iter().enumerate() {
        let row: Vec<&str> = std::iter::once(bc.as_str())
            .chain(text.iter().map(|c| c[i].as_str()))
            .collect();
        w.write_all(crate::io::csv::record(&row).as_bytes())
            .map_err(io)?;
    }
    w.finish().and_then(|mut b| b.flush()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_from_labels() {
        assert_eq!(day_from_label("infusion"), Some(0.0));
        assert_eq!(day_from_label("IP"), Some(0.0));
        assert_eq!(day_from_label("day14"), Some(14.0));
        assert_eq!(day_from_label("Day_90"), Some(90.0));
        assert_eq!(day_from_label("week2"), Some(14.0));
        assert_eq!(day_from_label("month3"), Some(90.0));
        assert_eq!(day_from_label("relapse"), None);
    }

    #[test]
    fn barcodes_are_unique() {
        let set: std::collections::HashSet<String> = (0..200_000).map(barcode).collect();
        assert_eq!(set.len(), 200_000);
    }

    #[test]
    fn alias_table_matches_weights() {
        let w = [1.0, 3.0, 0.0, 6.0];
        let a = Alias::new(&w);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut counts = [0usize; 4];
        for _ in 0..100_000 {
            counts[a.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[2], 0);
        for (c, w) in counts.iter().zip(w) {
            assert!(
                (*c as f64 / 100_000.0 - w / 10.0).abs() < 0.01,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn composition_shares_sum_to_one_and_move_towards_exhaustion() {
        for preset in [Preset::Responder, Preset::NonResponder] {
            for day in [0.0, 14.0, 90.0, 365.0] {
                let total: f64 = populations(day, preset).iter().map(|p| p.share).sum();
                assert!((total - 1.0).abs() < 1e-9, "{preset:?} day {day}: {total}");
            }
        }
        let exhausted = |d, p| {
            populations(d, p)
                .iter()
                .filter(|x| x.state == "exhausted")
                .map(|x| x.share)
                .sum::<f64>()
        };
        assert!(exhausted(90.0, Preset::NonResponder) > exhausted(90.0, Preset::Responder));
        assert!(exhausted(90.0, Preset::Responder) > exhausted(0.0, Preset::Responder));
        assert!(car_fraction(90.0, Preset::Responder) > car_fraction(90.0, Preset::NonResponder));
    }
}
