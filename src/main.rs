//! The `cartscope` command: parse flags, call the library, map errors to exit codes.
//!
//! Exit codes: 0 success; 2 bad input or usage (the message names the file and field);
//! 3 `batch`/`aggregate`: some samples failed, the others completed; 1 any other failure,
//! internal errors (a bug: a panic, a worker thread that died) included.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use cartscope::io::h5ad_write::WriteOptions;
use cartscope::io::values::{CountPolicy, ValueScan};
use cartscope::io::{AnnData, CountSource, H5adWriter};
use cartscope::{Error, ErrorKind};

/// Mesa's Vulkan device-select layer connects to a Wayland display to find the default GPU,
/// and on a headless machine libwayland prints "error: XDG_RUNTIME_DIR is invalid" twice on
/// every run. cartscope ranks the adapters itself, so the layer is switched off (unless the
/// user set NODEVICE_SELECT).
fn quiet_vulkan_device_select() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

fn main() -> ExitCode {
    quiet_vulkan_device_select();
    // A crash inside libhdf5 on a damaged file ends with one line naming the file.
    cartscope::crash::install();
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    // A panic is a bug in cartscope, never the user's doing: one line that says so, exit 1
    // (not Rust's 101, and never the bad-input code 2).
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {}", one_line(&info.to_string()))
    }));
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    let Ok(ran) = ran else {
        return ExitCode::from(1);
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            if let Some(f) = err.downcast_ref::<SamplesFailed>() {
                eprintln!("error: {f}");
                return ExitCode::from(3);
            }
            // Library errors already name the file, field and cause in one line; others get
            // their context chain.
            let message = match err.downcast_ref::<Error>() {
                Some(e) => e.to_string(),
                None => format!("{err:#}"),
            };
            eprintln!("error: {}", one_line(&message));
            let code = match err.downcast_ref::<Error>().map(Error::kind) {
                Some(ErrorKind::BadInput | ErrorKind::Usage) => 2,
                _ => 1,
            };
            ExitCode::from(code)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CARTSCOPE_LOG")
        .unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// The message as one line: a damaged file's bytes quoted in it (a name, an MTX line) may hold
/// line breaks or other control characters, shown escaped (`\n`, `\u{b}`), so that a
/// pipeline reading stderr line by line sees exactly one error line.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Info(args) => {
            let info = cartscope::info::inspect(&args.input, &args.options())?;
            let mut out = std::io::stdout().lock();
            if args.json {
                serde_json::to_writer_pretty(&mut out, &info)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", info.to_text())?;
            }
            Ok(())
        }
        cli::Command::Convert(args) => convert(&args),
        cli::Command::Bench(args) => {
            let sel = cartscope::backend::select_backend(args.backend)?;
            if let Some(r) = &sel.fallback_reason {
                eprintln!("note: no GPU used ({r})");
            }
            let device = sel.backend.device();
            let timing = sel.backend.device_timing();
            let rows = cartscope::bench::run(sel.backend.as_ref(), &args.options());
            let mut out = std::io::stdout().lock();
            if args.json {
                let v = serde_json::json!({
                    "backend": sel.backend.name(),
                    "device": device,
                    "device_timing": timing.is_ok(),
                    "device_timing_unavailable": timing.as_ref().err(),
                    "kernels": rows,
                });
                serde_json::to_writer_pretty(&mut out, &v)?;
                writeln!(out)?;
            } else {
                write!(
                    out,
                    "{}",
                    cartscope::bench::to_text(&device, &rows, &timing)
                )?;
            }
            if let Some(r) = sel.backend.fallback_reason() {
                eprintln!("warning: some kernels ran on the CPU: {r}");
            }
            Ok(())
        }
        cli::Command::Devices(args) => {
            let list = cartscope::backend::gpu::list_adapters();
            let mut out = std::io::stdout().lock();
            if args.json {
                serde_json::to_writer_pretty(&mut out, &list)?;
                writeln!(out)?;
            } else if list.is_empty() {
                writeln!(out, "no GPU adapter (cartscope runs on the CPU)")?;
            } else {
                for (i, a) in list.iter().enumerate() {
                    writeln!(
                        out,
                        "{i}: {} [{}, {}{}] driver {}\n   max storage binding {} MiB, max buffer {} MiB, workgroup memory {} KiB, {} invocations/workgroup",
                        a.name,
                        a.backend,
                        a.device_type,
                        if a.hardware { "" } else { ", software" },
                        a.driver,
                        a.max_storage_buffer_binding_size >> 20,
                        a.max_buffer_size >> 20,
                        a.max_compute_workgroup_storage_size >> 10,
                        a.max_compute_invocations_per_workgroup
                    )?;
                }
            }
            Ok(())
        }
        cli::Command::Run(cmd) => {
            let args = &cmd.run;
            let opts = args.options()?;
            let read = args.input_args.read_options();
            let s = if cmd.joint {
                cartscope::batch::joint::run_joint(
                    &args.input,
                    &args.output,
                    &read,
                    &opts,
                    !args.quiet,
                )?
            } else {
                let mut run = cartscope::Run::new(&args.input, &args.output)
                    .read_options(read)
                    .options(opts)
                    .progress(!args.quiet);
                if let Some(contigs) = &cmd.vdj {
                    run = run.vdj(contigs);
                }
                run.execute()?
            };
            if !args.quiet {
                eprintln!(
                    "{} cells in, {} after QC, {} genes, {} HVGs, {} PCs on {} in {:.2} s (peak {:.0} MiB) -> {}",
                    s.n_cells_in,
                    s.n_cells_after_qc,
                    s.n_genes_after_filter,
                    s.n_hvg,
                    s.n_pcs,
                    s.backend,
                    s.total_seconds,
                    s.peak_rss_mib,
                    args.output.join("result.h5ad").display()
                );
            }
            Ok(())
        }
        cli::Command::Batch(args) => batch(&args),
        cli::Command::BatchSample => batch_sample(),
        cli::Command::Aggregate(args) => aggregate(&args),
        cli::Command::Simulate(args) => {
            let started = std::time::Instant::now();
            let summary = cartscope::simulate::simulate(&args.output, &args.options())?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "simulated {} barcodes x {} features ({} stored, {} CAR+, {} fail QC by design) in {:.1} s ({:.0} cells/s) -> {}",
                summary.cells,
                summary.genes,
                summary.nnz,
                summary.car_positive,
                summary.qc_failing,
                secs,
                summary.cells as f64 / secs,
                summary.path.display()
            );
            if let Some(v) = &summary.vdj {
                eprintln!(
                    "VDJ: {} contigs, {} cells with contigs, {} true clones, {} barcodes that are not cells -> {}",
                    v.contigs,
                    v.cells_with_contigs,
                    v.clones,
                    v.barcodes_not_in_matrix,
                    v.path.display()
                );
            }
            Ok(())
        }
    }
}

