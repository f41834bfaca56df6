//! The one entry point for a run: [`Run`] gathers the input, the options, the backend, the
//! progress bar and the sample columns, runs the pipeline and writes its outputs.
//!
//! ```no_run
//! use cartscope::{Run, RunOptions};
//! use cartscope::backend::BackendChoice;
//!
//! let opts = RunOptions { backend: BackendChoice::Cpu, n_top_genes: 1500, ..RunOptions::default() };
//! let summary = Run::new("sample.h5ad", "out/").options(opts).execute()?;
//! println!("{} cells after QC, {} HVGs", summary.n_cells_after_qc, summary.n_hvg);
//! # Ok::<(), cartscope::Error>(())
//! ```

use std::path::PathBuf;

use crate::backend::{Backend, select_backend};
use crate::error::Result;
use crate::io::{CountSource, ReadOptions};
use crate::outputs::{Context, OutputDir};
use crate::pipeline::{Job, RunOptions, RunSummary, SampleColumns, analyse};

/// Where a run's cells come from.
enum Input {
    /// A file, opened when the run starts.
    Path(PathBuf, ReadOptions),
    /// An already opened source (e.g. the concatenated samples of a joint run).
    Source(Box<CountSource>),
}

/// A run of the pipeline on one input into one output folder.
///
/// Built with [`Run::new`] (or [`Run::on_source`]) and the setters below; every setter has a
/// default: [`RunOptions::default`] (the reference pipeline), the backend that
/// `RunOptions::backend` selects, no progress bar, no sample columns.
/// [`Run::execute`] writes `result.h5ad`, `cells.parquet`, `config.toml`, `summary.json`,
/// `summary.csv` and `report.html` (unless switched off), and leaves no partial output when
/// it fails.
pub struct Run<'a> {
    input: Input,
    outdir: PathBuf,
    opts: RunOptions,
    backend: Option<(&'a dyn Backend, Option<String>)>,
    progress: bool,
    samples: Option<SampleColumns>,
    vdj: Option<Vdj>,
}

/// Where a run's VDJ contigs come from.
enum Vdj {
    /// A contig table, read when the run starts.
    Path(PathBuf),
    /// Contigs already read (a batch reads them first, so that a bad table fails only the
    /// sample's clonal part).
    Contigs(Box<crate::vdj::Contigs>),
}

impl<'a> Run<'a> {
    /// A run on the file `input` (`.h5ad`, 10x `.h5` or 10x MTX, sniffed from the content)
    /// into the folder `outdir`.
    pub fn new(input: impl Into<PathBuf>, outdir: impl Into<PathBuf>) -> Self {
        Self::with_input(Input::Path(input.into(), ReadOptions::default()), outdir)
    }

    /// A run on an opened source.
    pub fn on_source(src: CountSource, outdir: impl Into<PathBuf>) -> Self {
        Self::with_input(Input::Source(Box::new(src)), outdir)
    }

    fn with_input(input: Input, outdir: impl Into<PathBuf>) -> Self {
        Run {
            input,
            outdir: outdir.into(),
            opts: RunOptions::default(),
            backend: None,
            progress: false,
            samples: None,
            vdj: None,
        }
    }

    /// The pipeline's parameters.
    pub fn options(mut self, opts: RunOptions) -> Self {
        self.opts = opts;
        self
    }

    /// How the input file is read (which matrix, genome, gene-name column); ignored for a
    /// run on an opened source.
    pub fn read_options(mut self, read: ReadOptions) -> Self {
        if let Input::Path(_, r) = &mut self.input {
            *r = read;
        }
        self
    }

    /// Runs the kernels on `backend` (shared by several runs, e.g. a batch) instead of
    /// selecting one from the options; `fallback_reason` says why it is not the backend the
    /// options ask for, if so.
    pub fn backend(mut self, backend: &'a dyn Backend, fallback_reason: Option<String>) -> Self {
        self.backend = Some((backend, fallback_reason));
        self
    }

    /// Draws a progress bar per stage on a terminal.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// The obs columns of a joint run's samples: highly variable genes use the key as batch
    /// key, and the metadata columns go into `cells.parquet`.
    pub fn samples(mut self, samples: SampleColumns) -> Self {
        self.samples = Some(samples);
        self
    }

    /// The cells' VDJ contigs (10x `filtered_contig_annotations.csv` or
    /// `all_contig_annotations.csv`, plain or gzip, or an AIRR rearrangement TSV): the
    /// outputs gain each cell's receptor chains, chain pairing and clonotype (docs/vdj.md).
    pub fn vdj(mut self, contigs: impl Into<PathBuf>) -> Self {
        self.vdj = Some(Vdj::Path(contigs.into()));
        self
    }

    /// [`Run::vdj`] with contigs already read.
    pub fn vdj_contigs(mut self, contigs: crate::vdj::Contigs) -> Self {
        self.vdj = Some(Vdj::Contigs(Box::new(contigs)));
        self
    }

    /// Runs the pipeline and writes the outputs.
    pub fn execute(self) -> Result<RunSummary> {
        let selected;
        let (backend, fallback_reason) = match self.backend {
            Some((b, reason)) => (b, reason),
            None => {
                selected = select_backend(self.opts.backend)?;
                (selected.backend.as_ref(), selected.fallback_reason.clone())
            }
        };
        self.opts.validate()?;
        // The contigs are read first, so a bad file fails before the analysis starts.
        let contigs = match self.vdj {
            Some(Vdj::Path(p)) => Some(crate::vdj::read_contigs(&p)?),
            Some(Vdj::Contigs(c)) => Some(*c),
            None => None,
        };
        let src = match self.input {
            Input::Path(path, read) => CountSource::open(&path, &read)?,
            Input::Source(src) => *src,
        };
        let mut out = OutputDir::create(&self.outdir)?;
        let input = src.path.clone();
        let result = out.path("result.h5ad");
        let job = Job {
            opts: &self.opts,
            backend,
            progress: self.progress,
            batch_key: self.samples.as_ref().map(|s| s.key.as_str()),
            x_out: Some(&result),
            vdj: contigs.as_ref(),
            clone_group: self.samples.as_ref().and_then(|s| s.clone_group.as_deref()),
        };
        let written = analyse(src, &job).and_then(|analysis| {
            let cx = Context {
                opts: &self.opts,
                input: &input,
                metadata: self.samples.as_ref().map_or(&[][..], |s| &s.metadata),
                fallback_reason,
            };
            crate::outputs::write(&mut out, analysis, cx)
        });
        if written.is_err() {
            out.discard();
        }
        written
    }
}
