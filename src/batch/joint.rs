//! `cartscope run MANIFEST --joint`: every sample of a manifest analysed together, so that time
//! points share one embedding.
//!
//! The samples are stacked as anndata's `concat(join="inner", label="sample", keys=sample_ids,
//! index_unique="-")` would stack them ([`crate::io::concat`]): cells `BARCODE-sample_id`, the
//! genes every sample has (an empty intersection is an error), obs `sample` categorical in
//! manifest order. The manifest's metadata then replace any obs columns of the same name:
//! `patient`, `timepoint` and the extra columns as categoricals (categories in manifest order,
//! an empty field is missing), `day` as float64 (NaN when empty).
//!
//! QC runs on the concatenation, as a scanpy user would after `sc.concat`: filter_cells and the
//! mito filter are per cell anyway, and filter_genes(min_cells) counts cells across all
//! samples. Highly variable genes use `batch_key="sample"` (docs/algorithms.md section 3, every
//! flavor); scaling, PCA, the kNN graph, Leiden and UMAP are computed once on all cells; the
//! CAR-T summary has one row per sample, from that sample's cells.
//!
//! With VDJ (manifest column `vdj`), the samples' contig tables are read before anything is
//! written (a missing or malformed one is an input error) and stacked as the cells are (contig
//! barcodes `BARCODE-sample_id`); the run then defines clonotypes over the stacked cells after
//! QC, as `cartscope run --vdj` does, within `receptor_type` and patient (the manifest's
//! `patient` as a further `within_group`): one clone has one id at every time point of its
//! patient. obs, cells.parquet and the per-sample summary gain the receptor columns of
//! `run --vdj` (docs/vdj.md); cells of samples without a table are `no IR`.

use std::path::Path;

use crate::Result;
use crate::io::{Column, CountSource, ReadOptions};
use crate::pipeline::{RunOptions, RunSummary, SampleColumns};
use crate::run::Run;
use crate::vdj::{Contigs, read_contigs};

use super::Manifest;

/// The obs column that names each cell's sample (the HVG batch key).
pub(crate) const SAMPLE_KEY: &str = "sample";

/// Categorical of `values` with categories in order of first appearance; empty is missing.
fn categorical(values: &[String]) -> Column {
    Column::categorical_from_options(values.iter().map(|v| (!v.is_empty()).then_some(v.as_str())))
}

/// The contig tables of the manifest's samples stacked as their cells are (barcodes
/// `BARCODE-sample_id`); None when no sample has one.
pub(crate) fn stacked_contigs(m: &Manifest) -> Result<Option<Contigs>> {
    let mut parts = Vec::new();
    for s in &m.samples {
        if let Some(p) = &s.vdj {
            let mut c = read_contigs(p)?;
            for b in &mut c.barcodes {
                *b = format!("{b}-{}", s.id);
            }
            parts.push(c);
        }
    }
    Ok((!parts.is_empty()).then(|| Contigs::merge(parts)))
}

/// Opens every sample of `m` and stacks them into one source with the manifest's metadata in
/// obs. Every input is opened (and the genes joined) before anything is written.
pub fn open(m: &Manifest, read: &ReadOptions) -> Result<CountSource> {
    let parts = m
        .samples
        .iter()
        .map(|s| Ok((s.id.clone(), CountSource::open(&s.path, read)?)))
        .collect::<Result<Vec<_>>>()?;
    let sizes: Vec<usize> = parts.iter().map(|(_, s)| s.n_obs()).collect();
    let mut src = crate::io::concat::concat(&m.file, SAMPLE_KEY, parts)?;
    // Per-sample values repeated over that sample's cells.
    let per_cell = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .zip(&sizes)
            .flat_map(|(x, &k)| std::iter::repeat_n(x, k))
            .collect()
    };
    if m.has_patient {
        let v = per_cell(m.samples.iter().map(|s| s.patient.clone()).collect());
        src.obs.set("patient", categorical(&v));
    }
    if m.has_timepoint {
        let v = per_cell(m.samples.iter().map(|s| s.timepoint.clone()).collect());
        src.obs.set("timepoint", categorical(&v));
    }
    if m.has_day {
        let day: Vec<f64> = m
            .samples
            .iter()
            .zip(&sizes)
            .flat_map(|(s, &k)| std::iter::repeat_n(s.day.unwrap_or(f64::NAN), k))
            .collect();
        src.obs.set("day", Column::F64(day));
    }
    for (c, name) in m.extra_columns.iter().enumerate() {
        if name == SAMPLE_KEY {
            continue;
        }
        let v = per_cell(m.samples.iter().map(|s| s.extra[c].clone()).collect());
        src.obs.set(name.clone(), categorical(&v));
    }
    Ok(src)
}

/// The obs columns [`open`] fills from the manifest, in manifest order.
pub(crate) fn metadata_columns(m: &Manifest) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for (has, name) in [
        (m.has_patient, "patient"),
        (m.has_timepoint, "timepoint"),
        (m.has_day, "day"),
    ] {
        if has {
            v.push(name.to_string());
        }
    }
    v.extend(
        m.extra_columns
            .iter()
            .filter(|c| c.as_str() != SAMPLE_KEY)
            .cloned(),
    );
    v
}

/// Reads the manifest, opens and stacks its samples, and runs the pipeline on all cells into
/// `outdir` (the outputs of `cartscope run`). Nothing is written when the manifest, an input
/// or the options are bad.
pub fn run_joint(
    manifest: &Path,
    outdir: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
    progress: bool,
) -> Result<RunSummary> {
    opts.validate()?;
    let m = Manifest::read(manifest)?;
    let src = open(&m, read)?;
    let contigs = stacked_contigs(&m)?;
    let samples = SampleColumns {
        key: SAMPLE_KEY.to_string(),
        metadata: metadata_columns(&m),
        clone_group: m.has_patient.then(|| "patient".to_string()),
    };
    let mut run = Run::on_source(src, outdir)
        .options(opts.clone())
        .samples(samples)
        .progress(progress);
    if let Some(c) = contigs {
        run = run.vdj_contigs(c);
    }
    run.execute()
}
