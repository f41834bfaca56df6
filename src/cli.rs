//! Command-line flags (clap derive), converted into the library's option structs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use cartscope::info::InfoOptions;
use cartscope::io::ReadOptions;

/// GPU-accelerated single-cell RNA-seq analysis with CAR-T persistence and exhaustion reports.
#[derive(Debug, Parser)]
#[command(name = "cartscope", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info, -vv debug); CARTSCOPE_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Describe a count matrix: format, shape, nnz, value type, columns, mito genes, CAR feature.
    Info(InfoArgs),
    /// Convert any supported input (10x HDF5, 10x MTX, .h5ad) to an .h5ad with raw counts in X.
    Convert(ConvertArgs),
    /// Simulate a CAR-T trial sample with known truth (deterministic for a seed).
    Simulate(SimulateArgs),
    /// Run the standard scanpy pipeline (QC, normalisation, HVG, scaling, PCA, kNN graph,
    /// Leiden, UMAP).
    Run(Box<RunCmd>),
    /// Run every sample of a manifest (CSV/TSV: sample_id, path[, patient, timepoint, day, ...])
    /// into OUTDIR/samples/<sample_id>/, then write batch_summary.csv (and .parquet),
    /// persistence.csv and batch_report.html (with a manifest `vdj` column also clonotypes.parquet,
    /// clonotypes.csv and clones.csv). Exit codes: 0 all samples completed; 2 bad manifest or options
    /// (nothing written); 3 some samples failed (the others are complete, the failures are in
    /// batch_summary.csv); 1 other errors.
    Batch(Box<BatchArgs>),
    /// Build batch_summary.csv/.parquet, persistence.csv and batch_report.html (and with VDJ the
    /// clonal tables) from the finished sample
    /// folders OUTDIR/samples/<sample_id>/ (e.g. made by `cartscope run` in a workflow).
    /// Exit code 3 when some samples are failed or missing.
    Aggregate(AggregateArgs),
    /// List the GPU adapters wgpu sees (best first), with driver and key limits.
    Devices(DevicesArgs),
    /// Internal: one sample of a batch, its job as JSON on standard input (`batch` starts it).
    #[command(hide = true)]
    BatchSample,
    /// Time each kernel on synthetic data: seconds, GB/s, GFLOP/s, fraction of the device's peak.
    Bench(BenchArgs),
}

/// `cartscope batch MANIFEST -o OUTDIR`: the run options apply to every sample.
#[derive(Debug, Args)]
#[command(mut_arg("input", |a| a.value_name("MANIFEST").help(
    "Manifest (CSV, or TSV for .tsv files): sample_id, path (relative to the manifest), optional patient, timepoint, day, vdj (a contig table, relative to the manifest); other columns are carried as metadata"
)))]
#[command(mut_arg("output", |a| a.value_name("OUTDIR").help(
    "Output folder (samples/<sample_id>/, batch_summary.csv, batch_summary.parquet, persistence.csv, batch_report.html; with VDJ clonotypes.parquet, clonotypes.csv, clones.csv)"
)))]
pub struct BatchArgs {
    /// Samples run at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Skip samples whose completion marker matches the input (path, size, mtime) and the
    /// parameters; redo the others.
    #[arg(long)]
    pub resume: bool,
    /// With VDJ (manifest column `vdj`): the time-point label of the infusion product samples;
    /// by default a sample is the product when its timepoint is IP, PROD, product or infusion
    /// (any case) or its day is 0.
    #[arg(long, value_name = "LABEL")]
    pub product_timepoint: Option<String>,
    /// Kill a sample still running after this many seconds and record it as failed ("timed
    /// out after N s"); the others go on. Default: no limit.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_timeout: Option<u64>,
    /// Run every sample in this process instead of one process per sample (not isolated: a
    /// crash inside a C library on one damaged file ends the whole batch).
    #[arg(long, hide = true)]
    pub in_process: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `cartscope aggregate OUTDIR`.
#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// The batch output folder holding samples/<sample_id>/.
    pub outdir: PathBuf,
    /// The manifest [OUTDIR/manifest.csv, the copy `cartscope batch` writes].
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// With VDJ (manifest column `vdj`): the time-point label of the infusion product samples;
    /// by default a sample is the product when its timepoint is IP, PROD, product or infusion
    /// (any case) or its day is 0.
    #[arg(long, value_name = "LABEL")]
    pub product_timepoint: Option<String>,
    /// The clonotype definition (as given to the batch).
    #[command(flatten)]
    pub clone_args: CloneArgs,
}

