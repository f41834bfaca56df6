//! The options of a run: every default is the reference pipeline's
//! (`reference/scanpy_reference.py`), each is a command-line flag and a key of `config.toml`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::error::{Error, Result};
use crate::pp::hvg::{HvgCutoffs, HvgFlavor, HvgPick};
use crate::tl::leiden::LeidenFlavor;
use crate::tl::markers::{Correction, MarkerMethod};
use crate::tl::pca::PcaSolver;

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
/// exact search here stays cheaper well beyond that. Measured on 184,014 simulated cells
/// (2 cores, 50 PCs, k = 15, search alone): exact 12.1-12.5 s at recall 1, NN-descent 21 s at
/// recall@14 0.964 (docs/performance.md). Exact work grows with n², NN-descent's about with
/// n log n, so by those figures the two meet near 1.9 x 184k; the switch sits below that.
pub const APPROX_KNN_ABOVE: usize = 300_000;

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
    /// highly_variable_genes(n_top_genes=None, min_mean, max_mean, min_disp, max_disp): when
    /// set, the seurat and cell_ranger flavors select by these cut-offs instead of
    /// `n_top_genes` (seurat_v3 has no cut-offs and keeps `n_top_genes`).
    pub hvg_cutoffs: Option<HvgCutoffs>,
    /// highly_variable_genes(n_bins): equal-width mean bins of the seurat flavor.
    pub hvg_n_bins: usize,
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
    pub pca_solver: PcaSolver,
    /// Kernel backend.
    pub backend: BackendChoice,
    /// Accept non-integer / negative input values with a warning.
    pub allow_non_integer: bool,
    /// CAR detection, gene sets and the report.
    pub cart: crate::cart::CartOptions,
    /// gzip level of result.h5ad (None: uncompressed).
    pub gzip: Option<u8>,
    /// Memory (MiB) the data may take in RAM; beyond it, later stages re-read the input in
    /// chunks. 0: a quarter of the available memory.
    pub max_memory_mib: u64,
    /// Leiden clustering into `obs["leiden"]`.
    pub cluster: bool,
    /// leiden(resolution).
    pub resolution: f64,
    /// leiden(flavor): igraph (2 iterations) or leidenalg (until stable).
    pub leiden_flavor: LeidenFlavor,
    /// UMAP layout into `obsm["X_umap"]`.
    pub umap: bool,
    /// umap(min_dist).
    pub umap_min_dist: f64,
    /// random_state of leiden and umap.
    pub seed: u64,
    /// Marker genes (scanpy's rank_genes_groups) for each column of `markers_groupby`.
    pub markers: bool,
    /// obs columns whose groups get marker genes; the first is stored as
    /// `uns["rank_genes_groups"]`, the others as `uns["rank_genes_groups_<column>"]`.
    pub markers_groupby: Vec<String>,
    /// rank_genes_groups(method).
    pub markers_method: MarkerMethod,
    /// rank_genes_groups(n_genes): genes kept per group.
    pub markers_n_genes: usize,
    /// rank_genes_groups(tie_correct), for the Wilcoxon test.
    pub markers_tie_correct: bool,
    /// rank_genes_groups(corr_method).
    pub markers_corr_method: Correction,
    /// rank_genes_groups(rankby_abs): genes ranked by the absolute score.
    pub markers_rankby_abs: bool,
    /// Clonotypes of the cells' T-cell receptors when the run has VDJ contigs (scirpy's
    /// definition and defaults).
    pub vdj: crate::vdj::VdjOptions,
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
            hvg_cutoffs: None,
            hvg_n_bins: 20,
            max_value: 10.0,
            n_pcs: 50,
            n_neighbors: 15,
            keep_counts: false,
            chunk_rows: 8192,
            knn: KnnMethod::Auto,
            pca_solver: PcaSolver::CovarianceEigh,
            backend: BackendChoice::Auto,
            allow_non_integer: false,
            cart: crate::cart::CartOptions::default(),
            gzip: None,
            max_memory_mib: 0,
            cluster: true,
            resolution: 1.0,
            leiden_flavor: LeidenFlavor::Igraph,
            umap: true,
            umap_min_dist: 0.5,
            seed: 0,
            markers: true,
            markers_groupby: vec!["leiden".to_string()],
            markers_method: MarkerMethod::TTest,
            markers_n_genes: 100,
            markers_tie_correct: false,
            markers_corr_method: Correction::BenjaminiHochberg,
            markers_rankby_abs: false,
            vdj: crate::vdj::VdjOptions::default(),
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
        if self.hvg_n_bins == 0 {
            return bad("hvg_n_bins must be at least 1");
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
        if self.markers && self.markers_n_genes == 0 {
            return bad("--markers-n-genes must be at least 1");
        }
        if self.vdj.expansion_breakpoints.is_empty() {
            return bad("clonal expansion needs at least one breakpoint");
        }
        if self.markers && self.markers_groupby.is_empty() {
            return bad("--markers-groupby needs at least one obs column");
        }
        self.cart.validate()
    }

    /// How the seurat and cell_ranger flavors pick their genes.
    pub fn hvg_pick(&self) -> HvgPick {
        match self.hvg_cutoffs {
            Some(c) => HvgPick::Cutoffs(c),
            None => HvgPick::Top(self.n_top_genes),
        }
    }

    /// The columns of `markers_groupby` that this run can group by: `leiden` is left out when
    /// clustering is off, so `--no-cluster` alone also turns the default marker genes off.
    pub fn marker_columns(&self) -> Vec<&str> {
        self.markers_groupby
            .iter()
            .map(String::as_str)
            .filter(|c| self.cluster || *c != "leiden")
            .collect()
    }

    /// Whether the markers stage runs: asked for, and with at least one column to group by.
    pub fn runs_markers(&self) -> bool {
        self.markers && !self.marker_columns().is_empty()
    }

    /// Loads options from a TOML file (keys as in `config.toml`; unknown keys are an error).
    pub fn from_toml_file(path: &Path) -> Result<RunOptions> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        toml::from_str(&text).map_err(|e| config_error(path, &text, &e))
    }
}

