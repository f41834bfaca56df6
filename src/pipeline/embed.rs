//! Stages 9 and 10, cluster and embed: scanpy's `leiden(resolution, flavor="igraph",
//! n_iterations=2)` (or its default `flavor="leidenalg"` with `--leiden-flavor leidenalg`) and
//! `umap(min_dist)` on the connectivities (docs/algorithms.md section 6), each optional.

use crate::backend::Backend;
use crate::error::Result;
use crate::tl::leiden::{Clustering, LeidenParams};
use crate::tl::umap::{Umap, UmapParams, umap_on};

use super::RunOptions;
use super::neighbors::Graph;
use super::pca::Projected;

/// Leiden clusters of the graph, with the parameters that made them.
pub(crate) fn cluster(graph: &Graph, opts: &RunOptions) -> (Clustering, LeidenParams) {
    let params = LeidenParams {
        resolution: opts.resolution,
        seed: opts.seed,
        n_iterations: opts.leiden_flavor.n_iterations(),
    };
    (
        opts.leiden_flavor.run(&graph.connectivities, &params),
        params,
    )
}

/// The UMAP layout of the graph, initialised as umap-learn does from the PCA coordinates.
pub(crate) fn embed(
    graph: &Graph,
    pca: &Projected,
    backend: &dyn Backend,
    opts: &RunOptions,
) -> Result<Umap> {
    let params = UmapParams {
        min_dist: opts.umap_min_dist,
        seed: opts.seed,
        ..UmapParams::default()
    };
    umap_on(
        backend,
        &graph.connectivities,
        Some((&pca.x_pca, pca.fit.n_comps)),
        &params,
    )
}
