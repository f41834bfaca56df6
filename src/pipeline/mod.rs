//! The standard scanpy pipeline as named stages over typed state, on a [`Backend`].
//!
//! `analyse` reads as the recipe: read + QC -> filter -> (seurat_v3 on counts) ->
//! normalize_total + log1p -> highly variable genes -> CAR-T scores and calls -> scale -> PCA ->
//! neighbours -> Leiden -> UMAP -> marker genes -> the AnnData and the summary. Each stage is a function in
//! its own module that takes and returns a named state; every default equals
//! `reference/scanpy_reference.py` (docs/algorithms.md).
//!
//! Stages work on row chunks: QC accumulates per chunk; normalisation, moments, scaling, Gram
//! accumulation and projection are backend kernels applied chunk by chunk, so the dense scaled
//! matrix never exists whole (only one chunk of it at a time). The filtered counts and the
//! log-normalised matrix are held in memory as CSR while they fit in `--max-memory`, else the
//! stages re-read the input (`data`).
//!
//! Writing the outputs is the job of the layer above ([`crate::run::Run`]).

pub(crate) mod assemble;
mod cart;
pub(crate) mod data;
mod embed;
pub(crate) mod filter;
pub(crate) mod hvg;
pub(crate) mod markers;
pub(crate) mod neighbors;
mod options;
mod pca;
mod scan;
mod stage;
mod summary;
#[cfg(test)]
mod tests;

use std::path::Path;

use crate::backend::Backend;
use crate::error::Result;
use crate::io::{AnnData, CountSource, H5adWriter};

pub use crate::backend::BackendChoice;
pub use options::{APPROX_KNN_ABOVE, KnnMethod, RunOptions, SampleColumns};
pub use stage::{Stage, peak_rss_mib};
pub use summary::RunSummary;

pub(crate) use filter::default_sample;
pub(crate) use markers::{MarkerTable, Markers};

use assemble::Embedding;
use data::ChunkCtx;
use stage::Stopwatch;

/// What an analysis needs besides its input.
pub(crate) struct Job<'a> {
    /// The run's parameters.
    pub opts: &'a RunOptions,
    /// Runs the kernels.
    pub backend: &'a dyn Backend,
    /// Draw a progress bar on a terminal.
    pub progress: bool,
    /// An obs column of batches for the highly variable genes (a joint run's sample).
    pub batch_key: Option<&'a str>,
    /// Where result.h5ad goes: when the data are re-read from the input, X is streamed there
    /// during PCA instead of being held in memory.
    pub x_out: Option<&'a Path>,
    /// VDJ contigs of the cells (`run --vdj`): receptors and clonotypes of the cells after QC.
    pub vdj: Option<&'a crate::vdj::Contigs>,
    /// The obs column whose groups clonotypes never cross (a joint run's patient).
    pub clone_group: Option<&'a str>,
}

/// Everything the pipeline computes, before it is written.
pub(crate) struct Analysis {
    /// The AnnData to write (X = log-normalised counts; None when X was streamed to
    /// `x_writer`).
    pub adata: AnnData,
    /// The output file with X already streamed into it, waiting for the rest of `adata`.
    pub x_writer: Option<H5adWriter>,
    /// The run summary (without the write stage).
    pub summary: RunSummary,
    /// Marker genes, when they were ranked (also in `adata.uns`).
    pub markers: Option<Markers>,
}

/// The state after the last stage: what every stage produced that goes into the outputs.
pub(crate) struct Stages {
    /// The filtered data with their obs and var.
    pub filtered: filter::Filtered,
    /// The highly variable genes.
    pub hvgs: hvg::Hvgs,
    /// Gene-set scores and cell calls.
    pub cart: crate::cart::CartCells,
    /// The scaling of the HVGs.
    pub scaling: pca::Scaling,
    /// PCA and the cells' coordinates.
    pub pca: pca::Projected,
    /// Graph, clusters and layout.
    pub embedding: Embedding,
    /// Marker genes, when they were ranked.
    pub markers: Option<markers::Markers>,
    /// Receptors and clonotypes of the cells after QC, with VDJ contigs.
    pub vdj: Option<crate::vdj::VdjAnalysis>,
}

