//! Batch processing of a trial's samples: one `run` per manifest row, cross-sample tables.
//!
//! [`run_batch`] validates the manifest and the options, builds one backend for all samples,
//! then runs the full pipeline for every sample into `OUTDIR/samples/<sample_id>/`, up to
//! `jobs` samples at a time. A sample that fails (missing or corrupt file, too few cells, even
//! a panic) is recorded and the others go on. At the end `aggregate::write_outputs` builds
//! `batch_summary.csv` (and `.parquet`), `persistence.csv` and `batch_report.html` from the finished folders
//! (the same code `cartscope aggregate` runs), and with VDJ (manifest column `vdj`) the
//! patient-level clonotypes of [`clonal`].
//!
//! # Completion and resume
//! A sample is written into `samples/.<id>.partial/`; when its outputs are all written a
//! completion marker (`MARKER`) goes into that folder and the folder is renamed to
//! `samples/<id>/`. An interrupted run therefore leaves at most a `.partial` folder (removed
//! when the sample is redone), never a folder that looks complete. The marker records the
//! input's canonical path, size and modification time (not a content hash: reading every input
//! twice would cost as much I/O as the run's own read) and the run parameters verbatim (the
//! options as in `config.toml` plus the read options). `--resume` skips a sample whose marker
//! matches the current input and parameters exactly and redoes every other one.

pub mod aggregate;
pub mod clonal;
pub mod joint;
mod lock;
pub mod manifest;
pub(crate) mod report;
pub(crate) mod rows;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::backend::select_backend;
use crate::io::ReadOptions;
use crate::io::write_atomic;
use crate::pipeline::RunOptions;
use crate::run::Run;
use crate::{Error, Result};
pub use aggregate::AggregateOptions;
pub use manifest::{Manifest, Sample};

/// The completion marker inside a finished sample folder.
pub(crate) const MARKER: &str = ".cartscope-complete.json";

/// Batch-level options.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Samples run at the same time (at least 1).
    pub jobs: usize,
    /// Skip samples whose completion marker matches.
    pub resume: bool,
    /// Options of the cross-sample outputs (clonotypes, product time point).
    pub aggregate: AggregateOptions,
    /// The cartscope binary that runs each sample in its own process (`batch-sample`), so no
    /// crash, abort, hang or out-of-memory kill of one sample can end the batch; `None` runs
    /// the samples in threads of this process (a library caller without the binary).
    pub worker: Option<PathBuf>,
    /// With a worker: a sample still running after this long is killed and fails.
    pub sample_timeout: Option<Duration>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            jobs: 1,
            resume: false,
            aggregate: AggregateOptions::default(),
            worker: None,
            sample_timeout: None,
        }
    }
}

/// What happened to one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Ran and completed.
    Done,
    /// Its marker matched (`--resume`); left as it was.
    UpToDate,
    /// Failed with this one-line error.
    Failed(String),
}

/// One sample's outcome.
#[derive(Debug, Clone)]
pub struct SampleOutcome {
    /// Manifest sample id.
    pub id: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Wall seconds spent on it.
    pub seconds: f64,
}

/// What a batch did.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// Per sample, in manifest order.
    pub samples: Vec<SampleOutcome>,
    /// Backend name.
    pub backend: String,
}

impl BatchResult {
    /// Samples that failed.
    pub fn n_failed(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Failed(_)))
            .count()
    }
}

/// The identity of a finished sample: input stamp and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// Manifest sample id.
    pub sample_id: String,
    /// Canonical input path.
    pub input: String,
    /// Input size in bytes (for a folder input such as 10x MTX: the sum over its files).
    pub input_size: u64,
    /// Input modification time, nanoseconds since the Unix epoch (folder: the latest file).
    pub input_mtime_ns: u128,
    /// Run options (TOML, as config.toml) and read options.
    pub parameters: String,
    /// The VDJ contig table's canonical path, size and modification time (ns), if any (and
    /// readable); markers of earlier versions have none.
    #[serde(default)]
    pub vdj: Option<(String, u64, u128)>,
    /// cartscope version that wrote it.
    pub cartscope_version: String,
}

