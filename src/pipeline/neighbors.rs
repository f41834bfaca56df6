//! Stage 8, neighbours: scanpy's `neighbors(n_neighbors)` on all PCs, the kNN search (exact,
//! or NN-descent by `--knn`), umap's connectivities and the distance matrix.

use crate::backend::Backend;
use crate::matrix::CsrMatrix;
use crate::tl::neighbors;

use super::options::{APPROX_KNN_ABOVE, KnnMethod, RunOptions};
use super::pca::Projected;

/// The kNN graph under scanpy's keys.
pub(crate) struct Graph {
    /// Neighbours per cell, self included (`uns["neighbors"]["params"]["n_neighbors"]`).
    pub k: usize,
    /// `obsp["connectivities"]`.
    pub connectivities: CsrMatrix,
    /// `obsp["distances"]` (float64).
    pub distances: CsrMatrix<f64>,
}

/// Whether the neighbour search of `n` cells on `backend` is NN-descent.
pub(crate) fn is_approximate(method: KnnMethod, backend: &dyn Backend, n: usize) -> bool {
    match method {
        // A GPU runs the exact search at any size (1M x 50 in seconds on a datacentre GPU).
        KnnMethod::Auto => backend.name() != "gpu" && n > APPROX_KNN_ABOVE,
        KnnMethod::Exact => false,
        KnnMethod::Approx => true,
    }
}

/// The kNN graph of the cells' PCA coordinates.
pub(crate) fn neighbors(pca: &Projected, backend: &dyn Backend, opts: &RunOptions) -> Graph {
    let dim = pca.fit.n_comps;
    let n = pca.x_pca.len() / dim.max(1);
    // scanpy caps n_neighbors at 1 + n/2 when it exceeds n.
    let k = if opts.n_neighbors > n {
        1 + n / 2
    } else {
        opts.n_neighbors
    };
    let (idx, dist) = if is_approximate(opts.knn, backend, n) {
        backend.knn_approx(&pca.x_pca, dim, k, 0)
    } else {
        backend.knn_exact(&pca.x_pca, dim, k)
    };
    let connectivities = neighbors::connectivities(&idx, &dist, k);
    let (indptr, indices, data) = neighbors::distance_matrix(&idx, &dist, k);
    Graph {
        k,
        connectivities,
        distances: CsrMatrix {
            n_rows: n,
            n_cols: n,
            indptr,
            indices,
            data,
        },
    }
}
