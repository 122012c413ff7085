//! `ptxforge generate`: the kernels of one model, its manifest and parity report, written
//! to `kernels/<model>/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use ptx_gen::Target;

use crate::contract::{Contract, ModelSpec, Preset, Registry};
use crate::kernel_set::{KernelSet, SetOptions};
use crate::model::{open_checked, SupportedTypes};
use crate::quant::GgmlType;

use super::CliError;

/// The preset used when no model source is given.
pub const DEFAULT_PRESET: &str = "llama3-8b";

/// Generate the decode kernels of one model: one `.ptx` module per kernel, `manifest.json` and
/// `parity.json`. A set whose batched kernels fail parity is not written (exit 1).
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A preset of contracts/presets (no model file needed); `llama3-8b` when no source is given.
    #[arg(long, conflicts_with_all = ["model", "contract"])]
    pub preset: Option<String>,
    /// A GGUF file or a safetensors model (file or directory with config.json).
    #[arg(long, conflicts_with = "contract")]
    pub model: Option<PathBuf>,
    /// An architecture contract YAML (with --dims).
    #[arg(long, requires = "dims")]
    pub contract: Option<PathBuf>,
    /// A dims file in the preset format (with --contract).
    #[arg(long, requires = "contract")]
    pub dims: Option<PathBuf>,
    /// Generate batched variants for 2..=M vectors.
    #[arg(long, default_value_t = 8)]
    pub batch_max: u32,
    /// PTX target.
    #[arg(long, default_value = "sm_61")]
    pub target: String,
    /// KV-cache capacity in positions (capped at the model's context).
    #[arg(long, default_value_t = 4096)]
    pub max_context: u32,
    /// Output directory (default `kernels/<model>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::usage(e.to_string())
}

/// The model the arguments name.
pub fn model_spec(args: &GenerateArgs) -> Result<ModelSpec, CliError> {
    let registry = Registry::builtin().map_err(|e| CliError::internal(e.to_string()))?;
    if let Some(path) = &args.model {
        let supported = SupportedTypes::new(
            &[
                GgmlType::Q4K,
                GgmlType::Q6K,
                GgmlType::Q5_0,
                GgmlType::Q8_0,
                GgmlType::Q4_1,
                GgmlType::F16,
                GgmlType::F32,
            ],
            &[GgmlType::F32],
        );
        let bound = open_checked(path, &registry, &supported).map_err(usage)?;
        return Ok(bound.spec);
    }
    if let (Some(contract), Some(dims)) = (&args.contract, &args.dims) {
        let contract = Arc::new(Contract::load(contract).map_err(usage)?);
        let text =
            std::fs::read_to_string(dims).map_err(|e| usage(format!("{}: {e}", dims.display())))?;
        let preset = Preset::from_yaml(dims, &text, &[contract]).map_err(usage)?;
        return Ok(preset.spec);
    }
    let name = args.preset.as_deref().unwrap_or(DEFAULT_PRESET);
    registry.preset_spec(name).cloned().map_err(usage)
}

pub fn run(args: &GenerateArgs) -> Result<(), CliError> {
    let target = Target::parse(&args.target).ok_or_else(|| {
        usage(format!(
            "--target: expected sm_XX (e.g. sm_61, sm_90), got `{}`",
            args.target
        ))
    })?;
    if !(1..=ptx_gen::kernels::GEMV_MAX_BATCH).contains(&args.batch_max) {
        return Err(usage(format!(
            "--batch-max: expected 1..={}, got {}",
            ptx_gen::kernels::GEMV_MAX_BATCH,
            args.batch_max
        )));
    }
    let spec = model_spec(args)?;
    let start = Instant::now();
    let options = SetOptions {
        target,
        max_context: args.max_context,
        batch_max: args.batch_max,
    };
    let set = KernelSet::generate(&spec, options).map_err(usage)?;
    let generated = start.elapsed();
    if !set.parity.passed() {
        println!("{}", set.parity);
        return Err(CliError::internal(format!(
            "{}: parity failed for {} of {} batched kernels; nothing written",
            spec.name,
            set.parity.failures().count(),
            set.parity.pairs.len()
        )));
    }
    let findings = crate::kernel_set::check_set(&set).map_err(usage)?;
    if let Some(f) = findings.first() {
        return Err(CliError::internal(format!(
            "{}: {} static findings, first: {}: {}",
            spec.name,
            findings.len(),
            f.kernel,
            f.message
        )));
    }
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("kernels").join(&spec.name));
    let manifest = set.write_to(&dir).map_err(usage)?;
    tracing::info!(
        "{}: {} kernels ({} batched), {} launches per step, generated in {:.1} ms, written to {}",
        spec.name,
        manifest.kernels.len(),
        set.batched.len(),
        manifest
            .decode_steps
            .first()
            .map_or(0, |s| s.launches.len()),
        generated.as_secs_f64() * 1e3,
        dir.display()
    );
    Ok(())
}
