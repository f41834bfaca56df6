//! `cartscope run`: the standard scanpy pipeline, stage by stage, on a [`Backend`].
//!
//! QC metrics (mito = `MT-`, case-insensitive) -> filter_cells(min_genes) ->
//! filter_genes(min_cells) -> pct_counts_mt < max -> normalize_total(target_sum) + log1p ->
//! highly_variable_genes -> scale(max_value) on the HVGs -> PCA -> kNN + UMAP connectivities ->
//! Leiden clustering and the UMAP layout (each optional).
//! Every default equals `reference/scanpy_reference.py` (ALGORITHMS.md).
//!
//! Stages work on row chunks: QC accumulates per chunk; normalisation, moments, scaling, Gram
//! accumulation and projection are backend kernels applied chunk by chunk, so the dense scaled
//! matrix never exists whole (only one chunk of it at a time). The filtered counts and the
//! log-normalised matrix are held in memory as CSR.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, CpuBackend, GpuBackend, Moments, ScaleSpec, Transform};
use crate::cart;
use crate::error::{Error, Result};
use crate::io::h5ad_write::WriteOptions;
use crate::io::names::is_mito;
use crate::io::values::{CountPolicy, ValueNames, ValueScan};
use crate::io::{AnnData, Column, CountSource, Dense, H5adWriter, ReadOptions, UnsValue};
use crate::matrix::CsrMatrix;
use crate::pp::hvg::{BatchStats, HvgFlavor, highly_variable_genes, highly_variable_genes_batched};
use crate::pp::qc::{self, CellQc, GeneQc};
use crate::pp::seurat_v3;
use crate::tl::leiden::{LeidenParams, leiden};
use crate::tl::neighbors;
use crate::tl::pca::{default_n_comps, fit_from_gram_with};
use crate::tl::umap::{UmapParams, umap_on};

/// Which backend runs the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A hardware GPU when present, else the CPU.
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// The GPU backend (wgpu); software adapters accepted.
    Gpu,
}

/// How neighbours are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KnnMethod {
    /// Exact below [`APPROX_KNN_ABOVE`] cells, NN-descent above; always exact on a GPU.
    #[default]
    Auto,
    /// Exact brute force (certified f32 GEMM candidates + f64 re-rank) for every n.
    Exact,
    /// NN-descent for every n.
    Approx,
}

/// Cells above which `--knn auto` switches to NN-descent. scanpy switches at 8,192, but the
/// exact search here stays cheaper well beyond that (2 cores, 50 PCs, CPU seconds of the
/// neighbors stage: 92,053 cells exact 29.9 s vs NN-descent 44.5 s at recall@14 0.984), so the
/// switch comes where the O(n²) exact search would cost more (about 1.5 x 92k by that ratio).
pub const APPROX_KNN_ABOVE: usize = 150_000;

/// Parameters of a run; every default is the reference pipeline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// filter_cells(min_genes).
    pub min_genes: u32,
    /// filter_genes(min_cells).
    pub min_cells: u32,
    /// Keep cells with pct_counts_mt below this.
    pub max_pct_mt: f32,
    /// normalize_total(target_sum).
    pub target_sum: f32,
    /// highly_variable_genes(n_top_genes).
    pub n_top_genes: usize,
    /// highly_variable_genes(flavor).
    pub hvg_flavor: HvgFlavor,
    /// scale(max_value); 0 disables clipping.
    pub max_value: f64,
    /// pca(n_comps).
    pub n_pcs: usize,
    /// neighbors(n_neighbors), self included.
    pub n_neighbors: usize,
    /// Store the filtered raw counts as `layers["counts"]`.
    pub keep_counts: bool,
    /// Cells per chunk.
    pub chunk_rows: usize,
    /// Neighbour search.
    pub knn: KnnMethod,
    /// PCA solver.
    pub pca_solver: crate::tl::pca::PcaSolver,
    /// Kernel backend.
    pub backend: BackendChoice,
    /// Accept non-integer / negative input values with a warning.
    pub allow_non_integer: bool,
    /// CAR detection, gene sets and the report.
    pub cart: crate::cart::CartOptions,
    /// gzip level of result.h5ad (None: uncompressed).
    pub gzip: Option<u8>,
    /// Memory (MiB) the data may take in RAM; beyond it, later stages re-read the input in
    /// chunks. 0: half of the available memory.
    pub max_memory_mib: u64,
    /// Leiden clustering into `obs["leiden"]`.
    pub cluster: bool,
    /// leiden(resolution).
    pub resolution: f64,
    /// UMAP layout into `obsm["X_umap"]`.
    pub umap: bool,
    /// umap(min_dist).
    pub umap_min_dist: f64,
    /// random_state of leiden and umap.
    pub seed: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            min_genes: 200,
            min_cells: 3,
            max_pct_mt: 20.0,
            target_sum: 1e4,
            n_top_genes: 2000,
            hvg_flavor: HvgFlavor::Seurat,
            max_value: 10.0,
            n_pcs: 50,
            n_neighbors: 15,
            keep_counts: false,
            chunk_rows: 8192,
            knn: KnnMethod::Auto,
            pca_solver: crate::tl::pca::PcaSolver::CovarianceEigh,
            backend: BackendChoice::Auto,
            allow_non_integer: false,
            cart: crate::cart::CartOptions::default(),
            gzip: None,
            max_memory_mib: 0,
            cluster: true,
            resolution: 1.0,
            umap: true,
            umap_min_dist: 0.5,
            seed: 0,
        }
    }
}

impl RunOptions {
    /// Checks values that would make a stage meaningless.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Usage(m.to_string()));
        if self.target_sum.is_nan() || self.target_sum <= 0.0 {
            return bad("--target-sum must be positive");
        }
        if self.n_top_genes == 0 {
            return bad("--n-top-genes must be at least 1");
        }
        if self.n_pcs == 0 {
            return bad("--n-pcs must be at least 1");
        }
        if self.n_neighbors < 2 {
            return bad("--n-neighbors must be at least 2 (it includes the cell itself)");
        }
        if self.max_value < 0.0 {
            return bad("--max-value must not be negative");
        }
        if self.chunk_rows == 0 {
            return bad("--chunk-rows must be at least 1");
        }
        if !(self.resolution.is_finite() && self.resolution > 0.0) {
            return bad("--resolution must be positive");
        }
        // find_ab_params fits a curve that falls from 1 at min_dist over spread (1).
        if !(0.0..=1.0).contains(&self.umap_min_dist) {
            return bad("--umap-min-dist must lie in [0, 1] (spread is 1)");
        }
        self.cart.validate()
    }
}

