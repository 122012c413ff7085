//! `ptxforge emit KERNEL [DIMS...]`: prints one kernel's PTX.

use clap::Args;
use ptx_gen::kernels::{self, KernelSpec, QuantizeQ8_1, RmsNorm};
use ptx_gen::Target;

use super::CliError;

/// Print the PTX of one kernel, generated for the given dimensions.
#[derive(Debug, Args)]
#[command(after_help = "Kernels and their dimensions:\n  \
    quantize_q8_1 K                      f32[K] -> Q8_1 blocks (K % 32 == 0)\n  \
    rmsnorm HIDDEN [EPS] [WEIGHT_OFFSET]  y = x / rms(x) * (w + offset); EPS default 1e-5, offset 0\n\n\
    Examples:\n  ptxforge emit quantize_q8_1 4096\n  ptxforge emit rmsnorm 640 1e-6 --target sm_90")]
pub struct EmitArgs {
    /// Kernel family (see below).
    pub kernel: String,
    /// The dimensions of the kernel, in the order listed below.
    pub dims: Vec<String>,
    /// PTX target, `sm_XX`.
    #[arg(long, default_value = "sm_61")]
    pub target: String,
    /// Print the kernel's launch geometry and parameters (JSON) instead of its PTX.
    #[arg(long)]
    pub describe: bool,
}

fn dim<T: std::str::FromStr>(
    args: &EmitArgs,
    i: usize,
    what: &str,
    default: Option<T>,
) -> Result<T, CliError> {
    match args.dims.get(i) {
        Some(s) => s.parse().map_err(|_| {
            CliError::usage(format!(
                "{}: {what} must be a number, got `{s}`",
                args.kernel
            ))
        }),
        None => default.ok_or_else(|| CliError::usage(format!("{}: missing {what}", args.kernel))),
    }
}

/// The spec named on the command line.
pub fn spec_from_args(args: &EmitArgs) -> Result<KernelSpec, CliError> {
    let (spec, max_dims) = match args.kernel.as_str() {
        "quantize_q8_1" => (
            KernelSpec::QuantizeQ8_1(QuantizeQ8_1 {
                k: dim(args, 0, "K", None)?,
            }),
            1,
        ),
        "rmsnorm" => (
            KernelSpec::RmsNorm(RmsNorm {
                hidden: dim(args, 0, "HIDDEN", None)?,
                eps: dim(args, 1, "EPS", Some(1e-5))?,
                weight_offset: dim(args, 2, "WEIGHT_OFFSET", Some(0.0))?,
            }),
            3,
        ),
        other => {
            let known: Vec<&str> = kernels::families().iter().map(|(n, _)| *n).collect();
            return Err(CliError::usage(format!(
                "unknown kernel `{other}`; known kernels: {}",
                known.join(", ")
            )));
        }
    };
    if args.dims.len() > max_dims {
        return Err(CliError::usage(format!(
            "{}: takes at most {max_dims} dimension(s), got {}",
            args.kernel,
            args.dims.len()
        )));
    }
    Ok(spec)
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