/// Streams any input into an .h5ad, chunk by chunk, checking values as counts.
fn convert(args: &cli::ConvertArgs) -> anyhow::Result<()> {
    let mut src = CountSource::open(&args.input, &args.input_args.read_options())?;
    let policy = CountPolicy::counts(args.input_args.allow_non_integer);
    let mut writer =
        H5adWriter::create(&args.output, src.n_vars(), WriteOptions { gzip: args.gzip })?;
    let mut scan = ValueScan::default();
    let n = src.n_obs();
    let step = args.chunk_rows.max(1);
    for a in (0..n).step_by(step) {
        let m = src.read_rows(a..(a + step).min(n))?;
        scan.update(&src, &m, a, policy)?;
        writer.append_x(&m)?;
    }
    scan.warn(&src, true);
    let ad = AnnData {
        obs: src.obs.clone(),
        var: src.var.clone(),
        ..AnnData::default()
    };
    writer.finish(&ad)?;
    tracing::info!(
        "wrote {} ({} cells x {} genes)",
        args.output.display(),
        n,
        src.n_vars()
    );
    Ok(())
}

/// Some samples of a batch failed; the others completed. Exit code 3.
#[derive(Debug)]
struct SamplesFailed(usize, usize);

impl std::fmt::Display for SamplesFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} samples failed (see batch_summary.csv); the others are complete",
            self.0, self.1
        )
    }
}

impl std::error::Error for SamplesFailed {}

/// `cartscope aggregate`: the cross-sample outputs of finished sample folders.
fn aggregate(args: &cli::AggregateArgs) -> anyhow::Result<()> {
    let mut opts = cartscope::batch::AggregateOptions {
        product_timepoint: args.product_timepoint.clone(),
        ..Default::default()
    };
    args.clone_args.apply(&mut opts.vdj.clonotypes);
    let (m, c) =
        cartscope::batch::aggregate::aggregate_with(&args.outdir, args.manifest.as_deref(), &opts)?;
    eprintln!(
        "{} samples: {} completed, {} failed, {} missing -> {}",
        m.samples.len(),
        c.ok,
        c.failed,
        c.missing,
        args.outdir.join("batch_summary.csv").display()
    );
    if c.failed + c.missing > 0 {
        return Err(SamplesFailed(c.failed + c.missing, m.samples.len()).into());
    }
    Ok(())
}

/// This binary, which `batch` starts once per sample (`batch-sample`), unless asked to run
/// the samples in its own process.
fn worker_binary(in_process: bool) -> Option<std::path::PathBuf> {
    if in_process {
        return None;
    }
    match std::env::current_exe() {
        Ok(exe) => Some(exe),
        Err(e) => {
            eprintln!(
                "warning: cannot locate the cartscope binary ({e}); samples run in this process"
            );
            None
        }
    }
}

/// `cartscope batch-sample`: one sample of a batch, its job as JSON on standard input.
fn batch_sample() -> anyhow::Result<()> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
    let job: cartscope::batch::WorkerJob = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("batch-sample: the job on standard input: {e}")))?;
    cartscope::batch::run_worker(&job)?;
    Ok(())
}

/// `cartscope batch`: the manifest is validated before anything is written.
fn batch(args: &cli::BatchArgs) -> anyhow::Result<()> {
    let manifest = cartscope::batch::Manifest::read(&args.run.input)?;
    let opts = args.run.options()?;
    let quiet = args.run.quiet;
    let log = |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let bopts = cartscope::batch::BatchOptions {
        jobs: usize::from(args.jobs),
        resume: args.resume,
        aggregate: cartscope::batch::AggregateOptions {
            vdj: opts.vdj.clone(),
            product_timepoint: args.product_timepoint.clone(),
        },
        worker: worker_binary(args.in_process),
        sample_timeout: args.sample_timeout.map(std::time::Duration::from_secs),
    };
    let started = std::time::Instant::now();
    let r = cartscope::batch::run_batch(
        &manifest,
        &args.run.output,
        &args.run.input_args.read_options(),
        &opts,
        &bopts,
        &log,
    )?;
    let failed = r.n_failed();
    if !quiet {
        eprintln!(
            "{} samples on {} in {:.1} s: {} completed, {} failed -> {}",
            r.samples.len(),
            r.backend,
            started.elapsed().as_secs_f64(),
            r.samples.len() - failed,
            failed,
            args.run.output.join("batch_summary.csv").display()
        );
    }
    if failed > 0 {
        return Err(SamplesFailed(failed, r.samples.len()).into());
    }
    Ok(())
}
