//! Assembling the outputs: the AnnData of a run under scanpy's own keys (obs, var, obsm,
//! varm, obsp, uns), so that scanpy plots `result.h5ad` at once.

use ndarray::Array2;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::io::{AnnData, Column, Dense, Frame, RecordColumn, UnsValue};
use crate::tl::leiden::{Clustering, LeidenParams};
use crate::tl::markers::GroupMarkers;
use crate::tl::umap::Umap;

use super::hvg::Hvgs;
use super::neighbors::Graph;
use super::pca::Projected;
use super::stage::Stopwatch;
use super::{Analysis, RunOptions, Stages, summary};

/// What the stages after PCA produced.
pub(crate) struct Embedding {
    /// The kNN graph.
    pub graph: Graph,
    /// Leiden clusters, when clustering ran.
    pub clusters: Option<(Clustering, LeidenParams)>,
    /// The UMAP layout, when it ran.
    pub layout: Option<Umap>,
}

/// Adds `obs["leiden"]` (categorical, "0" the largest cluster).
fn add_leiden(obs: &mut Frame, clusters: Option<&(Clustering, LeidenParams)>) {
    if let Some((c, _)) = clusters {
        obs.set(
            "leiden",
            Column::Categorical {
                codes: c.membership.iter().map(|&m| m as i32).collect(),
                categories: (0..c.n_clusters).map(|k| k.to_string()).collect(),
                ordered: false,
            },
        );
    }
}

/// var's HVG columns: `highly_variable`, then the flavor's own.
fn add_hvg_columns(var: &mut Frame, hvgs: Hvgs) {
    let s = hvgs.selection;
    var.set("highly_variable", Column::Bool(s.highly_variable));
    for (name, col) in s.var_columns {
        var.set(name, col);
    }
}

/// `varm["PCs"]`: the loadings of the HVGs, zeros for the other genes (as scanpy stores them
/// with `mask_var`).
fn loadings(pca: &Projected, hvg_cols: &[u32], n_genes: usize) -> Array2<f32> {
    let c = pca.fit.n_comps;
    let mut pcs = Array2::<f32>::zeros((n_genes, c));
    for (a, &j) in hvg_cols.iter().enumerate() {
        for k in 0..c {
            pcs[(j as usize, k)] = pca.fit.components[a * c + k] as f32;
        }
    }
    pcs
}

fn map(entries: Vec<(&str, UnsValue)>) -> UnsValue {
    UnsValue::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// uns entries of the preprocessing: `log1p`, `hvg`, `pca`, `neighbors`, `cartscope`.
fn uns_preprocessing(
    pca: &Projected,
    graph: &Graph,
    backend: &str,
    opts: &RunOptions,
) -> Vec<(String, UnsValue)> {
    let flavor = serde_json::to_value(opts.hvg_flavor)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let f32s = |v: &[f64]| UnsValue::F32s(v.iter().map(|&x| x as f32).collect());
    vec![
        // scanpy's marker that X is log-transformed (natural log: base None, which anndata
        // does not store, so the mapping is empty; scanpy reads the base with .get).
        ("log1p".to_string(), UnsValue::Map(Vec::new())),
        (
            "hvg".to_string(),
            map(vec![("flavor", UnsValue::Str(flavor))]),
        ),
        (
            "pca".to_string(),
            map(vec![
                (
                    "params",
                    map(vec![
                        ("zero_center", UnsValue::Bool(true)),
                        ("mask_var", UnsValue::Str("highly_variable".into())),
                    ]),
                ),
                ("variance", f32s(&pca.fit.variance)),
                ("variance_ratio", f32s(&pca.fit.variance_ratio)),
            ]),
        ),
        (
            "neighbors".to_string(),
            map(vec![
                ("connectivities_key", UnsValue::Str("connectivities".into())),
                ("distances_key", UnsValue::Str("distances".into())),
                (
                    "params",
                    map(vec![
                        ("n_neighbors", UnsValue::Int(graph.k as i64)),
                        ("method", UnsValue::Str("umap".into())),
                        ("random_state", UnsValue::Int(0)),
                        ("metric", UnsValue::Str("euclidean".into())),
                        ("n_pcs", UnsValue::Int(pca.fit.n_comps as i64)),
                    ]),
                ),
            ]),
        ),
        (
            "cartscope".to_string(),
            map(vec![("backend", UnsValue::Str(backend.into()))]),
        ),
    ]
}

/// uns entries of clustering and embedding: `leiden` and `umap`, for the stages that ran.
fn uns_embedding(e: &Embedding) -> Vec<(String, UnsValue)> {
    let mut uns = Vec::new();
    if let Some((c, p)) = &e.clusters {
        uns.push((
            "leiden".to_string(),
            map(vec![
                (
                    "params",
                    map(vec![
                        ("resolution", UnsValue::Float(p.resolution)),
                        ("random_state", UnsValue::Int(p.seed as i64)),
                        ("n_iterations", UnsValue::Int(p.n_iterations)),
                    ]),
                ),
                ("modularity", UnsValue::Float(c.modularity)),
            ]),
        ));
    }
    if let Some(u) = &e.layout {
        uns.push((
            "umap".to_string(),
            map(vec![(
                "params",
                map(vec![
                    ("a", UnsValue::Float(u.a)),
                    ("b", UnsValue::Float(u.b)),
                ]),
            )]),
        ));
    }
    uns
}

/// `uns["rank_genes_groups"]` (and `uns["rank_genes_groups_<column>"]` for each further
/// grouping) in scanpy's layout: record arrays with one field per group, best gene first.
pub(crate) fn uns_markers(
    m: &super::markers::Markers,
    genes: &[String],
) -> Vec<(String, UnsValue)> {
    m.tables
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.groups.is_empty())
        .map(|(i, t)| {
            let key = match i {
                0 => "rank_genes_groups".to_string(),
                _ => format!("rank_genes_groups_{}", t.groupby),
            };
            let records = |f: &dyn Fn(&GroupMarkers) -> RecordColumn| {
                UnsValue::Records(t.groups.iter().map(|g| (g.group.clone(), f(g))).collect())
            };
            let names = records(&|g| {
                RecordColumn::Str(g.genes.iter().map(|&j| genes[j as usize].clone()).collect())
            });
            let value = map(vec![
                (
                    "params",
                    map(vec![
                        ("groupby", UnsValue::Str(t.groupby.clone())),
                        (
                            "reference",
                            UnsValue::Str(
                                t.reference.map_or("rest".into(), |r| t.labels[r].clone()),
                            ),
                        ),
                        (
                            "method",
                            UnsValue::Str(m.params.method.scanpy_name().into()),
                        ),
                        ("use_raw", UnsValue::Bool(false)),
                        (
                            "corr_method",
                            UnsValue::Str(m.params.correction.scanpy_name().into()),
                        ),
                    ]),
                ),
                ("names", names),
                ("scores", records(&|g| RecordColumn::F32(g.scores.clone()))),
                (
                    "logfoldchanges",
                    records(&|g| RecordColumn::F32(g.logfoldchanges.clone())),
                ),
                ("pvals", records(&|g| RecordColumn::F64(g.pvals.clone()))),
                (
                    "pvals_adj",
                    records(&|g| RecordColumn::F64(g.pvals_adj.clone())),
                ),
            ]);
            (key, value)
        })
        .collect()
}

