//! `Engine`: a model's kernel set (parity-gated, numerically re-checked on the device), its
//! weights and rope tables on one GPU. Sessions ([`super::Session`]) decode on it.

use std::collections::BTreeSet;
use std::sync::Mutex;

use ptx_gen::Target;

use crate::contract::Role;
use crate::kernel_set::{KernelSet, SetOptions};
use crate::plan::{Arg, Launch};

use super::device::Device;
use super::error::RuntimeError;
use super::kernel::{DeviceBuffer, KernelArg, LoadedKernel, LoadedSet};
use super::numeric_parity;
use super::weights::{DeviceWeights, WeightSource};
use super::workspace::SessionMemory;

/// How an engine is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// KV-cache capacity in positions (clamped to the model's context).
    pub max_context: u32,
    /// Largest number of sequences a session decodes together (1..=16).
    pub batch_max: u32,
    /// PTX target of the generated kernels (JIT-compiled by the driver for the device);
    /// `None`: the device's own ([`Target::for_device`]), which on sm_90 and later gives
    /// kernels that overlap their predecessor's tail (programmatic dependent launch).
    pub target: Option<Target>,
    /// Replay each step as a CUDA graph (captured once per session and batch size).
    pub graphs: bool,
    /// Let each kernel overlap its predecessor's tail where the target has programmatic
    /// dependent launch (sm_90+); `false` launches every kernel fully serialized.
    pub dependent_launch: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_context: 2048,
            batch_max: 8,
            target: None,
            graphs: true,
            dependent_launch: true,
        }
    }
}

/// Sets already re-checked numerically in this process: (device ordinal name, set digest).
static CHECKED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// A model ready to decode on one GPU.
#[derive(Debug)]
pub struct Engine {
    pub(crate) device: Device,
    pub(crate) set: KernelSet,
    pub(crate) kernels: LoadedSet,
    pub(crate) weights: DeviceWeights,
    pub(crate) rope: Vec<DeviceBuffer>,
    pub(crate) options: EngineOptions,
}

impl Engine {
    /// Generates the kernel set of `source`'s model, refuses it unless its parity report
    /// passed, checks the device has room (weights, rope tables, a session of `batch_max`),
    /// uploads weights and rope tables, and re-checks batched-vs-single numerically on this
    /// device the first time the set is loaded on it in this process.
    pub fn load(
        device: &Device,
        source: &dyn WeightSource,
        options: EngineOptions,
    ) -> Result<Engine, RuntimeError> {
        if !(1..=ptx_gen::kernels::GEMV_MAX_BATCH).contains(&options.batch_max) {
            return Err(RuntimeError::Session(format!(
                "batch_max {} is outside 1..={}",
                options.batch_max,
                ptx_gen::kernels::GEMV_MAX_BATCH
            )));
        }
        let target = options
            .target
            .unwrap_or_else(|| Target::for_device(device.sm()));
        device.require_sm(target.sm)?;
        let set = KernelSet::generate(
            source.spec(),
            SetOptions {
                target,
                max_context: options.max_context,
                batch_max: options.batch_max,
            },
        )
        .map_err(|e| RuntimeError::KernelSet(e.to_string()))?;
        let mut engine = Engine::with_set(device, set, source, options.graphs)?;
        if !options.dependent_launch {
            engine.kernels.serialize();
            engine.options.dependent_launch = false;
        }
        Ok(engine)
    }

    /// Like [`Engine::load`] with the kernel set `ptxforge generate` wrote to `dir`: the
    /// manifest must describe `source`'s model, every module its sha256, and parity is
    /// proven again from the files before anything is loaded.
    pub fn from_dir(
        device: &Device,
        dir: &std::path::Path,
        source: &dyn WeightSource,
        graphs: bool,
    ) -> Result<Engine, RuntimeError> {
        let set = KernelSet::from_dir(dir, source.spec())
            .map_err(|e| RuntimeError::KernelSet(e.to_string()))?;
        Engine::with_set(device, set, source, graphs)
    }

