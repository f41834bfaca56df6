//! The simulator's gene catalogue: real human gene symbols in functional groups.
//!
//! Every gene of the CAR-T gene sets (docs/cart-calls.md), lineage markers of T, B, myeloid and NK
//! cells, the 13 mitochondrially encoded genes, ribosomal proteins and housekeeping genes.
//! Datasets with more genes than listed here are filled with background genes named
//! `SIMBG00001`, ... (clearly synthetic, never mistaken for real genes).

/// The 13 protein-coding genes of the mitochondrial genome (scanpy's `MT-` prefix).
pub const MITO: [&str; 13] = [
    "MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3", "MT-ND3", "MT-ND4L",
    "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB",
];

/// Highly expressed housekeeping genes.
pub const HOUSEKEEPING: [&str; 20] = [
    "MALAT1", "ACTB", "GAPDH", "B2M", "TMSB4X", "EEF1A1", "FTL", "FTH1", "TPT1", "PTMA", "MYL6",
    "HLA-B", "HLA-A", "HLA-C", "UBA52", "PFN1", "CFL1", "ACTG1", "OAZ1", "NACA",
];

/// Ribosomal protein genes.
pub const RIBOSOMAL: [&str; 60] = [
    "RPL3", "RPL4", "RPL5", "RPL6", "RPL7", "RPL7A", "RPL8", "RPL9", "RPL10", "RPL10A", "RPL11",
    "RPL12", "RPL13", "RPL13A", "RPL14", "RPL15", "RPL17", "RPL18", "RPL18A", "RPL19", "RPL21",
    "RPL22", "RPL23", "RPL23A", "RPL24", "RPL26", "RPL27", "RPL27A", "RPL28", "RPL29", "RPL30",
    "RPL31", "RPL32", "RPL34", "RPL35", "RPL35A", "RPL36", "RPL37", "RPL37A", "RPL38", "RPL39",
    "RPL41", "RPS2", "RPS3", "RPS3A", "RPS4X", "RPS5", "RPS6", "RPS7", "RPS8", "RPS9", "RPS11",
    "RPS12", "RPS13", "RPS14", "RPS15", "RPS15A", "RPS16", "RPS18", "RPS19",
];

/// Markers and programme genes of the simulated populations (includes every gene of docs/cart-calls.md).
pub const MARKERS: [&str; 80] = [
    // T-cell receptor complex and pan-T
    "CD3D", "CD3E", "CD3G", "TRAC", "TRBC1", "TRBC2", "CD2", "CD5", "CD7", "LCK",
    // CD4 / CD8 / gamma-delta
    "CD4", "CD8A", "CD8B", "TRDC", "TRGC1", "TRGC2",
    // memory / stem-like (persistence)
    "TCF7", "SELL", "CCR7", "IL7R", "LEF1", "CD27", "CD28",
    // antigen-experienced (memory and effector, not naive) T cells
    "S100A4", "ANXA1", "ITGB1", // cytotoxicity
    "PRF1", "IFNG", "GZMK", "GZMB", "GZMA", "GZMH", "NKG7", "GNLY", "CCL5", "CST7",
    // exhaustion
    "PDCD1", "HAVCR2", "LAG3", "TIGIT", "CTLA4", "TOX", "ENTPD1", "CXCL13", "LAYN",
    // proliferation
    "MKI67", "TOP2A", "TYMS", "ZWINT", "TUBA1B", "STMN1", "HMGB2", // regulatory
    "FOXP3", "IL2RA", "CCR4", "IKZF2", // B cells
    "CD19", "MS4A1", "CD79A", "CD79B", "PAX5", "IGHM", "IGKC", // myeloid
    "CD14", "LYZ", "S100A8", "S100A9", "CSF1R", "CD68", "FCGR3A", "FCN1", "VCAN",
    // NK
    "NCAM1", "KLRD1", "KLRF1", "FCER1G", "KLRB1", "TYROBP", "XCL1", "IL2RB",
];

/// Prefix of synthetic background genes.
pub const BACKGROUND_PREFIX: &str = "SIMBG";

/// Real genes listed above, in catalogue order (mitochondrial last).
pub fn named_genes() -> Vec<&'static str> {
    HOUSEKEEPING
        .iter()
        .chain(&RIBOSOMAL)
        .chain(&MARKERS)
        .chain(&MITO)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_unique_names_and_every_cart_gene() {
        let named = named_genes();
        let set: std::collections::HashSet<_> = named.iter().collect();
        assert_eq!(set.len(), named.len(), "duplicate gene in catalogue");
        for g in [
            "PDCD1", "HAVCR2", "LAG3", "TIGIT", "CTLA4", "TOX", "ENTPD1", "TCF7", "SELL", "CCR7",
            "IL7R", "LEF1", "CD27", "CD28", "PRF1", "IFNG", "GZMK", "GZMB", "NKG7", "GNLY",
            "MKI67", "TOP2A", "TYMS", "ZWINT", "TUBA1B", "FOXP3", "IL2RA", "CCR4",
        ] {
            assert!(set.contains(&g), "{g} missing");
        }
    }
}
