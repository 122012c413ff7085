//! `ptxforge run`: greedy decoding of a prompt given as token ids, on a GPU or the CPU
//! reference; prints the new token ids, their text (from the GGUF vocabulary) and tokens/s.

use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::decode::{open_model, weights, Backend, DeviceChoice, ModelArgs};
use super::CliError;
use crate::model::Vocab;

/// Greedy decoding: feed the prompt, then generate up to N tokens (stopping at the model's
/// end-of-sequence token).
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt as comma-separated token ids.
    #[arg(long, value_delimiter = ',', required = true)]
    pub prompt_tokens: Vec<u32>,
    /// How many tokens to generate.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct RunReport {
    model: String,
    device: String,
    prompt_tokens: Vec<u32>,
    new_tokens: Vec<u32>,
    text: Option<String>,
    prefill_ms: f64,
    decode_ms: f64,
    /// Generated tokens after the first, per second of decoding.
    tokens_per_second: f64,
}

pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let device = DeviceChoice::parse(&args.model.device)?;
    let bound = open_model(&args.model)?;
    let vocab = bound
        .info
        .gguf()
        .map(Vocab::from_gguf)
        .transpose()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let spec_vocab = bound.spec.dims.vocab;
    if let Some(t) = args.prompt_tokens.iter().find(|t| **t >= spec_vocab) {
        return Err(CliError::usage(format!(
            "--prompt-tokens: token {t} is outside the vocabulary of {spec_vocab}"
        )));
    }
    let eos = if args.ignore_eos {
        None
    } else {
        vocab.as_ref().and_then(|v| v.eos())
    };
    let w = weights(&bound, &args.model)?;
    let context = args.prompt_tokens.len() + args.max_new_tokens;
    let max_context = args.model.max_context.max(context as u32);
    if context as u32 > bound.spec.dims.context {
        return Err(CliError::usage(format!(
            "prompt + new tokens ({context}) exceed the model's context of {}",
            bound.spec.dims.context
        )));
    }
    let backend = Backend::new(device, &w, &args.model, max_context, "run")?;
    let mut decoder = backend.decoder(&w)?;
    let started = Instant::now();
    let mut next = 0;
    for &t in &args.prompt_tokens {
        next = decoder.step(t)?;
    }
    let prefill = started.elapsed();
    let started = Instant::now();
    let mut new_tokens = Vec::new();
    while new_tokens.len() < args.max_new_tokens {
        new_tokens.push(next);
        if Some(next) == eos || new_tokens.len() == args.max_new_tokens {
            break;
        }
        next = decoder.step(next)?;
    }
    let decode = started.elapsed();
    let steps = new_tokens.len().saturating_sub(1);
    let report = RunReport {
        model: bound.spec.name.clone(),
        device: device.label(),
        prompt_tokens: args.prompt_tokens.clone(),
        text: vocab
            .as_ref()
            .map(|v| v.decode(&new_tokens))
            .transpose()
            .map_err(|e| CliError::internal(e.to_string()))?,
        new_tokens,
        prefill_ms: prefill.as_secs_f64() * 1e3,
        decode_ms: decode.as_secs_f64() * 1e3,
        tokens_per_second: if steps > 0 {
            steps as f64 / decode.as_secs_f64()
        } else {
            0.0
        },
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| CliError::internal(e.to_string()))?
        );
    } else {
        println!("new tokens: {:?}", report.new_tokens);
        if let Some(t) = &report.text {
            println!("text: {t}");
        }
        println!(
            "{} on {}: prefill {} tokens in {:.1} ms; {} decode steps in {:.1} ms ({:.1} tokens/s)",
            report.model,
            report.device,
            report.prompt_tokens.len(),
            report.prefill_ms,
            steps,
            report.decode_ms,
            report.tokens_per_second
        );
    }
    Ok(())
}
