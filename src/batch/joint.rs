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
//! With VDJ (manifest column `vdj`), every sample's contig table is analysed over its cells
//! and clonotypes are defined once over the stacked cells, within `receptor_type` and patient
//! ([`crate::vdj::define_clonotypes`] with the patient as group), before QC: obs gains
//! `clone_id` (categorical, missing without a clone), `clone_id_size` (float64, NaN without a
//! clone; it counts the stacked input cells, QC-failing ones included), `receptor_type` and
//! `chain_pairing` (categoricals, missing for the cells of samples without a `vdj` file), all
//! carried into cells.parquet. A missing or malformed contig table is an input error: nothing
//! is written.

use std::path::Path;

use crate::Result;
use crate::io::{Column, CountSource, ReadOptions};
use crate::pipeline::{RunOptions, RunSummary, SampleColumns};
use crate::run::Run;
use crate::vdj::{Receptor, VdjOptions, analyse, define_clonotypes, read_contigs};

use super::Manifest;

/// The obs column that names each cell's sample (the HVG batch key).
pub(crate) const SAMPLE_KEY: &str = "sample";

/// Categorical of `values` with categories in order of first appearance; empty is missing.
fn categorical(values: &[String]) -> Column {
    Column::categorical_from_options(values.iter().map(|v| (!v.is_empty()).then_some(v.as_str())))
}

/// The obs columns of the patient-level clonotypes, set when the manifest has VDJ.
pub(crate) const CLONAL_OBS: [&str; 4] = [
    "clone_id",
    "clone_id_size",
    "receptor_type",
    "chain_pairing",
];

/// The clonal obs columns ([`CLONAL_OBS`]) of the stacked cells, `barcodes` each sample's
/// cells; None when no sample has a `vdj` file.
fn clonal_obs(
    m: &Manifest,
    barcodes: &[Vec<String>],
    opts: &VdjOptions,
) -> Result<Option<Vec<Column>>> {
    if m.samples.iter().all(|s| s.vdj.is_none()) {
        return Ok(None);
    }
    let (mut receptors, mut groups, mut with_vdj) = (Vec::new(), Vec::new(), Vec::new());
    for (s, bcs) in m.samples.iter().zip(barcodes) {
        match &s.vdj {
            Some(p) => receptors.extend(analyse(&read_contigs(p)?, Some(bcs), opts)?.receptors),
            None => receptors.extend(std::iter::repeat_with(Receptor::no_ir).take(bcs.len())),
        }
        groups.extend(std::iter::repeat_n(s.patient.clone(), bcs.len()));
        with_vdj.extend(std::iter::repeat_n(s.vdj.is_some(), bcs.len()));
    }
    let clones = define_clonotypes(&receptors, &opts.clonotypes, Some(&groups))?;
    let ids: Vec<Option<String>> = clones
        .clone_id
        .iter()
        .map(|c| c.map(|c| c.to_string()))
        .collect();
    let sizes = (0..receptors.len())
        .map(|i| clones.clone_size(i).map_or(f64::NAN, f64::from))
        .collect();
    let label = |f: fn(&Receptor) -> &'static str| {
        Column::categorical_from_options(
            receptors
                .iter()
                .zip(&with_vdj)
                .map(|(r, &v)| v.then(|| f(r))),
        )
    };
    Ok(Some(vec![
        Column::categorical_from_options(ids.iter().map(Option::as_deref)),
        Column::F64(sizes),
        label(|r| r.qc.receptor_type.as_str()),
        label(|r| r.qc.chain_pairing.as_str()),
    ]))
}

/// Opens every sample of `m` and stacks them into one source with the manifest's metadata in
/// obs (and with VDJ the clonal columns, default clonotype options). Every input is opened (and
/// the genes joined) before anything is written.
pub fn open(m: &Manifest, read: &ReadOptions) -> Result<CountSource> {
    open_with(m, read, &VdjOptions::default())
}

/// [`open`] with the clonotype definition of the clonal columns.
pub fn open_with(m: &Manifest, read: &ReadOptions, vdj: &VdjOptions) -> Result<CountSource> {
    let parts = m
        .samples
        .iter()
        .map(|s| Ok((s.id.clone(), CountSource::open(&s.path, read)?)))
        .collect::<Result<Vec<_>>>()?;
    let sizes: Vec<usize> = parts.iter().map(|(_, s)| s.n_obs()).collect();
    let barcodes: Vec<Vec<String>> = parts.iter().map(|(_, s)| s.obs.index.clone()).collect();
    let clonal = clonal_obs(m, &barcodes, vdj)?;
    let mut src = crate::io::concat::concat(&m.file, SAMPLE_KEY, parts)?;
    if let Some(cols) = clonal {
        for (name, col) in CLONAL_OBS.iter().zip(cols) {
            src.obs.set(*name, col);
        }
    }
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
    run_joint_with(
        manifest,
        outdir,
        read,
        opts,
        &VdjOptions::default(),
        progress,
    )
}

/// [`run_joint`] with the clonotype definition of the clonal columns.
pub fn run_joint_with(
    manifest: &Path,
    outdir: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
    vdj: &VdjOptions,
    progress: bool,
) -> Result<RunSummary> {
    opts.validate()?;
    let m = Manifest::read(manifest)?;
    let src = open_with(&m, read, vdj)?;
    // cells.parquet carries the clonal columns with the other receptor columns.
    let samples = SampleColumns {
        key: SAMPLE_KEY.to_string(),
        metadata: metadata_columns(&m),
    };
    Run::on_source(src, outdir)
        .options(opts.clone())
        .samples(samples)
        .progress(progress)
        .execute()
}
