//! Opening a GPU.

use std::sync::Arc;

use cudarc::driver::sys::{
    CUdevice_attribute, CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode,
};
use cudarc::driver::{CudaContext, CudaEvent, CudaGraph, CudaStream};

use super::error::{DriverContext, RuntimeError};

/// An opened GPU: its primary context and a stream.
#[derive(Debug, Clone)]
pub struct Device {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    name: String,
    compute_capability: (i32, i32),
    total_memory: usize,
    ordinal: usize,
}

/// Whether libcuda can be loaded. cudarc panics on first use when it cannot, so every
/// path into cudarc goes through this check first.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library by its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

impl Device {
    /// Opens GPU `ordinal`; a typed error when there is no driver or no such device.
    pub fn open(ordinal: usize) -> Result<Device, RuntimeError> {
        if !driver_present() {
            return Err(RuntimeError::NoDriver);
        }
        let count = CudaContext::device_count().doing(|| "counting CUDA devices".into())?;
        if ordinal as i64 >= count as i64 {
            return Err(RuntimeError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal).doing(|| format!("opening CUDA device {ordinal}"))?;
        let name = ctx.name().doing(|| "reading the device name".into())?;
        let compute_capability = ctx
            .compute_capability()
            .doing(|| "reading the compute capability".into())?;
        let total_memory = ctx
            .total_mem()
            .doing(|| "reading the device memory size".into())?;
        // A stream of our own: the legacy default stream cannot be captured into a graph.
        let stream = ctx.new_stream().doing(|| "creating a CUDA stream".into())?;
        tracing::info!(%name, ?compute_capability, total_memory, "opened CUDA device {ordinal}");
        Ok(Device {
            ctx,
            stream,
            name,
            compute_capability,
            total_memory,
            ordinal,
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// (free, total) bytes of device memory now.
    pub fn memory_info(&self) -> Result<(u64, u64), RuntimeError> {
        self.ctx
            .bind_to_thread()
            .doing(|| "binding the CUDA context".into())?;
        let (free, total) =
            cudarc::driver::result::mem_get_info().doing(|| "reading free device memory".into())?;
        Ok((free as u64, total as u64))
    }

    /// Refuses, with the numbers, an allocation of `parts` (name, bytes) that does not fit
    /// in free device memory (with 5% headroom for the driver and JIT-compiled modules).
    pub fn require_free(&self, what: &str, parts: &[(&str, u64)]) -> Result<(), RuntimeError> {
        let needed: u64 = parts.iter().map(|p| p.1).sum();
        let (free, total) = self.memory_info()?;
        if needed > free / 20 * 19 {
            let breakdown = parts
                .iter()
                .map(|(n, b)| format!("{n} {b}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(RuntimeError::OutOfMemory {
                what: what.to_string(),
                needed,
                free,
                total,
                device: self.name.clone(),
                breakdown,
            });
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// `major * 10 + minor`, as in `sm_XX`.
    pub fn sm(&self) -> u32 {
        (self.compute_capability.0 * 10 + self.compute_capability.1) as u32
    }

    pub fn total_memory(&self) -> usize {
        self.total_memory
    }

    /// Refuses a GPU below `sm_needed`.
    pub fn require_sm(&self, sm_needed: u32) -> Result<(), RuntimeError> {
        if self.sm() < sm_needed {
            return Err(RuntimeError::DeviceTooOld {
                device: self.name.clone(),
                major: self.compute_capability.0,
                minor: self.compute_capability.1,
                needed: sm_needed,
            });
        }
        Ok(())
    }

    /// Bytes of L2 cache.
    pub fn l2_bytes(&self) -> Result<u64, RuntimeError> {
        let v = self
            .ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
            .doing(|| "reading the L2 cache size".into())?;
        Ok(v.max(0) as u64)
    }

    /// Two events able to time the work recorded between them.
    pub fn timing_events(&self) -> Result<(CudaEvent, CudaEvent), RuntimeError> {
        let make = || self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT));
        Ok((
            make().doing(|| "creating an event".into())?,
            make().doing(|| "creating an event".into())?,
        ))
    }

    /// Records `event` on the device's stream.
    pub fn record(&self, event: &CudaEvent) -> Result<(), RuntimeError> {
        event
            .record(&self.stream)
            .doing(|| "recording an event".into())
    }

    /// Milliseconds between two recorded events (waits for both).
    pub fn elapsed_ms(&self, start: &CudaEvent, end: &CudaEvent) -> Result<f32, RuntimeError> {
        start
            .elapsed_ms(end)
            .doing(|| "reading an event time".into())
    }

    /// Waits for all work on the device's stream.
    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        self.stream
            .synchronize()
            .doing(|| "synchronizing the stream".into())
    }

    /// Records what `record` launches on the device's stream into a CUDA graph (nothing
    /// runs), instantiated and uploaded, ready to replay.
    pub fn capture(
        &self,
        record: impl FnOnce() -> Result<(), RuntimeError>,
    ) -> Result<Graph, RuntimeError> {
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .doing(|| "beginning graph capture".into())?;
        let recorded = record();
        let graph = self
            .stream
            .end_capture(CUgraphInstantiate_flags(0))
            .doing(|| "ending graph capture".into())?;
        recorded?;
        let graph =
            graph.ok_or_else(|| RuntimeError::Session("graph capture recorded nothing".into()))?;
        graph.upload().doing(|| "uploading a graph".into())?;
        Ok(Graph(graph))
    }
}

/// Launches captured once on a [`Device`]'s stream, replayed as one unit.
pub struct Graph(CudaGraph);

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Graph")
    }
}

impl Graph {
    /// Enqueues the whole graph on the stream it was captured on.
    pub fn replay(&self) -> Result<(), RuntimeError> {
        self.0.launch().doing(|| "replaying a graph".into())
    }
}