/// `cartscope bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Backend to time.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: cartscope::backend::BackendChoice,
    /// Cells streamed through the per-chunk kernels.
    #[arg(long, default_value_t = 65_536)]
    pub cells: usize,
    /// Genes of the synthetic counts.
    #[arg(long, default_value_t = 20_000)]
    pub genes: usize,
    /// Stored entries per cell.
    #[arg(long, default_value_t = 2_000)]
    pub nnz_per_cell: usize,
    /// HVG columns of the Gram matrix.
    #[arg(long, default_value_t = 2_000)]
    pub hvg: usize,
    /// Cells per chunk.
    #[arg(long, default_value_t = 8_192)]
    pub chunk_rows: usize,
    /// Points of the exact kNN search (0 skips it).
    #[arg(long, default_value_t = 50_000)]
    pub knn_points: usize,
    /// Dimensions of the kNN points.
    #[arg(long, default_value_t = 50)]
    pub dim: usize,
    /// Neighbours, self included.
    #[arg(long, default_value_t = 15)]
    pub k: usize,
    /// UMAP epochs on the kNN points' graph (0 skips them).
    #[arg(long, default_value_t = 200)]
    pub umap_epochs: usize,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The library's options.
    pub fn options(&self) -> cartscope::bench::BenchOptions {
        cartscope::bench::BenchOptions {
            cells: self.cells,
            genes: self.genes,
            nnz_per_cell: self.nnz_per_cell,
            hvg: self.hvg,
            chunk_rows: self.chunk_rows.max(1),
            knn_points: self.knn_points,
            dim: self.dim.max(1),
            k: self.k.max(1),
            umap_epochs: self.umap_epochs,
        }
    }
}

