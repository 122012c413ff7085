//! What `run` and `score` share: opening a model (weights quantized on load for
//! safetensors), choosing the device (`cpu` or `cuda:N`), and a decoder that feeds one token
//! at a time and returns the greedy next token and the logits.

use std::path::PathBuf;

use clap::Args;

use crate::model::{open_checked, BoundModel, ModelWeights, SupportedTypes, WeightQuant};
use crate::reference::forward::{CpuForward, Sequence};
use crate::runtime::{Device, Engine, EngineOptions, RuntimeError, Session};
use crate::Registry;

use super::CliError;

/// Model, device and engine options of `run` and `score`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A GGUF file or a safetensors model (file or directory with config.json).
    #[arg(long)]
    pub model: PathBuf,
    /// `cuda:N` (GPU N), `cuda` (GPU 0) or `cpu` (the CPU reference forward: exact, slow).
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    /// KV-cache capacity in positions (capped at the model's context).
    #[arg(long, default_value_t = 2048)]
    pub max_context: u32,
    /// For safetensors models: the type F32/F16/BF16 matrices are quantized to on load.
    #[arg(long, default_value = "q8_0")]
    pub quant: String,
    /// Load the kernels `ptxforge generate` wrote to this directory (checked against the
    /// model, sha256 and parity) instead of generating them in-process.
    #[arg(long)]
    pub kernels: Option<PathBuf>,
    /// Launch kernels one by one instead of replaying each step as a CUDA graph.
    #[arg(long)]
    pub no_graphs: bool,
}

/// Where decoding runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<DeviceChoice, CliError> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    CliError::usage(format!("--device: expected cpu, cuda or cuda:N, got `{s}`"))
                }),
        }
    }

    pub fn label(self) -> String {
        match self {
            DeviceChoice::Cpu => "cpu".into(),
            DeviceChoice::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

/// Opens GPU `n`; no driver or no such GPU is a usage error (exit 2).
pub fn open_gpu(n: usize, command: &str) -> Result<Device, CliError> {
    Device::open(n).map_err(|e| match e {
        RuntimeError::NoDriver | RuntimeError::NoDevice { .. } => CliError::usage(format!(
            "{command} on cuda:{n} needs a CUDA GPU: {e} (use --device cpu for the CPU reference)"
        )),
        other => CliError::internal(other.to_string()),
    })
}

/// The CPU reference forward of `weights` as a decoder.
pub fn cpu_decoder<'e>(
    weights: &'e ModelWeights<'e>,
    plan: &crate::plan::KernelPlan,
) -> Result<Decoder<'e>, CliError> {
    let forward = CpuForward::new(weights, plan).map_err(|e| CliError::usage(e.to_string()))?;
    let seq = forward.sequence();
    Ok(Decoder::Cpu {
        forward: Box::new(forward),
        seq: Box::new(seq),
        logits: Vec::new(),
    })
}

/// Opens, binds and gates the model file.
pub fn open_model(args: &ModelArgs) -> Result<BoundModel, CliError> {
    let registry = Registry::builtin().map_err(|e| CliError::internal(e.to_string()))?;
    open_checked(&args.model, &registry, &SupportedTypes::all())
        .map_err(|e| CliError::usage(e.to_string()))
}

/// The weights as the kernels read them.
pub fn weights<'a>(bound: &'a BoundModel, args: &ModelArgs) -> Result<ModelWeights<'a>, CliError> {
    let quant = match args.quant.to_ascii_lowercase().as_str() {
        "q8_0" => WeightQuant::Q8_0,
        "q4_k" => WeightQuant::Q4K,
        other => {
            return Err(CliError::usage(format!(
                "--quant: expected q8_0 or q4_k, got `{other}`"
            )))
        }
    };
    ModelWeights::from_bound(bound, quant).map_err(|e| CliError::usage(e.to_string()))
}

/// One sequence decoding on the GPU or the CPU.
pub enum Decoder<'e> {
    Gpu(Box<Session<'e>>),
    Cpu {
        forward: Box<CpuForward<'e>>,
        seq: Box<Sequence>,
        logits: Vec<f32>,
    },
}

impl Decoder<'_> {
    /// Feeds `token`; returns the greedy next token.
    pub fn step(&mut self, token: u32) -> Result<u32, CliError> {
        match self {
            Decoder::Gpu(s) => s
                .step(&[token])
                .map(|t| t[0])
                .map_err(|e| CliError::internal(e.to_string())),
            Decoder::Cpu {
                forward,
                seq,
                logits,
            } => {
                let out = forward
                    .step(seq, token)
                    .map_err(|e| CliError::internal(e.to_string()))?;
                *logits = out.logits;
                Ok(out.next_token)
            }
        }
    }

    /// The logits after the last step.
    pub fn logits(&self) -> Result<Vec<f32>, CliError> {
        match self {
            Decoder::Gpu(s) => s.logits(0).map_err(|e| CliError::internal(e.to_string())),
            Decoder::Cpu { logits, .. } => Ok(logits.clone()),
        }
    }
}

/// What decoders run on: a GPU engine or the CPU forward's plan.
pub enum Backend {
    Gpu(Box<Engine>),
    Cpu(Box<crate::plan::KernelPlan>),
}

impl Backend {
    /// The backend `--device` names for `weights`, with a KV cache of `max_context`.
    pub fn new(
        device: DeviceChoice,
        weights: &ModelWeights<'_>,
        args: &ModelArgs,
        max_context: u32,
        command: &str,
    ) -> Result<Backend, CliError> {
        Ok(match device {
            DeviceChoice::Cuda(n) => {
                let gpu = open_gpu(n, command)?;
                Backend::Gpu(Box::new(gpu_engine(&gpu, weights, args, max_context)?))
            }
            DeviceChoice::Cpu => Backend::Cpu(Box::new(
                crate::plan::KernelPlan::build(
                    weights.spec(),
                    crate::plan::PlanOptions::new(max_context),
                )
                .map_err(|e| CliError::usage(e.to_string()))?,
            )),
        })
    }

    /// A decoder of one sequence at position 0.
    pub fn decoder<'e>(&'e self, weights: &'e ModelWeights<'e>) -> Result<Decoder<'e>, CliError> {
        match self {
            Backend::Gpu(engine) => Ok(Decoder::Gpu(Box::new(
                Session::new(engine, 1).map_err(|e| CliError::internal(e.to_string()))?,
            ))),
            Backend::Cpu(plan) => cpu_decoder(weights, plan),
        }
    }
}

/// A GPU engine for `weights` (batch 1 sessions), on the kernels of `--kernels` when given.
pub fn gpu_engine(
    device: &Device,
    weights: &ModelWeights<'_>,
    args: &ModelArgs,
    max_context: u32,
) -> Result<Engine, CliError> {
    let engine = match &args.kernels {
        Some(dir) => Engine::from_dir(device, dir, weights, !args.no_graphs),
        None => Engine::load(
            device,
            weights,
            EngineOptions {
                max_context,
                batch_max: 1,
                graphs: !args.no_graphs,
                ..EngineOptions::default()
            },
        ),
    };
    engine.map_err(|e| match e {
        e @ RuntimeError::OutOfMemory { .. } => CliError::usage(e.to_string()),
        other => CliError::internal(other.to_string()),
    })
}
