//! One batch per output folder: `OUTDIR/.cartscope-batch.lock` holds the pid of the batch
//! that writes there. A second batch on the same folder stops at once with a usage error
//! naming that pid instead of interleaving its writes. A lock left by a process that no longer
//! runs (killed, crashed) is stale and is taken over. The lock file is created with
//! `create_new`, so of two batches starting together exactly one wins; the lock goes when the
//! [`BatchLock`] is dropped.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The lock file inside the output folder.
pub(crate) const LOCK_FILE: &str = ".cartscope-batch.lock";

/// A held batch lock; removes its file when dropped.
#[derive(Debug)]
pub(crate) struct BatchLock {
    path: PathBuf,
}

impl Drop for BatchLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn create(path: &Path) -> std::io::Result<BatchLock> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(BatchLock {
        path: path.to_path_buf(),
    })
}

/// Takes the batch lock of `outdir` (which must exist).
pub(crate) fn acquire(outdir: &Path) -> Result<BatchLock> {
    let path = outdir.join(LOCK_FILE);
    // Two tries: the second after removing a stale lock.
    for _ in 0..2 {
        match create(&path) {
            Ok(lock) => return Ok(lock),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok());
                match holder {
                    Some(pid) if crate::io::atomic::process_running(pid) => {
                        return Err(Error::Usage(format!(
                            "{} is in use by another cartscope batch (pid {pid})",
                            outdir.display()
                        )));
                    }
                    // Stale (or unreadable, e.g. half-written by a killed batch): take over.
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Err(e) => return Err(Error::write(&path, "batch lock", e)),
        }
    }
    Err(Error::Usage(format!(
        "{} is in use by another cartscope batch (its lock {} was just taken)",
        outdir.display(),
        LOCK_FILE
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_lock_refuses_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path()).unwrap();
        let e = acquire(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("in use by another cartscope batch")
                && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(held);
        assert!(!dir.path().join(LOCK_FILE).exists());
        // A pid that has ended: a finished child's.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), format!("{dead}\n")).unwrap();
        let taken = acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        drop(taken);
        // A half-written lock (no pid) is stale too.
        std::fs::write(dir.path().join(LOCK_FILE), "").unwrap();
        assert!(acquire(dir.path()).is_ok());
    }
}
