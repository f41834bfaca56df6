//! Stage 11, marker genes: scanpy's `rank_genes_groups(adata, groupby)` on the log-normalised
//! matrix for each column of `--markers-groupby` (Leiden clusters by default): one pass for
//! the group statistics of every grouping, and for the Wilcoxon test passes over blocks of
//! genes that gather each gene's values for its ranks (docs/algorithms.md section 10).

use crate::error::{Error, Result};
use crate::io::{Column, Frame};
use crate::tl::leiden::Clustering;
use crate::tl::markers::{
    GroupMarkers, GroupStats, MarkerMethod, MarkerParams, RankSums, collect_columns,
    rank_genes_groups,
};

use super::RunOptions;
use super::data::ChunkCtx;
use super::filter::Filtered;

/// Non-zero values gathered per pass of the Wilcoxon test (8 bytes each).
const RANK_BLOCK_ENTRIES: u64 = 1 << 25;

/// One obs column's groups: each cell's code (-1: no group) and the group labels.
#[derive(Debug, Clone)]
pub(crate) struct Grouping {
    /// The obs column.
    pub column: String,
    /// Group of each cell after QC.
    pub codes: Vec<i32>,
    /// Group labels, in category order.
    pub labels: Vec<String>,
    /// The group every other is compared with (None: the rest of the cells).
    pub reference: Option<usize>,
}

/// The ranked genes of one grouping.
#[derive(Debug, Clone)]
pub(crate) struct MarkerTable {
    /// The obs column (scanpy's `groupby`).
    pub groupby: String,
    /// One table per group with at least two cells, in category order.
    pub groups: Vec<GroupMarkers>,
    /// Groups left out because they hold fewer than two cells.
    pub skipped: Vec<String>,
    /// Every group's label, in category order.
    pub labels: Vec<String>,
    /// The reference group (None: the rest).
    pub reference: Option<usize>,
    /// Cells per group.
    pub sizes: Vec<usize>,
    /// Mean log-normalised expression, `[group * n_genes + gene]`.
    pub mean: Vec<f32>,
    /// Fraction of the group's cells expressing each gene, `[group * n_genes + gene]`.
    pub fraction: Vec<f32>,
    /// Cells with a non-zero value, `[group * n_genes + gene]`, then per gene those of no
    /// group.
    pub nnz: Vec<u64>,
}

/// Marker genes of every grouping, and the parameters that made them.
#[derive(Debug, Clone)]
pub(crate) struct Markers {
    /// The test and the number of genes kept.
    pub params: MarkerParams,
    /// One table per `--markers-groupby` column, in that order.
    pub tables: Vec<MarkerTable>,
}

