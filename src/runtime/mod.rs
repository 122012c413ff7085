//! The CUDA runtime (cudarc, driver API, loaded at run time): devices, loaded kernels,
//! device buffers, weights, sessions. Every entry point first checks that a driver is
//! present, because cudarc panics when libcuda cannot be loaded.

mod device;
mod engine;
mod error;
mod kernel;
pub(crate) mod numeric_parity;
mod session;
mod weights;
mod workspace;

pub use device::{driver_present, Device, Graph};
pub use engine::{Engine, EngineOptions};
pub use error::RuntimeError;
pub use kernel::{DeviceBuffer, KernelArg, LoadedKernel, LoadedSet};
pub use session::Session;
pub use weights::{DeviceWeights, WeightSource};
pub use workspace::{SessionMemory, WorkspaceLayout};
