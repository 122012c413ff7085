//! ptxforge: architecture contracts + model dimensions -> specialised PTX decode kernels,
//! a manifest any engine can execute, and a runtime that runs them.

pub use ptx_gen;
