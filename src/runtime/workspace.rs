//! The device memory of one session: every workspace buffer of the plan for `m` sequences in
//! one allocation, and the K/V caches of every layer.

use std::collections::BTreeMap;

use crate::plan::{Buffer, KernelPlan};

use super::device::Device;
use super::error::RuntimeError;
use super::kernel::DeviceBuffer;

/// Every buffer starts on this alignment (the widest vector load is 16 bytes; 256 keeps each
/// buffer on its own cache lines).
const ALIGN: u64 = 256;

/// Byte layout of the workspace of `m` sequences: buffer -> (offset, bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceLayout {
    pub m: u32,
    pub regions: BTreeMap<Buffer, (u64, u64)>,
    pub total: u64,
}

impl WorkspaceLayout {
    /// `token`, `pos` and `seq_len` come first and adjacent, so the per-step inputs of all
    /// sequences are written with one copy: `u32[m]` each.
    pub fn new(plan: &KernelPlan, m: u32) -> WorkspaceLayout {
        let mut regions = BTreeMap::new();
        let mut at = 0u64;
        let mut order: Vec<&crate::plan::BufferDecl> = plan.buffers.iter().collect();
        order.sort_by_key(|b| match b.name {
            Buffer::Token => 0,
            Buffer::Pos => 1,
            Buffer::SeqLen => 2,
            _ => 3,
        });
        for b in order {
            let bytes = b.bytes * m as u64;
            // The three inputs stay packed (u32 each, 4-byte aligned).
            let packed = matches!(b.name, Buffer::Pos | Buffer::SeqLen);
            if !packed {
                at = at.div_ceil(ALIGN) * ALIGN;
            }
            regions.insert(b.name, (at, bytes));
            at += bytes;
        }
        WorkspaceLayout {
            m,
            regions,
            total: at.div_ceil(ALIGN) * ALIGN,
        }
    }

    /// Offset of `buffer` (0 for a buffer the plan does not declare).
    pub fn offset(&self, buffer: Buffer) -> u64 {
        self.regions.get(&buffer).map_or(0, |r| r.0)
    }
}

/// The workspace and KV caches of one session on the device.
#[derive(Debug)]
pub struct SessionMemory {
    pub layout: WorkspaceLayout,
    pub workspace: DeviceBuffer,
    /// Per layer: K cache and V cache, each `m` sequences of `kv_cache_bytes`.
    pub kv: Vec<(DeviceBuffer, DeviceBuffer)>,
    pub kv_bytes_per_sequence: u64,
}

impl SessionMemory {
    /// Allocates (zeroed) the workspace and KV caches of `m` sequences.
    pub fn new(
        device: &Device,
        plan: &KernelPlan,
        layers: u32,
        m: u32,
    ) -> Result<Self, RuntimeError> {
        let layout = WorkspaceLayout::new(plan, m);
        let workspace = DeviceBuffer::zeroed(device, layout.total as usize)?;
        let each = plan.kv_cache_bytes * m as u64;
        let kv = (0..layers)
            .map(|_| {
                Ok((
                    DeviceBuffer::zeroed(device, each as usize)?,
                    DeviceBuffer::zeroed(device, each as usize)?,
                ))
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(SessionMemory {
            layout,
            workspace,
            kv,
            kv_bytes_per_sequence: plan.kv_cache_bytes,
        })
    }

    /// Device address of `buffer` + `offset`.
    pub fn buffer_ptr(&self, buffer: Buffer, offset: u64) -> u64 {
        self.workspace.ptr() + self.layout.offset(buffer) + offset
    }

    /// Bytes a session of `m` sequences allocates.
    pub fn bytes(plan: &KernelPlan, layers: u32, m: u32) -> u64 {
        WorkspaceLayout::new(plan, m).total + 2 * layers as u64 * plan.kv_cache_bytes * m as u64
    }
}
