//! `ptxforge inspect FILE [--json]`: which contract serves a model, its dims, per-role weight
//! types and bytes, totals, and the completeness gate's verdict.
//!
//! Exit codes: 0 when the model binds and passes the gate; 2 on bad input (unreadable or
//! malformed file, no contract for the architecture, invalid dims, failed gate; for a failed
//! gate the report is still printed first); 1 when the built-in contracts themselves fail to
//! load or stdout can't be written. Errors are one line naming the file.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::contract::Registry;
use crate::model::{BoundModel, InspectReport, ModelInfo, SupportedTypes};

/// Report which contract serves a model file and everything kernel generation would take
/// from it.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A GGUF file, a `.safetensors` file (with `config.json` beside it) or an HF model
    /// directory.
    pub file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Read contracts from DIR (`DIR/architectures/*.yaml`, `DIR/presets/*.yaml`) instead of
    /// the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub contracts: Option<PathBuf>,
}

/// Runs `inspect`, printing to stdout.
pub fn run_inspect(args: &InspectArgs) -> Result<(), CliError> {
    run_inspect_to(args, &mut std::io::stdout().lock())
}

/// Runs `inspect`, printing the report to `out`.
pub fn run_inspect_to(args: &InspectArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let registry = match &args.contracts {
        Some(dir) => Registry::load_dir(dir).map_err(|e| usage(e.to_string()))?,
        None => Registry::builtin()
            .map_err(|e| CliError::internal(format!("built-in contracts: {e}")))?,
    };
    let info = ModelInfo::open(&args.file).map_err(|e| usage(e.to_string()))?;
    let bound = BoundModel::bind(info, &registry).map_err(|e| usage(e.to_string()))?;
    let gate = bound.gate(&SupportedTypes::all());
    let report = InspectReport::new(&bound, gate.clone());
    let text = if args.json {
        report.to_json() + "\n"
    } else {
        report.to_text()
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::internal(format!("writing the report: {e}")))?;
    gate.into_result()
        .map_err(|e| usage(format!("{}: {e}", args.file.display())))
}

/// Bad input: exit 2, one line.
fn usage(message: String) -> CliError {
    CliError::usage(message.replace(['\n', '\r'], " "))
}
