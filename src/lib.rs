//! # cartscope
//!
//! GPU-accelerated single-cell RNA-seq analysis with scanpy-compatible results, and CAR-T
//! persistence and exhaustion reports.
//!
//! The library is the product; the `cartscope` binary is a thin layer over it. Data flows
//! read ([`io`]) -> preprocess ([`pp`]) -> analyse ([`tl`]) -> interpret ([`cart`]) ->
//! outputs and report, every numeric kernel on a [`backend::Backend`] (CPU or GPU).
//!
//! A run of the standard scanpy pipeline, with the CAR-T layer, is one call: [`Run`] takes
//! the input, the [`RunOptions`] (every default is scanpy's reference pipeline), and
//! optionally a backend, a progress bar and the sample columns of a joint run; it writes
//! `result.h5ad` (scanpy's keys), `cells.parquet`, `summary.json`, `summary.csv` and
//! `report.html`.
//!
//! ```no_run
//! use cartscope::{Run, RunOptions};
//!
//! let opts = RunOptions { n_top_genes: 3000, ..RunOptions::default() };
//! let summary = Run::new("sample.h5ad", "out/").options(opts).progress(true).execute()?;
//! for (stage, seconds) in &summary.stage_seconds {
//!     println!("{stage}: {seconds:.2} s");
//! }
//! # Ok::<(), cartscope::Error>(())
//! ```
//!
//! Below the entry point, the stages ([`pipeline`]), the scanpy tools ([`pp`], [`tl`]) and the
//! readers ([`io`]) are public too, e.g. to inspect a file:
//!
//! ```no_run
//! use cartscope::info::{inspect, InfoOptions};
//! let info = inspect("sample_data/infusion.h5ad".as_ref(), &InfoOptions::default())?;
//! println!("{} cells x {} genes, CAR features: {:?}", info.n_obs, info.n_vars, info.car_features);
//! # Ok::<(), cartscope::Error>(())
//! ```
//!
//! A batch of samples runs with [`batch::run_batch`], several samples as one joint analysis
//! with [`batch::joint::run_joint`].

#![warn(missing_docs)]

pub mod backend;
pub mod batch;
pub mod bench;
pub mod cancel;
pub mod cart;
pub mod crash;
pub mod error;
pub mod info;
pub mod io;
pub mod matrix;
pub mod ops;
mod outputs;
pub mod pipeline;
pub mod pp;
pub mod report;
pub(crate) mod rng;
pub mod run;
pub mod simulate;
pub mod tl;
pub mod vdj;

pub use error::{Error, ErrorKind, Result};
pub use matrix::CsrMatrix;
pub use pipeline::{RunOptions, RunSummary};
pub use run::Run;
