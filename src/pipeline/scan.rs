//! Stage 1, read + QC: one pass over the input in row chunks that checks the values, takes
//! scanpy's `calculate_qc_metrics` per cell and gene, counts each gene's cells among those
//! that pass `filter_cells`, keeps the CAR candidates' raw counts, and holds the counts in
//! memory while they fit in the budget.

use crate::cart;
use crate::cart::detect::CarChoice;
use crate::error::{Error, Result};
use crate::io::CountSource;
use crate::io::names::is_mito;
use crate::io::values::{CountPolicy, ValueNames, ValueScan};
use crate::matrix::CsrMatrix;
use crate::pp::qc::{self, CellQc, GeneQc};

use super::RunOptions;
use super::data::drop_explicit_zeros;

/// The input after the read + QC pass.
pub(crate) struct Scanned {
    /// The opened input (re-read later when the counts did not fit).
    pub src: CountSource,
    /// Whether each input gene is mitochondrial (`MT-`, case-insensitive).
    pub mito: Vec<bool>,
    /// QC metrics of every input cell.
    pub cells: CellQc,
    /// QC metrics of every input gene.
    pub genes: GeneQc,
    /// Per input gene, the cells that pass filter_cells and express it (filter_genes).
    pub n_cells_per_gene: Vec<i64>,
    /// The raw counts without explicit zeros; None when they exceed the memory budget.
    pub counts: Option<CsrMatrix>,
    /// The CAR construct feature, when the data have one.
    pub car: Option<CarChoice>,
}

/// Reads `src` once in chunks of `opts.chunk_rows` cells. `car_candidates` are the input
/// genes that may be the CAR construct; `budget` bounds the bytes the counts may hold.
pub(crate) fn read_and_qc(
    mut src: CountSource,
    car_candidates: &[usize],
    opts: &RunOptions,
    budget: u64,
) -> Result<Scanned> {
    let (n_in, g_in) = (src.n_obs(), src.n_vars());
    let mito: Vec<bool> = src.var.index.iter().map(|g| is_mito(g)).collect();
    let mut car_counts: Vec<Vec<f32>> = vec![Vec::with_capacity(n_in); car_candidates.len()];
    let policy = CountPolicy::counts(opts.allow_non_integer);
    let mut scan = ValueScan::default();
    let mut cells = CellQc::default();
    let mut genes = GeneQc::new(g_in);
    let mut n_cells_per_gene = vec![0i64; g_in];
    let mut counts = Some(CsrMatrix::empty(g_in));
    let step = opts.chunk_rows;
    // Chunks are checked and counted on a second thread while the next one is read.
    let (path, field) = (src.path.clone(), src.x.element.clone());
    let (cell_names, gene_names) = (src.obs.index.clone(), src.var.index.clone());
    let names = ValueNames {
        path: &path,
        field: &field,
        cells: &cell_names,
        genes: &gene_names,
    };
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, CsrMatrix)>(1);
        let worker = scope.spawn(|| -> Result<()> {
            for (a, mut m) in rx {
                // The value checks and the QC sums read the chunk independently (the sums skip
                // explicit zeros), so they run side by side.
                let (checked, ()) = rayon::join(
                    || scan.update_named(&names, &m, a, policy),
                    || {
                        cart::detect::gather(&m, car_candidates, &mut car_counts);
                        let before = cells.n_genes_by_counts.len();
                        qc::accumulate(&m, &mito, &mut cells, &mut genes);
                        let keep: Vec<bool> = cells.n_genes_by_counts[before..]
                            .iter()
                            .map(|&n| n >= opts.min_genes as i32)
                            .collect();
                        qc::cells_per_gene(&m, &keep, &mut n_cells_per_gene);
                    },
                );
                checked?;
                drop_explicit_zeros(&mut m);
                if let Some(c) = counts.as_mut() {
                    c.append_rows(&m);
                    // Counts and their log-normalised copy: 16 bytes per stored entry.
                    if c.nnz().saturating_mul(16) > budget {
                        tracing::info!(
                            "data exceed --max-memory; later stages re-read {} in chunks",
                            path.display()
                        );
                        counts = None;
                    }
                }
            }
            Ok(())
        });
        let mut read = Ok(());
        for a in (0..n_in).step_by(step) {
            match src.read_rows(a..(a + step).min(n_in)) {
                // A closed channel means the checks failed: their error is reported below.
                Ok(m) => {
                    if tx.send((a, m)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        let checked = worker
            .join()
            .map_err(|_| Error::Internal("the QC worker thread panicked".into()))?;
        read.and(checked)
    })?;
    scan.warn(&src, true);
    let car = cart::detect::choose(
        &src.var.index,
        car_candidates,
        car_counts,
        opts.cart.car_min_counts,
    );
    Ok(Scanned {
        src,
        mito,
        cells,
        genes,
        n_cells_per_gene,
        counts,
        car,
    })
}

/// Bytes the in-memory path may use: `--max-memory` MiB, or by default a quarter of the memory
/// the OS reports available (all of it where that is unknown). The counts are held while their
/// two copies (16 bytes a stored entry) fit; a run held in memory peaks at about 1.25 times
/// that (460,062 cells of 50 samples, 9.9 GB of counts: 11.3 GiB), so a quarter keeps the
/// whole run within about a third of the machine. Larger data stream from the file
/// (docs/performance.md: the same 50 samples in 4.1 GiB).
pub(crate) fn memory_budget_bytes(max_memory_mib: u64) -> u64 {
    if max_memory_mib > 0 {
        return max_memory_mib.saturating_mul(1 << 20);
    }
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kib| kib * 1024 / 4)
}