fn stamp_file(path: &Path) -> std::io::Result<(u64, u128)> {
    let md = std::fs::metadata(path)?;
    let mtime = md
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    if !md.is_dir() {
        return Ok((md.len(), mtime));
    }
    let (mut size, mut latest) = (0, mtime);
    for entry in std::fs::read_dir(path)? {
        let (s, m) = stamp_file(&entry?.path())?;
        size += s;
        latest = latest.max(m);
    }
    Ok((size, latest))
}

/// A file's (or folder's) canonical path, size and modification time.
fn stamp(path: &Path) -> std::io::Result<(String, u64, u128)> {
    let canonical = std::fs::canonicalize(path)?;
    let (size, mtime) = stamp_file(&canonical)?;
    Ok((canonical.to_string_lossy().into_owned(), size, mtime))
}

/// The marker a sample would get now (reads only file metadata).
pub(crate) fn current_marker(
    sample: &Sample,
    read: &ReadOptions,
    opts: &RunOptions,
) -> Result<Marker> {
    let (input, size, mtime) = stamp(&sample.path).map_err(|e| Error::read(&sample.path, e))?;
    Ok(Marker {
        sample_id: sample.id.clone(),
        input,
        input_size: size,
        input_mtime_ns: mtime,
        parameters: parameters(read, opts)?,
        vdj: sample.vdj.as_deref().and_then(|p| stamp(p).ok()),
        cartscope_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

fn parameters(read: &ReadOptions, opts: &RunOptions) -> Result<String> {
    let toml = toml::to_string(opts).map_err(|e| Error::Usage(format!("run options: {e}")))?;
    Ok(format!("{toml}\n# read options: {read:?}\n"))
}

/// The marker stored in a finished folder, if any and readable.
pub(crate) fn stored_marker(folder: &Path) -> Option<Marker> {
    let text = std::fs::read_to_string(folder.join(MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Where a sample's outputs go.
pub(crate) fn sample_dir(outdir: &Path, id: &str) -> PathBuf {
    outdir.join("samples").join(id)
}

fn partial_dir(outdir: &Path, id: &str) -> PathBuf {
    outdir.join("samples").join(format!(".{id}.partial"))
}

/// The file holding a failed sample's error (read back by [`aggregate`]).
pub(crate) fn error_file(outdir: &Path, id: &str) -> PathBuf {
    outdir.join("samples").join(format!("{id}.error.txt"))
}

fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::write(path, "folder", e)),
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::write(path, "file", e)),
    }
}

/// Runs one sample into its partial folder, then publishes it with `marker`. Errors are the
/// sample's own. The backend: `Some` shares the batch's, `None` selects one from `opts`.
fn run_sample(
    job: &WorkerJob,
    opts: &RunOptions,
    backend: Option<(&dyn Backend, &Option<String>)>,
) -> Result<()> {
    let partial = partial_dir(&job.outdir, &job.sample_id);
    remove_dir(&partial)?;
    let mut run = Run::new(&job.input, &partial)
        .read_options(job.read.clone())
        .options(opts.clone());
    if let Some((backend, fallback)) = backend {
        run = run.backend(backend, fallback.clone());
    }
    // A contig table that does not read fails the sample's clonal part only (aggregation
    // reports it); the expression analysis goes on without it.
    if let Some(contigs) = job
        .vdj
        .as_deref()
        .and_then(|p| crate::vdj::read_contigs(p).ok())
    {
        run = run.vdj_contigs(contigs);
    }
    let ran = run.execute();
    if let Err(e) = ran {
        remove_dir(&partial)?;
        return Err(e);
    }
    let json =
        serde_json::to_vec_pretty(&job.marker).map_err(|e| Error::write(&partial, MARKER, e))?;
    write_atomic(&partial.join(MARKER), &json)?;
    // A kill between these two steps leaves no final folder: the sample is redone on resume.
    let final_dir = sample_dir(&job.outdir, &job.sample_id);
    remove_dir(&final_dir)?;
    std::fs::rename(&partial, &final_dir).map_err(|e| Error::write(&final_dir, "rename", e))?;
    Ok(())
}

/// One sample's work as handed to a worker process (`cartscope batch-sample`, JSON on its
/// standard input). The marker is computed by the batch, so a resumed batch compares exactly
/// what it wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerJob {
    /// Manifest sample id.
    pub sample_id: String,
    /// The input matrix.
    pub input: PathBuf,
    /// The sample's contig table, if any.
    pub vdj: Option<PathBuf>,
    /// The batch output folder.
    pub outdir: PathBuf,
    /// Read options.
    pub read: ReadOptions,
    /// Run options, as config.toml.
    pub options: String,
    /// The completion marker the sample gets when it finishes.
    marker: Marker,
}

/// Runs a worker's job: the sample into its partial folder, then published. Used by the hidden
/// `cartscope batch-sample` command that [`run_batch`] starts for each sample.
pub fn run_worker(job: &WorkerJob) -> Result<()> {
    let opts: RunOptions = toml::from_str(&job.options)
        .map_err(|e| Error::Usage(format!("worker job: run options: {e}")))?;
    run_sample(job, &opts, None)
}

/// How samples run: in threads of this process sharing one backend, or each in its own
/// process (the batch survives any crash, abort, hang or out-of-memory kill of a sample).
enum Runner {
    InProcess {
        backend: Box<dyn Backend>,
        fallback: Option<String>,
    },
    Worker {
        exe: PathBuf,
        timeout: Option<Duration>,
    },
}

/// In this process, with failures (errors and panics) turned into a message.
fn run_in_process(
    job: &WorkerJob,
    opts: &RunOptions,
    backend: &dyn Backend,
    fallback: &Option<String>,
) -> std::result::Result<(), String> {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_sample(job, opts, Some((backend, fallback)))
    }));
    match attempt {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("internal error: {what}"))
        }
    }
}