/// What a run did, written to `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// cartscope version.
    pub cartscope_version: String,
    /// Input path.
    pub input: String,
    /// Backend that ran the kernels.
    pub backend: String,
    /// Device description.
    pub device: String,
    /// Driver of the device (GPU backend), null on the CPU.
    pub driver: Option<String>,
    /// Why the run did not (entirely) use the requested backend: the GPU `--backend auto`
    /// could not open, or a GPU kernel that failed and ran on the CPU. Null when none.
    pub fallback_reason: Option<String>,
    /// Cells read.
    pub n_cells_in: usize,
    /// Genes read.
    pub n_genes_in: usize,
    /// Cells after filter_cells and the mito filter.
    pub n_cells_after_qc: usize,
    /// Genes after filter_genes.
    pub n_genes_after_filter: usize,
    /// Highly variable genes selected.
    pub n_hvg: usize,
    /// PCA components.
    pub n_pcs: usize,
    /// Seconds per stage, in order.
    pub stage_seconds: Vec<(String, f64)>,
    /// Total seconds.
    pub total_seconds: f64,
    /// Peak resident memory of the process (MiB), from the OS.
    pub peak_rss_mib: f64,
    /// CAR-T summary: CAR status, gene sets, per-sample numbers.
    pub cart: crate::cart::summary::CartSummary,
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU seconds (user + system) this process has used so far, from Linux `/proc/self/stat`
/// (clock ticks of 10 ms); 0 elsewhere. Logged beside wall times: on a busy machine the CPU
/// time of a stage is the steadier measure of its work.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let after = stat.rsplit(')').next().unwrap_or("");
    let ticks: f64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// The backend a run uses, and why it is not the one asked for (if so).
pub struct Selected {
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// Set when `auto` wanted a GPU but fell back to the CPU.
    pub fallback_reason: Option<String>,
}

/// Picks the backend for `choice`: `cpu`; `gpu` (any adapter, software ones such as lavapipe
/// included; an error when there is none); `auto` (a hardware GPU, discrete first, else the
/// CPU with the reason logged).
pub fn select_backend(choice: BackendChoice) -> Result<Selected> {
    let cpu = |reason: Option<String>| Selected {
        backend: Box::new(CpuBackend),
        fallback_reason: reason,
    };
    match choice {
        BackendChoice::Cpu => Ok(cpu(None)),
        BackendChoice::Gpu => {
            let gpu = GpuBackend::new(true)?;
            tracing::info!("backend gpu: {}", gpu.device());
            Ok(Selected {
                backend: Box::new(gpu),
                fallback_reason: None,
            })
        }
        BackendChoice::Auto => match GpuBackend::new(false) {
            Ok(gpu) => {
                tracing::info!("backend auto: GPU {}", gpu.device());
                Ok(Selected {
                    backend: Box::new(gpu),
                    fallback_reason: None,
                })
            }
            Err(e) => {
                // No hardware GPU is the common case on a laptop or CI: say so once, quietly
                // unless -v; any other failure is a warning.
                match e {
                    crate::backend::gpu::GpuError::NoAdapter
                    | crate::backend::gpu::GpuError::SoftwareOnly(_) => {
                        tracing::info!("backend auto: CPU ({e})")
                    }
                    _ => tracing::warn!("backend auto: GPU unusable, running on the CPU: {e}"),
                }
                Ok(cpu(Some(e.to_string())))
            }
        },
    }
}

/// Stage timings, logged at info level, with a progress bar on a terminal.
struct Stopwatch {
    started: Instant,
    last: Instant,
    stages: Vec<(String, f64)>,
    bar: indicatif::ProgressBar,
}

/// The stages, in order, as the progress bar names them.
const STAGES: [&str; 10] = [
    "read + qc",
    "filter",
    "normalize + log1p",
    "hvg",
    "cart scores + calls",
    "scale",
    "pca",
    "neighbors",
    "leiden",
    "umap",
];

impl Stopwatch {
    fn new(progress: bool) -> Self {
        let now = Instant::now();
        let target = if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(Some(STAGES.len() as u64), target);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})")
        {
            bar.set_style(style);
        }
        bar.set_message(STAGES[0]);
        bar.tick();
        Stopwatch {
            started: now,
            last: now,
            stages: Vec::new(),
            bar,
        }
    }

    fn lap(&mut self, name: &str) {
        let now = Instant::now();
        let secs = (now - self.last).as_secs_f64();
        tracing::info!("{name}: {secs:.3} s (process cpu {:.2} s)", cpu_seconds());
        self.stages.push((name.to_string(), secs));
        self.last = now;
        self.bar.inc(1);
        self.bar
            .set_message(STAGES.get(self.stages.len()).copied().unwrap_or("writing"));
        self.bar.tick();
    }
}

impl Drop for Stopwatch {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Everything the pipeline computes, before it is written.
pub struct RunResult {
    /// The AnnData to write (X = log-normalised counts; None when X was streamed to the
    /// writer below).
    pub adata: AnnData,
    /// When the data did not fit in memory: the output file with X already streamed into it,
    /// waiting for [`H5adWriter::finish`] with the rest of `adata`.
    pub x_writer: Option<H5adWriter>,
    /// The run summary.
    pub summary: RunSummary,
}

/// Runs the pipeline on `input` and returns the results (nothing written).
/// `progress` draws a bar per stage on a terminal.
pub fn analyse(
    input: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
    backend: &dyn Backend,
    progress: bool,
    x_out: Option<&Path>,
) -> Result<RunResult> {
    opts.validate()?;
    let src = CountSource::open(input, read)?;
    analyse_source(src, None, opts, backend, progress, x_out)
}

/// The batches of the filtered cells: category names and each cell's category.
struct BatchRows {
    categories: Vec<String>,
    codes: Vec<u32>,
}

/// Each cell's batch from obs column `key` (categorical, or text in order of appearance).
fn batch_codes(src: &CountSource, key: &str) -> Result<(Vec<String>, Vec<u32>)> {
    let col = src
        .obs
        .column(key)
        .ok_or_else(|| Error::invalid(&src.path, format!("obs/{key}"), "no such column"))?;
    let cat = match col {
        Column::Categorical { .. } => col.clone(),
        other => match other.as_strings() {
            Some(v) if v.iter().all(Option::is_some) => {
                Column::categorical_from(&v.into_iter().flatten().collect::<Vec<_>>())
            }
            _ => {
                return Err(Error::invalid(
                    &src.path,
                    format!("obs/{key}"),
                    "a batch key must be text without missing values",
                ));
            }
        },
    };
    let Column::Categorical {
        codes, categories, ..
    } = cat
    else {
        unreachable!("categorical by construction");
    };
    let codes = codes
        .iter()
        .map(|&c| u32::try_from(c))
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| {
            Error::invalid(
                &src.path,
                format!("obs/{key}"),
                "a batch key must not have missing values",
            )
        })?;
    Ok((categories, codes))
}

