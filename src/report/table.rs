//! `cells.parquet`: one row per cell after QC, for analysis outside cartscope (pandas, polars,
//! R arrow, DuckDB) without an h5ad reader.
//!
//! Columns, in order, each only when the obs/obsm it comes from exists: `barcode`, `sample`
//! (obs `sample`, else the input's name, as in `summary.csv`), the QC metrics, every
//! `<set>_score` (`S_score` and `G2M_score` among them), `t_cell`, `t_lineage`, `cd4_cd8`,
//! `cd4_cd8_cell`, `phenotype`,
//! `phase`, `car_counts`, `car_positive`, `leiden`, with VDJ contigs the receptor columns
//! (`clone_id`, `clone_id_size`, `clonal_expansion`, `receptor_type`, `receptor_subtype`,
//! `chain_pairing`, `IR_<slot>_<field>`: [`crate::vdj::obs_columns`]),
//! `PC1`..`PCn` (every component in `X_pca`)
//! and `UMAP1`, `UMAP2`. Numbers and booleans keep the type they have in result.h5ad (so
//! scores are the same float64 values); categoricals are written as strings, missing entries
//! as nulls.

use std::path::Path;

use polars::prelude::{DataFrame, NamedFrom, ParquetWriter, Series};

use crate::error::{Error, Result};
use crate::io::{AnnData, Column, Dense};

/// The obs columns written after `barcode` and `sample`, when present (scores are found by
/// their `_score` suffix and go between the QC metrics and `t_cell`).
const QC: [&str; 4] = [
    "n_genes_by_counts",
    "total_counts",
    "total_counts_mt",
    "pct_counts_mt",
];
const CALLS: [&str; 9] = [
    "t_cell",
    "t_lineage",
    "cd4_cd8",
    "cd4_cd8_cell",
    "phenotype",
    "phase",
    "car_counts",
    "car_positive",
    "leiden",
];

/// The per-cell table of `adata` (cells after QC), `default_sample` labelling cells when obs
/// has no `sample` column.
pub(crate) fn cells_frame(
    adata: &AnnData,
    default_sample: &str,
    metadata: &[String],
) -> Result<DataFrame> {
    let obs = &adata.obs;
    let n = obs.len();
    let mut cols: Vec<polars::prelude::Column> = Vec::new();
    cols.push(Series::new("barcode".into(), obs.index.as_slice()).into());
    let samples = crate::cart::summary::sample_labels(obs, default_sample);
    cols.push(Series::new("sample".into(), samples).into());
    for name in metadata {
        if let Some(c) = obs.column(name) {
            cols.push(series(name, c).into());
        }
    }
    let scores = obs
        .columns
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.ends_with("_score"));
    let receptors = crate::vdj::obs_columns();
    let names: Vec<&str> = QC
        .iter()
        .copied()
        .chain(scores)
        .chain(CALLS)
        .chain(receptors.iter().map(String::as_str))
        .collect();
    for name in names {
        if let Some(c) = obs.column(name) {
            cols.push(series(name, c).into());
        }
    }
    for (key, prefix) in [("X_pca", "PC"), ("X_umap", "UMAP")] {
        let Some((_, dense)) = adata.obsm.iter().find(|(k, _)| k == key) else {
            continue;
        };
        match dense {
            Dense::F32(a) => {
                for (j, col) in a.columns().into_iter().enumerate() {
                    let v: Vec<f32> = col.to_vec();
                    cols.push(Series::new(format!("{prefix}{}", j + 1).into(), v).into());
                }
            }
            Dense::F64(a) => {
                for (j, col) in a.columns().into_iter().enumerate() {
                    let v: Vec<f64> = col.to_vec();
                    cols.push(Series::new(format!("{prefix}{}", j + 1).into(), v).into());
                }
            }
        }
    }
    DataFrame::new(n, cols)
        .map_err(|e| Error::Internal(format!("building the cells.parquet table: {e}")))
}

/// One obs column as a polars series of the same type (categoricals and nullable strings as
/// strings with nulls).
fn series(name: &str, c: &Column) -> Series {
    let name = name.into();
    match c {
        Column::Str(v) => Series::new(name, v.as_slice()),
        Column::Categorical {
            codes, categories, ..
        } => {
            let v: Vec<Option<&str>> = codes
                .iter()
                .map(|&k| usize::try_from(k).ok().map(|k| categories[k].as_str()))
                .collect();
            Series::new(name, v)
        }
        Column::F64(v) => Series::new(name, v.as_slice()),
        Column::F32(v) => Series::new(name, v.as_slice()),
        Column::I64(v) => Series::new(name, v.as_slice()),
        Column::I32(v) => Series::new(name, v.as_slice()),
        Column::Bool(v) => Series::new(name, v.as_slice()),
        Column::NullableInt { values, mask } => Series::new(name, masked(values, mask)),
        Column::NullableBool { values, mask } => Series::new(name, masked(values, mask)),
        Column::NullableStr { values, mask } => {
            let v: Vec<Option<&str>> = values
                .iter()
                .zip(mask)
                .map(|(s, &m)| (!m).then_some(s.as_str()))
                .collect();
            Series::new(name, v)
        }
    }
}

fn masked<T: Copy>(values: &[T], mask: &[bool]) -> Vec<Option<T>> {
    values
        .iter()
        .zip(mask)
        .map(|(&v, &m)| (!m).then_some(v))
        .collect()
}

/// Writes `df` as Parquet under a temporary name next to `path`, then renames, so a reader
/// never sees a half-written file.
pub(crate) fn write_parquet_atomic(path: &Path, df: &mut DataFrame) -> Result<()> {
    let tmp = crate::io::h5ad_write::temporary_path(path)?;
    let written = std::fs::File::create(&tmp)
        .map_err(|e| Error::write(path, "file", e))
        .and_then(|f| {
            ParquetWriter::new(f)
                .finish(df)
                .map_err(|e| Error::write(path, "parquet", e))
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::write(path, "rename", e))
}
