//! CAR-T interpretation: finding the CAR construct feature, and (later) gene sets, cell calls
//! and per-sample summaries.

pub mod detect;
pub use detect::{CAR_EXACT_NAMES, CAR_NAME_PATTERNS, car_feature_candidates};