/// [`analyse`] on an opened source. With `batch_key` (an obs column), highly variable genes
/// are chosen with scanpy's `batch_key` semantics.
pub fn analyse_source(
    mut src: CountSource,
    batch_key: Option<&str>,
    opts: &RunOptions,
    backend: &dyn Backend,
    progress: bool,
    x_out: Option<&Path>,
) -> Result<RunResult> {
    opts.validate()?;
    let input = src.path.clone();
    let input = input.as_path();
    let batches = batch_key.map(|k| batch_codes(&src, k)).transpose()?;
    let mut clock = Stopwatch::new(progress);
    let skipped = usize::from(!opts.cluster) + usize::from(!opts.umap);
    clock.bar.set_length((STAGES.len() - skipped) as u64);
    let (n_in, g_in) = (src.n_obs(), src.n_vars());
    let mito: Vec<bool> = src.var.index.iter().map(|g| is_mito(g)).collect();
    // CAR candidates' raw counts are kept for every cell while the input is read.
    let gene_sets = cart::genesets::load(opts.cart.gene_sets.as_deref(), opts.cart.gene_sets_mode)?;
    let car_candidates =
        cart::detect::candidate_indices(&src.var.index, opts.cart.car_feature.as_deref())?;
    let mut car_counts: Vec<Vec<f32>> = vec![Vec::with_capacity(n_in); car_candidates.len()];
    let policy = CountPolicy::counts(opts.allow_non_integer);
    let mut scan = ValueScan::default();
    let mut cells = CellQc::default();
    let mut genes = GeneQc::new(g_in);
    // filter_cells is decided per cell, so filter_genes' cell counts accumulate in this pass.
    let mut n_cells_per_gene = vec![0i64; g_in];
    let budget = memory_budget_bytes(opts.max_memory_mib);
    let mut counts = Some(CsrMatrix::empty(g_in));
    let step = opts.chunk_rows;
    // Chunks are checked and counted on a second thread while the next one is read.
    let (path, field) = (src.path.clone(), src.x.element.clone());
    let (cell_names, gene_names) = (src.obs.index.clone(), src.var.index.clone());
    let names = ValueNames {
        path: &path,
        field: &field,
        cells: &cell_names,
        genes: &gene_names,
    };
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, CsrMatrix)>(1);
        let worker = scope.spawn(|| -> Result<()> {
            for (a, mut m) in rx {
                // The value checks and the QC sums read the chunk independently (the sums skip
                // explicit zeros), so they run side by side.
                let (checked, ()) = rayon::join(
                    || scan.update_named(&names, &m, a, policy),
                    || {
                        cart::detect::gather(&m, &car_candidates, &mut car_counts);
                        let before = cells.n_genes_by_counts.len();
                        qc::accumulate(&m, &mito, &mut cells, &mut genes);
                        let keep: Vec<bool> = cells.n_genes_by_counts[before..]
                            .iter()
                            .map(|&n| n >= opts.min_genes as i32)
                            .collect();
                        qc::cells_per_gene(&m, &keep, &mut n_cells_per_gene);
                    },
                );
                checked?;
                drop_explicit_zeros(&mut m);
                if let Some(c) = counts.as_mut() {
                    c.append_rows(&m);
                    // Counts and their log-normalised copy: 16 bytes per stored entry.
                    if c.nnz().saturating_mul(16) > budget {
                        tracing::info!(
                            "data exceed --max-memory; later stages re-read {} in chunks",
                            input.display()
                        );
                        counts = None;
                    }
                }
            }
            Ok(())
        });
        let mut read = Ok(());
        for a in (0..n_in).step_by(step) {
            match src.read_rows(a..(a + step).min(n_in)) {
                // A closed channel means the checks failed: their error is reported below.
                Ok(m) => {
                    if tx.send((a, m)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        let checked = worker
            .join()
            .map_err(|_| Error::Usage("the QC thread panicked".into()))?;
        read.and(checked)
    })?;
    scan.warn(&src, true);
    clock.lap("read+qc");

    // filter_cells, then filter_genes on the kept cells, then the mito filter.
    let keep_genes: Vec<usize> = (0..g_in)
        .filter(|&j| n_cells_per_gene[j] >= i64::from(opts.min_cells))
        .collect();
    let keep_mask: Vec<bool> = (0..n_in)
        .map(|i| {
            cells.n_genes_by_counts[i] >= opts.min_genes as i32
                && cells.pct_counts_mt[i] < opts.max_pct_mt
        })
        .collect();
    let keep_cells: Vec<usize> = (0..n_in).filter(|&i| keep_mask[i]).collect();
    if keep_cells.len() < 3 || keep_genes.len() < 2 {
        return Err(Error::Invalid {
            path: input.to_path_buf(),
            field: src.x.element.clone(),
            message: format!(
                "too few cells or genes pass QC ({} cells, {} genes); thresholds: min_genes {}, min_cells {}, pct_counts_mt < {}",
                keep_cells.len(),
                keep_genes.len(),
                opts.min_genes,
                opts.min_cells,
                opts.max_pct_mt
            ),
        });
    }
    let mut col_map = vec![None; g_in];
    for (new, &j) in keep_genes.iter().enumerate() {
        col_map[j] = Some(new as u32);
    }
    let (n, g) = (keep_cells.len(), keep_genes.len());
    let batch_rows = batches.map(|(categories, codes)| BatchRows {
        categories,
        codes: keep_cells.iter().map(|&i| codes[i]).collect(),
    });
    if counts.is_none() && opts.keep_counts {
        return Err(Error::Usage(
            "--keep-counts needs the data in memory; raise --max-memory or drop --keep-counts"
                .into(),
        ));
    }
    let (mut data, counts_layer) = match counts.take() {
        Some(c) => {
            let filtered = subset(&c, &keep_cells, &col_map, g);
            drop(c);
            let layer = opts.keep_counts.then(|| filtered.clone());
            (LogData::Memory(filtered), layer)
        }
        None => (
            LogData::File {
                src: &mut src,
                keep: &keep_mask,
                col_map: &col_map,
                n_cols: g,
                normalized: false,
            },
            None,
        ),
    };
    clock.lap("filter");

    // seurat_v3 works on the raw counts: its statistics are taken before normalisation.
    let v3 = if opts.hvg_flavor == HvgFlavor::SeuratV3 {
        Some(seurat_v3_selection(
            &mut data,
            batch_rows.as_ref(),
            step,
            backend,
            opts,
            (n, g),
        )?)
    } else {
        None
    };

    // normalize_total + log1p: in place in memory; on the fly for each re-read chunk.
    match &mut data {
        LogData::Memory(x) => backend.normalize_log1p(x, opts.target_sum),
        LogData::File { normalized, .. } => *normalized = true,
    }
    clock.lap("normalize+log1p");

    // Per-gene moments of expm1(X) (HVG) and of X (scale), in one pass over the chunks.
    let transform = if opts.hvg_flavor == HvgFlavor::Seurat {
        Transform::Expm1
    } else {
        Transform::Identity
    };
    // Moments of X serve scaling (and HVG when no transform is needed); expm1 moments only
    // for seurat.
    let mut lmom = Moments::new(g);
    let mut hmom = (transform != Transform::Identity).then(|| Moments::new(g));
    data.for_each_chunk(step, backend, opts.target_sum, |x| {
        match hmom.as_mut() {
            Some(h) => {
                let (raw, transformed) = backend.gene_moments_pair(x, transform);
                lmom.merge(&raw);
                h.merge(&transformed);
            }
            None => lmom.merge(&backend.gene_moments(x, Transform::Identity)),
        }
        Ok(())
    })?;
    let (mean, var) = hmom.as_ref().unwrap_or(&lmom).mean_var(1);
    let kept_genes: Vec<String> = keep_genes.iter().map(|&j| gene_names[j].clone()).collect();
    // highly_variable_genes(batch_key): each batch's moments (and which genes it expresses).
    let batch_stats = match (&batch_rows, &v3) {
        (Some(b), None) => Some(batch_moments(
            &mut data,
            b,
            step,
            backend,
            opts.target_sum,
            transform,
            g,
        )?),
        _ => None,
    };
    // The selection, its var columns, and the ranking that picks a replacement for the CAR.
    let (highly_variable, hvg_var_columns, ranking) = match (v3, batch_stats) {
        (Some(s), _) => {
            let mut cols = vec![
                ("means".to_string(), Column::F64(s.means)),
                ("variances".to_string(), Column::F64(s.variances)),
                ("variances_norm".to_string(), Column::F64(s.norm.clone())),
                ("highly_variable_rank".to_string(), Column::F32(s.rank)),
            ];
            if let Some(nb) = s.nbatches {
                cols.push(("highly_variable_nbatches".to_string(), Column::I64(nb)));
            }
            (s.highly_variable, cols, s.norm)
        }
        (None, Some(stats)) => {
            let b = highly_variable_genes_batched(
                &stats,
                &kept_genes,
                opts.hvg_flavor,
                opts.n_top_genes,
            )?;
            let ranking = b.order.iter().map(|&p| -(p as f64)).collect();
            let cols = vec![
                ("means".to_string(), Column::F64(b.hvg.means)),
                ("dispersions".to_string(), Column::F64(b.hvg.dispersions)),
                (
                    "dispersions_norm".to_string(),
                    Column::F32(b.hvg.dispersions_norm),
                ),
                (
                    "highly_variable_nbatches".to_string(),
                    Column::I64(b.nbatches),
                ),
                (
                    "highly_variable_intersection".to_string(),
                    Column::Bool(b.intersection),
                ),
            ];
            (b.hvg.highly_variable, cols, ranking)
        }
        (None, None) => {
            let h = highly_variable_genes(&mean, &var, opts.hvg_flavor, opts.n_top_genes)?;
            let ranking = h.dispersions_norm.iter().map(|&x| f64::from(x)).collect();
            let cols = vec![
                ("means".to_string(), Column::F64(h.means)),
                ("dispersions".to_string(), Column::F64(h.dispersions)),
                (
                    "dispersions_norm".to_string(),
                    Column::F32(h.dispersions_norm),
                ),
            ];
            (h.highly_variable, cols, ranking)
        }
    };
    let car = cart::detect::choose(
        &gene_names,
        &car_candidates,
        std::mem::take(&mut car_counts),
        opts.cart.car_min_counts,
    );
    let mut highly_variable = highly_variable;
    if let Some(j) = car
        .as_ref()
        .filter(|_| !opts.cart.car_in_hvg)
        .and_then(|c| col_map[c.index])
    {
        cart::exclude_from_hvg(&mut highly_variable, &ranking, j as usize);
    }
    let hvg_cols: Vec<u32> = (0..g as u32)
        .filter(|&j| highly_variable[j as usize])
        .collect();
    clock.lap("hvg");

    // Gene-set scores (on all genes after filter_genes, as the reference script scores them
    // after HVG selection) and the marker values of the cell calls.
    let mut acc = cart::CellAccumulator::new(&kept_genes, &lmom.mean_var(1).0, &gene_sets);
    data.for_each_chunk(step, backend, opts.target_sum, |x| {
        acc.push(x);
        Ok(())
    })?;
    let cart_cells = acc.finish(car.as_ref().map(|c| {
        let counts = keep_cells.iter().map(|&i| c.counts[i]).collect();
        (c.name.clone(), counts, opts.cart.car_min_counts)
    }));
    clock.lap("cart");

    // scale statistics on the HVGs (ddof 1, f64; zero std -> 1).
    let (lmean, lvar) = lmom.mean_var(1);
    let k = hvg_cols.len();
    let s_mean: Vec<f64> = hvg_cols.iter().map(|&j| lmean[j as usize]).collect();
    let s_std: Vec<f64> = hvg_cols
        .iter()
        .map(|&j| lvar[j as usize].sqrt())
        .map(|s| if s == 0.0 { 1.0 } else { s })
        .collect();
    let max_value = (opts.max_value > 0.0).then_some(opts.max_value);
    let spec = ScaleSpec {
        cols: &hvg_cols,
        mean: &s_mean,
        std: &s_std,
        max_value,
    };
    clock.lap("scale");

    // PCA: Gram accumulation over scaled chunks, eigendecomposition, projection.
    let n_comps = default_n_comps(n, k, opts.n_pcs);
    let mut gram = vec![0.0f64; k * k];
    let mut colsum = vec![0.0f64; k];
    data.for_each_chunk(step, backend, opts.target_sum, |x| {
        backend.scaled_gram(x, &spec, &mut gram, &mut colsum);
        Ok(())
    })?;
    tracing::debug!(
        "pca gram: {:.3} s (process cpu {:.2} s)",
        clock.last.elapsed().as_secs_f64(),
        cpu_seconds()
    );
    let pca = fit_from_gram_with(&gram, &colsum, n, n_comps, opts.pca_solver)?;
    tracing::debug!(
        "pca eigh: {:.3} s (process cpu {:.2} s)",
        clock.last.elapsed().as_secs_f64(),
        cpu_seconds()
    );
    // The projection pass also streams X into the output when the data live in the file.
    let mut x_writer = match (&data, x_out) {
        (LogData::File { .. }, Some(path)) => Some(H5adWriter::create(
            path,
            g,
            WriteOptions { gzip: opts.gzip },
        )?),
        _ => None,
    };
    let mut x_pca = Vec::with_capacity(n * n_comps);
    data.for_each_chunk(step, backend, opts.target_sum, |x| {
        x_pca.extend(
            backend
                .scaled_project(x, &spec, &pca.mean, &pca.components, n_comps)
                .into_iter()
                .map(|v| v as f32),
        );
        if let Some(w) = x_writer.as_mut() {
            w.append_x(x)?;
        }
        Ok(())
    })?;
    let x = match data {
        LogData::Memory(x) => Some(x),
        LogData::File { .. } => None,
    };
    clock.lap("pca");

    // Neighbors: scanpy caps n_neighbors at 1 + n/2 when it exceeds n.
    let k_nn = if opts.n_neighbors > n {
        1 + n / 2
    } else {
        opts.n_neighbors
    };
    let approx = match opts.knn {
        // A GPU runs the exact search at any size (1M x 50 in seconds on a datacentre GPU).
        KnnMethod::Auto => backend.name() != "gpu" && n > APPROX_KNN_ABOVE,
        KnnMethod::Exact => false,
        KnnMethod::Approx => true,
    };
    let (idx, dist) = if approx {
        backend.knn_approx(&x_pca, n_comps, k_nn, 0)
    } else {
        backend.knn_exact(&x_pca, n_comps, k_nn)
    };
    let conn = neighbors::connectivities(&idx, &dist, k_nn);
    let (dptr, didx, dval) = neighbors::distance_matrix(&idx, &dist, k_nn);
    let distances = CsrMatrix {
        n_rows: n,
        n_cols: n,
        indptr: dptr,
        indices: didx,
        data: dval,
    };
    clock.lap("neighbors");

    // Leiden and UMAP on the connectivities (ALGORITHMS.md section 6).
    let clustering = opts.cluster.then(|| {
        let params = LeidenParams {
            resolution: opts.resolution,
            seed: opts.seed,
            ..LeidenParams::default()
        };
        let c = leiden(&conn, &params);
        clock.lap("leiden");
        (c, params)
    });
    let layout = if opts.umap {
        let params = UmapParams {
            min_dist: opts.umap_min_dist,
            seed: opts.seed,
            ..UmapParams::default()
        };
        let u = umap_on(backend, &conn, Some((&x_pca, n_comps)), &params)?;
        clock.lap("umap");
        Some(u)
    } else {
        None
    };

    // Assemble the AnnData under scanpy's keys.
    let mut obs = src.obs.take(&keep_cells);
    let pick_i32 = |v: &[i32]| Column::I32(keep_cells.iter().map(|&i| v[i]).collect());
    let pick_f32 = |v: &[f32]| Column::F32(keep_cells.iter().map(|&i| v[i]).collect());
    obs.set("n_genes_by_counts", pick_i32(&cells.n_genes_by_counts));
    obs.set("total_counts", pick_f32(&cells.total_counts));
    obs.set("total_counts_mt", pick_f32(&cells.total_counts_mt));
    obs.set("pct_counts_mt", pick_f32(&cells.pct_counts_mt));
    obs.set(
        "n_genes",
        Column::I64(
            keep_cells
                .iter()
                .map(|&i| i64::from(cells.n_genes_by_counts[i]))
                .collect(),
        ),
    );
    if let Some((c, _)) = &clustering {
        obs.set(
            "leiden",
            Column::Categorical {
                codes: c.membership.iter().map(|&m| m as i32).collect(),
                categories: (0..c.n_clusters).map(|k| k.to_string()).collect(),
                ordered: false,
            },
        );
    }
    cart_cells.annotate(&mut obs);
    let default_sample = default_sample(input);
    let car_note = match (&car, opts.cart.car_feature.as_deref()) {
        (Some(c), Some(_)) => format!("CAR feature '{}' given with --car-feature", c.name),
        (Some(c), None) if c.others.is_empty() => {
            format!("CAR feature '{}' detected from the default names", c.name)
        }
        (Some(c), None) => format!(
            "CAR feature '{}' detected; several candidates: the one detected in the most cells was chosen",
            c.name
        ),
        (None, _) => "no CAR construct feature in the data (none of the default names or patterns matched): CAR status is absent".to_string(),
    };
    let cart_summary = cart::summary::summarise(
        &obs,
        &cart::summary::sample_labels(&obs, &default_sample),
        &cart::summary::sample_labels(&src.obs, &default_sample),
        &cart_cells,
        car_note,
        car.as_ref().map(|c| c.others.clone()).unwrap_or_default(),
        opts.cart.car_min_counts,
    );
    let mut var = src.var.take(&keep_genes);
    let on_genes_f32 = |v: Vec<f32>| Column::F32(keep_genes.iter().map(|&j| v[j]).collect());
    var.set(
        "mt",
        Column::Bool(keep_genes.iter().map(|&j| mito[j]).collect()),
    );
    var.set(
        "n_cells_by_counts",
        Column::I32(
            keep_genes
                .iter()
                .map(|&j| genes.n_cells_by_counts[j])
                .collect(),
        ),
    );
    var.set("mean_counts", on_genes_f32(genes.mean_counts()));
    var.set("pct_dropout_by_counts", on_genes_f32(genes.pct_dropout()));
    var.set(
        "total_counts",
        Column::F32(
            keep_genes
                .iter()
                .map(|&j| genes.total_counts[j] as f32)
                .collect(),
        ),
    );
    var.set(
        "n_cells",
        Column::I64(keep_genes.iter().map(|&j| n_cells_per_gene[j]).collect()),
    );
    var.set("highly_variable", Column::Bool(highly_variable));
    for (name, col) in hvg_var_columns {
        var.set(name, col);
    }
    let mut pcs = ndarray::Array2::<f32>::zeros((g, n_comps));
    for (a, &j) in hvg_cols.iter().enumerate() {
        for c in 0..n_comps {
            pcs[(j as usize, c)] = pca.components[a * n_comps + c] as f32;
        }
    }
    let x_pca = ndarray::Array2::from_shape_vec((n, n_comps), x_pca).expect("n x n_comps");
    let flavor = serde_json::to_value(opts.hvg_flavor)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let mut uns = vec![
        // scanpy's marker that X is log-transformed (natural log: base None, which anndata
        // does not store, so the mapping is empty; scanpy reads the base with .get).
        ("log1p".to_string(), UnsValue::Map(Vec::new())),
        (
            "hvg".to_string(),
            UnsValue::Map(vec![("flavor".into(), UnsValue::Str(flavor))]),
        ),
        (
            "pca".to_string(),
            UnsValue::Map(vec![
                (
                    "params".into(),
                    UnsValue::Map(vec![
                        ("zero_center".into(), UnsValue::Bool(true)),
                        ("mask_var".into(), UnsValue::Str("highly_variable".into())),
                    ]),
                ),
                (
                    "variance".into(),
                    UnsValue::F32s(pca.variance.iter().map(|&v| v as f32).collect()),
                ),
                (
                    "variance_ratio".into(),
                    UnsValue::F32s(pca.variance_ratio.iter().map(|&v| v as f32).collect()),
                ),
            ]),
        ),
        (
            "neighbors".to_string(),
            UnsValue::Map(vec![
                (
                    "connectivities_key".into(),
                    UnsValue::Str("connectivities".into()),
                ),
                ("distances_key".into(), UnsValue::Str("distances".into())),
                (
                    "params".into(),
                    UnsValue::Map(vec![
                        ("n_neighbors".into(), UnsValue::Int(k_nn as i64)),
                        ("method".into(), UnsValue::Str("umap".into())),
                        ("random_state".into(), UnsValue::Int(0)),
                        ("metric".into(), UnsValue::Str("euclidean".into())),
                        ("n_pcs".into(), UnsValue::Int(n_comps as i64)),
                    ]),
                ),
            ]),
        ),
        (
            "cartscope".to_string(),
            UnsValue::Map(vec![(
                "backend".into(),
                UnsValue::Str(backend.name().into()),
            )]),
        ),
    ];
    let mut obsm = vec![("X_pca".to_string(), Dense::F32(x_pca))];
    if let Some((c, p)) = clustering {
        uns.push((
            "leiden".to_string(),
            UnsValue::Map(vec![
                (
                    "params".into(),
                    UnsValue::Map(vec![
                        ("resolution".into(), UnsValue::Float(p.resolution)),
                        ("random_state".into(), UnsValue::Int(p.seed as i64)),
                        ("n_iterations".into(), UnsValue::Int(p.n_iterations as i64)),
                    ]),
                ),
                ("modularity".into(), UnsValue::Float(c.modularity)),
            ]),
        ));
    }
    if let Some(u) = layout {
        uns.push((
            "umap".to_string(),
            UnsValue::Map(vec![(
                "params".into(),
                UnsValue::Map(vec![
                    ("a".into(), UnsValue::Float(u.a)),
                    ("b".into(), UnsValue::Float(u.b)),
                ]),
            )]),
        ));
        let e = ndarray::Array2::from_shape_vec((n, 2), u.embedding).expect("n x 2");
        obsm.push(("X_umap".into(), Dense::F32(e)));
    }
    let adata = AnnData {
        obs,
        var,
        x,
        layers: counts_layer
            .into_iter()
            .map(|m| ("counts".to_string(), m))
            .collect(),
        obsm,
        varm: vec![("PCs".into(), Dense::F32(pcs))],
        obsp: vec![("connectivities".into(), conn)],
        obsp_f64: vec![("distances".into(), distances)],
        uns,
    };
    let total = clock.started.elapsed().as_secs_f64();
    let summary = RunSummary {
        cartscope_version: env!("CARGO_PKG_VERSION").to_string(),
        input: input.display().to_string(),
        backend: backend.name().to_string(),
        device: backend.device(),
        driver: backend.driver(),
        fallback_reason: backend.fallback_reason(),
        n_cells_in: n_in,
        n_genes_in: g_in,
        n_cells_after_qc: n,
        n_genes_after_filter: g,
        n_hvg: k,
        n_pcs: n_comps,
        stage_seconds: std::mem::take(&mut clock.stages),
        total_seconds: total,
        peak_rss_mib: peak_rss_mib(),
        cart: cart_summary,
    };
    Ok(RunResult {
        adata,
        x_writer,
        summary,
    })
}

/// Bytes the in-memory path may use: `--max-memory` MiB, or by default half of the memory the
/// OS reports available (all of it where that is unknown).
fn memory_budget_bytes(max_memory_mib: u64) -> u64 {
    if max_memory_mib > 0 {
        return max_memory_mib.saturating_mul(1 << 20);
    }
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kib| kib * 1024 / 2)
}

