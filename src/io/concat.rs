//! Several count sources as one, cells stacked in order: anndata's
//! `concat(parts, join="inner", label=LABEL, keys=KEYS, index_unique="-")`.
//!
//! - Genes: the names every part has (the inner join), in the first part's order; their
//!   columns in each part are remapped on the fly while rows are read, so nothing is copied.
//!   An empty intersection is an error.
//! - Cells: `BARCODE-KEY`; obs gets the categorical label column (categories = keys, in order)
//!   and the obs columns that every part has (the inner join), unified as anndata does:
//!   categoricals get the natural-sorted union of their categories, numbers of different
//!   widths become float64, mixed text becomes strings; a column whose types cannot be
//!   unified is dropped with a warning.
//! - var: the columns whose values agree across all parts on the shared genes (anndata's
//!   `merge="same"`; anndata's default, no merge, would drop them all).

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use super::{Column, CountSource, Frame, RowReader, XInfo};
use crate::error::{Error, Result};
use crate::matrix::CsrMatrix;

/// Reads rows across the parts, with each part's genes mapped onto the shared ones.
struct ConcatReader {
    parts: Vec<(CountSource, Vec<Option<u32>>)>,
    /// First row of each part, and the total at the end.
    offsets: Vec<usize>,
    n_cols: usize,
}

impl RowReader for ConcatReader {
    fn read_rows(&mut self, rows: Range<usize>) -> Result<CsrMatrix> {
        let mut out = CsrMatrix::empty(self.n_cols);
        for (p, (src, map)) in self.parts.iter_mut().enumerate() {
            let (lo, hi) = (self.offsets[p], self.offsets[p + 1]);
            let (a, b) = (rows.start.max(lo), rows.end.min(hi));
            if a < b {
                let m = src.read_rows(a - lo..b - lo)?;
                out.append_rows(&m.select_columns(map, self.n_cols));
            }
        }
        Ok(out)
    }
}

/// Natural-sort key (natsort's default): text runs compared as text, digit runs as numbers.
fn natural_key(s: &str) -> Vec<(String, u128)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut digits = String::from(c);
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            key.push((
                std::mem::take(&mut text),
                digits.parse().unwrap_or(u128::MAX),
            ));
        } else {
            text.push(c);
        }
    }
    if !text.is_empty() {
        key.push((text, 0));
    }
    key
}

