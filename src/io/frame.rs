//! Dataframes for `obs` (cells) and `var` (genes), as anndata stores them.

/// One column of an obs/var dataframe.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Strings (anndata `string-array`).
    Str(Vec<String>),
    /// pandas categorical: `codes` index `categories`, -1 = missing.
    Categorical {
        /// Per-row category code, -1 for missing.
        codes: Vec<i32>,
        /// The category labels.
        categories: Vec<String>,
        /// Whether the categories are ordered.
        ordered: bool,
    },
    /// float64.
    F64(Vec<f64>),
    /// float32.
    F32(Vec<f32>),
    /// Any signed or unsigned integer width, widened.
    I64(Vec<i64>),
    /// int32 (kept narrow when written).
    I32(Vec<i32>),
    /// Booleans.
    Bool(Vec<bool>),
    /// pandas nullable integer (`Int64`): `mask[i]` true means missing.
    NullableInt {
        /// Values (meaningless where masked).
        values: Vec<i64>,
        /// True where missing.
        mask: Vec<bool>,
    },
    /// pandas nullable boolean: `mask[i]` true means missing.
    NullableBool {
        /// Values (meaningless where masked).
        values: Vec<bool>,
        /// True where missing.
        mask: Vec<bool>,
    },
    /// pandas nullable string array: `mask[i]` true means missing.
    NullableStr {
        /// Values (meaningless where masked).
        values: Vec<String>,
        /// True where missing.
        mask: Vec<bool>,
    },
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Str(v) => v.len(),
            Column::Categorical { codes, .. } => codes.len(),
            Column::F64(v) => v.len(),
            Column::F32(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::I32(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::NullableInt { values, .. } => values.len(),
            Column::NullableBool { values, .. } => values.len(),
            Column::NullableStr { values, .. } => values.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pandas-style dtype name shown by `cartscope info`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Column::Str(_) => "string",
            Column::Categorical { .. } => "category",
            Column::F64(_) => "float64",
            Column::F32(_) => "float32",
            Column::I64(_) => "int64",
            Column::I32(_) => "int32",
            Column::Bool(_) => "bool",
            Column::NullableInt { .. } => "Int64",
            Column::NullableBool { .. } => "boolean",
            Column::NullableStr { .. } => "string (nullable)",
        }
    }

    /// The column as text, for string-like columns (missing values become `None`).
    pub fn as_strings(&self) -> Option<Vec<Option<String>>> {
        match self {
            Column::Str(v) => Some(v.iter().cloned().map(Some).collect()),
            Column::Categorical {
                codes, categories, ..
            } => Some(
                codes
                    .iter()
                    .map(|&c| {
                        usize::try_from(c)
                            .ok()
                            .and_then(|c| categories.get(c).cloned())
                    })
                    .collect(),
            ),
            Column::NullableStr { values, mask } => Some(
                values
                    .iter()
                    .zip(mask)
                    .map(|(v, &m)| (!m).then(|| v.clone()))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The rows `idx` of this column, in that order.
    pub fn take(&self, idx: &[usize]) -> Column {
        fn t<T: Clone>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().map(|&i| v[i].clone()).collect()
        }
        match self {
            Column::Str(v) => Column::Str(t(v, idx)),
            Column::Categorical {
                codes,
                categories,
                ordered,
            } => {
                // As anndata does when subsetting: categories that no kept row uses are dropped.
                let picked = t(codes, idx);
                let mut remap = vec![-1i32; categories.len()];
                for &c in &picked {
                    if let Ok(c) = usize::try_from(c) {
                        remap[c] = 0;
                    }
                }
                let mut kept = Vec::new();
                for (c, name) in categories.iter().enumerate() {
                    if remap[c] == 0 {
                        remap[c] = kept.len() as i32;
                        kept.push(name.clone());
                    }
                }
                Column::Categorical {
                    codes: picked
                        .iter()
                        .map(|&c| usize::try_from(c).map_or(-1, |c| remap[c]))
                        .collect(),
                    categories: kept,
                    ordered: *ordered,
                }
            }
            Column::F64(v) => Column::F64(t(v, idx)),
            Column::F32(v) => Column::F32(t(v, idx)),
            Column::I64(v) => Column::I64(t(v, idx)),
            Column::I32(v) => Column::I32(t(v, idx)),
            Column::Bool(v) => Column::Bool(t(v, idx)),
            Column::NullableInt { values, mask } => Column::NullableInt {
                values: t(values, idx),
                mask: t(mask, idx),
            },
            Column::NullableBool { values, mask } => Column::NullableBool {
                values: t(values, idx),
                mask: t(mask, idx),
            },
            Column::NullableStr { values, mask } => Column::NullableStr {
                values: t(values, idx),
                mask: t(mask, idx),
            },
        }
    }

    /// Builds a categorical column from labels, categories in order of first appearance.
    pub fn categorical_from(labels: &[String]) -> Column {
        Column::categorical_from_options(labels.iter().map(|l| Some(l.as_str())))
    }

    /// Builds a categorical column from labels, categories in order of first appearance;
    /// `None` is a missing value (code -1).
    pub fn categorical_from_options<'a>(
        labels: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Column {
        let mut categories: Vec<String> = Vec::new();
        let mut lookup = std::collections::HashMap::new();
        let codes = labels
            .into_iter()
            .map(|l| {
                l.map_or(-1, |l| {
                    *lookup.entry(l).or_insert_with(|| {
                        categories.push(l.to_string());
                        (categories.len() - 1) as i32
                    })
                })
            })
            .collect();
        Column::Categorical {
            codes,
            categories,
            ordered: false,
        }
    }
}

/// A dataframe: a row index of strings and named columns of equal length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    /// The row labels (obs_names or var_names).
    pub index: Vec<String>,
    /// Columns in order.
    pub columns: Vec<(String, Column)>,
}

impl Frame {
    /// A frame with the given index and no columns.
    pub fn new(index: Vec<String>) -> Self {
        Frame {
            index,
            columns: Vec::new(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the frame has no rows.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// Adds a column, replacing one of the same name. Panics if its length differs from the index.
    pub fn set(&mut self, name: impl Into<String>, col: Column) {
        let name = name.into();
        assert_eq!(
            col.len(),
            self.index.len(),
            "column '{name}' has the wrong length"
        );
        if let Some(slot) = self.columns.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = col;
        } else {
            self.columns.push((name, col));
        }
    }

    /// The rows `idx` of this frame, in that order.
    pub fn take(&self, idx: &[usize]) -> Frame {
        Frame {
            index: idx.iter().map(|&i| self.index[i].clone()).collect(),
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.take(idx)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categorical_codes_follow_first_appearance_and_none_is_missing() {
        let c = Column::categorical_from_options([Some("b"), None, Some("a"), Some("b")]);
        assert_eq!(
            c,
            Column::Categorical {
                codes: vec![0, -1, 1, 0],
                categories: vec!["b".into(), "a".into()],
                ordered: false,
            }
        );
    }

    #[test]
    fn subsetting_drops_unused_categories_like_anndata() {
        let c = Column::Categorical {
            codes: vec![0, 1, 2, -1, 1],
            categories: vec!["a".into(), "b".into(), "c".into()],
            ordered: false,
        };
        let Column::Categorical {
            codes, categories, ..
        } = c.take(&[4, 3, 2])
        else {
            panic!()
        };
        assert_eq!(categories, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(codes, vec![0, -1, 1]);
    }
}
