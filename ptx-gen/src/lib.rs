//! ptx-gen: the compiler core of ptxforge.
//!
//! Typed PTX IR and builder (`ir`), the deterministic emitter (`emit`), a nom parser for
//! PTX text (`parse`), static checks on parsed PTX (`check`), and the kernel generators.
//! No CUDA, no files, no model formats: everything here is a pure function of its input.

pub mod ast;
pub mod check;
pub mod emit;
pub mod ir;
pub mod parity;
pub mod parse;
pub mod target;

pub use target::Target;
pub mod kernels;
pub mod launch;

pub use kernels::{generate, GeneratedKernel, KernelSpec};
