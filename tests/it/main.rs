//! Integration tests of cartscope, one binary with a module per concern:
//! - `batch`: `cartscope batch`/`aggregate`: failures isolated, numbers as single runs, resume,
//!   batch_report.html in headless Chromium;
//! - `browser`: the headless Chromium check of generated HTML pages (a helper, no tests);
//! - `clonal`: patient-level clonotypes and clonal persistence of a batch against scirpy;
//! - `cart`: CAR-T calls against simulated truth, scores against scanpy, the summary;
//! - `readers`: every fixture layout reads to the values its generator recorded;
//! - `golden`: `cartscope run` matches committed scanpy reference runs;
//! - `hostile`: hostile text in every user-controlled field stays text in report.html and
//!   batch_report.html (HTML5 tokenizer allow-list, no script in headless Chromium), and no
//!   source writes markup through a format string;
//! - `interrupted`: `run` and `batch` killed at every output leave nothing that looks complete,
//!   and a rerun or `--resume` finishes the job;
//! - `joint`: `cartscope run --joint` matches scanpy's concat + `batch_key` analysis;
//! - `cluster`: Leiden and UMAP on scanpy's graph agree with scanpy's;
//! - `layers`: the library's modules import only modules of lower layers, no cycles, and no
//!   function in src/ spans more than 150 lines;
//! - `fuzz`: a seeded slice of the damaged-input campaign (tests/fuzz/corpus.py): clean errors,
//!   no signal, no hang, bounded memory;
//! - `errors`: every malformed input gives exit code 2 and a one-line message naming the file;
//! - `run_cli`: `cartscope run` outputs, config precedence, clean failures;
//! - `run_vdj`: `cartscope run --vdj` receptor columns and clonal summary equal scirpy's;
//! - `roundtrip`: written files read back identically (fixed cases and proptest);
//! - `python_interop`: files written by cartscope load in anndata with identical values;
//! - `robustness`: corrupted inputs give errors, never panics;
//! - `write_failures`: a full disk at every writer, a read-only file system, an output path
//!   that is a file, the output folder removed mid-run: exit 1, one line, nothing left;
//! - `simulate`: the simulator is deterministic, its truth recoverable, its formats equivalent;
//! - `simulate_vdj`: `simulate --vdj` leaves the counts alone, its clones are recovered by the
//!   clonotyping and shared across a patient's time points;

mod batch;
mod browser;
mod cart;
mod clonal;
mod cluster;
mod common;
mod errors;
mod fuzz;
mod golden;
mod hostile;
mod interrupted;
mod joint;
mod layers;
mod markers;
mod python_interop;
mod readers;
mod robustness;
mod roundtrip;
mod run_cli;
mod run_vdj;
mod simulate;
mod simulate_vdj;
mod vdj;
mod write_failures;
