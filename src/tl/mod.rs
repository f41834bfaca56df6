//! scanpy's tools (`sc.tl` and `sc.pp.neighbors`): PCA and the kNN graph with UMAP
//! connectivities.

pub mod neighbors;
pub mod nndescent;
pub mod pca;
