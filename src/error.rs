//! The library's one error type.
//!
//! Every variant that concerns an input names the file and the field (HDF5 path, column, line)
//! so that a user can find the problem without a debugger. [`Error::kind`] groups the variants
//! into the classes the command line maps to exit codes.

use std::path::{Path, PathBuf};

/// A specialised `Result` for cartscope.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, at the level a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is missing, unreadable, malformed, or holds values that cannot be counts.
    BadInput,
    /// An option or combination of options is invalid.
    Usage,
    /// Anything else: writing outputs, an HDF5 library failure on our own files.
    Other,
    /// A bug in cartscope (a worker thread that panicked, a broken invariant), never the
    /// user's doing.
    Internal,
}

/// Errors returned by cartscope's library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error while reading an input.
    #[error("{path}: {source}")]
    Read {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The path does not hold a format cartscope reads (or is not a file at all).
    #[error("{path}: {reason}")]
    UnknownFormat {
        /// The offending path.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// The HDF5 library could not read an element of an input file (truncated or corrupt file,
    /// wrong type).
    #[error("{path}: cannot read {field}: {message}")]
    Hdf5 {
        /// The input file.
        path: PathBuf,
        /// The HDF5 path of the element (e.g. `/X/indptr`).
        field: String,
        /// The HDF5 library's message.
        message: String,
    },
    /// The input is readable but its content breaks the format's rules
    /// (shapes that disagree, indices out of range, a missing element).
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The input file.
        path: PathBuf,
        /// The element, column or line at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Matrix values that cannot be counts (negative, NaN/inf, or non-integer when counts are
    /// required).
    #[error("{path}: {field}: {message}")]
    Values {
        /// The input file.
        path: PathBuf,
        /// The matrix element (e.g. `/X/data`).
        field: String,
        /// The first offending value and where it is.
        message: String,
    },
    /// A gene-set (GMT) file that cannot be parsed.
    #[error("{path}: line {line}: {message}")]
    GeneSets {
        /// The GMT file.
        path: PathBuf,
        /// The 1-based line at fault (0: the file as a whole).
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// An invalid option or combination of options.
    #[error("{0}")]
    Usage(String),
    /// The GPU backend could not be used (no adapter, device request failed, device lost, out
    /// of memory, a limit exceeded). `--backend auto` falls back to the CPU instead.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A bug in cartscope: a worker thread panicked or an invariant broke. Not the user's
    /// doing; the message says what failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// Writing an output failed; nothing was left under the final name.
    #[error("{path}: cannot write {field}: {message}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The element being written.
        field: String,
        /// The underlying message.
        message: String,
    },
}

impl Error {
    /// The class of this error, used by the command line to pick an exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Read { .. }
            | Error::UnknownFormat { .. }
            | Error::Hdf5 { .. }
            | Error::Invalid { .. }
            | Error::Values { .. }
            | Error::GeneSets { .. } => ErrorKind::BadInput,
            Error::Usage(_) => ErrorKind::Usage,
            Error::Write { .. } | Error::Gpu(_) => ErrorKind::Other,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(
        path: &Path,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn hdf5(path: &Path, field: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Hdf5 {
            path: path.to_path_buf(),
            field: field.into(),
            message: one_line(&err.to_string()),
        }
    }

    pub(crate) fn write(
        path: &Path,
        field: impl Into<String>,
        err: impl std::fmt::Display,
    ) -> Self {
        let mut message = one_line(&err.to_string());
        // libhdf5 reports a full disk as "file write failed" (the errno sits deeper in its
        // error stack): the file system says what the cause was.
        if !message.contains("No space left") && no_space_left(path) {
            message = format!("no space left on device ({message})");
        }
        Error::Write {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        }
    }

    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        Error::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Whether the file system holding `path` (or its nearest existing folder) is full: under
/// 1 MiB or no inodes left for this user.
fn no_space_left(path: &Path) -> bool {
    let Some(existing) = path
        .ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find(|p| p.exists())
    else {
        return false;
    };
    let Ok(c_path) = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statvfs fills the zeroed struct from a valid C string path.
    let (st, ok) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        let ok = libc::statvfs(c_path.as_ptr(), &mut st) == 0;
        (st, ok)
    };
    if !ok {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let (blocks, inodes) = if root {
        (st.f_bfree, st.f_ffree)
    } else {
        (st.f_bavail, st.f_favail)
    };
    let bytes = (blocks as u128) * (st.f_frsize as u128);
    bytes < (1 << 20) || (st.f_files > 0 && inodes == 0)
}

/// HDF5 error stacks span several lines; users get the first, most specific one.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_string()
}

/// What can go wrong on the GPU path. None of these panic; under `--backend auto` each one
/// becomes a logged fallback to the CPU.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// wgpu found no adapter at all (no Vulkan/Metal/DX12 driver, or no device).
    #[error(
        "no GPU adapter found (is a Vulkan driver installed? on Debian: mesa-vulkan-drivers libvulkan1)"
    )]
    NoAdapter,
    /// Only software adapters (e.g. lavapipe) exist and a hardware GPU was required.
    #[error("no hardware GPU adapter; only the software adapter {0:?}")]
    SoftwareOnly(String),
    /// The adapter refused to create a device.
    #[error("GPU device request failed on {adapter}: {message}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost (driver reset, GPU removed, ...).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// An allocation failed on the device.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// A work item needs more than an adapter limit allows, even split into chunks.
    #[error("GPU limit exceeded: {what} needs {need}, the adapter allows {limit}")]
    LimitExceeded {
        /// What was being sized.
        what: String,
        /// What it needs.
        need: u64,
        /// The adapter's limit.
        limit: u64,
    },
    /// wgpu reported an error (validation, shader compilation, internal).
    #[error("GPU error: {0}")]
    Wgpu(String),
    /// Reading results back failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),
}
