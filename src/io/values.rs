//! Checking that matrix values can be counts.

use serde::Serialize;

use super::CountSource;
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

/// What to do with values that are not raw counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountPolicy {
    /// Non-integer values are an error (true) or allowed (false).
    pub require_integer: bool,
    /// Negative and non-finite values are an error (true) or only warned about (false).
    pub reject_invalid: bool,
}

impl CountPolicy {
    /// The analysis: counts required; `--allow-non-integer` relaxes both checks to warnings.
    pub fn counts(allow_non_integer: bool) -> Self {
        CountPolicy {
            require_integer: !allow_non_integer,
            reject_invalid: !allow_non_integer,
        }
    }

    /// `cartscope info`: non-integers are reported, not rejected; negative or non-finite
    /// values are an error unless `--allow-non-integer`.
    pub fn inspect(allow_non_integer: bool) -> Self {
        CountPolicy {
            require_integer: false,
            reject_invalid: !allow_non_integer,
        }
    }
}

/// What error messages about values name: the file, the matrix element, cells and genes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueNames<'a> {
    /// The input path.
    pub path: &'a std::path::Path,
    /// The matrix element, e.g. `/X`.
    pub field: &'a str,
    /// Cell names by row.
    pub cells: &'a [String],
    /// Gene names by column.
    pub genes: &'a [String],
}

/// Running statistics of the stored values.
#[derive(Debug, Clone, Serialize)]
pub struct ValueScan {
    /// Whether every stored value is a non-negative integer.
    pub raw_counts: bool,
    /// Smallest stored value (0 when nothing is stored).
    pub min: f64,
    /// Largest stored value.
    pub max: f64,
    /// Stored values < 0.
    pub n_negative: u64,
    /// Stored NaN or infinite values.
    pub n_non_finite: u64,
    /// Stored values with a fractional part.
    pub n_non_integer: u64,
    /// Stored entries equal to zero.
    pub n_explicit_zeros: u64,
    /// Cells whose total is zero.
    pub n_empty_cells: u64,
}

impl Default for ValueScan {
    fn default() -> Self {
        ValueScan {
            raw_counts: true,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            n_negative: 0,
            n_non_finite: 0,
            n_non_integer: 0,
            n_explicit_zeros: 0,
            n_empty_cells: 0,
        }
    }
}

impl ValueScan {
    /// Folds a chunk starting at cell `row0` into the statistics, failing on the first value the
    /// policy rejects with a message naming the cell and gene.
    pub fn update(
        &mut self,
        src: &CountSource,
        m: &CsrMatrix,
        row0: usize,
        policy: CountPolicy,
    ) -> Result<()> {
        let names = ValueNames {
            path: &src.path,
            field: &src.x.element,
            cells: &src.obs.index,
            genes: &src.var.index,
        };
        self.update_named(&names, m, row0, policy)
    }

    /// [`ValueScan::update`] with the names its messages need given separately, so a chunk can
    /// be checked while the source reads the next one.
    pub(crate) fn update_named(
        &mut self,
        src: &ValueNames<'_>,
        m: &CsrMatrix,
        row0: usize,
        policy: CountPolicy,
    ) -> Result<()> {
        for i in 0..m.n_rows {
            let (idx, val) = m.row(i);
            let mut total = 0f64;
            for (&j, &v) in idx.iter().zip(val) {
                let v64 = f64::from(v);
                let problem = if !v.is_finite() {
                    self.n_non_finite += 1;
                    policy.reject_invalid.then_some("non-finite value")
                } else if v < 0.0 {
                    self.n_negative += 1;
                    policy.reject_invalid.then_some("negative value")
                } else if v.fract() != 0.0 {
                    self.n_non_integer += 1;
                    policy.require_integer.then_some("non-integer value")
                } else {
                    None
                };
                if let Some(what) = problem {
                    return Err(Error::Values {
                        path: src.path.to_path_buf(),
                        field: src.field.to_string(),
                        message: format!(
                            "{what} {v} at cell '{}' (row {}), gene '{}': raw counts expected (--allow-non-integer accepts such values with a warning)",
                            src.cells[row0 + i],
                            row0 + i,
                            src.genes[j as usize]
                        ),
                    });
                }
                if v == 0.0 {
                    self.n_explicit_zeros += 1;
                }
                if v.is_finite() {
                    self.min = self.min.min(v64);
                    self.max = self.max.max(v64);
                    total += v64;
                }
            }
            if total == 0.0 {
                self.n_empty_cells += 1;
            }
        }
        self.raw_counts = self.n_negative == 0 && self.n_non_finite == 0 && self.n_non_integer == 0;
        Ok(())
    }

    /// Logs warnings for values a relaxed policy let through; non-integers only when
    /// `non_integer` is set (where counts were expected).
    pub fn warn(&self, src: &CountSource, non_integer: bool) {
        let p = src.path.display();
        if self.n_negative + self.n_non_finite > 0 {
            tracing::warn!(
                "{p}: {} negative and {} non-finite values in {}",
                self.n_negative,
                self.n_non_finite,
                src.x.element
            );
        }
        if non_integer && self.n_non_integer > 0 {
            tracing::warn!(
                "{p}: {} non-integer values in {}: not raw counts",
                self.n_non_integer,
                src.x.element
            );
        }
    }

    /// Smallest and largest stored values, 0 for an all-empty matrix.
    pub fn range(&self) -> (f64, f64) {
        if self.min > self.max {
            (0.0, 0.0)
        } else {
            (self.min, self.max)
        }
    }
}