/// Whether `name` can be a grouping: leiden (when clustering runs), a call column of the run
/// or an obs column of the input.
fn check_groupby(opts: &RunOptions, input_obs: &Frame, call_columns: &Frame) -> Result<()> {
    if !opts.runs_markers() {
        return Ok(());
    }
    for name in opts.marker_columns() {
        let known = name == "leiden"
            || call_columns.column(name).is_some()
            || input_obs.column(name).is_some();
        if !known {
            let mut names: Vec<&str> = Vec::new();
            if opts.cluster {
                names.push("leiden");
            }
            for frame in [call_columns, input_obs] {
                names.extend(frame.columns.iter().map(|(n, _)| n.as_str()));
            }
            return Err(Error::Usage(format!(
                "--markers-groupby: no obs column {name:?} (columns: {})",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// The groupings of `--markers-groupby`: Leiden's clusters, or the column of the calls or of
/// the input obs.
pub(crate) fn groupings(
    opts: &RunOptions,
    input_obs: &Frame,
    call_columns: &Frame,
    clusters: Option<&Clustering>,
) -> Result<Vec<Grouping>> {
    check_groupby(opts, input_obs, call_columns)?;
    let mut out = Vec::new();
    for name in opts.marker_columns() {
        let g = match (name, clusters) {
            ("leiden", Some(c)) => Grouping {
                column: name.to_string(),
                codes: c.membership.iter().map(|&m| m as i32).collect(),
                labels: (0..c.n_clusters).map(|k| k.to_string()).collect(),
                reference: None,
            },
            _ => {
                let col = call_columns
                    .column(name)
                    .or_else(|| input_obs.column(name))
                    .expect("checked");
                grouping_of(name, col)
            }
        };
        out.push(g);
    }
    Ok(out)
}

/// The groups of obs column `col` (categoricals keep their categories; strings, booleans
/// and integers become categories sorted as pandas sorts them).
pub(crate) fn grouping_of(column: &str, col: &Column) -> Grouping {
    if let Column::Categorical {
        codes, categories, ..
    } = col
    {
        return Grouping {
            column: column.to_string(),
            codes: codes.clone(),
            labels: categories.clone(),
            reference: None,
        };
    }
    let values: Vec<Option<String>> = match col {
        Column::F64(v) => v
            .iter()
            .map(|x| x.is_finite().then(|| x.to_string()))
            .collect(),
        Column::F32(v) => v
            .iter()
            .map(|x| x.is_finite().then(|| x.to_string()))
            .collect(),
        other => other.as_strings().unwrap_or_default(),
    };
    let numeric = matches!(
        col,
        Column::I64(_)
            | Column::I32(_)
            | Column::NullableInt { .. }
            | Column::F64(_)
            | Column::F32(_)
    );
    let mut labels: Vec<String> = values.iter().flatten().cloned().collect();
    if numeric {
        labels.sort_by(|a, b| {
            let (x, y) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            x.total_cmp(&y)
        });
    } else {
        labels.sort();
    }
    labels.dedup();
    let codes = values
        .iter()
        .map(|v| {
            v.as_ref()
                .and_then(|v| labels.iter().position(|l| l == v))
                .map_or(-1, |p| p as i32)
        })
        .collect();
    Grouping {
        column: column.to_string(),
        codes,
        labels,
        reference: None,
    }
}

/// Ranks the genes of every grouping against the rest, on the log-normalised matrix.
pub(crate) fn rank(
    f: &mut Filtered,
    groupings: &[Grouping],
    ctx: &ChunkCtx<'_>,
    opts: &RunOptions,
) -> Result<Markers> {
    let params = MarkerParams {
        method: opts.markers_method,
        n_genes: opts.markers_n_genes,
        tie_correct: opts.markers_tie_correct,
        correction: opts.markers_corr_method,
        rankby_abs: opts.markers_rankby_abs,
    };
    let n_genes = f.n_after.1;
    let mut stats: Vec<GroupStats> = groupings
        .iter()
        .map(|g| GroupStats::new(g.labels.len(), n_genes))
        .collect();
    let mut row0 = 0;
    f.matrix.for_each_block(ctx, |x| {
        for (s, g) in stats.iter_mut().zip(groupings) {
            s.push(x, &g.codes[row0..row0 + x.n_rows]);
        }
        row0 += x.n_rows;
        Ok(())
    })?;
    let ranks = match params.method {
        MarkerMethod::Wilcoxon => Some(rank_sums(f, groupings, &stats, ctx)?),
        _ => None,
    };
    let tables = groupings
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let groups = rank_genes_groups(
                &stats[i],
                ranks.as_ref().map(|r| &r[i]),
                &g.labels,
                &params,
                g.reference,
            );
            let skipped = g
                .labels
                .iter()
                .zip(stats[i].sizes())
                .filter(|&(_, &n)| n < 2)
                .map(|(l, _)| l.clone())
                .collect();
            let (mean, fraction) = stats[i].means_fractions();
            MarkerTable {
                groupby: g.column.clone(),
                groups,
                skipped,
                labels: g.labels.clone(),
                reference: g.reference,
                sizes: stats[i].sizes().to_vec(),
                mean,
                fraction,
                nnz: stats[i].nnz().to_vec(),
            }
        })
        .collect();
    Ok(Markers { params, tables })
}

/// The Wilcoxon rank sums of every grouping: genes in blocks of at most
/// [`RANK_BLOCK_ENTRIES`] non-zero values, one pass over the matrix per block.
fn rank_sums(
    f: &mut Filtered,
    groupings: &[Grouping],
    stats: &[GroupStats],
    ctx: &ChunkCtx<'_>,
) -> Result<Vec<RankSums>> {
    let n_genes = f.n_after.1;
    let nnz = stats[0].gene_nnz();
    let mut out: Vec<RankSums> = groupings
        .iter()
        .map(|g| RankSums::new(g.labels.len(), n_genes, g.reference))
        .collect();
    let mut start = 0;
    while start < n_genes {
        let mut end = start;
        let mut entries = 0u64;
        while end < n_genes && (end == start || entries + nnz[end] <= RANK_BLOCK_ENTRIES) {
            entries += nnz[end];
            end += 1;
        }
        let mut columns: Vec<Vec<(f32, u32)>> = (start..end)
            .map(|j| Vec::with_capacity(nnz[j] as usize))
            .collect();
        let mut row0 = 0;
        f.matrix.for_each_block(ctx, |x| {
            collect_columns(x, row0, start..end, &mut columns);
            row0 += x.n_rows;
            Ok(())
        })?;
        for (r, g) in out.iter_mut().zip(groupings) {
            r.add_columns(start, &mut columns, &g.codes);
        }
        start = end;
    }
    Ok(out)
}