/// The filtered, log-normalised matrix: in memory, or re-read from the input chunk by chunk
/// (filtered and normalised again on the fly) when it does not fit.
enum LogData<'a> {
    Memory(CsrMatrix),
    File {
        src: &'a mut CountSource,
        keep: &'a [bool],
        col_map: &'a [Option<u32>],
        n_cols: usize,
        /// Whether chunks are normalised and log-transformed as they are re-read (false while
        /// raw-count statistics are taken, e.g. for seurat_v3).
        normalized: bool,
    },
}

impl LogData<'_> {
    /// Calls `f` on consecutive row chunks of the filtered log-normalised matrix, in order.
    fn for_each_chunk(
        &mut self,
        step: usize,
        backend: &dyn Backend,
        target_sum: f32,
        mut f: impl FnMut(&CsrMatrix) -> Result<()>,
    ) -> Result<()> {
        match self {
            LogData::Memory(x) => {
                for a in (0..x.n_rows).step_by(step) {
                    f(&x.slice_rows(a..(a + step).min(x.n_rows)))?;
                }
            }
            LogData::File {
                src,
                keep,
                col_map,
                n_cols,
                normalized,
            } => {
                let n_in = src.n_obs();
                for a in (0..n_in).step_by(step) {
                    let b = (a + step).min(n_in);
                    let mut m = src.read_rows(a..b)?;
                    drop_explicit_zeros(&mut m);
                    let rows: Vec<usize> = (a..b).filter(|&i| keep[i]).map(|i| i - a).collect();
                    let mut x = subset(&m, &rows, col_map, *n_cols);
                    if *normalized {
                        backend.normalize_log1p(&mut x, target_sum);
                    }
                    f(&x)?;
                }
            }
        }
        Ok(())
    }
}