/// `cartscope devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `cartscope run INPUT -o OUTDIR`, or `cartscope run MANIFEST --joint -o OUTDIR`.
#[derive(Debug, Args)]
#[command(mut_arg("input", |a| a.help(
    "Input count matrix (.h5ad, 10x .h5 or 10x MTX directory); with --joint, a manifest as for `cartscope batch`"
)))]
pub struct RunCmd {
    /// Analyse every sample of the manifest INPUT together: cells stacked as anndata's concat
    /// (genes in all samples, barcodes BARCODE-sample_id, obs sample and the manifest's
    /// metadata), QC on all cells, highly variable genes with batch_key="sample", one PCA,
    /// kNN graph, Leiden and UMAP; the CAR-T summary has one row per sample.
    #[arg(long)]
    pub joint: bool,
    /// The cells' 10x VDJ contigs (filtered_contig_annotations.csv or all_contig_annotations.csv,
    /// plain or .gz) or an AIRR rearrangement TSV: obs, cells.parquet, the summary and the
    /// report gain receptor chains, chain pairing and clonotypes (scirpy's definition). With
    /// --joint, give the files in the manifest's vdj column instead.
    #[arg(long, value_name = "CONTIGS", conflicts_with = "joint")]
    pub vdj: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `cartscope run`. Options left out take the config file's value, else the reference default.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input count matrix (.h5ad, 10x .h5 or 10x MTX directory).
    pub input: PathBuf,
    /// Output folder (result.h5ad, cells.parquet, summary.json, summary.csv, config.toml, report.html).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Kernel backend.
    #[arg(long, value_enum)]
    pub backend: Option<cartscope::backend::BackendChoice>,
    /// TOML file with run options (same keys as the config.toml written to OUTDIR).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// filter_cells(min_genes) [200].
    #[arg(long)]
    pub min_genes: Option<u32>,
    /// filter_genes(min_cells) [3].
    #[arg(long)]
    pub min_cells: Option<u32>,
    /// Keep cells with pct_counts_mt below this [20].
    #[arg(long)]
    pub max_pct_mt: Option<f32>,
    /// normalize_total(target_sum) [1e4].
    #[arg(long)]
    pub target_sum: Option<f32>,
    /// highly_variable_genes(n_top_genes) [2000].
    #[arg(long)]
    pub n_top_genes: Option<usize>,
    /// highly_variable_genes(flavor) [seurat].
    #[arg(long, value_enum)]
    pub hvg_flavor: Option<cartscope::pp::hvg::HvgFlavor>,
    /// scale(max_value); 0 disables clipping [10].
    #[arg(long)]
    pub max_value: Option<f64>,
    /// pca(n_comps) [50].
    #[arg(long)]
    pub n_pcs: Option<usize>,
    /// neighbors(n_neighbors), the cell itself included [15].
    #[arg(long)]
    pub n_neighbors: Option<usize>,
    /// Store the filtered raw counts as layers["counts"].
    #[arg(long)]
    pub keep_counts: bool,
    /// Memory in MiB the data may take in RAM; beyond it, later stages re-read the input in
    /// chunks (memory then bounded by the chunk size) [a quarter of the available memory].
    #[arg(long, value_name = "MiB")]
    pub max_memory: Option<u64>,
    /// PCA solver [covariance_eigh].
    #[arg(long, value_enum)]
    pub pca_solver: Option<cartscope::tl::pca::PcaSolver>,
    /// Neighbour search: exact, approximate (NN-descent), or auto by size [auto].
    #[arg(long, value_enum)]
    pub knn: Option<cartscope::pipeline::KnnMethod>,
    /// Cells per chunk [8192].
    #[arg(long)]
    pub chunk_rows: Option<usize>,
    /// gzip level (0-9) for result.h5ad; uncompressed when omitted.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub gzip: Option<u8>,
    /// Skip Leiden clustering (obs["leiden"]).
    #[arg(long)]
    pub no_cluster: bool,
    /// Skip the UMAP layout (obsm["X_umap"]).
    #[arg(long)]
    pub no_umap: bool,
    /// leiden(resolution) [1].
    #[arg(long)]
    pub resolution: Option<f64>,
    /// leiden(flavor): igraph with n_iterations=2 (the reference recipe), or leidenalg until
    /// stable (scanpy's default sc.tl.leiden()) [igraph].
    #[arg(long, value_enum)]
    pub leiden_flavor: Option<cartscope::tl::leiden::LeidenFlavor>,
    /// umap(min_dist) [0.5].
    #[arg(long)]
    pub umap_min_dist: Option<f64>,
    /// random_state of leiden and umap [0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip the marker genes (uns["rank_genes_groups"], markers.csv).
    #[arg(long)]
    pub no_markers: bool,
    /// obs columns whose groups get marker genes, comma-separated: leiden, a call column
    /// (phenotype, cd4_cd8, ...) or a column of the input [leiden]; leiden is left out under
    /// --no-cluster.
    #[arg(long, value_name = "COLUMN,...", value_delimiter = ',')]
    pub markers_groupby: Option<Vec<String>>,
    /// rank_genes_groups(method) [t-test].
    #[arg(long, value_enum)]
    pub markers_method: Option<cartscope::tl::markers::MarkerMethod>,
    /// rank_genes_groups(n_genes): genes kept per group [100].
    #[arg(long, value_name = "N")]
    pub markers_n_genes: Option<usize>,
    /// rank_genes_groups(tie_correct=True) for --markers-method wilcoxon.
    #[arg(long)]
    pub markers_tie_correct: bool,
    /// No progress bar and no closing line (the bar only ever appears on a terminal).
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub cart_args: CartArgs,
    #[command(flatten)]
    pub clone_args: CloneArgs,
    #[command(flatten)]
    pub input_args: InputArgs,
}

/// Clonotype options (scirpy's `define_clonotypes` parameters) for runs with VDJ contigs.
#[derive(Debug, Args)]
pub struct CloneArgs {
    /// Junction sequence that identifies a chain: nucleotides (scirpy's define_clonotypes)
    /// or amino acids [nt].
    #[arg(long, value_enum, value_name = "SEQ")]
    pub clone_sequence: Option<cartscope::vdj::SequenceKind>,
    /// Receptor arms that must match: all, any, VJ or VDJ [all].
    #[arg(long, value_enum, value_name = "ARMS")]
    pub clone_receptor_arms: Option<cartscope::vdj::ReceptorArms>,
    /// Which chains of an arm count: any, primary_only or all [any].
    #[arg(long, value_enum, value_name = "DUAL")]
    pub clone_dual_ir: Option<cartscope::vdj::DualIr>,
    /// Matching chains must also share their V gene (same_v_gene=True).
    #[arg(long)]
    pub clone_same_v_gene: bool,
}

impl CloneArgs {
    /// The clonotype options with these flags over the defaults.
    pub fn apply(&self, o: &mut cartscope::vdj::ClonotypeOptions) {
        if let Some(v) = self.clone_sequence {
            o.sequence = v;
        }
        if let Some(v) = self.clone_receptor_arms {
            o.receptor_arms = v;
        }
        if let Some(v) = self.clone_dual_ir {
            o.dual_ir = v;
        }
        o.same_v_gene |= self.clone_same_v_gene;
    }
}

