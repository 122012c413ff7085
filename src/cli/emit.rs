//! `ptxforge emit KERNEL [DIMS...]`: prints one kernel's PTX.

use clap::Args;
use ptx_gen::kernels::{self, KernelSpec};
use ptx_gen::Target;

use super::CliError;

/// Print the PTX of one kernel, generated for the given dimensions (`emit --help` lists the
/// kernels and their dimensions).
#[derive(Debug, Args)]
#[command(after_help = after_help())]
pub struct EmitArgs {
    /// Kernel family (see below).
    pub kernel: String,
    /// The dimensions of the kernel, in the order listed below.
    #[arg(allow_negative_numbers = true)]
    pub dims: Vec<String>,
    /// PTX target, `sm_XX`.
    #[arg(long, default_value = "sm_61")]
    pub target: String,
    /// Print the kernel's name, spec, launch geometry and parameters (JSON) instead of its PTX.
    #[arg(long)]
    pub describe: bool,
}

fn after_help() -> String {
    let mut s = String::from("Kernels and their dimensions:\n");
    for (family, dims) in kernels::families() {
        s.push_str(&format!("  {family:<16} {dims}\n"));
    }
    s.push_str("\nExamples:\n  ptxforge emit quantize_q8_1 4096\n  ptxforge emit rmsnorm 640 1e-6 --target sm_90");
    s
}

/// The spec named on the command line.
pub fn spec_from_args(args: &EmitArgs) -> Result<KernelSpec, CliError> {
    KernelSpec::from_cli(&args.kernel, &args.dims).map_err(|e| {
        if e.starts_with("unknown kernel") {
            CliError::usage(e)
        } else {
            CliError::usage(format!("{}: {e}", args.kernel))
        }
    })
}

pub fn run(args: &EmitArgs) -> Result<(), CliError> {
    let target = Target::parse(&args.target).ok_or_else(|| {
        CliError::usage(format!(
            "--target: expected sm_XX (e.g. sm_61, sm_90), got `{}`",
            args.target
        ))
    })?;
    let spec = spec_from_args(args)?;
    let kernel = kernels::generate(&spec, target).map_err(|e| CliError::usage(e.to_string()))?;
    if args.describe {
        let json = serde_json::json!({
            "name": kernel.name,
            "spec": kernel.spec,
            "target": format!("sm_{}", kernel.target.sm),
            "launch": kernel.launch,
            "params": kernel.params,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).map_err(|e| CliError::internal(e.to_string()))?
        );
    } else {
        print!("{}", kernel.ptx);
    }
    Ok(())
}
