//! The `ptxforge` command line.

pub mod bench;
pub mod emit;
pub mod generate;
pub mod inspect;
pub mod validate;

use clap::{Parser, Subcommand};

/// ptxforge: generates PTX decode kernels specialised to one model's dimensions.
#[derive(Debug, Parser)]
#[command(name = "ptxforge", version, about, long_about = None)]
pub struct Cli {
    /// Only print errors.
    #[arg(long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate the kernels, manifest and parity report of one model (default: llama3-8b).
    Generate(generate::GenerateArgs),
    /// Re-check a generated kernel directory (parse, static checks, parity, sha256, ptxas).
    Validate(validate::ValidateArgs),
    /// Print the PTX of one kernel for given dimensions.
    Emit(emit::EmitArgs),
    /// Inspect a model file: architecture, contract, dims, per-role weight types, gate.
    Inspect(inspect::InspectArgs),
    /// Time kernels on the GPU (DRAM-bound numbers, next to a copy's bandwidth).
    Bench(bench::BenchArgs),
}

/// A command-line failure: a message and the process exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    /// Bad input from the user: exit code 2.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 2,
        }
    }

    /// A failure of ptxforge itself: exit code 1.
    pub fn internal(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Emit(args) => emit::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Inspect(args) => inspect::run_inspect(args),
    }
}
