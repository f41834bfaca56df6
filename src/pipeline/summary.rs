//! What a run did, as `summary.json` records it: backend, device, sizes, seconds per stage,
//! peak memory and the CAR-T summary.

use serde::Serialize;

use crate::backend::Backend;
use crate::cart::CartCells;
use crate::cart::summary::{CartSummary, sample_labels, summarise};
use crate::io::Frame;

use super::RunOptions;
use super::filter::{Filtered, default_sample};
use super::stage::{Stage, Stopwatch, peak_rss_mib};

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
    pub stage_seconds: Vec<(Stage, f64)>,
    /// Total seconds.
    pub total_seconds: f64,
    /// Peak resident memory of the process (MiB), from the OS.
    pub peak_rss_mib: f64,
    /// Passes over the input file: 1 when the matrix fits in `--max-memory` (the read), more
    /// when the stages re-read it.
    pub input_passes: usize,
    /// CAR-T summary: CAR status, gene sets, per-sample numbers.
    pub cart: CartSummary,
    /// The VDJ contigs' counts (`run --vdj`): contigs read, contig cells that are not cells
    /// of the matrix, cells with a receptor, clones; null without contigs.
    pub vdj: Option<crate::vdj::VdjSummary>,
}

impl RunSummary {
    /// Seconds of `stage`, when it ran.
    pub fn seconds(&self, stage: Stage) -> Option<f64> {
        self.stage_seconds
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|&(_, t)| t)
    }
}

/// How the CAR feature was found, in words for the report.
fn car_note(f: &Filtered, opts: &RunOptions) -> String {
    match (&f.car, opts.cart.car_feature.as_deref()) {
        (Some(c), Some(_)) => format!("CAR feature '{}' given with --car-feature", c.name),
        (Some(c), None) if c.others.is_empty() => {
            format!("CAR feature '{}' detected from the default names", c.name)
        }
        (Some(c), None) => format!(
            "CAR feature '{}' detected; several candidates: the one detected in the most cells was chosen",
            c.name
        ),
        (None, _) => "no CAR construct feature in the data (none of the default names or patterns matched): CAR status is absent".to_string(),
    }
}

/// The CAR-T summary per sample of the annotated `obs` of the cells after QC.
pub(crate) fn cart_summary(
    f: &Filtered,
    obs: &Frame,
    cells: &CartCells,
    opts: &RunOptions,
) -> CartSummary {
    summarise(
        obs,
        &sample_labels(obs, &default_sample(&f.input)),
        &f.input_samples,
        cells,
        car_note(f, opts),
        f.car.as_ref().map(|c| c.others.clone()).unwrap_or_default(),
        opts.cart.car_min_counts,
    )
}

/// The summary of an analysis of `f` with `n_hvg` genes and `n_pcs` components, timed by
/// `clock` on `backend`.
pub(crate) fn run_summary(
    f: &Filtered,
    (n_hvg, n_pcs): (usize, usize),
    backend: &dyn Backend,
    clock: &Stopwatch,
    cart: CartSummary,
) -> RunSummary {
    RunSummary {
        cartscope_version: env!("CARGO_PKG_VERSION").to_string(),
        input: f.input.display().to_string(),
        backend: backend.name().to_string(),
        device: backend.device(),
        driver: backend.driver(),
        fallback_reason: backend.fallback_reason(),
        n_cells_in: f.n_in.0,
        n_genes_in: f.n_in.1,
        n_cells_after_qc: f.n_cells(),
        n_genes_after_filter: f.n_genes(),
        n_hvg,
        n_pcs,
        stage_seconds: clock.laps().to_vec(),
        total_seconds: clock.total(),
        peak_rss_mib: peak_rss_mib(),
        input_passes: f.matrix.input_passes(),
        cart,
        vdj: None,
    }
}
