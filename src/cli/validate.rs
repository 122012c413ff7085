//! `ptxforge validate DIR`: re-checks a generated kernel directory.

use std::path::PathBuf;

use clap::Args;

use crate::ptxas::Ptxas;
use crate::validate::validate_dir;

use super::CliError;

/// Re-parse every module of a `generate` output directory, run the static checks and the
/// parity checks, compare sha256 with the manifest, and assemble with ptxas for sm_75..sm_90
/// when one is found (PTXAS or PATH). Exit 0 when everything passes, 1 with the findings.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The directory `ptxforge generate` wrote.
    pub dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ValidateArgs) -> Result<(), CliError> {
    let ptxas = Ptxas::locate(std::env::var_os("PTXAS"), std::env::var_os("PATH")).ok();
    if ptxas.is_none() {
        tracing::warn!("ptxas not found (set PTXAS or PATH): modules are not assembled");
    }
    let report =
        validate_dir(&args.dir, ptxas.as_ref()).map_err(|e| CliError::usage(e.to_string()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| CliError::internal(e.to_string()))?
        );
    } else {
        for f in &report.findings {
            println!("{}: {}: {}", f.kernel, f.check, f.message);
        }
        println!(
            "{}: {} kernels, {} parity pairs, {} assemblies, {} findings",
            args.dir.display(),
            report.kernels,
            report.parity_pairs,
            report.assembled,
            report.findings.len()
        );
    }
    if report.passed() {
        Ok(())
    } else {
        Err(CliError {
            message: format!(
                "{}: validation failed with {} findings",
                args.dir.display(),
                report.findings.len()
            ),
            code: 1,
        })
    }
}
