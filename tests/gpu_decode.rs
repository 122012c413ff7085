//! The GPU decode step against the CPU *mirror* forward (`CpuForward::mirror`: every launch
//! computed by its kernel's CPU mirror, the kernels' own f32 arithmetic to the bit), on
//! random-weight models of every contract at small dims: 16 greedy steps, single and batched
//! (three sequences with their own positions and KV caches). The criterion of issue 7: at
//! every sequence-step the relative logit error is at most [`MAX_REL_ERR`] and the argmax is
//! the same.
//!
//! Why the mirror and not the f64 references: activations are quantized to int8 (Q8_1)
//! before every GEMV, so a value within ~1e-7 of a rounding boundary rounds one way on the
//! GPU and the other on a CPU that computes the same function with other roundings, and the
//! difference then lives on in the KV cache: against the f64 references sequences drifted to
//! ~1e-2. The mirror computes the GPU's bits, so there is no drift to bound.
//!
//! Until the GEMV kernel mirror (`reference/mirror/gemv.rs`) replaces the f64 GEMV reference
//! it calls now, the GEMVs still round differently and this test is expected to fail on a GPU.

mod common;

use ptxforge::model::{tiny_spec, ModelWeights, TINY_CONTRACTS};
use ptxforge::plan::{KernelPlan, PlanOptions};
use ptxforge::reference::forward::CpuForward;
use ptxforge::runtime::{Engine, EngineOptions, Session};

const STEPS: u32 = 16;
/// The largest relative logit error allowed at any sequence-step.
const MAX_REL_ERR: f64 = 1e-3;
const MAX_CONTEXT: u32 = 64;