/// One sample, with every failure turned into its outcome and recorded.
fn run_isolated(
    sample: &Sample,
    outdir: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
    runner: &Runner,
    resume: bool,
) -> Outcome {
    let attempt = prepare_job(sample, outdir, read, opts, resume).and_then(|job| {
        let Some(job) = job else {
            return Ok(Outcome::UpToDate);
        };
        let ran = match runner {
            Runner::InProcess { backend, fallback } => {
                run_in_process(&job, opts, backend.as_ref(), fallback)
            }
            Runner::Worker { exe, timeout } => worker::run(exe, &job, *timeout),
        };
        match ran {
            Ok(()) => {
                remove_file(&error_file(outdir, &sample.id))?;
                Ok(Outcome::Done)
            }
            Err(message) => Ok(Outcome::Failed(message)),
        }
    });
    let message = match attempt {
        Ok(Outcome::Failed(m)) => m,
        Ok(outcome) => return outcome,
        Err(e) => e.to_string(),
    };
    let message = message.replace(['\n', '\r'], " ");
    // Nothing from an earlier run may look complete once this input fails.
    let _ = remove_dir(&partial_dir(outdir, &sample.id));
    let _ = remove_dir(&sample_dir(outdir, &sample.id));
    let _ = write_atomic(&error_file(outdir, &sample.id), message.as_bytes());
    Outcome::Failed(message)
}

/// The job of a sample, or `None` when `resume` finds it up to date.
fn prepare_job(
    sample: &Sample,
    outdir: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
    resume: bool,
) -> Result<Option<WorkerJob>> {
    let marker = current_marker(sample, read, opts);
    if resume
        && let (Ok(now), Some(stored)) = (&marker, stored_marker(&sample_dir(outdir, &sample.id)))
        && *now == stored
    {
        return Ok(None);
    }
    Ok(Some(WorkerJob {
        sample_id: sample.id.clone(),
        input: sample.path.clone(),
        vdj: sample.vdj.clone(),
        outdir: outdir.to_path_buf(),
        read: read.clone(),
        options: toml::to_string(opts).map_err(|e| Error::Usage(format!("run options: {e}")))?,
        marker: marker?,
    }))
}

