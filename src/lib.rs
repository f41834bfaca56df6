//! # cartscope
//!
//! GPU-accelerated single-cell RNA-seq analysis with scanpy-compatible results, and CAR-T
//! persistence and exhaustion reports.
//!
//! The library is the product; the `cartscope` binary is a thin layer over it. Data flows
//! read ([`io`]) -> preprocess -> analyse -> interpret ([`cart`]) -> report. This first layer
//! reads AnnData `.h5ad`, 10x HDF5 and 10x MTX count matrices in row chunks and writes `.h5ad`
//! files that anndata and scanpy open directly.
//!
//! ```no_run
//! use cartscope::info::{inspect, InfoOptions};
//! let info = inspect("sample_data/infusion.h5ad".as_ref(), &InfoOptions::default())?;
//! println!("{} cells x {} genes, CAR features: {:?}", info.n_obs, info.n_vars, info.car_features);
//! # Ok::<(), cartscope::Error>(())
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod batch;
pub mod bench;
pub mod cart;
pub mod error;
pub mod info;
pub mod io;
pub mod matrix;
mod outputs;
pub mod pipeline;
pub mod pp;
pub mod report;
pub(crate) mod rng;
pub mod run;
pub mod simulate;
pub mod tl;

pub use error::{Error, ErrorKind, Result};
pub use matrix::CsrMatrix;
pub use pipeline::{RunOptions, RunSummary};
pub use run::Run;
