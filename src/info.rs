//! `cartscope info`: what a count file holds, read the way the analysis will read it.
//!
//! The whole matrix is streamed once in row chunks, so every structural check (indptr, indices,
//! shapes) and value check runs, and the reported nnz is the stored-entry count that
//! anndata/scanpy report for the same file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::cart::car_feature_candidates;
use crate::error::Result;
use crate::io::names::is_mito;
use crate::io::values::{CountPolicy, ValueScan};
use crate::io::{Column, CountSource, Format, Frame, ReadOptions, XInfo};

/// Options of `cartscope info`.
#[derive(Debug, Clone)]
pub struct InfoOptions {
    /// What to read.
    pub read: ReadOptions,
    /// Accept negative/non-finite values with a warning instead of an error.
    pub allow_non_integer: bool,
    /// Cells per chunk while scanning.
    pub chunk_rows: usize,
}

impl Default for InfoOptions {
    fn default() -> Self {
        InfoOptions {
            read: ReadOptions::default(),
            allow_non_integer: false,
            chunk_rows: 8192,
        }
    }
}

/// A dataframe column's name and type.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// pandas-style dtype.
    pub dtype: String,
}

/// Everything `cartscope info` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The path given.
    pub path: String,
    /// `h5ad`, `10x-h5` or `10x-mtx`.
    pub format: Format,
    /// Cells.
    pub n_obs: usize,
    /// Genes (after 10x feature-type selection).
    pub n_vars: usize,
    /// Stored entries.
    pub nnz: u64,
    /// nnz / (n_obs * n_vars).
    pub density: f64,
    /// The stored matrix.
    pub x: XInfo,
    /// Whether all values are non-negative integers.
    pub raw_counts: bool,
    /// Value statistics.
    pub values: ValueScan,
    /// obs columns.
    pub obs_columns: Vec<ColumnInfo>,
    /// var columns.
    pub var_columns: Vec<ColumnInfo>,
    /// Where gene names come from.
    pub gene_name_column: String,
    /// Whether duplicate gene names were made unique (`-1`, `-2`, ...).
    pub gene_names_made_unique: bool,
    /// Genes named `MT-*` (case-insensitive).
    pub n_mito_genes: usize,
    /// CAR construct candidates among the features.
    pub car_features: Vec<String>,
    /// Feature counts per 10x feature type, when the file has types.
    pub feature_types: BTreeMap<String, usize>,
    /// Genomes (10x).
    pub genomes: Vec<String>,
    /// `.h5ad` layers.
    pub layers: Vec<String>,
    /// Whether the `.h5ad` has `raw/X`.
    pub has_raw: bool,
}

fn columns(f: &Frame) -> Vec<ColumnInfo> {
    f.columns
        .iter()
        .map(|(n, c)| ColumnInfo {
            name: n.clone(),
            dtype: c.type_name().to_string(),
        })
        .collect()
}

/// Inspects `path`.
pub fn inspect(path: &Path, opts: &InfoOptions) -> Result<Info> {
    let mut src = CountSource::open(path, &opts.read)?;
    let policy = CountPolicy::inspect(opts.allow_non_integer);
    let mut scan = ValueScan::default();
    let mut nnz = 0u64;
    let n = src.n_obs();
    let step = opts.chunk_rows.max(1);
    for a in (0..n).step_by(step) {
        let m = src.read_rows(a..(a + step).min(n))?;
        nnz += m.nnz();
        scan.update(&src, &m, a, policy)?;
    }
    scan.warn(&src, false);
    let mut feature_types = BTreeMap::new();
    if let Some(Column::Str(t)) = src.var.column("feature_types") {
        for x in t {
            *feature_types.entry(x.clone()).or_insert(0) += 1;
        }
    }
    let (n_obs, n_vars) = (src.n_obs(), src.n_vars());
    Ok(Info {
        path: path.display().to_string(),
        format: src.format,
        n_obs,
        n_vars,
        nnz,
        density: nnz as f64 / (n_obs as f64 * n_vars as f64),
        x: src.x.clone(),
        raw_counts: scan.raw_counts,
        values: scan,
        obs_columns: columns(&src.obs),
        var_columns: columns(&src.var),
        gene_name_column: src.gene_name_source.clone(),
        gene_names_made_unique: src.names_made_unique,
        n_mito_genes: src.var.index.iter().filter(|g| is_mito(g)).count(),
        car_features: car_feature_candidates(&src.var.index),
        feature_types,
        genomes: src.genomes.clone(),
        layers: src.layers.clone(),
        has_raw: src.has_raw,
    })
}

impl Info {
    /// A human-readable report.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let (lo, hi) = self.values.range();
        let _ = writeln!(s, "file        {}", self.path);
        let _ = writeln!(s, "format      {}", self.format.as_str());
        let _ = writeln!(
            s,
            "shape       {} cells x {} genes",
            self.n_obs, self.n_vars
        );
        let _ = writeln!(s, "nnz         {} (density {:.4})", self.nnz, self.density);
        let _ = writeln!(
            s,
            "matrix      {} stored as {:?}, dtype {}",
            self.x.element, self.x.storage, self.x.dtype
        );
        let _ = writeln!(
            s,
            "values      {} (range {lo} .. {hi}; {} empty cells)",
            if self.raw_counts {
                "raw integer counts"
            } else {
                "NOT raw counts"
            },
            self.values.n_empty_cells
        );
        let _ = writeln!(
            s,
            "gene names  from {}{}",
            self.gene_name_column,
            if self.gene_names_made_unique {
                " (duplicates made unique)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "mito genes  {} (MT-, case-insensitive)",
            self.n_mito_genes
        );
        let car = if self.car_features.is_empty() {
            "none found".to_string()
        } else {
            self.car_features.join(", ")
        };
        let _ = writeln!(s, "CAR feature {car}");
        if !self.feature_types.is_empty() {
            let t: Vec<String> = self
                .feature_types
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(s, "features    {}", t.join(", "));
        }
        if !self.genomes.is_empty() {
            let _ = writeln!(s, "genomes     {}", self.genomes.join(", "));
        }
        if !self.layers.is_empty() || self.has_raw {
            let _ = writeln!(
                s,
                "layers      {}{}",
                self.layers.join(", "),
                if self.has_raw { " (+ raw/X)" } else { "" }
            );
        }
        for (title, cols) in [("obs", &self.obs_columns), ("var", &self.var_columns)] {
            let c: Vec<String> = cols
                .iter()
                .map(|c| format!("{} ({})", c.name, c.dtype))
                .collect();
            let _ = writeln!(
                s,
                "{title:<11} {}",
                if c.is_empty() {
                    "no columns".into()
                } else {
                    c.join(", ")
                }
            );
        }
        s
    }
}
