//! GPU benchmarks: kernels timed with CUDA events after warm-up (median of many launches)
//! with their weights rotated over buffers larger than twice the L2 cache, so the numbers
//! are DRAM numbers, next to a device-to-device copy measured in the same run.

pub mod decode;
pub mod kernels;
mod timing;

use serde::Serialize;

use ptx_gen::kernels::{generate_tiled, Gemv, GemvTile, WeightType};
use ptx_gen::Target;

use crate::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel, RuntimeError};

pub use timing::{copy_bandwidth, median_graph_us, median_launch_us, Timing, GRAPH_LAUNCHES};

/// One measured kernel and shape.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub kernel: String,
    pub shape: String,
    /// Vectors per launch.
    pub m: u32,
    pub median_us: f64,
    /// Bytes the kernel must move (weights once, activations, outputs).
    pub bytes: u64,
    pub gb_per_s: f64,
    /// Achieved bandwidth over the copy bandwidth measured in the same run, in percent.
    pub percent_of_copy: f64,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub l2_bytes: u64,
    pub copy_gb_per_s: f64,
    pub launches_per_row: usize,
    pub rows: Vec<BenchRow>,
}

impl BenchReport {
    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "device: {}  L2: {} MB  copy: {:.0} GB/s  (median of {} launches, weights rotated over > 2x L2)\n",
            self.device,
            self.l2_bytes / 1_000_000,
            self.copy_gb_per_s,
            self.launches_per_row
        );
        s.push_str(&format!(
            "{:<56} {:<14} {:>3} {:>10} {:>9} {:>7}\n",
            "kernel", "shape", "M", "us", "GB/s", "% copy"
        ));
        for r in &self.rows {
            s.push_str(&format!(
                "{:<56} {:<14} {:>3} {:>10.2} {:>9.0} {:>6.1}%\n",
                r.kernel, r.shape, r.m, r.median_us, r.gb_per_s, r.percent_of_copy
            ));
        }
        s
    }
}

/// Graph replays per measured row (each of [`GRAPH_LAUNCHES`] launches back to back).
pub const REPLAYS: usize = 50;

/// Pseudo-random bytes (the content does not change the timing of integer kernels).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Benchmarks the GEMV of every weight type at the given shapes (`n x k`) and batch sizes.
/// With `tiles` empty each kernel has the generator's own tile; otherwise every kernel is
/// measured with each tile given (the tile search behind [`ptx_gen::kernels::default_tile`]).
pub fn gemv(
    device: &Device,
    shapes: &[(u32, u32)],
    batches: &[u32],
    tiles: &[GemvTile],
    target: Target,
    dependent_launch: bool,
) -> Result<BenchReport, RuntimeError> {
    let l2 = device.l2_bytes()?;
    let copy = copy_bandwidth(device)?;
    let mut rows = Vec::new();
    for &(n, k) in shapes {
        // Types whose block does not divide K cannot hold the matrix.
        for weight in WeightType::ALL
            .into_iter()
            .filter(|w| k % w.block_values() == 0)
        {
            let w_bytes =
                (n as u64) * (k / weight.block_values()) as u64 * weight.block_bytes() as u64;
            let rotations = ((2 * l2) / w_bytes.max(1) + 2) as usize;
            let weights: Vec<DeviceBuffer> = (0..rotations)
                .map(|r| DeviceBuffer::from_bytes(device, &noise(w_bytes as usize, r as u64 + 7)))
                .collect::<Result<_, _>>()?;
            let w_ptrs: Vec<u64> = weights.iter().map(DeviceBuffer::ptr).collect();
            for &m in batches {
                let spec = Gemv {
                    weight,
                    n,
                    k,
                    bias: false,
                    residual: false,
                    m,
                    more_rows: [0, 0],
                    rope: None,
                    prologue: None,
                    tile: None,
                };
                let x_bytes = crate::quant::q8_1::device_bytes(k as usize) as u64 * m as u64;
                let y_bytes = n as u64 * 4 * m as u64;
                let x = DeviceBuffer::from_bytes(device, &noise(x_bytes as usize, 3))?;
                let y = DeviceBuffer::filled(device, y_bytes as usize, 0)?;
                let own = [spec.tile()];
                for &tile in if tiles.is_empty() { &own[..] } else { tiles } {
                    let kernel =
                        generate_tiled(&spec, tile, target).map_err(|e| RuntimeError::Launch {
                            kernel: format!("gemv {} {n}x{k} {tile}", weight.name()),
                            message: e.to_string(),
                        })?;
                    let mut loaded = LoadedKernel::load_unchecked(device, &kernel)?;
                    if !dependent_launch {
                        loaded.serialize();
                    }
                    // Pointers taken before the capture: taking one synchronizes with the
                    // buffer's last use, which a capture may not do.
                    let (xp, yp) = (x.ptr(), y.ptr());
                    let t = median_graph_us(device, REPLAYS, |i| {
                        loaded.launch(
                            &[
                                KernelArg::Ptr(w_ptrs[i % rotations]),
                                KernelArg::Ptr(xp),
                                KernelArg::Ptr(yp),
                            ],
                            |_| 0,
                        )
                    })?;
                    let bytes = w_bytes + x_bytes + y_bytes;
                    let gbps = bytes as f64 / (t.median_us * 1e3);
                    rows.push(BenchRow {
                        kernel: format!("{} [{tile}]", kernel.name),
                        shape: format!("{n}x{k}"),
                        m,
                        median_us: t.median_us,
                        bytes,
                        gb_per_s: gbps,
                        percent_of_copy: 100.0 * gbps / copy,
                    });
                    tracing::info!("{}: {:.2} us, {:.0} GB/s", kernel.name, t.median_us, gbps);
                }
            }
        }
    }
    Ok(BenchReport {
        device: device.name().to_string(),
        l2_bytes: l2,
        copy_gb_per_s: copy,
        launches_per_row: REPLAYS * GRAPH_LAUNCHES,
        rows,
    })
}
