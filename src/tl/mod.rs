//! scanpy's tools (`sc.tl` and `sc.pp.neighbors`): PCA, the kNN graph with UMAP
//! connectivities, Leiden clustering, the UMAP layout and marker genes.

pub mod leiden;
pub mod leidenalg;
pub mod markers;
pub mod neighbors;
pub mod pca;
pub(crate) mod special;
pub mod umap;
