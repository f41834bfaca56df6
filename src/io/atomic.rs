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
