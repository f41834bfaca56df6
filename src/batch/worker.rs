//! A sample in its own process, so nothing a sample does can end the batch.
//!
//! The batch starts the cartscope binary as `cartscope batch-sample`, hands it the sample's
//! [`WorkerJob`] as JSON on its standard input, sends its standard output and error to
//! `samples/<id>.log`, and waits (up to the sample timeout). The worker writes the sample's
//! partial folder and publishes it with its completion marker exactly as an in-process run
//! would; the batch only reads how it ended:
//! - exit 0: done;
//! - another exit code: the worker's own one-line error (the last `error:` line of its log),
//!   which for a crash inside libhdf5 is the crash handler's line naming the file and element;
//! - death by a signal: "crashed (SIGSEGV) ..."; a SIGKILL that the kernel's out-of-memory
//!   killer counted (cgroup v2 `memory.events`) is "killed: out of memory";
//! - still running at the timeout: killed, "timed out after N s".
//!
//! The worker's memory is its own: a sample that needs much never adds to the batch process.

use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::WorkerJob;

/// How often a worker with a timeout is checked.
const POLL: Duration = Duration::from_millis(50);

/// The log of a sample's worker.
pub(crate) fn log_file(outdir: &Path, id: &str) -> PathBuf {
    outdir.join("samples").join(format!("{id}.log"))
}

/// Runs `job` in a `batch-sample` process of `exe`; the error is the sample's one-line cause.
pub(super) fn run(
    exe: &Path,
    job: &WorkerJob,
    timeout: Option<Duration>,
) -> std::result::Result<(), String> {
    let log_path = log_file(&job.outdir, &job.sample_id);
    let log = std::fs::File::create(&log_path)
        .and_then(|f| Ok((f.try_clone()?, f)))
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let json = serde_json::to_vec(job).map_err(|e| format!("internal error: worker job: {e}"))?;
    let oom_before = oom_kills();
    let mut command = Command::new(exe);
    command
        .arg("batch-sample")
        .stdin(Stdio::piped())
        .stdout(log.0)
        .stderr(log.1);
    die_with_parent(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the worker {}: {e}", exe.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A worker that dies before reading its job is reported by its exit status below.
        let _ = stdin.write_all(&json);
    }
    let status = match timeout {
        None => child.wait().map(Some),
        Some(limit) => wait_until(&mut child, limit),
    }
    .map_err(|e| format!("cannot wait for the worker: {e}"))?;
    let Some(status) = status else {
        return Err(format!(
            "timed out after {} s (killed; its log is {})",
            timeout.map_or(0, |t| t.as_secs()),
            log_name(&log_path)
        ));
    };
    if status.success() {
        return Ok(());
    }
    Err(describe(status, job, &log_path, oom_before))
}

/// A worker ends when the batch does (killed, or crashed itself): Linux delivers SIGKILL to
/// it when the thread that started it ends, so no orphan goes on writing into a folder that a
/// resumed batch is about to redo.
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The batch died before the line above took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Waits up to `limit`; `None` when the child had to be killed.
fn wait_until(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// `samples/<id>.log`, as the user sees it from the batch folder.
fn log_name(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!("samples/{name}")
}

/// The cause of a failed worker, in words.
fn describe(
    status: ExitStatus,
    job: &WorkerJob,
    log_path: &Path,
    oom_before: Option<u64>,
) -> String {
    let input = job.input.file_name().map_or_else(
        || job.input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let log = log_name(log_path);
    if let Some(code) = status.code() {
        return last_error(log_path).unwrap_or_else(|| {
            format!("the worker exited with code {code} on {input} (see {log})")
        });
    }
    let signal = status.signal().unwrap_or(0);
    if signal == libc::SIGKILL {
        let oom = matches!((oom_before, oom_kills()), (Some(a), Some(b)) if b > a);
        return if oom {
            format!("killed: out of memory while processing {input} (see {log})")
        } else {
            format!(
                "killed (SIGKILL) while processing {input}, e.g. by the out-of-memory killer (see {log})"
            )
        };
    }
    format!(
        "crashed ({}) while processing {input}: the file may be damaged (see {log})",
        signal_name(signal)
    )
}

/// The worker's one-line error: the last line of its log that starts with `error: `.
fn last_error(log_path: &Path) -> Option<String> {
    let file = std::fs::File::open(log_path).ok()?;
    std::io::BufReader::new(file)
        .lines()
        .map_while(|l| l.ok())
        .filter_map(|l| l.strip_prefix("error: ").map(str::to_string))
        .last()
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// Processes of this process's cgroup killed by an out-of-memory killer so far, if known:
/// `oom_kill` of cgroup v2 `memory.events` or of v1 `memory.oom_control`. In a container the
/// cgroup's own folder is often mounted as the root, so both places are tried.
fn oom_kills() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut candidates = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, rel) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = rel.trim_start_matches('/');
        let (root, file) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.events"),
            c if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.oom_control")
            }
            _ => continue,
        };
        candidates.push(Path::new(root).join(rel).join(file));
        candidates.push(Path::new(root).join(file));
    }
    candidates.iter().find_map(|path| {
        std::fs::read_to_string(path).ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
    })
}
