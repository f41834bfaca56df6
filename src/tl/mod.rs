//! scanpy's tools (`sc.tl` and `sc.pp.neighbors`): PCA, the kNN graph with UMAP
//! connectivities, Leiden clustering and the UMAP layout.

pub mod leiden;
pub mod neighbors;
pub mod pca;
pub mod umap;