/// The parts' columns of one name stacked, unified as anndata's `concat` does.
fn stack_columns(cols: &[&Column]) -> Option<Column> {
    let all = |f: fn(&Column) -> bool| cols.iter().all(|c| f(c));
    if all(|c| matches!(c, Column::Categorical { .. })) {
        let mut categories: Vec<String> = Vec::new();
        for c in cols {
            if let Column::Categorical { categories: cs, .. } = c {
                for s in cs {
                    if !categories.contains(s) {
                        categories.push(s.clone());
                    }
                }
            }
        }
        categories.sort_by_cached_key(|s| natural_key(s));
        let mut codes = Vec::new();
        for c in cols {
            if let Column::Categorical {
                codes: k,
                categories: cs,
                ..
            } = c
            {
                let remap: Vec<i32> = cs
                    .iter()
                    .map(|s| categories.iter().position(|t| t == s).unwrap_or(0) as i32)
                    .collect();
                codes.extend(
                    k.iter()
                        .map(|&k| usize::try_from(k).map_or(-1, |k| remap[k])),
                );
            }
        }
        return Some(Column::Categorical {
            codes,
            categories,
            ordered: false,
        });
    }
    if all(|c| matches!(c, Column::Bool(_))) {
        return Some(Column::Bool(
            cols.iter()
                .flat_map(|c| match c {
                    Column::Bool(v) => v.clone(),
                    _ => Vec::new(),
                })
                .collect(),
        ));
    }
    let same_kind = cols
        .iter()
        .all(|c| std::mem::discriminant(*c) == std::mem::discriminant(cols[0]));
    let numeric = |c: &Column| -> Option<Vec<f64>> {
        match c {
            Column::F64(v) => Some(v.clone()),
            Column::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
            Column::I64(v) => Some(v.iter().map(|&x| x as f64).collect()),
            Column::I32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
            _ => None,
        }
    };
    match cols[0] {
        Column::I64(_) if same_kind => {
            return Some(Column::I64(
                cols.iter()
                    .flat_map(|c| match c {
                        Column::I64(v) => v.clone(),
                        _ => Vec::new(),
                    })
                    .collect(),
            ));
        }
        Column::I32(_) if same_kind => {
            return Some(Column::I32(
                cols.iter()
                    .flat_map(|c| match c {
                        Column::I32(v) => v.clone(),
                        _ => Vec::new(),
                    })
                    .collect(),
            ));
        }
        Column::F32(_) if same_kind => {
            return Some(Column::F32(
                cols.iter()
                    .flat_map(|c| match c {
                        Column::F32(v) => v.clone(),
                        _ => Vec::new(),
                    })
                    .collect(),
            ));
        }
        _ => {}
    }
    if cols.iter().all(|c| numeric(c).is_some()) {
        return Some(Column::F64(
            cols.iter()
                .flat_map(|c| numeric(c).unwrap_or_default())
                .collect(),
        ));
    }
    let text: Option<Vec<Vec<Option<String>>>> = cols.iter().map(|c| c.as_strings()).collect();
    let text: Vec<Option<String>> = text?.into_iter().flatten().collect();
    if text.iter().all(Option::is_some) {
        Some(Column::Str(text.into_iter().flatten().collect()))
    } else {
        Some(Column::NullableStr {
            mask: text.iter().map(Option::is_none).collect(),
            values: text.into_iter().map(Option::unwrap_or_default).collect(),
        })
    }
}

