//! `ptxforge bench`: GPU kernel timings (needs a CUDA GPU).

use std::path::PathBuf;

use clap::Args;
use ptx_gen::Target;

use crate::bench;
use crate::runtime::{Device, RuntimeError};

use super::CliError;

/// Time the GEMV kernels on GPU 0 at DRAM bandwidth (weights rotated over > 2x L2), next to a
/// device-to-device copy measured in the same run.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Shapes `NxK` (rows x columns of W).
    #[arg(long, value_delimiter = ',', default_value = "14336x4096,4096x14336")]
    pub shapes: Vec<String>,
    /// Batch sizes (vectors per launch).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub batches: Vec<u32>,
    /// PTX target of the generated kernels.
    #[arg(long, default_value = "sm_61")]
    pub target: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn shape(s: &str) -> Result<(u32, u32), CliError> {
    let bad = || {
        CliError::usage(format!(
            "--shapes: expected NxK (e.g. 4096x14336), got `{s}`"
        ))
    };
    let (n, k) = s.split_once('x').ok_or_else(bad)?;
    Ok((n.parse().map_err(|_| bad())?, k.parse().map_err(|_| bad())?))
}

pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let target = Target::parse(&args.target).ok_or_else(|| {
        CliError::usage(format!("--target: expected sm_XX, got `{}`", args.target))
    })?;
    let shapes = args
        .shapes
        .iter()
        .map(|s| shape(s))
        .collect::<Result<Vec<_>, _>>()?;
    let device = Device::open(0).map_err(|e| match e {
        RuntimeError::NoDriver | RuntimeError::NoDevice { .. } => {
            CliError::usage(format!("bench needs a CUDA GPU: {e}"))
        }
        other => CliError::internal(other.to_string()),
    })?;
    let report = bench::gemv(&device, &shapes, &args.batches, target)
        .map_err(|e| CliError::internal(e.to_string()))?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::internal(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