/// Calls `f(batch, rows)` on the cells of each chunk, split into contiguous runs of one batch
/// (cells of a batch are contiguous in a joint run, so a chunk holds few runs).
fn for_each_batch_run(
    data: &mut LogData<'_>,
    codes: &[u32],
    step: usize,
    backend: &dyn Backend,
    target_sum: f32,
    mut f: impl FnMut(usize, &CsrMatrix) -> Result<()>,
) -> Result<()> {
    let mut offset = 0usize;
    data.for_each_chunk(step, backend, target_sum, |x| {
        let mut a = 0;
        while a < x.n_rows {
            let b = codes[offset + a];
            let e = (a..x.n_rows)
                .find(|&r| codes[offset + r] != b)
                .unwrap_or(x.n_rows);
            if a == 0 && e == x.n_rows {
                f(b as usize, x)?;
            } else {
                f(b as usize, &x.slice_rows(a..e))?;
            }
            a = e;
        }
        offset += x.n_rows;
        Ok(())
    })
}

/// The gene moments of each batch (by code) under `transform`, one pass over the chunks;
/// `also` sees each batch's run of rows too.
#[allow(clippy::too_many_arguments)]
fn per_batch_moments(
    data: &mut LogData<'_>,
    batches: &BatchRows,
    step: usize,
    backend: &dyn Backend,
    target_sum: f32,
    transform: Transform,
    g: usize,
    mut also: impl FnMut(usize, &CsrMatrix),
) -> Result<Vec<Moments>> {
    let mut moments: Vec<Moments> = (0..batches.categories.len())
        .map(|_| Moments::new(g))
        .collect();
    for_each_batch_run(
        data,
        &batches.codes,
        step,
        backend,
        target_sum,
        |b, part| {
            moments[b].merge(&backend.gene_moments(part, transform));
            also(b, part);
            Ok(())
        },
    )?;
    Ok(moments)
}

