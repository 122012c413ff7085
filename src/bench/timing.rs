//! CUDA-event timing.

use crate::runtime::{Device, DeviceBuffer, RuntimeError};

/// Statistics of repeated launches.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub median_us: f64,
    pub min_us: f64,
}

/// Runs `launch(i)` for i in 0..10 as warm-up, then times each of `count` launches between two
/// events and returns the median.
pub fn median_launch_us(
    device: &Device,
    count: usize,
    mut launch: impl FnMut(usize) -> Result<(), RuntimeError>,
) -> Result<Timing, RuntimeError> {
    for i in 0..10 {
        launch(i)?;
    }
    device.synchronize()?;
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let (start, end) = device.timing_events()?;
        device.record(&start)?;
        launch(10 + i)?;
        device.record(&end)?;
        times.push(device.elapsed_ms(&start, &end)? as f64 * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing {
        median_us: times[times.len() / 2],
        min_us: times[0],
    })
}

/// Device-to-device copy bandwidth in GB/s (bytes read + bytes written per second), median
/// of 20 copies of 512 MiB.
pub fn copy_bandwidth(device: &Device) -> Result<f64, RuntimeError> {
    const BYTES: usize = 512 << 20;
    let src = DeviceBuffer::zeroed(device, BYTES)?;
    let mut dst = DeviceBuffer::zeroed(device, BYTES)?;
    let t = median_launch_us(device, 20, |_| dst.copy_from(&src))?;
    Ok(2.0 * BYTES as f64 / (t.median_us * 1e3))
}