/// Runs every sample of `manifest` into `outdir` and writes the cross-sample outputs.
///
/// Errors (nothing written): invalid options, no backend, `outdir` in use by another batch
/// (its lock file names a running process; a stale one is taken over). Errors after the samples ran: the
/// cross-sample outputs could not be written. Sample failures are in the result, not errors.
/// `log` receives one line per sample as it finishes.
pub fn run_batch(
    manifest: &Manifest,
    outdir: &Path,
    read: &ReadOptions,
    opts: &RunOptions,
    batch: &BatchOptions,
    log: &(dyn Fn(&str) + Sync),
) -> Result<BatchResult> {
    opts.validate()?;
    if batch.jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    if batch.sample_timeout.is_some() && batch.worker.is_none() {
        return Err(Error::Usage(
            "a sample timeout needs each sample in its own process (a worker binary)".into(),
        ));
    }
    // Selected here also with workers (each selects its own): an unavailable backend is an
    // error before anything is written, not a failure of every sample.
    let selected = select_backend(opts.backend)?;
    let fallback = selected.fallback_reason.clone();
    let backend_name = selected.backend.name().to_string();
    std::fs::create_dir_all(outdir).map_err(|e| Error::write(outdir, "output folder", e))?;
    // Held until the cross-sample outputs are written.
    let _lock = lock::acquire(outdir)?;
    let samples_dir = outdir.join("samples");
    std::fs::create_dir_all(&samples_dir)
        .map_err(|e| Error::write(&samples_dir, "output folder", e))?;
    aggregate::write_manifest_copy(manifest, outdir)?;
    let n = manifest.samples.len();
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<SampleOutcome>>> = Mutex::new(vec![None; n]);
    let runner = match &batch.worker {
        // Workers select their own: the batch holds no GPU context meanwhile.
        Some(exe) => {
            drop(selected);
            Runner::Worker {
                exe: exe.clone(),
                timeout: batch.sample_timeout,
            }
        }
        None => Runner::InProcess {
            backend: selected.backend,
            fallback,
        },
    };
    std::thread::scope(|scope| {
        for _ in 0..batch.jobs.min(n) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(sample) = manifest.samples.get(i) else {
                        break;
                    };
                    let started = Instant::now();
                    let outcome = run_isolated(sample, outdir, read, opts, &runner, batch.resume);
                    let seconds = started.elapsed().as_secs_f64();
                    let k = finished.fetch_add(1, Ordering::SeqCst) + 1;
                    log(&match &outcome {
                        Outcome::Done => format!("[{k}/{n}] {}: done in {seconds:.1} s", sample.id),
                        Outcome::UpToDate => {
                            format!("[{k}/{n}] {}: up to date, skipped", sample.id)
                        }
                        Outcome::Failed(e) => format!("[{k}/{n}] {}: FAILED: {e}", sample.id),
                    });
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(SampleOutcome {
                            id: sample.id.clone(),
                            outcome,
                            seconds,
                        });
                    }
                }
            });
        }
    });
    let samples: Vec<SampleOutcome> = results
        .into_inner()
        .map_err(|_| Error::Internal("a batch worker thread panicked".into()))?
        .into_iter()
        .zip(&manifest.samples)
        .map(|(r, s)| {
            r.unwrap_or_else(|| SampleOutcome {
                id: s.id.clone(),
                outcome: Outcome::Failed("not run".into()),
                seconds: 0.0,
            })
        })
        .collect();
    aggregate::write_outputs(manifest, outdir, &batch.aggregate)?;
    Ok(BatchResult {
        samples,
        backend: backend_name,
    })
}
