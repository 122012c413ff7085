//! Embedding ptxforge: load a GGUF model onto GPU 0, decode a prompt greedily, read logits.
//!
//!     cargo run --release --example decode -- MODEL.gguf 1,2,3 [NEW_TOKENS]
//!
//! Without a GPU it says so and exits with code 2.

use ptxforge::model::{open_checked, ModelWeights, SupportedTypes, Vocab, WeightQuant};
use ptxforge::runtime::{Device, Engine, EngineOptions, RuntimeError, Session};
use ptxforge::Registry;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: {} MODEL.gguf TOKEN,TOKEN,... [NEW_TOKENS]", args[0]);
        std::process::exit(2);
    }
    let prompt: Vec<u32> = args[2]
        .split(',')
        .map(|t| t.trim().parse())
        .collect::<Result<_, _>>()?;
    let new_tokens: usize = args.get(3).map_or(Ok(16), |n| n.parse())?;

    // Open the file, find its contract, check every tensor the decode step needs.
    let registry = Registry::builtin()?;
    let model = open_checked(args[1].as_ref(), &registry, &SupportedTypes::all())?;
    // GGUF tensors are borrowed from the mmap; safetensors would be quantized here.
    let weights = ModelWeights::from_bound(&model, WeightQuant::Q8_0)?;

    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e @ (RuntimeError::NoDriver | RuntimeError::NoDevice { .. })) => {
            eprintln!("this example needs a CUDA GPU: {e}");
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    };
    // Generates the kernels, refuses them unless parity passed, re-checks batched vs single
    // on this GPU, uploads weights.
    let engine = Engine::load(
        &device,
        &weights,
        EngineOptions {
            max_context: 1024,
            batch_max: 2,
            ..EngineOptions::default()
        },
    )?;

    // One sequence: prefill, then greedy steps (each a CUDA graph replay).
    let mut session = Session::new(&engine, 1)?;
    let vocab = Vocab::from_info(&model.info).ok();
    let stop = vocab.as_ref().and_then(|v| v.eos());
    let out = session.generate(&[&prompt], new_tokens, stop)?;
    println!("new tokens: {:?}", out[0]);
    if let Some(v) = &vocab {
        println!("text: {}", v.decode(&out[0])?);
    }
    // The logits of the last step.
    let logits = session.logits(0)?;
    let best = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    println!("last step: {} logits, argmax {best:?}", logits.len());

    // Two sequences at once through the batched kernels (own positions, own KV caches).
    let mut pair = Session::new(&engine, 2)?;
    let both = pair.generate(&[&prompt, &prompt[..1]], 4, stop)?;
    println!("batched: {both:?}");
    Ok(())
}
