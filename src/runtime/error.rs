//! Runtime errors.

use cudarc::driver::DriverError;

/// Why a GPU operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no CUDA driver: libcuda could not be loaded (is this a machine with an NVIDIA GPU and driver?)")]
    NoDriver,
    #[error("no CUDA device {ordinal}: the driver reports {count} device(s)")]
    NoDevice { ordinal: usize, count: i32 },
    #[error(
        "{device} has compute capability {major}.{minor}; the kernels need sm_{needed} or newer"
    )]
    DeviceTooOld {
        device: String,
        major: i32,
        minor: i32,
        needed: u32,
    },
    #[error("CUDA driver error while {doing}: {source}")]
    Driver {
        doing: String,
        #[source]
        source: DriverError,
    },
    #[error("kernel {kernel}: {message}")]
    Launch { kernel: String, message: String },
    #[error("weight {tensor} is not available on the device")]
    MissingWeight { tensor: String },
    #[error("{what} needs {needed} bytes of GPU memory, {device} has {free} free of {total} ({breakdown})")]
    OutOfMemory {
        what: String,
        needed: u64,
        free: u64,
        total: u64,
        device: String,
        breakdown: String,
    },
    #[error("sequence {sequence} is full: position {position} is past the KV-cache capacity of {max_context} positions (raise --max-context)")]
    ContextFull {
        sequence: usize,
        position: u32,
        max_context: u32,
    },
    #[error("{0}")]
    Session(String),
    #[error("kernel set: {0}")]
    KernelSet(String),
    #[error("numeric parity on {device}: {batched} (vector {vector}) differs from {single} in {param} at byte {byte}")]
    NumericParity {
        device: String,
        single: String,
        batched: String,
        param: String,
        vector: u32,
        byte: usize,
    },
    #[error("refusing to load the kernel set: {batched} does not match {single} ({check})")]
    ParityFailed {
        single: String,
        batched: String,
        check: String,
    },
}

/// Attaches what was being done to a driver error.
pub(crate) trait DriverContext<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, RuntimeError>;
}

impl<T> DriverContext<T> for Result<T, DriverError> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, RuntimeError> {
        self.map_err(|source| RuntimeError::Driver {
            doing: what(),
            source,
        })
    }
}
