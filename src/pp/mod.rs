//! scanpy's preprocessing (`sc.pp`): QC metrics and filters, highly variable genes.
//! normalize_total + log1p and scaling are backend kernels ([`crate::backend::Backend`]).

pub mod hvg;
pub mod qc;
pub mod seurat_v3;
