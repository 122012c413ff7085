use clap::Parser;
use ptxforge::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    let default_level = if cli.quiet { "error" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if let Err(e) = cli::run(&cli) {
        eprintln!("error: {}", e.message);
        std::process::exit(e.code);
    }
}
