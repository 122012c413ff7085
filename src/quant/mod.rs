//! Block formats of GGML tensors. `types` is the type table (ids, names, block geometry);
//! (de)quantization lives in sibling files.

pub mod q8_1;
pub mod types;

pub use types::{BlockLayout, GgmlType, UnknownTypeName};