/// Stacks `parts` (key, source) along cells; `label` names the obs column of keys; `file`
/// (e.g. the manifest listing the parts) is named by errors about the combination.
pub fn concat(file: &Path, label: &str, parts: Vec<(String, CountSource)>) -> Result<CountSource> {
    let Some((_, first)) = parts.first() else {
        return Err(Error::invalid(file, "rows", "nothing to concatenate"));
    };
    // Shared genes, in the first part's order.
    let mut shared: Vec<String> = first.var.index.clone();
    for (key, src) in &parts[1..] {
        let names: HashSet<&str> = src.var.index.iter().map(String::as_str).collect();
        shared.retain(|g| names.contains(g.as_str()));
        if shared.is_empty() {
            return Err(Error::invalid(
                file,
                format!("sample {key}"),
                format!(
                    "{} shares no gene name with the samples before it (genes are joined on their intersection, as anndata's concat join=\"inner\")",
                    src.path.display()
                ),
            ));
        }
    }
    let n_cols = shared.len();
    let dropped: Vec<String> = parts
        .iter()
        .filter(|(_, s)| s.n_vars() > n_cols)
        .map(|(k, s)| format!("{k} {}", s.n_vars() - n_cols))
        .collect();
    if !dropped.is_empty() {
        tracing::warn!(
            "{}: {n_cols} genes are in every sample; genes not in all of them are dropped (inner join): {}",
            file.display(),
            dropped.join(", ")
        );
    }
    let position: std::collections::HashMap<&str, u32> = shared
        .iter()
        .enumerate()
        .map(|(j, g)| (g.as_str(), j as u32))
        .collect();
    // Each part's gene -> shared column, and its rows of the shared genes (for var).
    let maps: Vec<Vec<Option<u32>>> = parts
        .iter()
        .map(|(_, s)| {
            s.var
                .index
                .iter()
                .map(|g| position.get(g.as_str()).copied())
                .collect()
        })
        .collect();
    let var_rows: Vec<Vec<usize>> = maps
        .iter()
        .map(|m| {
            let mut rows = vec![0usize; n_cols];
            for (i, j) in m.iter().enumerate() {
                if let Some(j) = j {
                    rows[*j as usize] = i;
                }
            }
            rows
        })
        .collect();
    let mut var = Frame::new(shared);
    for (name, col) in &first.var.columns {
        let ours = col.take(&var_rows[0]);
        let same = parts
            .iter()
            .zip(&var_rows)
            .skip(1)
            .all(|((_, s), rows)| s.var.column(name).is_some_and(|c| c.take(rows) == ours));
        if same {
            var.set(name.clone(), ours);
        }
    }

    // obs: BARCODE-KEY, the shared columns, the label.
    let mut offsets = vec![0usize];
    let mut index = Vec::new();
    for (key, s) in &parts {
        index.extend(s.obs.index.iter().map(|b| format!("{b}-{key}")));
        offsets.push(offsets.last().copied().unwrap_or(0) + s.n_obs());
    }
    let mut obs = Frame::new(index);
    for (name, _) in &first.obs.columns {
        if name == label {
            continue;
        }
        let cols: Option<Vec<&Column>> = parts.iter().map(|(_, s)| s.obs.column(name)).collect();
        let Some(cols) = cols else { continue };
        match stack_columns(&cols) {
            Some(c) => obs.set(name.clone(), c),
            None => tracing::warn!(
                "{}: obs column '{name}' has types that cannot be combined across samples; dropped",
                file.display()
            ),
        }
    }
    let codes: Vec<i32> = (0..parts.len())
        .flat_map(|p| std::iter::repeat_n(p as i32, offsets[p + 1] - offsets[p]))
        .collect();
    obs.set(
        label,
        Column::Categorical {
            codes,
            categories: parts.iter().map(|(k, _)| k.clone()).collect(),
            ordered: false,
        },
    );

    let element = if parts.iter().all(|(_, s)| s.x.element == first.x.element) {
        first.x.element.clone()
    } else {
        "X".to_string()
    };
    let x = XInfo {
        element,
        storage: first.x.storage,
        dtype: first.x.dtype.clone(),
        n_rows: obs.len(),
        n_cols,
    };
    let (format, gene_name_source) = (first.format, first.gene_name_source.clone());
    let names_made_unique = parts.iter().any(|(_, s)| s.names_made_unique);
    Ok(CountSource {
        path: file.to_path_buf(),
        format,
        x,
        obs,
        var,
        gene_name_source,
        names_made_unique,
        genomes: Vec::new(),
        layers: Vec::new(),
        has_raw: false,
        reader: Box::new(ConcatReader {
            parts: parts
                .into_iter()
                .zip(maps)
                .map(|((_, s), m)| (s, m))
                .collect(),
            offsets,
            n_cols,
        }),
        column_map: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        let mut v = vec!["day90", "day14", "day7", "infusion", "Day1"];
        v.sort_by_cached_key(|s| natural_key(s));
        assert_eq!(v, vec!["Day1", "day7", "day14", "day90", "infusion"]);
    }

    #[test]
    fn categoricals_stack_with_the_union_of_categories() {
        let a = Column::Categorical {
            codes: vec![0, 1],
            categories: vec!["b".into(), "c10".into()],
            ordered: false,
        };
        let b = Column::Categorical {
            codes: vec![1, -1],
            categories: vec!["c9".into(), "a".into()],
            ordered: false,
        };
        let Some(Column::Categorical {
            codes, categories, ..
        }) = stack_columns(&[&a, &b])
        else {
            panic!()
        };
        assert_eq!(categories, vec!["a", "b", "c9", "c10"]);
        assert_eq!(codes, vec![1, 3, 0, -1]);
        let n = stack_columns(&[&Column::I32(vec![1]), &Column::F64(vec![0.5])]);
        assert_eq!(n, Some(Column::F64(vec![1.0, 0.5])));
    }
}
