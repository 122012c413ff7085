//! Loaded kernels and device buffers.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaModule, CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use ptx_gen::kernels::{GeneratedKernel, ParamKind};
use ptx_gen::launch::{LaunchSpec, RuntimeValue};
use ptx_gen::target::Feature;

use super::device::Device;
use super::error::{DriverContext, RuntimeError};

/// A device allocation of raw bytes.
#[derive(Debug)]
pub struct DeviceBuffer {
    slice: CudaSlice<u8>,
    device: Device,
}

impl DeviceBuffer {
    /// Uploads `bytes`.
    pub fn from_bytes(device: &Device, bytes: &[u8]) -> Result<DeviceBuffer, RuntimeError> {
        let slice = device
            .stream
            .clone_htod(bytes)
            .doing(|| format!("uploading {} bytes", bytes.len()))?;
        Ok(DeviceBuffer {
            slice,
            device: device.clone(),
        })
    }

    /// Uploads f32 values.
    pub fn from_f32(device: &Device, values: &[f32]) -> Result<DeviceBuffer, RuntimeError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        DeviceBuffer::from_bytes(device, &bytes)
    }

    /// `len` zero bytes, without a host copy.
    pub fn zeroed(device: &Device, len: usize) -> Result<DeviceBuffer, RuntimeError> {
        let slice = device
            .stream
            .alloc_zeros::<u8>(len)
            .doing(|| format!("allocating {len} bytes"))?;
        Ok(DeviceBuffer {
            slice,
            device: device.clone(),
        })
    }

    /// Copies `src` into this buffer on the device (the lengths must match).
    pub fn copy_from(&mut self, src: &DeviceBuffer) -> Result<(), RuntimeError> {
        if src.len() != self.len() {
            return Err(RuntimeError::Launch {
                kernel: "memcpy".into(),
                message: format!(
                    "copy of {} bytes into a buffer of {}",
                    src.len(),
                    self.len()
                ),
            });
        }
        self.device
            .stream
            .memcpy_dtod(&src.slice, &mut self.slice)
            .doing(|| format!("copying {} bytes", src.len()))
    }

    /// `len` bytes, every one set to `fill` (a poison pattern for outputs).
    pub fn filled(device: &Device, len: usize, fill: u8) -> Result<DeviceBuffer, RuntimeError> {
        DeviceBuffer::from_bytes(device, &vec![fill; len])
    }

    pub fn len(&self) -> usize {
        self.slice.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }

    /// The device address of byte `offset` of the buffer.
    pub fn ptr_at(&self, offset: usize) -> u64 {
        let (ptr, _sync) = self.slice.device_ptr(&self.device.stream);
        ptr + offset as u64
    }

    /// The device address of the buffer.
    pub fn ptr(&self) -> u64 {
        self.ptr_at(0)
    }

    /// Writes `bytes` at byte `offset` (stream-ordered).
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), RuntimeError> {
        let end = offset + bytes.len();
        if end > self.len() {
            return Err(RuntimeError::Session(format!(
                "write of {} bytes at {offset} past a buffer of {}",
                bytes.len(),
                self.len()
            )));
        }
        let mut view = self.slice.slice_mut(offset..end);
        self.device
            .stream
            .memcpy_htod(bytes, &mut view)
            .doing(|| format!("uploading {} bytes", bytes.len()))
    }

    /// Downloads `len` bytes from byte `offset` (waits for the stream).
    pub fn read_at(&self, offset: usize, len: usize) -> Result<Vec<u8>, RuntimeError> {
        let end = offset + len;
        if end > self.len() {
            return Err(RuntimeError::Session(format!(
                "read of {len} bytes at {offset} past a buffer of {}",
                self.len()
            )));
        }
        let view = self.slice.slice(offset..end);
        let mut out = vec![0u8; len];
        self.device
            .stream
            .memcpy_dtoh(&view, &mut out)
            .doing(|| format!("downloading {len} bytes"))?;
        self.device.synchronize()?;
        Ok(out)
    }

    /// Downloads the whole buffer.
    pub fn to_vec(&self) -> Result<Vec<u8>, RuntimeError> {
        self.device
            .stream
            .clone_dtoh(&self.slice)
            .doing(|| format!("downloading {} bytes", self.slice.len()))
    }
}

