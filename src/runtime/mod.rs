//! The CUDA runtime (cudarc, driver API, loaded at run time): devices, loaded kernels,
//! device buffers. Every entry point first checks that a driver is present, because cudarc
//! panics when libcuda cannot be loaded.

mod device;
mod error;
mod kernel;

pub use device::Device;
pub use error::RuntimeError;
pub use kernel::{DeviceBuffer, KernelArg, LoadedKernel, LoadedSet};