/// The text of obs column `name` per cell (missing values as an empty label).
fn group_labels(obs: &crate::io::Frame, name: &str) -> Result<Vec<String>> {
    let col = obs
        .column(name)
        .and_then(crate::io::Column::as_strings)
        .ok_or_else(|| {
            crate::Error::Internal(format!("clonotype groups: no text column obs/{name}"))
        })?;
    Ok(col.into_iter().map(Option::unwrap_or_default).collect())
}

/// The recipe, one stage after another.
pub(crate) fn analyse(src: CountSource, job: &Job<'_>) -> Result<Analysis> {
    let (opts, backend) = (job.opts, job.backend);
    opts.validate()?;
    let ctx = ChunkCtx {
        backend,
        rows: opts.chunk_rows,
        target_sum: opts.target_sum,
    };
    let batches = job
        .batch_key
        .map(|k| filter::batch_codes(&src, k))
        .transpose()?;
    let mut clock = Stopwatch::new(
        Stage::plan(opts.cluster, opts.umap, opts.runs_markers()),
        job.progress,
    );
    let gene_sets =
        crate::cart::genesets::load(opts.cart.gene_sets.as_deref(), opts.cart.gene_sets_mode)?;
    let car_candidates =
        crate::cart::detect::candidate_indices(&src.var.index, opts.cart.car_feature.as_deref())?;

    let budget = scan::memory_budget_bytes(opts.max_memory_mib);
    let scanned = scan::read_and_qc(src, &car_candidates, opts, budget)?;
    clock.lap(Stage::ReadQc);
    let mut f = filter::apply(scanned, batches, opts)?;
    // Receptors and clonotypes of the cells after QC (milliseconds; timed with the filter).
    let vdj = match job.vdj {
        Some(c) => {
            let groups = job
                .clone_group
                .map(|name| group_labels(&f.obs, name))
                .transpose()?;
            Some(crate::vdj::analyse_within(
                c,
                Some(&f.obs.index),
                &opts.vdj,
                groups.as_deref(),
            )?)
        }
        None => None,
    };
    clock.lap(Stage::Filter);
    let on_counts = hvg::on_raw_counts(&mut f, &ctx, opts)?;
    f.matrix.normalize_log1p(&ctx);
    clock.lap(Stage::Normalize);
    let hvgs = hvg::select(&mut f, on_counts, &ctx, opts)?;
    clock.lap(Stage::Hvg);
    let scaling = pca::scaling(&hvgs, opts);
    let mut kept = pca::HvgBlock::for_reread(&f, &scaling, opts, job.x_out)?;
    let mut cart_cells = cart::score_and_call(&mut f, &hvgs, &gene_sets, &ctx, opts, |x| {
        kept.as_mut().map_or(Ok(()), |k| k.push(x))
    })?;
    clock.lap(Stage::Cart);
    clock.lap(Stage::Scale);
    let projected = pca::pca(&mut f, &scaling, &ctx, opts, kept, &clock)?;
    clock.lap(Stage::Pca);
    let graph = neighbors::neighbors(&projected, backend, opts);
    // The lineage calls smooth over the graph (milliseconds; timed with the neighbours).
    cart_cells.call_lineages(&graph.distances, &opts.cart.lineage());
    clock.lap(Stage::Neighbors);
    let clusters = opts.cluster.then(|| embed::cluster(&graph, opts));
    if clusters.is_some() {
        clock.lap(Stage::Leiden);
    }
    let layout = match opts.umap {
        true => Some(embed::embed(&graph, &projected, backend, opts)?),
        false => None,
    };
    if layout.is_some() {
        clock.lap(Stage::Umap);
    }
    let markers = match opts.runs_markers() {
        true => {
            let mut calls = crate::io::Frame::new(vec![String::new(); f.n_after.0]);
            cart_cells.annotate(&mut calls);
            let clustering = clusters.as_ref().map(|(c, _)| c);
            let groupings = markers::groupings(opts, &f.obs, &calls, clustering)?;
            let m = markers::rank(&mut f, &groupings, &ctx, opts)?;
            clock.lap(Stage::Markers);
            Some(m)
        }
        false => None,
    };

    let stages = Stages {
        filtered: f,
        hvgs,
        cart: cart_cells,
        scaling,
        pca: projected,
        embedding: Embedding {
            graph,
            clusters,
            layout,
        },
        markers,
        vdj,
    };
    assemble::analysis(stages, &clock, backend, opts)
}
