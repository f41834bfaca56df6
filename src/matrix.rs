//! Compressed sparse row matrices of cells x genes, and row chunks of them.
//!
//! `indptr` is `u64`, so a matrix may hold more than 2^31 stored entries. Column indices are
//! `u32` (no dataset has 4 billion genes) and values `f32`, the dtype scanpy computes in.

use std::ops::Range;

/// Buffers from this size up ask the kernel for transparent huge pages, as numpy does for its
/// arrays: filling a large fresh buffer otherwise spends most of its time faulting in 4 KiB
/// pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// The rows of `values` (row-major, `dim` columns) in `order`: row `r` of the result is row
/// `order[r]` of `values`. With the inverse of a permutation it puts rows back.
pub fn rows_in_order(values: &[f32], dim: usize, order: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(order.len() * dim);
    for &i in order {
        out.extend_from_slice(&values[i as usize * dim..(i as usize + 1) * dim]);
    }
    out
}

/// The inverse of the permutation `order`: `rank[order[r]] = r`.
pub fn inverse_permutation(order: &[u32]) -> Vec<u32> {
    let mut rank = vec![0u32; order.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    rank
}

/// Asks the kernel to back the 2 MiB-aligned interior of `len` bytes at `ptr` with transparent
/// huge pages (`MADV_HUGEPAGE`; advisory, so any failure is ignored). Called before the memory
/// is first touched.
pub(crate) fn advise_huge_pages(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < HUGE_PAGE_MIN_BYTES {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) / HUGE * HUGE;
    if end > start {
        // SAFETY: [start, end) lies inside the caller's allocation; MADV_HUGEPAGE changes how
        // the pages are backed, never their contents or the mapping.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// The largest of `v` (None when empty), in parallel blocks whose loops vectorise. For
/// unsigned integers, whose default (0) is the smallest value.
pub(crate) fn max_par<T: Copy + Ord + Default + Send + Sync>(v: &[T]) -> Option<T> {
    use rayon::prelude::*;
    v.par_chunks(1 << 16)
        .map(|c| c.iter().fold(T::default(), |m, &x| m.max(x)))
        .max()
}

/// `f` of every value of `src`, in parallel, into a new buffer advised for huge pages.
pub(crate) fn map_par<S: Sync, T: Send>(src: &[S], f: impl Fn(&S) -> T + Sync + Send) -> Vec<T> {
    use rayon::prelude::*;
    let mut out: Vec<T> = Vec::with_capacity(src.len());
    advise_huge_pages(
        out.as_mut_ptr().cast(),
        src.len() * std::mem::size_of::<T>(),
    );
    src.par_iter().map(f).collect_into_vec(&mut out);
    out
}

/// A cells x genes CSR matrix, or a chunk of consecutive rows of a larger one. Values are f32
/// (counts, log data, connectivities) unless another type is named (f64 kNN distances).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsrMatrix<T = f32> {
    /// Number of rows (cells).
    pub n_rows: usize,
    /// Number of columns (genes).
    pub n_cols: usize,
    /// Row pointers, `n_rows + 1` entries starting at 0.
    pub indptr: Vec<u64>,
    /// Column index of each stored entry, sorted within each row.
    pub indices: Vec<u32>,
    /// Value of each stored entry.
    pub data: Vec<T>,
}

/// scipy's int64 row pointers read in place as u64, once checked (in parallel): from 0, never
/// decreasing, ending at `nnz` (so none is negative).
pub fn checked_row_pointers(indptr: &[i64], nnz: usize) -> Result<&[u64], String> {
    use rayon::prelude::*;
    if indptr.first() != Some(&0)
        || indptr.par_windows(2).any(|w| w[0] > w[1])
        || indptr.last().map(|&v| v as u64) != Some(nnz as u64)
    {
        return Err("indptr is not a valid CSR row pointer".into());
    }
    Ok(bytemuck::cast_slice(indptr))
}

/// scipy's int32 column indices read in place as u32, once checked to lie in `0..n_cols`.
pub fn checked_column_indices(indices: &[i32], n_cols: usize) -> Result<&[u32], String> {
    let idx: &[u32] = bytemuck::cast_slice(indices);
    // Negative indices are above every bound as u32: one vectorised maximum checks both.
    if max_par(idx).is_some_and(|m| m as usize >= n_cols) {
        return Err(format!("a column index is outside 0..{n_cols}"));
    }
    Ok(idx)
}

impl CsrMatrix {
    /// An empty matrix with `n_cols` columns and no rows.
    pub fn empty(n_cols: usize) -> Self {
        CsrMatrix {
            n_rows: 0,
            n_cols,
            indptr: vec![0],
            indices: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> u64 {
        self.data.len() as u64
    }

    /// The stored column indices and values of row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.row_range(i);
        (&self.indices[r.clone()], &self.data[r])
    }

    /// The range of stored entries of row `i`.
    pub fn row_range(&self, i: usize) -> Range<usize> {
        self.indptr[i] as usize..self.indptr[i + 1] as usize
    }

    /// Builds a CSR matrix from a dense row-major array, dropping zeros.
    pub fn from_dense(n_rows: usize, n_cols: usize, values: &[f32]) -> Self {
        assert_eq!(
            values.len(),
            n_rows * n_cols,
            "dense buffer has the wrong length"
        );
        let mut m = CsrMatrix::empty(n_cols);
        for row in values.chunks(n_cols.max(1)).take(n_rows) {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    m.indices.push(j as u32);
                    m.data.push(v);
                }
            }
            m.indptr.push(m.data.len() as u64);
        }
        m.n_rows = n_rows;
        m
    }

    /// The matrix as a dense row-major buffer (tests and small data only).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.n_rows * self.n_cols];
        for i in 0..self.n_rows {
            let (idx, val) = self.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                out[i * self.n_cols + j as usize] += v;
            }
        }
        out
    }

    /// A copy of scipy's CSR arrays (int64 row pointers, int32 indices, float32 values), checked
    /// as a file's are ([`checked_row_pointers`], [`checked_column_indices`]). Checks and
    /// copies run in parallel into huge-page buffers.
    pub fn from_slices(
        indptr: &[i64],
        indices: &[i32],
        data: &[f32],
        n_cols: usize,
    ) -> Result<CsrMatrix, String> {
        let n_rows = indptr.len().checked_sub(1).ok_or("empty indptr")?;
        let indptr = checked_row_pointers(indptr, data.len())?;
        if indices.len() != data.len() {
            return Err("indices and data differ in length".into());
        }
        let indices = checked_column_indices(indices, n_cols)?;
        Ok(CsrMatrix {
            n_rows,
            n_cols,
            indptr: map_par(indptr, |&v| v),
            indices: map_par(indices, |&v| v),
            data: map_par(data, |&v| v),
        })
    }

    /// Appends the rows of `other` (same number of columns) below this matrix.
    pub fn append_rows(&mut self, other: &CsrMatrix) {
        assert_eq!(self.n_cols, other.n_cols, "column counts differ");
        let base = self.nnz();
        self.indptr
            .extend(other.indptr[1..].iter().map(|p| p + base));
        self.indices.extend_from_slice(&other.indices);
        self.data.extend_from_slice(&other.data);
        self.n_rows += other.n_rows;
    }

    /// Rows `rows` of this matrix as a new matrix.
    pub fn slice_rows(&self, rows: Range<usize>) -> CsrMatrix {
        let lo = self.indptr[rows.start];
        let hi = self.indptr[rows.end];
        CsrMatrix {
            n_rows: rows.len(),
            n_cols: self.n_cols,
            indptr: self.indptr[rows.start..=rows.end]
                .iter()
                .map(|p| p - lo)
                .collect(),
            indices: self.indices[lo as usize..hi as usize].to_vec(),
            data: self.data[lo as usize..hi as usize].to_vec(),
        }
    }

    /// Sorts column indices within each row and sums duplicate entries, as scipy's
    /// `sum_duplicates` does. Returns true when anything had to change.
    pub fn canonicalize(&mut self) -> bool {
        use rayon::prelude::*;
        // Rows already canonical are left in place: the common case (every row sorted) is one
        // parallel read of the indices and no write.
        let first = (0..self.n_rows).into_par_iter().find_first(|&i| {
            let r = self.row_range(i);
            !self.indices[r].windows(2).all(|w| w[0] < w[1])
        });
        let Some(first) = first else {
            return false;
        };
        let mut changed = false;
        let mut write = self.indptr[first] as usize;
        let mut new_indptr = Vec::with_capacity(self.indptr.len());
        new_indptr.extend_from_slice(&self.indptr[..=first]);
        let mut pairs: Vec<(u32, f32)> = Vec::new();
        for i in first..self.n_rows {
            let r = self.row_range(i);
            let sorted = self.indices[r.clone()].windows(2).all(|w| w[0] < w[1]);
            if sorted {
                if r.start != write {
                    self.indices.copy_within(r.clone(), write);
                    self.data.copy_within(r.clone(), write);
                }
                write += r.len();
            } else {
                changed = true;
                pairs.clear();
                pairs.extend(
                    self.indices[r.clone()]
                        .iter()
                        .copied()
                        .zip(self.data[r].iter().copied()),
                );
                pairs.sort_by_key(|p| p.0);
                let mut k = 0;
                while k < pairs.len() {
                    let (j, mut v) = pairs[k];
                    k += 1;
                    while k < pairs.len() && pairs[k].0 == j {
                        v += pairs[k].1;
                        k += 1;
                    }
                    self.indices[write] = j;
                    self.data[write] = v;
                    write += 1;
                }
            }
            new_indptr.push(write as u64);
        }
        self.indices.truncate(write);
        self.data.truncate(write);
        self.indptr = new_indptr;
        changed
    }

    /// Keeps only the columns where `keep[j]` is `Some(new_j)`, renumbering them.
    pub fn select_columns(&self, keep: &[Option<u32>], new_n_cols: usize) -> CsrMatrix {
        let mut out = CsrMatrix::empty(new_n_cols);
        for i in 0..self.n_rows {
            let (idx, val) = self.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                if let Some(nj) = keep[j as usize] {
                    out.indices.push(nj);
                    out.data.push(v);
                }
            }
            out.indptr.push(out.data.len() as u64);
        }
        out.n_rows = self.n_rows;
        out
    }

    /// Places the columns of `right` after those of `self` (same rows).
    pub fn hstack(&self, right: &CsrMatrix) -> CsrMatrix {
        assert_eq!(self.n_rows, right.n_rows, "row counts differ");
        let mut out = CsrMatrix::empty(self.n_cols + right.n_cols);
        for i in 0..self.n_rows {
            let (a_idx, a_val) = self.row(i);
            let (b_idx, b_val) = right.row(i);
            out.indices.extend_from_slice(a_idx);
            out.data.extend_from_slice(a_val);
            out.indices
                .extend(b_idx.iter().map(|&j| j + self.n_cols as u32));
            out.data.extend_from_slice(b_val);
            out.indptr.push(out.data.len() as u64);
        }
        out.n_rows = self.n_rows;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalize_sorts_and_sums_duplicates() {
        let mut m = CsrMatrix {
            n_rows: 2,
            n_cols: 4,
            indptr: vec![0, 3, 5],
            indices: vec![3, 1, 3, 0, 2],
            data: vec![1.0, 2.0, 4.0, 5.0, 6.0],
        };
        assert!(m.canonicalize());
        assert_eq!(m.indptr, vec![0, 2, 4]);
        assert_eq!(m.indices, vec![1, 3, 0, 2]);
        assert_eq!(m.data, vec![2.0, 5.0, 5.0, 6.0]);
        assert!(!m.canonicalize());
    }

    #[test]
    fn canonicalize_starts_at_the_first_unsorted_row_and_keeps_the_rows_before() {
        // Rows 0 and 1 sorted (1 empty), row 2 with a duplicate, row 3 sorted but shifted by
        // the merge, row 4 reversed.
        let mut m = CsrMatrix {
            n_rows: 5,
            n_cols: 5,
            indptr: vec![0, 2, 2, 5, 7, 9],
            indices: vec![0, 4, 2, 2, 1, 0, 3, 4, 1],
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        };
        assert!(m.canonicalize());
        assert_eq!(m.indptr, vec![0, 2, 2, 4, 6, 8]);
        assert_eq!(m.indices, vec![0, 4, 1, 2, 0, 3, 1, 4]);
        assert_eq!(m.data, vec![1.0, 2.0, 5.0, 7.0, 6.0, 7.0, 9.0, 8.0]);
        let before = m.clone();
        assert!(!m.canonicalize());
        assert_eq!(m, before);
    }

    #[test]
    fn from_slices_copies_and_checks_like_a_reader() {
        let m = CsrMatrix::from_slices(&[0, 2, 2, 3], &[1, 3, 0], &[1.0, 2.0, 3.0], 4).unwrap();
        assert_eq!((m.n_rows, m.n_cols), (3, 4));
        assert_eq!(m.indptr, vec![0, 2, 2, 3]);
        assert_eq!(m.indices, vec![1, 3, 0]);
        assert_eq!(m.data, vec![1.0, 2.0, 3.0]);
        let err = |p: &[i64], i: &[i32], d: &[f32]| CsrMatrix::from_slices(p, i, d, 4).unwrap_err();
        assert!(err(&[], &[], &[]).contains("empty"));
        assert!(err(&[1, 1], &[0], &[1.0]).contains("row pointer"));
        assert!(err(&[0, 2, 1], &[0], &[1.0]).contains("row pointer"));
        assert!(err(&[0, 2], &[0, 1], &[1.0]).contains("row pointer"));
        assert!(err(&[0, 1], &[0, 1], &[1.0]).contains("differ"));
        assert!(err(&[0, 1], &[4], &[1.0]).contains("outside 0..4"));
        assert!(err(&[0, 1], &[-1], &[1.0]).contains("outside 0..4"));
        let empty = CsrMatrix::from_slices(&[0, 0], &[], &[], 0).unwrap();
        assert_eq!(empty.nnz(), 0);
    }

    #[test]
    fn dense_round_trip_and_slicing() {
        let d = [0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 4.0, 5.0];
        let m = CsrMatrix::from_dense(3, 3, &d);
        assert_eq!(m.nnz(), 5);
        assert_eq!(m.to_dense(), d);
        let s = m.slice_rows(1..3);
        assert_eq!(s.to_dense(), d[3..].to_vec());
        let mut top = m.slice_rows(0..1);
        top.append_rows(&s);
        assert_eq!(top, m);
    }

    #[test]
    fn column_selection_and_hstack() {
        let m = CsrMatrix::from_dense(2, 3, &[1.0, 0.0, 2.0, 0.0, 3.0, 4.0]);
        let sel = m.select_columns(&[Some(0), None, Some(1)], 2);
        assert_eq!(sel.to_dense(), vec![1.0, 2.0, 0.0, 4.0]);
        let h = sel.hstack(&m);
        assert_eq!(h.n_cols, 5);
        assert_eq!(
            h.to_dense(),
            vec![1.0, 2.0, 1.0, 0.0, 2.0, 0.0, 4.0, 0.0, 3.0, 4.0]
        );
    }
}