/// Per-batch moments of the filtered log-normalised matrix under `transform`, and which
/// genes each batch expresses (a positive value in one of its cells, scanpy's
/// `filter_genes(min_cells=1)`); batches left without cells are skipped, as scanpy drops
/// unused categories when it subsets.
fn batch_moments(
    data: &mut LogData<'_>,
    batches: &BatchRows,
    step: usize,
    backend: &dyn Backend,
    target_sum: f32,
    transform: Transform,
    g: usize,
) -> Result<Vec<BatchStats>> {
    let mut expressed = vec![vec![false; g]; batches.categories.len()];
    let moments = per_batch_moments(
        data,
        batches,
        step,
        backend,
        target_sum,
        transform,
        g,
        |b, part| {
            for (&j, &v) in part.indices.iter().zip(&part.data) {
                if v > 0.0 {
                    expressed[b][j as usize] = true;
                }
            }
        },
    )?;
    Ok(moments
        .into_iter()
        .zip(expressed)
        .filter(|(m, _)| m.n > 0)
        .map(|(m, expressed)| {
            let (mean, var) = m.mean_var(1);
            BatchStats {
                mean,
                var,
                expressed,
            }
        })
        .collect())
}

/// seurat_v3's statistics and selection: `means`, `variances`, `variances_norm`,
/// `highly_variable_rank`, `highly_variable` and, with a batch key,
/// `highly_variable_nbatches`.
struct V3Selection {
    means: Vec<f64>,
    variances: Vec<f64>,
    norm: Vec<f64>,
    rank: Vec<f32>,
    highly_variable: Vec<bool>,
    nbatches: Option<Vec<i64>>,
}