    /// An engine on an existing kernel set (refused unless its parity report passed).
    pub fn with_set(
        device: &Device,
        set: KernelSet,
        source: &dyn WeightSource,
        graphs: bool,
    ) -> Result<Engine, RuntimeError> {
        let spec = source.spec();
        let options = EngineOptions {
            max_context: set.plan.max_context,
            batch_max: set.options.batch_max.max(1),
            target: Some(set.options.target),
            graphs,
            dependent_launch: true,
        };
        device.require_sm(set.options.target.sm)?;
        let kernels = LoadedSet::load(device, &set)?;

        // Room for everything before allocating anything.
        let weight_bytes = DeviceWeights::bytes(source);
        let rope_bytes: u64 = set
            .plan
            .rope_tables
            .iter()
            .map(|t| t.max_context as u64 * t.rope_dims as u64 * 4)
            .sum();
        let session_bytes = SessionMemory::bytes(&set.plan, spec.dims.layers, options.batch_max);
        device.require_free(
            &format!(
                "{} (weights, rope tables, a session of {})",
                spec.name, options.batch_max
            ),
            &[
                ("weights", weight_bytes),
                ("rope tables", rope_bytes),
                ("KV caches + workspace", session_bytes),
            ],
        )?;

        let weights = DeviceWeights::upload(device, source)?;
        let rope = set
            .plan
            .rope_tables
            .iter()
            .map(|t| {
                let factors = match t.freq_factors {
                    Some(role) => Some(freq_factors(source, role, t.rope_dims)?),
                    None => None,
                };
                let table = crate::reference::rope::rope_table_with_factors(
                    t.theta as f64,
                    t.rope_dims,
                    t.max_context,
                    factors.as_deref(),
                );
                DeviceBuffer::from_f32(device, &table)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let engine = Engine {
            device: device.clone(),
            set,
            kernels,
            weights,
            rope,
            options,
        };
        engine.recheck_parity()?;
        Ok(engine)
    }

    /// The numeric batched-vs-single check, once per device and set in this process.
    fn recheck_parity(&self) -> Result<(), RuntimeError> {
        // Keyed by every kernel's name and PTX: a set that differs in any byte is checked.
        let mut all = String::new();
        for (k, _) in self.set.all_kernels() {
            all.push_str(&k.name);
            all.push('\n');
            all.push_str(&crate::kernel_set::sha256_hex(k.ptx.as_bytes()));
            all.push('\n');
        }
        let digest = crate::kernel_set::sha256_hex(all.as_bytes());
        let key = (
            format!("{}#{}", self.device.name(), self.device.ordinal()),
            digest,
        );
        let done = CHECKED.lock().map(|s| s.contains(&key)).unwrap_or(false);
        if done {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let pairs = numeric_parity::check_set(self)?;
        tracing::info!(
            pairs,
            ms = started.elapsed().as_secs_f64() * 1e3,
            device = %self.device.name(),
            "batched kernels bit-identical to the single step's kernels on this device"
        );
        if let Ok(mut s) = CHECKED.lock() {
            s.insert(key);
        }
        Ok(())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The generated kernel set (plan, kernels, parity report).
    pub fn kernel_set(&self) -> &KernelSet {
        &self.set
    }

    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.total_bytes()
    }

    /// The loaded kernel of a launch.
    pub(crate) fn kernel(&self, name: &str) -> Result<&LoadedKernel, RuntimeError> {
        self.kernels
            .get(name)
            .ok_or_else(|| RuntimeError::KernelSet(format!("kernel {name} is not loaded")))
    }

    /// The kernel arguments of `launch` with workspace `ws` and the KV caches of `kv_mem`
    /// for sequence `seq`.
    pub(crate) fn resolve(
        &self,
        launch: &Launch,
        ws: &SessionMemory,
        kv_mem: &SessionMemory,
        seq: u32,
    ) -> Result<Vec<KernelArg>, RuntimeError> {
        let kv_off = seq as usize * kv_mem.kv_bytes_per_sequence as usize;
        launch
            .args
            .iter()
            .map(|(_, arg)| {
                Ok(KernelArg::Ptr(match arg {
                    Arg::Weight {
                        role,
                        layer,
                        offset,
                    } => self.weights.ptr(*role, *layer, *offset)?,
                    Arg::Buffer { buffer, offset } => ws.buffer_ptr(*buffer, *offset),
                    Arg::KCache { layer } => kv(kv_mem, *layer, true)?.ptr_at(kv_off),
                    Arg::VCache { layer } => kv(kv_mem, *layer, false)?.ptr_at(kv_off),
                    Arg::RopeTable { index } => self
                        .rope
                        .get(*index)
                        .ok_or_else(|| {
                            RuntimeError::KernelSet(format!("rope table {index} not built"))
                        })?
                        .ptr(),
                }))
            })
            .collect()
    }

    /// The device address a shared binding (weight or rope table) resolves to, for the
    /// numeric parity check; `None` for workspace bindings.
    pub(crate) fn shared_ptr(&self, arg: &Arg) -> Result<Option<u64>, RuntimeError> {
        Ok(match arg {
            Arg::Weight {
                role,
                layer,
                offset,
            } => Some(self.weights.ptr(*role, *layer, *offset)?),
            Arg::RopeTable { index } => self.rope.get(*index).map(DeviceBuffer::ptr),
            _ => None,
        })
    }
}

fn kv(mem: &SessionMemory, layer: u32, k: bool) -> Result<&DeviceBuffer, RuntimeError> {
    let pair = mem
        .kv
        .get(layer as usize)
        .ok_or_else(|| RuntimeError::KernelSet(format!("no KV cache for layer {layer}")))?;
    Ok(if k { &pair.0 } else { &pair.1 })
}

/// The model's rope frequency factors as f32 (`rope_dims / 2` of them).
fn freq_factors(
    source: &dyn WeightSource,
    role: Role,
    rope_dims: u32,
) -> Result<Vec<f32>, RuntimeError> {
    let name = crate::plan::tensor_name(role, None);
    let bytes = source
        .tensor(role, None)
        .ok_or_else(|| RuntimeError::MissingWeight {
            tensor: name.clone(),
        })?;
    let want = (rope_dims / 2) as usize;
    if source.spec().weights.get(role, None) != Some(crate::quant::GgmlType::F32)
        || bytes.len() != want * 4
    {
        return Err(RuntimeError::MissingWeight {
            tensor: format!(
                "{name} (expected {want} F32 values, got {} bytes)",
                bytes.len()
            ),
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}
