//! CPU references of the kernels: the oracle every GPU test compares against. Each is
//! written from the definition of its operation, not from the PTX generator.
//! [`mirror`] holds the other kind of CPU model: each kernel's own f32 arithmetic, to the bit,
//! written from its generator (and checked against these references).

pub mod argmax;
pub mod attention;
pub mod embed;
pub mod forward;
pub mod gemv;
pub mod glu;
pub mod head_rmsnorm;
pub mod mirror;
pub mod residual_add;
pub mod residual_rmsnorm;
pub mod rmsnorm;
pub mod rmsnorm_q8_1;
pub mod rope;
pub mod rope_kv;

pub use crate::quant::q8_1::quantize_row_bytes as quantize_q8_1;
pub use rmsnorm::rmsnorm;