/// max |gpu - cpu| / max |cpu|.
fn rel_err(gpu: &[f32], cpu: &[f32]) -> f64 {
    let scale = cpu.iter().map(|v| v.abs() as f64).fold(1e-30, f64::max);
    gpu.iter()
        .zip(cpu)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn gpu_decode_matches_the_cpu_mirror_forward_for_every_contract() {
    let Some(dev) = common::gpu_or_skip("gpu decode vs cpu mirror forward") else {
        return;
    };
    let mut rng = common::Rng::fresh("gpu decode");
    let mut failures = Vec::new();
    let (mut steps_total, mut steps_identical) = (0u32, 0u32);
    for contract in TINY_CONTRACTS {
        let spec = tiny_spec(contract).unwrap();
        let weights = ModelWeights::random(&spec, rng.next_u64()).unwrap();
        let engine = Engine::load(
            &dev,
            &weights,
            EngineOptions {
                max_context: MAX_CONTEXT,
                batch_max: 4,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let plan = KernelPlan::build(weights.spec(), PlanOptions::new(MAX_CONTEXT)).unwrap();
        let cpu = CpuForward::mirror(&weights, &plan).unwrap();
        let vocab = spec.dims.vocab as u64;
        let mut worst: f64 = 0.0;
        for m in [1u32, 3] {
            let mut session = Session::new(&engine, m).unwrap();
            let mut seqs: Vec<_> = (0..m).map(|_| cpu.sequence()).collect();
            let mut tokens: Vec<u32> = (0..m).map(|_| rng.below(vocab) as u32).collect();
            for step in 0..STEPS {
                let next = session.step(&tokens).unwrap();
                for s in 0..m as usize {
                    let out = cpu.step(&mut seqs[s], tokens[s]).unwrap();
                    let (cpu_next, c) = (out.next_token, out.logits);
                    let g = session.logits(s).unwrap();
                    let e = rel_err(&g, &c);
                    worst = worst.max(e);
                    steps_total += 1;
                    if g.iter().zip(&c).all(|(a, b)| a.to_bits() == b.to_bits()) {
                        steps_identical += 1;
                    }
                    if e > MAX_REL_ERR {
                        failures.push(format!(
                            "{contract} m={m} step {step} seq {s} token {}: relative logit error {e:.2e} > {MAX_REL_ERR:e}",
                            tokens[s]
                        ));
                    }
                    assert_eq!(
                        next[s],
                        argmax(&g),
                        "{contract}: the argmax kernel disagrees with the logits"
                    );
                    if next[s] != cpu_next {
                        failures.push(format!(
                            "{contract} m={m} step {step} seq {s}: argmax {} vs cpu {cpu_next} (error {e:.2e})",
                            next[s]
                        ));
                    }
                }
                // Both continue with the GPU's tokens, so one disagreement is reported once.
                tokens = next;
            }
        }
        println!("{contract}: {STEPS} steps single and batched (m = 3): worst relative logit error {worst:.2e}");
    }
    println!("{steps_identical} of {steps_total} sequence-steps with bit-identical logits");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Prefill of unequal prompts (batched while all have tokens, then per sequence) equals
/// feeding each prompt alone.
#[test]
fn prefill_of_unequal_prompts_equals_single_sequences() {
    let Some(dev) = common::gpu_or_skip("prefill") else {
        return;
    };
    let mut rng = common::Rng::fresh("prefill");
    let spec = tiny_spec("llama").unwrap();
    let weights = ModelWeights::random(&spec, rng.next_u64()).unwrap();
    let engine = Engine::load(
        &dev,
        &weights,
        EngineOptions {
            max_context: MAX_CONTEXT,
            batch_max: 3,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let vocab = spec.dims.vocab as u64;
    let prompts: Vec<Vec<u32>> = [5usize, 9, 7]
        .iter()
        .map(|n| (0..*n).map(|_| rng.below(vocab) as u32).collect())
        .collect();
    let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    let mut batch = Session::new(&engine, 3).unwrap();
    let got = batch.generate(&refs, 6, None).unwrap();
    for (s, p) in prompts.iter().enumerate() {
        let mut one = Session::new(&engine, 1).unwrap();
        let want = one.generate(&[p], 6, None).unwrap();
        assert_eq!(got[s], want[0], "sequence {s}");
        assert_eq!(batch.positions()[s] as usize, p.len() + 5);
    }
}

/// M sequences decoded together are bit-identical to each decoded alone: logits at every
/// step (the end-to-end form of the parity guarantee).
#[test]
fn batched_sessions_equal_single_sessions_bit_for_bit() {
    let Some(dev) = common::gpu_or_skip("batched = single sessions") else {
        return;
    };
    let mut rng = common::Rng::fresh("batched sessions");
    for contract in TINY_CONTRACTS {
        let spec = tiny_spec(contract).unwrap();
        let weights = ModelWeights::random(&spec, rng.next_u64()).unwrap();
        let engine = Engine::load(
            &dev,
            &weights,
            EngineOptions {
                max_context: MAX_CONTEXT,
                batch_max: 4,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let m = 3usize;
        let vocab = spec.dims.vocab as u64;
        let mut batch = Session::new(&engine, m as u32).unwrap();
        let mut singles: Vec<Session> = (0..m).map(|_| Session::new(&engine, 1).unwrap()).collect();
        let mut tokens: Vec<u32> = (0..m).map(|_| rng.below(vocab) as u32).collect();
        for step in 0..8 {
            let next = batch.step(&tokens).unwrap();
            for s in 0..m {
                let one = singles[s].step(&[tokens[s]]).unwrap()[0];
                let (a, b) = (batch.logits(s).unwrap(), singles[s].logits(0).unwrap());
                let diff = a
                    .iter()
                    .zip(&b)
                    .filter(|(x, y)| x.to_bits() != y.to_bits())
                    .count();
                if diff > 0 {
                    use ptxforge::plan::Buffer;
                    let q = (spec.dims.q_dim() * 4) as usize;
                    let h = (spec.dims.hidden * 4) as usize;
                    let attn_b = batch.read_buffer(Buffer::Attn).unwrap();
                    let attn_s = singles[s].read_buffer(Buffer::Attn).unwrap();
                    let x_b = batch.read_buffer(Buffer::X).unwrap();
                    let x_s = singles[s].read_buffer(Buffer::X).unwrap();
                    panic!(
                        "{contract} step {step} seq {s}: {diff} logits differ; last attn equal: {}, x equal: {}",
                        attn_b[s * q..(s + 1) * q] == attn_s[..q],
                        x_b[s * h..(s + 1) * h] == x_s[..h]
                    );
                }
                assert_eq!(next[s], one);
            }
            tokens = next;
        }
    }
}