/// seurat_v3 on the raw counts (before normalisation), with or without batches.
fn seurat_v3_selection(
    data: &mut LogData<'_>,
    batches: Option<&BatchRows>,
    step: usize,
    backend: &dyn Backend,
    opts: &RunOptions,
    (n, g): (usize, usize),
) -> Result<V3Selection> {
    let target_sum = opts.target_sum;
    let Some(batches) = batches else {
        let mut m = Moments::new(g);
        data.for_each_chunk(step, backend, target_sum, |x| {
            m.merge(&backend.gene_moments(x, Transform::Identity));
            Ok(())
        })?;
        let (mu, var) = m.mean_var(1);
        let fit = seurat_v3::fit(&mu, &var, 0.3);
        let clip = seurat_v3::clip_values(&fit, n);
        let (mut s1, mut s2) = (vec![0.0f64; g], vec![0.0f64; g]);
        data.for_each_chunk(step, backend, target_sum, |x| {
            let (a, b) = backend.clipped_sums(x, &clip);
            s1.iter_mut().zip(a).for_each(|(t, v)| *t += v);
            s2.iter_mut().zip(b).for_each(|(t, v)| *t += v);
            Ok(())
        })?;
        let (norm, rank, highly_variable) = seurat_v3::select(&fit, n, &s1, &s2, opts.n_top_genes);
        return Ok(V3Selection {
            means: fit.means,
            variances: fit.variances,
            norm,
            rank,
            highly_variable,
            nbatches: None,
        });
    };
    // Per batch: moments, a LOESS fit on them, clip values at the batch's size, clipped sums.
    let nb = batches.categories.len();
    let moments = per_batch_moments(
        data,
        batches,
        step,
        backend,
        target_sum,
        Transform::Identity,
        g,
        |_, _| {},
    )?;
    let mut all = Moments::new(g);
    moments.iter().for_each(|m| all.merge(m));
    let (means, variances) = all.mean_var(1);
    let mut fits: Vec<Option<(seurat_v3::SeuratV3, Vec<f64>)>> = moments
        .iter()
        .map(|m| {
            (m.n > 0).then(|| {
                let (mu, var) = m.mean_var(1);
                let fit = seurat_v3::fit(&mu, &var, 0.3);
                let clip = seurat_v3::clip_values(&fit, m.n as usize);
                (fit, clip)
            })
        })
        .collect();
    let mut sums = vec![(vec![0.0f64; g], vec![0.0f64; g]); nb];
    for_each_batch_run(
        data,
        &batches.codes,
        step,
        backend,
        target_sum,
        |b, part| {
            if let Some((_, clip)) = &fits[b] {
                let (a, q) = backend.clipped_sums(part, clip);
                sums[b].0.iter_mut().zip(a).for_each(|(t, v)| *t += v);
                sums[b].1.iter_mut().zip(q).for_each(|(t, v)| *t += v);
            }
            Ok(())
        },
    )?;
    // Batches in np.unique's order (sorted labels), those without cells left out.
    let mut order: Vec<usize> = (0..nb).filter(|&b| fits[b].is_some()).collect();
    order.sort_by(|&a, &b| batches.categories[a].cmp(&batches.categories[b]));
    let per_batch: Vec<seurat_v3::Batch> = order
        .iter()
        .filter_map(|&b| {
            let (fit, _) = fits[b].take()?;
            let (clipped_sum, clipped_sq) = std::mem::take(&mut sums[b]);
            Some(seurat_v3::Batch {
                fit,
                n: moments[b].n as usize,
                clipped_sum,
                clipped_sq,
            })
        })
        .collect();
    let (norm, rank, nbatches, highly_variable) =
        seurat_v3::select_batched(&per_batch, opts.n_top_genes);
    Ok(V3Selection {
        means,
        variances,
        norm,
        rank,
        highly_variable,
        nbatches: Some(nbatches),
    })
}

