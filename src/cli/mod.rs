//! The `ptxforge` command line.

pub mod bench;
pub mod decode;
pub mod emit;
pub mod generate;
pub mod inspect;
pub mod run;
pub mod score;
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
    /// Greedy decoding of a prompt given as token ids (GPU, or the CPU reference).
    Run(run::RunArgs),
    /// Teacher-forced top-K logits of a token sequence (GPU, or the CPU reference).
    Score(score::ScoreArgs),
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
        Command::Run(args) => run::run(args),
        Command::Score(args) => score::run(args),
    }
}