/// A kernel argument, in PTX parameter order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelArg {
    /// A device address (`.u64` buffer parameter).
    Ptr(u64),
    U32(u32),
    I32(i32),
    F32(f32),
}

/// A kernel loaded into a device: its function and launch geometry.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    name: String,
    launch: LaunchSpec,
    params: Vec<ParamKind>,
    function: CudaFunction,
    _module: Arc<CudaModule>,
    device: Device,
    dependent_launch: bool,
}

impl LoadedKernel {
    /// JIT-loads one generated kernel on its own, with no parity check: for tests and
    /// benchmarks of single kernels. Engines load whole sets through [`LoadedSet::load`],
    /// which refuses a set whose parity report failed.
    pub fn load_unchecked(
        device: &Device,
        kernel: &GeneratedKernel,
    ) -> Result<LoadedKernel, RuntimeError> {
        device.require_sm(kernel.target.sm)?;
        let module = device
            .ctx
            .load_module(Ptx::from_src(kernel.ptx.clone()))
            .doing(|| format!("loading the PTX of {}", kernel.name))?;
        let function = module
            .load_function(&kernel.name)
            .doing(|| format!("finding entry {}", kernel.name))?;
        Ok(LoadedKernel {
            name: kernel.name.clone(),
            launch: kernel.launch.clone(),
            params: kernel.params.iter().map(|p| p.kind.clone()).collect(),
            function,
            _module: module,
            device: device.clone(),
            dependent_launch: kernel.target.allows(Feature::GridDependency),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Launches with `args` in parameter order; `runtime` answers the launch formulas.
    pub fn launch(
        &self,
        args: &[KernelArg],
        runtime: impl Fn(RuntimeValue) -> u32,
    ) -> Result<(), RuntimeError> {
        if args.len() != self.params.len() {
            return Err(RuntimeError::Launch {
                kernel: self.name.clone(),
                message: format!(
                    "{} arguments given, the kernel has {} parameters",
                    args.len(),
                    self.params.len()
                ),
            });
        }
        for (k, (p, a)) in self.params.iter().zip(args).enumerate() {
            let fits = match p {
                ParamKind::Buffer(_) => matches!(a, KernelArg::Ptr(_)),
                ParamKind::Scalar { ty } => matches!(
                    (ty.as_str(), a),
                    ("u32" | "b32", KernelArg::U32(_))
                        | ("s32", KernelArg::I32(_))
                        | ("f32", KernelArg::F32(_))
                ),
            };
            if !fits {
                return Err(RuntimeError::Launch {
                    kernel: self.name.clone(),
                    message: format!("argument {k} ({a:?}) does not match parameter {p:?}"),
                });
            }
        }
        let g = &self.launch.grid;
        let cfg = LaunchConfig {
            grid_dim: (
                g[0].eval(&runtime),
                g[1].eval(&runtime),
                g[2].eval(&runtime),
            ),
            block_dim: (
                self.launch.block[0],
                self.launch.block[1],
                self.launch.block[2],
            ),
            shared_mem_bytes: self.launch.dynamic_shared_bytes.eval(&runtime),
        };
        if self.dependent_launch {
            return self.launch_dependent(args, &cfg);
        }
        let mut builder = self.device.stream.launch_builder(&self.function);
        for a in args {
            match a {
                KernelArg::Ptr(p) => builder.arg(p),
                KernelArg::U32(v) => builder.arg(v),
                KernelArg::I32(v) => builder.arg(v),
                KernelArg::F32(v) => builder.arg(v),
            };
        }
        // SAFETY: the argument count matches the kernel's parameters, scalars have the PTX
        // types of the manifest, and buffer sizes are the caller's contract (ParamSpec bytes).
        unsafe { builder.launch(cfg) }
            .map(|_| ())
            .doing(|| format!("launching {}", self.name))
    }

    /// Whether launches may overlap the previous kernel in the stream (programmatic
    /// dependent launch): kernels generated for sm_90 and later wait for their predecessor
    /// with `griddepcontrol.wait` before touching anything it writes.
    pub fn dependent_launch(&self) -> bool {
        self.dependent_launch
    }

    /// Launches this kernel as a plain, fully serialized launch from now on (for comparisons
    /// and for embedders that want no overlap between kernels).
    pub fn serialize(&mut self) {
        self.dependent_launch = false;
    }

    /// `cuLaunchKernelEx` with programmatic stream serialization allowed (cudarc's launch
    /// builder takes no launch attributes).
    fn launch_dependent(&self, args: &[KernelArg], cfg: &LaunchConfig) -> Result<(), RuntimeError> {
        use cudarc::driver::sys;
        // Every argument as 8 bytes of storage; the driver reads each parameter's own size.
        let mut values: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                KernelArg::Ptr(p) => p,
                KernelArg::U32(v) => u64::from(v),
                KernelArg::I32(v) => u64::from(v as u32),
                KernelArg::F32(v) => u64::from(v.to_bits()),
            })
            .collect();
        let mut params: Vec<*mut std::ffi::c_void> =
            values.iter_mut().map(|v| (v as *mut u64).cast()).collect();
        // SAFETY: an all-zero attribute is a valid C struct; id and value are set below.
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: self.device.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: 1,
        };
        self.device
            .ctx
            .bind_to_thread()
            .doing(|| format!("binding the context to launch {}", self.name))?;
        // SAFETY: as in `launch`; little-endian storage puts a 4-byte scalar in the first 4
        // bytes of its slot, which outlives the call (the driver copies parameters).
        unsafe {
            sys::cuLaunchKernelEx(
                &config,
                self.function.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
        .doing(|| format!("launching {} (programmatic dependent launch)", self.name))
    }
}

/// A kernel set loaded into a device, only after its parity report passed.
#[derive(Debug)]
pub struct LoadedSet {
    kernels: std::collections::BTreeMap<String, LoadedKernel>,
}

impl LoadedSet {
    /// Loads every kernel of `set`. Refuses, naming the pair, a set whose parity report failed
    /// or does not cover every batched kernel.
    pub fn load(
        device: &Device,
        set: &crate::kernel_set::KernelSet,
    ) -> Result<LoadedSet, RuntimeError> {
        LoadedSet::check(set)?;
        let mut kernels = std::collections::BTreeMap::new();
        // Parity twins are proofs' witnesses, never launched.
        let launched = set
            .kernels
            .iter()
            .chain(set.batched.iter().map(|p| &p.batched));
        for k in launched {
            kernels.insert(k.name.clone(), LoadedKernel::load_unchecked(device, k)?);
        }
        Ok(LoadedSet { kernels })
    }

    /// Launches every kernel of the set fully serialized ([`LoadedKernel::serialize`]).
    pub fn serialize(&mut self) {
        self.kernels.values_mut().for_each(LoadedKernel::serialize);
    }

    /// The gate of [`LoadedSet::load`], without a device: a passing parity report covering
    /// every batched kernel of the set.
    pub fn check(set: &crate::kernel_set::KernelSet) -> Result<(), RuntimeError> {
        if let Some(pair) = set.parity.failures().next() {
            let check = pair
                .checks
                .iter()
                .find(|c| c.status == ptx_gen::parity::CheckStatus::Fail)
                .map(|c| c.check.to_string())
                .unwrap_or_default();
            return Err(RuntimeError::ParityFailed {
                single: pair.single.clone(),
                batched: pair.batched.clone(),
                check,
            });
        }
        for b in &set.batched {
            let covered = set
                .parity
                .pairs
                .iter()
                .any(|p| p.batched == b.batched.name && p.single == b.single);
            if !covered {
                return Err(RuntimeError::ParityFailed {
                    single: b.single.clone(),
                    batched: b.batched.name.clone(),
                    check: "no parity report for this pair".into(),
                });
            }
        }
        Ok(())
    }

    /// The loaded kernel called `name`.
    pub fn get(&self, name: &str) -> Option<&LoadedKernel> {
        self.kernels.get(name)
    }

    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }
}
