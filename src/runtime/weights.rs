//! Weights on the device: every tensor the plan binds, uploaded by contract role in its own
//! quant type, straight from the caller's bytes (for GGUF, the mmap: no host copy).

use std::collections::BTreeMap;

use crate::contract::{ModelSpec, Role, TensorKey};

use super::device::Device;
use super::error::RuntimeError;
use super::kernel::DeviceBuffer;

/// Where the runtime reads weights from: the effective model spec (the types the kernels
/// read) and the bytes of each tensor.
pub trait WeightSource {
    fn spec(&self) -> &ModelSpec;
    fn tensor(&self, role: Role, layer: Option<u32>) -> Option<&[u8]>;
}

/// The uploaded weights.
#[derive(Debug)]
pub struct DeviceWeights {
    tensors: BTreeMap<TensorKey, DeviceBuffer>,
    bytes: u64,
}

impl DeviceWeights {
    /// Bytes of every tensor of the spec's weight table (what [`DeviceWeights::upload`]
    /// allocates).
    pub fn bytes(source: &dyn WeightSource) -> u64 {
        source
            .spec()
            .weights
            .iter()
            .filter_map(|(k, _)| source.tensor(k.role, k.layer))
            .map(|t| t.len() as u64)
            .sum()
    }

    /// Uploads every tensor of the spec's weight table; a listed tensor without bytes is an
    /// error naming it.
    pub fn upload(
        device: &Device,
        source: &dyn WeightSource,
    ) -> Result<DeviceWeights, RuntimeError> {
        let mut tensors = BTreeMap::new();
        let mut bytes = 0u64;
        for (key, _) in source.spec().weights.iter() {
            let data =
                source
                    .tensor(key.role, key.layer)
                    .ok_or_else(|| RuntimeError::MissingWeight {
                        tensor: crate::plan::tensor_name(key.role, key.layer),
                    })?;
            bytes += data.len() as u64;
            tensors.insert(key, DeviceBuffer::from_bytes(device, data)?);
        }
        tracing::info!(tensors = tensors.len(), bytes, "uploaded weights");
        Ok(DeviceWeights { tensors, bytes })
    }

    /// Device address of `role` in `layer`, `offset` bytes in.
    pub fn ptr(&self, role: Role, layer: Option<u32>, offset: u64) -> Result<u64, RuntimeError> {
        let t = self
            .tensors
            .get(&TensorKey { role, layer })
            .ok_or_else(|| RuntimeError::MissingWeight {
                tensor: crate::plan::tensor_name(role, layer),
            })?;
        if offset >= t.len() as u64 {
            return Err(RuntimeError::MissingWeight {
                tensor: format!(
                    "{} (offset {offset} past its {} bytes)",
                    crate::plan::tensor_name(role, layer),
                    t.len()
                ),
            });
        }
        Ok(t.ptr_at(offset as usize))
    }

    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }
}
