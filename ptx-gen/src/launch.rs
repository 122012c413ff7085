//! How a kernel is launched: grid, block and dynamic shared memory, as values or as
//! formulas of runtime values (sequence length, ...) that an engine evaluates per launch.

use serde::{Deserialize, Serialize};

/// A value known only when the kernel is launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeValue {
    /// Number of cached positions attention reads.
    SeqLen,
}

/// One launch extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Extent {
    /// A fixed number.
    Const(u32),
    /// `ceil(value / by) * times`.
    CeilDiv {
        value: RuntimeValue,
        by: u32,
        times: u32,
    },
}

impl Extent {
    /// The extent for the given runtime values (`lookup` answers each one the formula names).
    pub fn eval(&self, lookup: impl Fn(RuntimeValue) -> u32) -> u32 {
        match *self {
            Extent::Const(n) => n,
            Extent::CeilDiv { value, by, times } => lookup(value).div_ceil(by.max(1)) * times,
        }
    }
}

/// Grid, block and dynamic shared memory of a launch. Blocks are one-dimensional in x.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub grid: [Extent; 3],
    pub block: [u32; 3],
    pub dynamic_shared_bytes: Extent,
}

impl LaunchSpec {
    /// A fixed grid of `grid` x `grid_y` blocks of `threads` threads, no dynamic shared memory.
    pub fn fixed(grid: u32, grid_y: u32, threads: u32) -> LaunchSpec {
        LaunchSpec {
            grid: [Extent::Const(grid), Extent::Const(grid_y), Extent::Const(1)],
            block: [threads, 1, 1],
            dynamic_shared_bytes: Extent::Const(0),
        }
    }

    pub fn threads_per_block(&self) -> u32 {
        self.block.iter().product()
    }
}