/// Rows `rows` of `m` with columns renumbered by `col_map` (None = dropped), in one pass.
fn subset(m: &CsrMatrix, rows: &[usize], col_map: &[Option<u32>], n_cols: usize) -> CsrMatrix {
    let mut out = CsrMatrix::empty(n_cols);
    for &i in rows {
        let (idx, val) = m.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            if let Some(nj) = col_map[j as usize] {
                out.indices.push(nj);
                out.data.push(v);
            }
        }
        out.indptr.push(out.data.len() as u64);
    }
    out.n_rows = rows.len();
    out
}

fn drop_explicit_zeros(m: &mut CsrMatrix) {
    if !m.data.contains(&0.0) {
        return;
    }
    let mut out = CsrMatrix::empty(m.n_cols);
    for i in 0..m.n_rows {
        let (idx, val) = m.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            if v != 0.0 {
                out.indices.push(j);
                out.data.push(v);
            }
        }
        out.indptr.push(out.data.len() as u64);
    }
    out.n_rows = m.n_rows;
    *m = out;
}

/// Runs the pipeline and writes `OUTDIR/result.h5ad`, `cells.parquet`, `summary.json` and
/// `config.toml`.
pub fn run(
    input: &Path,
    outdir: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
) -> Result<RunSummary> {
    run_with_progress(input, outdir, read, opts, false)
}

/// [`run`], with a progress bar on a terminal when `progress` is set.
pub fn run_with_progress(
    input: &Path,
    outdir: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
    progress: bool,
) -> Result<RunSummary> {
    let Selected {
        backend,
        fallback_reason,
    } = select_backend(opts.backend)?;
    run_on_backend(
        input,
        outdir,
        read,
        opts,
        backend.as_ref(),
        fallback_reason,
        progress,
    )
}

/// [`run_with_progress`] on a backend the caller built, so that several runs (a batch) share
/// one device context; `fallback_reason` says why it is not the backend asked for, if so.
///
/// A failed run leaves no partial output: a folder this run created is removed again, and in
/// a folder that already existed the files this run had published are removed (files of
/// earlier runs that this one never replaced stay).
pub fn run_on_backend(
    input: &Path,
    outdir: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
    backend: &dyn Backend,
    fallback_reason: Option<String>,
    progress: bool,
) -> Result<RunSummary> {
    opts.validate()?;
    let src = CountSource::open(input, read)?;
    run_source(src, None, outdir, opts, backend, fallback_reason, progress)
}

/// The obs columns that describe the samples of a joint run: the batch key of
/// [`analyse_source`] and the sample metadata carried into `cells.parquet` after it.
#[derive(Debug, Clone)]
pub struct SampleColumns {
    /// The obs column naming each cell's sample.
    pub key: String,
    /// Per-sample metadata columns of obs (patient, time point, day, manifest extras).
    pub metadata: Vec<String>,
}

/// [`run_on_backend`] on an opened source; with `samples`, highly variable genes use its key
/// as the batch key. Leaves no partial output on failure, as [`run_on_backend`] says.
pub fn run_source(
    src: CountSource,
    samples: Option<&SampleColumns>,
    outdir: &Path,
    opts: &RunOptions,
    backend: &dyn Backend,
    fallback_reason: Option<String>,
    progress: bool,
) -> Result<RunSummary> {
    let created = !outdir.exists();
    std::fs::create_dir_all(outdir).map_err(|e| Error::write(outdir, "output folder", e))?;
    let mut published = Vec::new();
    let out = run_into(
        src,
        samples,
        outdir,
        opts,
        backend,
        fallback_reason,
        progress,
        &mut published,
    );
    if out.is_err() {
        if created {
            let _ = std::fs::remove_dir_all(outdir);
        } else {
            for path in &published {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    out
}

/// The body of [`run_source`]; every file it publishes is pushed to `published`.
#[allow(clippy::too_many_arguments)]
fn run_into(
    src: CountSource,
    samples: Option<&SampleColumns>,
    outdir: &Path,
    opts: &RunOptions,
    backend: &dyn Backend,
    fallback_reason: Option<String>,
    progress: bool,
    published: &mut Vec<PathBuf>,
) -> Result<RunSummary> {
    let input = src.path.clone();
    let input = input.as_path();
    let result = outdir.join("result.h5ad");
    let RunResult {
        adata,
        x_writer,
        mut summary,
    } = analyse_source(
        src,
        samples.map(|s| s.key.as_str()),
        opts,
        backend,
        progress,
        Some(&result),
    )?;
    let started = Instant::now();
    let mut w = match x_writer {
        Some(w) => w,
        None => H5adWriter::create(&result, adata.var.len(), WriteOptions { gzip: opts.gzip })?,
    };
    if let Some(x) = &adata.x {
        w.append_x(x)?;
    }
    w.finish(&adata)?;
    published.push(result);
    summary
        .stage_seconds
        .push(("write".into(), started.elapsed().as_secs_f64()));
    summary.total_seconds += started.elapsed().as_secs_f64();
    summary.peak_rss_mib = peak_rss_mib();
    if summary.fallback_reason.is_none() {
        summary.fallback_reason = fallback_reason;
    }
    // Before summary.csv: a folder with summary.csv counts as complete (`cartscope aggregate`).
    let metadata = samples.map_or(&[][..], |s| s.metadata.as_slice());
    let mut cells = crate::report::table::cells_frame(&adata, &default_sample(input), metadata)?;
    let parquet = outdir.join("cells.parquet");
    crate::report::table::write_parquet_atomic(&parquet, &mut cells)?;
    published.push(parquet);
    let mut publish = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = outdir.join(name);
        write_atomic(&path, bytes)?;
        published.push(path);
        Ok(())
    };
    let config = toml::to_string(opts).map_err(|e| Error::write(outdir, "config.toml", e))?;
    publish("config.toml", config.as_bytes())?;
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| Error::write(outdir, "summary.json", e))?;
    publish("summary.json", &json)?;
    let csv = cart::summary::to_csv(&summary.cart);
    publish("summary.csv", csv.as_bytes())?;
    if opts.cart.report {
        let html = crate::report::render(&adata, &summary, opts);
        publish("report.html", html.as_bytes())?;
    }
    Ok(summary)
}

/// The sample label of cells when obs has no `sample` column: the input's file name without
/// its extension.
fn default_sample(input: &Path) -> String {
    input.file_stem().map_or_else(
        || "sample".to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Writes bytes under a temporary name, then renames.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = crate::io::h5ad_write::temporary_path(path)?;
    std::fs::write(&tmp, bytes).map_err(|e| Error::write(path, "file", e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::write(path, "rename", e))
}

/// Loads run options from a TOML file (keys as in `config.toml`; unknown keys are an error).
pub fn load_config(path: &Path) -> Result<RunOptions> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    toml::from_str(&text)
        .map_err(|e| Error::invalid(path, "config", e.to_string().replace('\n', " ")))
}
