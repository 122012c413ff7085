//! ptxforge: architecture contracts + model dimensions -> specialised PTX decode kernels,
//! a manifest any engine can execute, and a runtime that runs them.

pub mod bench;
pub mod cli;
pub mod kernel_dir;
pub mod kernel_set;
pub mod manifest;
pub mod plan;
pub mod ptxas;
pub mod quant;
pub mod reference;
pub mod runtime;
pub mod validate;

pub use ptx_gen;

pub mod contract;
pub mod model;

pub use contract::{Contract, ModelDims, ModelSpec, Registry};
pub use model::{BoundModel, ModelInfo};