/// A TOML error as one line naming the line and key at fault, e.g.
/// `line 3, key cart.car_min_counts: invalid type: string "one", expected u32`.
fn config_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let message = e.message().trim().replace('\n', " ");
    let Some(start) = e
        .span()
        .map(|s| s.start)
        .filter(|&s| text.is_char_boundary(s))
    else {
        return Error::invalid(path, "config", message);
    };
    let line_no = text[..start].matches('\n').count() + 1;
    let mut table = String::new();
    let mut line = "";
    for l in text.lines().take(line_no) {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        line = t;
    }
    let field = match line.split_once('=') {
        Some((key, _)) if !line.starts_with('[') => {
            let key = key.trim();
            if table.is_empty() {
                format!("line {line_no}, key {key}")
            } else {
                format!("line {line_no}, key {table}.{key}")
            }
        }
        _ => format!("line {line_no}"),
    };
    Error::invalid(path, field, message)
}

/// The obs columns that describe the samples of a joint run: the batch key of the highly
/// variable genes and the sample metadata carried into `cells.parquet`.
#[derive(Debug, Clone)]
pub struct SampleColumns {
    /// The obs column naming each cell's sample.
    pub key: String,
    /// Per-sample metadata columns of obs (patient, time point, day, manifest extras).
    pub metadata: Vec<String>,
    /// The obs column whose groups clonotypes never cross (a joint run's `patient`), when the
    /// run has VDJ contigs.
    pub clone_group: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = toml::from_str::<RunOptions>(text).unwrap_err();
        config_error(Path::new("c.toml"), text, &e).to_string()
    }

    #[test]
    fn a_config_error_names_the_line_and_the_key() {
        let e = err("min_genes = 10\nn_top_genes = \"many\"\n");
        assert!(
            e.starts_with("c.toml: line 2, key n_top_genes: invalid type: string \"many\""),
            "{e}"
        );
        let e = err("seed = 1\n\n[cart]\ncar_min_counts = -1\n");
        assert!(
            e.starts_with("c.toml: line 4, key cart.car_min_counts: "),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
