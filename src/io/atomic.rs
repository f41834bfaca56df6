//! Outputs appear whole or not at all: written under a temporary name in the same folder,
//! then renamed.

use std::path::Path;

use super::h5ad_write::temporary_path;
use crate::error::{Error, Result};

/// Writes `bytes` to `path` under a temporary name, then renames it into place; on failure
/// the temporary file is removed and nothing exists under `path` that was not there before.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_path(path)?;
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::write(path, "file", e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::write(path, "rename", e)
    })
}

/// Whether process `pid` still runs. Where that cannot be told (no `/proc`), every pid counts
/// as running, so nothing of a live process is ever taken over or removed.
pub(crate) fn process_running(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary files (`.<name>.partial-<pid>`) that a process which no longer runs
/// left in `dir` when it was killed or crashed mid-write; those of live processes stay.
/// Returns how many were removed.
pub(crate) fn remove_stale_partials(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.starts_with('.'))
            .and_then(|n| n.rsplit_once(".partial-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || process_running(pid) {
            continue;
        }
        let path = entry.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}
