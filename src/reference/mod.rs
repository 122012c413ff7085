//! CPU references of the kernels: the oracle every GPU test compares against. Each is
//! written from the definition of its operation, not from the PTX generator.

pub mod rmsnorm;

pub use crate::quant::q8_1::quantize_row_bytes as quantize_q8_1;
pub use rmsnorm::rmsnorm;
