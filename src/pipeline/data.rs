//! The filtered matrix a run works on, and how its row chunks are visited: in memory, or
//! re-read from the input file (filtered and normalised again on the fly) when the data do not
//! fit in `--max-memory`. The matrix owns its source either way.

use crate::backend::Backend;
use crate::error::Result;
use crate::io::CountSource;
use crate::matrix::CsrMatrix;

/// What every chunked pass needs: the backend that runs the kernels, the rows per chunk and
/// the normalisation target of chunks re-read from the file.
#[derive(Clone, Copy)]
pub(crate) struct ChunkCtx<'a> {
    /// Runs the kernels.
    pub backend: &'a dyn Backend,
    /// Cells per chunk.
    pub rows: usize,
    /// normalize_total(target_sum) of re-read chunks.
    pub target_sum: f32,
}

/// The filtered matrix: raw counts until [`FilteredMatrix::normalize_log1p`], log-normalised
/// after it.
pub(crate) enum FilteredMatrix {
    /// Held whole as CSR.
    Memory(CsrMatrix),
    /// Re-read from the input in chunks (boxed: the source is large beside a CSR header).
    File(Box<Reread>),
}

/// A filtered matrix that stays in its file.
pub(crate) struct Reread {
    /// The opened input.
    src: CountSource,
    /// Which input cells pass QC.
    keep: Vec<bool>,
    /// Input gene -> filtered gene (None: dropped).
    col_map: Vec<Option<u32>>,
    /// Genes after filtering.
    n_cols: usize,
    /// Whether re-read chunks are normalised and log-transformed (false while raw-count
    /// statistics are taken, e.g. for seurat_v3).
    normalized: bool,
    /// Passes over the input made since the read.
    passes: usize,
}

impl FilteredMatrix {
    /// The filtered matrix of `src` that is re-read chunk by chunk.
    pub(crate) fn reread(
        src: CountSource,
        keep: Vec<bool>,
        col_map: Vec<Option<u32>>,
        n_cols: usize,
    ) -> Self {
        FilteredMatrix::File(Box::new(Reread {
            src,
            keep,
            col_map,
            n_cols,
            normalized: false,
            passes: 0,
        }))
    }

    /// normalize_total + log1p: in place in memory; on the fly for each re-read chunk.
    pub(crate) fn normalize_log1p(&mut self, ctx: &ChunkCtx<'_>) {
        match self {
            FilteredMatrix::Memory(x) => ctx.backend.normalize_log1p(x, ctx.target_sum),
            FilteredMatrix::File(r) => r.normalized = true,
        }
    }

    /// Passes over the input file so far, the read that checked and counted it included.
    pub(crate) fn input_passes(&self) -> usize {
        match self {
            FilteredMatrix::Memory(_) => 1,
            FilteredMatrix::File(r) => 1 + r.passes,
        }
    }

    /// Whether the matrix lives in the input file.
    pub(crate) fn is_reread(&self) -> bool {
        matches!(self, FilteredMatrix::File(_))
    }

    /// The matrix when it is held in memory.
    pub(crate) fn into_memory(self) -> Option<CsrMatrix> {
        match self {
            FilteredMatrix::Memory(x) => Some(x),
            FilteredMatrix::File(_) => None,
        }
    }

    /// Calls `f` on the whole matrix when it is held in memory (no copy), else on
    /// consecutive row chunks, in order: for consumers whose own memory does not grow with the
    /// rows they are given.
    pub(crate) fn for_each_block(
        &mut self,
        ctx: &ChunkCtx<'_>,
        mut f: impl FnMut(&CsrMatrix) -> Result<()>,
    ) -> Result<()> {
        match self {
            FilteredMatrix::Memory(x) => f(x),
            FilteredMatrix::File(_) => self.for_each_chunk(ctx, f),
        }
    }

    /// Calls `f` on consecutive row chunks of the matrix, in order.
    pub(crate) fn for_each_chunk(
        &mut self,
        ctx: &ChunkCtx<'_>,
        mut f: impl FnMut(&CsrMatrix) -> Result<()>,
    ) -> Result<()> {
        let step = ctx.rows;
        match self {
            FilteredMatrix::Memory(x) => {
                for a in (0..x.n_rows).step_by(step) {
                    crate::cancel::checkpoint();
                    f(&x.slice_rows(a..(a + step).min(x.n_rows)))?;
                }
            }
            FilteredMatrix::File(r) => {
                r.passes += 1;
                let n_in = r.src.n_obs();
                for a in (0..n_in).step_by(step) {
                    crate::cancel::checkpoint();
                    let b = (a + step).min(n_in);
                    let mut m = r.src.read_rows(a..b)?;
                    drop_explicit_zeros(&mut m);
                    let rows: Vec<usize> = (a..b).filter(|&i| r.keep[i]).map(|i| i - a).collect();
                    let mut x = subset(&m, &rows, &r.col_map, r.n_cols);
                    if r.normalized {
                        ctx.backend.normalize_log1p(&mut x, ctx.target_sum);
                    }
                    f(&x)?;
                }
            }
        }
        Ok(())
    }

    /// Calls `f(batch, rows)` on the cells of each chunk, split into contiguous runs of one
    /// batch (`codes`: each cell's batch; cells of a batch are contiguous in a joint run, so a
    /// chunk holds few runs).
    pub(crate) fn for_each_batch_run(
        &mut self,
        ctx: &ChunkCtx<'_>,
        codes: &[u32],
        mut f: impl FnMut(usize, &CsrMatrix) -> Result<()>,
    ) -> Result<()> {
        let mut offset = 0usize;
        self.for_each_chunk(ctx, |x| {
            let mut a = 0;
            while a < x.n_rows {
                let b = codes[offset + a];
                let e = (a..x.n_rows)
                    .find(|&r| codes[offset + r] != b)
                    .unwrap_or(x.n_rows);
                if a == 0 && e == x.n_rows {
                    f(b as usize, x)?;
                } else {
                    f(b as usize, &x.slice_rows(a..e))?;
                }
                a = e;
            }
            offset += x.n_rows;
            Ok(())
        })
    }
}

/// Rows `rows` of `m` with columns renumbered by `col_map` (None = dropped), in one pass.
pub(crate) fn subset(
    m: &CsrMatrix,
    rows: &[usize],
    col_map: &[Option<u32>],
    n_cols: usize,
) -> CsrMatrix {
    let mut out = CsrMatrix::empty(n_cols);
    for &i in rows {
        let (idx, val) = m.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            if let Some(nj) = col_map[j as usize] {
                out.indices.push(nj);
                out.data.push(v);
            }
        }
        out.indptr.push(out.data.len() as u64);
    }
    out.n_rows = rows.len();
    out
}

/// Removes stored zeros (scanpy eliminates them before counting genes per cell).
pub(crate) fn drop_explicit_zeros(m: &mut CsrMatrix) {
    if !m.data.contains(&0.0) {
        return;
    }
    let mut out = CsrMatrix::empty(m.n_cols);
    for i in 0..m.n_rows {
        let (idx, val) = m.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            if v != 0.0 {
                out.indices.push(j);
                out.data.push(v);
            }
        }
        out.indptr.push(out.data.len() as u64);
    }
    out.n_rows = m.n_rows;
    *m = out;
}
