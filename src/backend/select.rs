//! Which backend runs the kernels: the user's choice and the one-time device selection.

use serde::{Deserialize, Serialize};

use super::gpu::GpuError;
use super::{Backend, CpuBackend, GpuBackend};
use crate::error::Result;

/// Which backend runs the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A hardware GPU when present, else the CPU.
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// The GPU backend (wgpu); software adapters accepted.
    Gpu,
}

/// The backend a run uses, and why it is not the one asked for (if so).
pub struct Selected {
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// Set when `auto` wanted a GPU but fell back to the CPU.
    pub fallback_reason: Option<String>,
}

/// Picks the backend for `choice`: `cpu`; `gpu` (any adapter, software ones such as lavapipe
/// included; an error when there is none); `auto` (a hardware GPU, discrete first, else the
/// CPU with the reason logged).
pub fn select_backend(choice: BackendChoice) -> Result<Selected> {
    let cpu = |reason: Option<String>| Selected {
        backend: Box::new(CpuBackend),
        fallback_reason: reason,
    };
    match choice {
        BackendChoice::Cpu => Ok(cpu(None)),
        BackendChoice::Gpu => {
            let gpu = GpuBackend::new(true)?;
            tracing::info!("backend gpu: {}", gpu.device());
            Ok(Selected {
                backend: Box::new(gpu),
                fallback_reason: None,
            })
        }
        BackendChoice::Auto => match GpuBackend::new(false) {
            Ok(gpu) => {
                tracing::info!("backend auto: GPU {}", gpu.device());
                Ok(Selected {
                    backend: Box::new(gpu),
                    fallback_reason: None,
                })
            }
            Err(e) => {
                // No hardware GPU is the common case on a laptop or CI: say so once, quietly
                // unless -v; any other failure is a warning.
                match e {
                    GpuError::NoAdapter | GpuError::SoftwareOnly(_) => {
                        tracing::info!("backend auto: CPU ({e})")
                    }
                    _ => tracing::warn!("backend auto: GPU unusable, running on the CPU: {e}"),
                }
                Ok(cpu(Some(e.to_string())))
            }
        },
    }
}
