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
