//! `ptxforge score`: teacher-forced logits of a token sequence: for every position from N
//! on, the top-K next-token ids and logits after feeding the tokens up to it.

use clap::Args;
use serde::Serialize;

use super::decode::{open_model, weights, Backend, DeviceChoice, ModelArgs};
use super::CliError;

/// Teacher forcing: feed the given tokens one by one and report, at each position >= --from,
/// the K highest logits (ties by ascending id).
#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The token sequence, comma-separated ids.
    #[arg(long, value_delimiter = ',', required = true)]
    pub tokens: Vec<u32>,
    /// First position (0-based) to report.
    #[arg(long, default_value_t = 0)]
    pub from: usize,
    /// How many of the highest logits to report per position.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The report of one position.
#[derive(Debug, Serialize)]
pub struct ScoreRow {
    pub pos: usize,
    pub ids: Vec<u32>,
    pub logits: Vec<f32>,
}

/// The `top` highest logits, best first, equal logits by ascending id.
pub fn top_k(logits: &[f32], top: usize) -> (Vec<u32>, Vec<f32>) {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(top);
    let vals = idx.iter().map(|&i| logits[i as usize]).collect();
    (idx, vals)
}

pub fn run(args: &ScoreArgs) -> Result<(), CliError> {
    let device = DeviceChoice::parse(&args.model.device)?;
    if args.from >= args.tokens.len() {
        return Err(CliError::usage(format!(
            "--from {} is past the {} tokens given",
            args.from,
            args.tokens.len()
        )));
    }
    if args.top == 0 {
        return Err(CliError::usage("--top must be at least 1"));
    }
    let bound = open_model(&args.model)?;
    let vocab = bound.spec.dims.vocab;
    if let Some(t) = args.tokens.iter().find(|t| **t >= vocab) {
        return Err(CliError::usage(format!(
            "--tokens: token {t} is outside the vocabulary of {vocab}"
        )));
    }
    if args.tokens.len() as u32 > bound.spec.dims.context {
        return Err(CliError::usage(format!(
            "{} tokens exceed the model's context of {}",
            args.tokens.len(),
            bound.spec.dims.context
        )));
    }
    let w = weights(&bound, &args.model)?;
    let max_context = args.model.max_context.max(args.tokens.len() as u32);
    let backend = Backend::new(device, &w, &args.model, max_context, "score")?;
    let mut decoder = backend.decoder(&w)?;
    let top = args.top.min(vocab as usize);
    let mut rows = Vec::new();
    for (pos, &t) in args.tokens.iter().enumerate() {
        decoder.step(t)?;
        if pos >= args.from {
            let (ids, logits) = top_k(&decoder.logits()?, top);
            rows.push(ScoreRow { pos, ids, logits });
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| CliError::internal(e.to_string()))?
        );
    } else {
        for r in &rows {
            let pairs: Vec<String> = r
                .ids
                .iter()
                .zip(&r.logits)
                .map(|(i, l)| format!("{i}:{l:.4}"))
                .collect();
            println!("pos {}: {}", r.pos, pairs.join(" "));
        }
    }
    Ok(())
}
