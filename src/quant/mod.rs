//! Block formats of GGML tensors. `types` is the type table (ids, names, block geometry);
//! (de)quantization lives in sibling files.

pub mod block;
pub mod dequant;
mod error;
pub(crate) mod fit;
pub mod float;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod quantize;
pub mod types;

pub use types::{BlockLayout, GgmlType, UnknownTypeName};

pub use dequant::dequantize;
pub use error::QuantError;
pub use quantize::quantize;