/// CAR-T options of `cartscope run`.
#[derive(Debug, Args)]
pub struct CartArgs {
    /// The CAR construct feature [detected from the documented names: CAR, CAT_scFv,
    /// FMC63-28Z, muCD19BBz, Kymriah, Yescarta, *scFv*, *FMC63*, *CD19BBz*, *CD19-28z*, CAR token].
    #[arg(long, value_name = "NAME")]
    pub car_feature: Option<String>,
    /// CAR feature counts that make a cell CAR+ [1].
    #[arg(long, value_name = "N")]
    pub car_min_counts: Option<u32>,
    /// Gene sets to score, as a GMT file (NAME<TAB>DESCRIPTION<TAB>GENE...).
    #[arg(long, value_name = "FILE.gmt")]
    pub gene_sets: Option<PathBuf>,
    /// Whether --gene-sets replaces or extends the default sets [replace].
    #[arg(long, value_enum)]
    pub gene_sets_mode: Option<cartscope::cart::GeneSetsMode>,
    /// Skip report.html (the tables are still written).
    #[arg(long)]
    pub no_report: bool,
    /// Keep the CAR feature out of the highly variable genes, so the construct never shapes
    /// PCA, the kNN graph or the clusters. Off by default: scanpy's reference pipeline knows
    /// no CAR and lets it compete like any gene, and the default run reproduces scanpy.
    #[arg(long)]
    pub car_out_of_hvg: bool,
    /// Skip the cell-cycle phase (obs S_score, G2M_score, phase; scanpy's
    /// score_genes_cell_cycle with the Tirosh et al. 2016 genes).
    #[arg(long)]
    pub no_cell_cycle: bool,
    /// Cells of the neighbourhood the CD4/CD8 and gamma-delta calls smooth the lineage markers
    /// over, the cell included; capped at --n-neighbors [15].
    #[arg(long, value_name = "K")]
    pub lineage_k: Option<usize>,
    /// Smoothed CD4 and CD8 evidence (mean log-expression over the neighbourhood) at or below
    /// this makes a cell without its own CD4/CD8 counts DN [0.1].
    #[arg(long, value_name = "X")]
    pub lineage_min: Option<f32>,
    /// Gamma-delta score (TRDC+TRGC1+TRGC2 minus TRAC, own plus smoothed) above which a T cell
    /// is gd [1.0].
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    pub gd_min: Option<f32>,
}

impl CartArgs {
    fn apply(&self, o: &mut cartscope::cart::CartOptions) {
        if let Some(v) = &self.car_feature {
            o.car_feature = Some(v.clone());
        }
        if let Some(v) = self.car_min_counts {
            o.car_min_counts = v;
        }
        if let Some(v) = &self.gene_sets {
            o.gene_sets = Some(v.clone());
        }
        if let Some(v) = self.gene_sets_mode {
            o.gene_sets_mode = v;
        }
        if self.no_report {
            o.report = false;
        }
        if self.car_out_of_hvg {
            o.car_in_hvg = false;
        }
        if self.no_cell_cycle {
            o.cell_cycle = false;
        }
        if let Some(v) = self.lineage_k {
            o.lineage_k = v;
        }
        if let Some(v) = self.lineage_min {
            o.lineage_min = v;
        }
        if let Some(v) = self.gd_min {
            o.gd_min = v;
        }
    }
}

impl RunArgs {
    /// Defaults, overridden by the config file, overridden by flags.
    pub fn options(&self) -> cartscope::Result<cartscope::pipeline::RunOptions> {
        let mut o = match &self.config {
            Some(p) => cartscope::pipeline::RunOptions::from_toml_file(p)?,
            None => cartscope::pipeline::RunOptions::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { o.$f = v; } )* };
        }
        if let Some(v) = self.knn {
            o.knn = v;
        }
        if let Some(v) = self.pca_solver {
            o.pca_solver = v;
        }
        set!(
            min_genes,
            min_cells,
            max_pct_mt,
            target_sum,
            n_top_genes,
            hvg_flavor,
            max_value,
            n_pcs,
            n_neighbors,
            chunk_rows,
            backend,
            resolution,
            leiden_flavor,
            umap_min_dist,
            seed,
            markers_method,
            markers_n_genes
        );
        if let Some(v) = &self.markers_groupby {
            o.markers_groupby = v.clone();
        }
        o.markers &= !self.no_markers;
        o.markers_tie_correct |= self.markers_tie_correct;
        o.cluster &= !self.no_cluster;
        o.umap &= !self.no_umap;
        if let Some(m) = self.max_memory {
            o.max_memory_mib = m;
        }
        if self.gzip.is_some() {
            o.gzip = self.gzip;
        }
        o.keep_counts |= self.keep_counts;
        o.allow_non_integer |= self.input_args.allow_non_integer;
        self.cart_args.apply(&mut o.cart);
        self.clone_args.apply(&mut o.vdj.clonotypes);
        o.validate()?;
        Ok(o)
    }
}