/// The parts of an AnnData that do not come from the stages after PCA.
struct Tables {
    /// obs with every column.
    pub obs: Frame,
    /// var with every column.
    pub var: Frame,
    /// X (None when it was streamed to the output file).
    pub x: Option<crate::matrix::CsrMatrix>,
    /// `layers["counts"]` (`--keep-counts`).
    pub counts: Option<crate::matrix::CsrMatrix>,
    /// The HVG columns (for `varm["PCs"]`).
    pub hvg_cols: Vec<u32>,
}

/// The AnnData of a run.
fn anndata(
    t: Tables,
    pca: Projected,
    e: Embedding,
    markers: Option<&super::markers::Markers>,
    backend: &str,
    opts: &RunOptions,
) -> Result<AnnData> {
    let n = t.obs.len();
    let mut uns = uns_preprocessing(&pca, &e.graph, backend, opts);
    uns.extend(uns_embedding(&e));
    if let Some(m) = markers {
        uns.extend(uns_markers(m, &t.var.index));
    }
    let varm = vec![(
        "PCs".into(),
        Dense::F32(loadings(&pca, &t.hvg_cols, t.var.len())),
    )];
    let shape_error = |what: &str| Error::Internal(format!("{what} has the wrong shape"));
    let x_pca = Array2::from_shape_vec((n, pca.fit.n_comps), pca.x_pca)
        .map_err(|_| shape_error("X_pca"))?;
    let mut obsm = vec![("X_pca".to_string(), Dense::F32(x_pca))];
    if let Some(u) = e.layout {
        let layout =
            Array2::from_shape_vec((n, 2), u.embedding).map_err(|_| shape_error("X_umap"))?;
        obsm.push(("X_umap".into(), Dense::F32(layout)));
    }
    Ok(AnnData {
        obs: t.obs,
        var: t.var,
        x: t.x,
        layers: t
            .counts
            .into_iter()
            .map(|m| ("counts".to_string(), m))
            .collect(),
        obsm,
        varm,
        obsp: vec![("connectivities".into(), e.graph.connectivities)],
        obsp_f64: vec![("distances".into(), e.graph.distances)],
        uns,
    })
}

/// The AnnData and the summary of a finished analysis.
pub(crate) fn analysis(
    s: Stages,
    clock: &Stopwatch,
    backend: &dyn Backend,
    opts: &RunOptions,
) -> Result<Analysis> {
    let Stages {
        filtered: mut f,
        hvgs,
        cart,
        scaling,
        pca: mut projected,
        embedding,
        markers,
        vdj,
    } = s;
    let mut obs = std::mem::take(&mut f.obs);
    add_leiden(&mut obs, embedding.clusters.as_ref());
    cart.annotate(&mut obs);
    if let Some(v) = &vdj {
        v.annotate(&mut obs, &opts.vdj.expansion_breakpoints)?;
    }
    let cart_summary = summary::cart_summary(&f, &obs, &cart, opts);
    let mut var = std::mem::take(&mut f.var);
    add_hvg_columns(&mut var, hvgs);
    let sizes = (scaling.cols.len(), projected.fit.n_comps);
    let mut summary = summary::run_summary(&f, sizes, backend, clock, cart_summary);
    summary.vdj = vdj.map(|v| v.summary);
    let x_writer = projected.x_writer.take();
    let tables = Tables {
        obs,
        var,
        x: f.matrix.into_memory(),
        counts: f.counts_layer,
        hvg_cols: scaling.cols,
    };
    Ok(Analysis {
        adata: anndata(
            tables,
            projected,
            embedding,
            markers.as_ref(),
            backend.name(),
            opts,
        )?,
        x_writer,
        summary,
        markers,
    })
}
