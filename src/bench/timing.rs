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

/// Launches per captured graph in [`median_graph_us`].
pub const GRAPH_LAUNCHES: usize = 20;

/// Captures `GRAPH_LAUNCHES` launches `launch(i)` into one CUDA graph, replays it 3 times as
/// warm-up, then times `replays` replays between two events each and returns the median
/// and minimum time per launch. Back to back in a graph, the kernels run as they do inside
/// a decode step: no host launch latency between them (a single launch between two events
/// would time the host too, which dominates kernels of a few microseconds).
pub fn median_graph_us(
    device: &Device,
    replays: usize,
    mut launch: impl FnMut(usize) -> Result<(), RuntimeError>,
) -> Result<Timing, RuntimeError> {
    // One launch outside the graph first: a module loaded lazily on its first launch would
    // invalidate the capture.
    launch(0)?;
    device.synchronize()?;
    let graph = device.capture(|| (0..GRAPH_LAUNCHES).try_for_each(&mut launch))?;
    for _ in 0..3 {
        graph.replay()?;
    }
    device.synchronize()?;
    let mut times = Vec::with_capacity(replays);
    for _ in 0..replays {
        let (start, end) = device.timing_events()?;
        device.record(&start)?;
        graph.replay()?;
        device.record(&end)?;
        times.push(device.elapsed_ms(&start, &end)? as f64 * 1e3 / GRAPH_LAUNCHES as f64);
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