/// `cartscope simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Output: an .h5ad or 10x .h5 file, or a directory for 10x-mtx.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Barcodes to generate (cells plus low-quality cells and empty droplets).
    #[arg(long, default_value_t = 3000)]
    pub cells: usize,
    /// Features, including the CAR construct.
    #[arg(long, default_value_t = 4000)]
    pub genes: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Time-point label (infusion, dayN, weekN, monthN; other labels need --day).
    #[arg(long, default_value = "infusion")]
    pub timepoint: String,
    /// Day after infusion (default: read from the time-point label).
    #[arg(long)]
    pub day: Option<f64>,
    /// Patient identifier.
    #[arg(long, default_value = "P01")]
    pub patient: String,
    /// Sample identifier (default: PATIENT_TIMEPOINT).
    #[arg(long)]
    pub sample: Option<String>,
    /// Response trajectory of the patient.
    #[arg(long, value_enum, default_value = "responder")]
    pub preset: cartscope::simulate::Preset,
    /// Output format.
    #[arg(long, value_enum, default_value = "h5ad")]
    pub format: cartscope::simulate::SimFormat,
    /// Name of the CAR construct feature.
    #[arg(long, default_value = "CAR")]
    pub car_feature: String,
    /// gzip level (0-9) for the output; uncompressed when omitted (MTX is always gzipped).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub gzip: Option<u8>,
    /// Cells generated per chunk (bounds memory).
    #[arg(long, default_value_t = 4096)]
    pub chunk_cells: usize,
    /// Also write TCR contigs (Cell Ranger filtered_contig_annotations.csv) and truth_clone.
    #[arg(long)]
    pub vdj: bool,
    /// The contig table (default: <stem>_contigs.csv.gz beside the output; .csv: plain).
    #[arg(long, requires = "vdj")]
    pub vdj_output: Option<PathBuf>,
}

impl SimulateArgs {
    pub fn options(&self) -> cartscope::simulate::SimOptions {
        cartscope::simulate::SimOptions {
            cells: self.cells,
            genes: self.genes,
            seed: self.seed,
            timepoint: self.timepoint.clone(),
            day: self.day,
            patient: self.patient.clone(),
            sample: self.sample.clone(),
            preset: self.preset,
            car_feature: self.car_feature.clone(),
            format: self.format,
            gzip: self.gzip,
            chunk_cells: self.chunk_cells,
            vdj: self.vdj,
            vdj_output: self.vdj_output.clone(),
        }
    }
}

/// Which matrix of an input to read.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Read layers/NAME of an .h5ad instead of X.
    #[arg(long, value_name = "NAME")]
    pub layer: Option<String>,
    /// Read raw/X (and raw/var) of an .h5ad instead of X.
    #[arg(long)]
    pub use_raw: bool,
    /// 10x input: keep all feature types, not only "Gene Expression".
    #[arg(long)]
    pub all_features: bool,
    /// 10x input with several genomes: read only this genome.
    #[arg(long, value_name = "NAME")]
    pub genome: Option<String>,
    /// Accept negative, non-finite or non-integer values with a warning instead of an error.
    #[arg(long)]
    pub allow_non_integer: bool,
}

impl InputArgs {
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            layer: self.layer.clone(),
            use_raw: self.use_raw,
            all_features: self.all_features,
            genome: self.genome.clone(),
        }
    }
}

/// `cartscope info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// An .h5ad file, a 10x .h5 file, or a 10x MTX directory (format detected from content).
    pub input: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub input_args: InputArgs,
}

impl InfoArgs {
    pub fn options(&self) -> InfoOptions {
        InfoOptions {
            read: self.input_args.read_options(),
            allow_non_integer: self.input_args.allow_non_integer,
            ..InfoOptions::default()
        }
    }
}

/// `cartscope convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input count matrix (any supported format).
    pub input: PathBuf,
    /// Output .h5ad path.
    #[arg(short, long)]
    pub output: PathBuf,
    /// gzip level for the output's arrays (0-9); uncompressed when omitted.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub gzip: Option<u8>,
    /// Cells per chunk while streaming.
    #[arg(long, default_value_t = 16384)]
    pub chunk_rows: usize,
    #[command(flatten)]
    pub input_args: InputArgs,
}
