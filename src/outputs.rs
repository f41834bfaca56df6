//! The files of a run: `result.h5ad`, `cells.parquet`, `config.toml`, `summary.json`,
//! `summary.csv`, `markers.csv` and `report.html`, each published whole (temporary name, then rename). A run
//! that fails leaves no partial output behind.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::io::{H5adWriter, WriteOptions, csv, write_atomic};
use crate::pipeline::{
    Analysis, Markers, RunOptions, RunSummary, Stage, default_sample, peak_rss_mib,
};

/// An output folder and the files a run has published in it so far.
pub(crate) struct OutputDir {
    dir: PathBuf,
    created: bool,
    published: Vec<PathBuf>,
}

impl OutputDir {
    /// Opens `dir`, creating it (and remembering that this run created it) when missing.
    pub(crate) fn create(dir: &Path) -> Result<Self> {
        let created = !dir.exists();
        if !created && !dir.is_dir() {
            return Err(Error::write(
                dir,
                "output folder",
                "the path exists and is a file, not a folder",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, "output folder", e))?;
        // Temporary files of an earlier run that was killed or crashed mid-write.
        let stale = crate::io::atomic::remove_stale_partials(dir);
        if stale > 0 {
            tracing::info!(
                "removed {stale} temporary files of an interrupted run in {}",
                dir.display()
            );
        }
        Ok(OutputDir {
            dir: dir.to_path_buf(),
            created,
            published: Vec::new(),
        })
    }

    /// The path of output `name`.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `bytes` as output `name`.
    fn publish(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name);
        write_atomic(&path, bytes)?;
        self.published.push(path);
        Ok(())
    }

    /// Undoes a failed run: a folder this run created is removed again; in a folder that
    /// already existed the files this run had published are removed (files of earlier runs
    /// that this one never replaced stay).
    pub(crate) fn discard(self) {
        if self.created {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            for path in &self.published {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// What the files record besides the analysis.
pub(crate) struct Context<'a> {
    /// The run's options (`config.toml`, the report).
    pub opts: &'a RunOptions,
    /// The input (the default sample label of its cells).
    pub input: &'a Path,
    /// Per-sample obs columns carried into `cells.parquet` (joint runs).
    pub metadata: &'a [String],
    /// Why the backend is not the one asked for, if so.
    pub fallback_reason: Option<String>,
}

/// Writes every output of `analysis` into `out`; the summary gains the write stage.
pub(crate) fn write(
    out: &mut OutputDir,
    analysis: Analysis,
    cx: Context<'_>,
) -> Result<RunSummary> {
    let Analysis {
        adata,
        x_writer,
        mut summary,
        markers,
    } = analysis;
    let started = Instant::now();
    let result = out.path("result.h5ad");
    let mut w = match x_writer {
        Some(w) => w,
        None => H5adWriter::create(
            &result,
            adata.var.len(),
            WriteOptions { gzip: cx.opts.gzip },
        )?,
    };
    if let Some(x) = &adata.x {
        w.append_x(x)?;
    }
    w.finish(&adata)?;
    out.published.push(result);
    let secs = started.elapsed().as_secs_f64();
    summary.stage_seconds.push((Stage::Write, secs));
    summary.total_seconds += secs;
    summary.peak_rss_mib = peak_rss_mib();
    if summary.fallback_reason.is_none() {
        summary.fallback_reason = cx.fallback_reason;
    }
    // Before summary.csv: a folder with summary.csv counts as complete (`cartscope aggregate`).
    let mut cells =
        crate::report::table::cells_frame(&adata, &default_sample(cx.input), cx.metadata)?;
    let parquet = out.path("cells.parquet");
    crate::report::table::write_parquet_atomic(&parquet, &mut cells)?;
    out.published.push(parquet);
    if let Some(m) = &markers {
        out.publish("markers.csv", markers_csv(m, &adata.var.index).as_bytes())?;
    }
    let config = toml::to_string(cx.opts).map_err(|e| Error::write(&out.dir, "config.toml", e))?;
    out.publish("config.toml", config.as_bytes())?;
    let json = serde_json::to_vec_pretty(&summary)
        .map_err(|e| Error::write(&out.dir, "summary.json", e))?;
    out.publish("summary.json", &json)?;
    out.publish(
        "summary.csv",
        crate::cart::summary::to_csv(&summary.cart).as_bytes(),
    )?;
    if cx.opts.cart.report {
        let html = crate::report::render(&adata, &summary, markers.as_ref(), cx.opts);
        out.publish("report.html", html.as_bytes())?;
    }
    Ok(summary)
}

/// `markers.csv`: one row per group and ranked gene of every grouping (columns: groupby,
/// group, rank (1 = best), gene, score, logfoldchange, pval, pval_adj, pct_in_group,
/// pct_rest).
pub(crate) fn markers_csv(m: &Markers, genes: &[String]) -> String {
    let mut out = String::from(
        "groupby,group,rank,gene,score,logfoldchange,pval,pval_adj,pct_in_group,pct_rest\n",
    );
    for t in &m.tables {
        for g in &t.groups {
            for k in 0..g.genes.len() {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{:e},{:e},{},{}",
                    csv::field(&t.groupby),
                    csv::field(&g.group),
                    k + 1,
                    csv::field(&genes[g.genes[k] as usize]),
                    g.scores[k],
                    g.logfoldchanges[k],
                    g.pvals[k],
                    g.pvals_adj[k],
                    g.pts[k],
                    g.pts_rest[k],
                );
            }
        }
    }
    out
}
