//! Decode-step benchmark: tokens/s of whole models (random weights with a preset's real dims
//! and types, or a real model file) at batch 1 and more, next to the bandwidth bound: the
//! bytes a step must read (every weight once, the embedding rows, the KV cache up to the
//! context) over the copy bandwidth measured in the same run.

use serde::Serialize;

use crate::contract::Role;
use crate::runtime::{Device, Engine, EngineOptions, RuntimeError, Session, WeightSource};

/// One model at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRow {
    pub model: String,
    pub m: u32,
    /// Position every sequence decodes at (KV entries read per layer and head).
    pub context: u32,
    pub median_step_ms: f64,
    /// Tokens per second over all sequences.
    pub tokens_per_second: f64,
    /// Bytes one step must read.
    pub bytes_per_step: u64,
    /// `bytes_per_step / copy bandwidth`.
    pub bound_ms: f64,
    /// `bound_ms / median_step_ms`, in percent.
    pub percent_of_bound: f64,
    pub launches_per_step: usize,
}

/// Steps timed per row (after warm-up).
pub const STEPS: usize = 50;

/// Bytes a step of `m` sequences at position `context` must read: every weight tensor once
/// (the embedding table only as `m` rows, unless it is also the LM head), and K and V of
/// `context + 1` positions per layer and sequence.
pub fn bytes_per_step(source: &dyn WeightSource, m: u32, context: u32) -> u64 {
    let spec = source.spec();
    let d = &spec.dims;
    let tied = !spec.weights.has_role(Role::Output);
    let mut bytes = 0u64;
    for (key, _) in spec.weights.iter() {
        let len = source
            .tensor(key.role, key.layer)
            .map_or(0, |t| t.len() as u64);
        if key.role == Role::TokenEmbd && !tied {
            bytes += len / d.vocab.max(1) as u64 * m as u64;
        } else {
            bytes += len;
        }
    }
    let kv = 2 * d.layers as u64 * d.kv_dim() as u64 * 2 * (context as u64 + 1) * m as u64;
    bytes + kv
}

/// Times `engine`'s decode step at each batch size, every sequence at `context`.
pub fn decode_rows(
    engine: &Engine,
    source: &dyn WeightSource,
    batches: &[u32],
    context: u32,
    copy_gb_per_s: f64,
) -> Result<Vec<DecodeRow>, RuntimeError> {
    let mut rows = Vec::new();
    for &m in batches {
        let mut session = Session::new(engine, m)?;
        let vocab = source.spec().dims.vocab;
        let mut tokens: Vec<u32> = (0..m).map(|s| (17 + 101 * s) % vocab).collect();
        let mut times = Vec::with_capacity(STEPS);
        for i in 0..STEPS + 5 {
            session.set_positions(&vec![context; m as usize])?;
            let started = std::time::Instant::now();
            tokens = session.step(&tokens)?;
            if i >= 5 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let bytes = bytes_per_step(source, m, context);
        let bound_ms = bytes as f64 / (copy_gb_per_s * 1e6);
        let launches = engine
            .kernel_set()
            .plan
            .step_for(m)
            .map(|s| s.len())
            .unwrap_or(0);
        let row = DecodeRow {
            model: source.spec().name.clone(),
            m,
            context,
            median_step_ms: median,
            tokens_per_second: m as f64 * 1e3 / median,
            bytes_per_step: bytes,
            bound_ms,
            percent_of_bound: 100.0 * bound_ms / median,
            launches_per_step: launches,
        };
        tracing::info!(
            "{} m={m}: {:.3} ms/step, {:.0} tokens/s, {:.0}% of the bandwidth bound",
            row.model,
            row.median_step_ms,
            row.tokens_per_second,
            row.percent_of_bound
        );
        rows.push(row);
    }
    Ok(rows)
}

/// An engine for decode benchmarks: batched kernels up to the largest batch.
pub fn bench_engine(
    device: &Device,
    source: &dyn WeightSource,
    batches: &[u32],
    max_context: u32,
    graphs: bool,
    target: ptx_gen::Target,
    dependent_launch: bool,
) -> Result<Engine, RuntimeError> {
    Engine::load(
        device,
        source,
        EngineOptions {
            max_context,
            batch_max: batches.iter().copied().max().unwrap_or(1).max(1),
            graphs,
            target: Some(target),
            dependent_launch,
        },
    )
}

/// A plain-text table of decode rows.
pub fn decode_table(rows: &[DecodeRow]) -> String {
    let mut s = format!(
        "{:<28} {:>3} {:>7} {:>10} {:>10} {:>12} {:>10} {:>8} {:>9}\n",
        "model",
        "M",
        "context",
        "ms/step",
        "tokens/s",
        "MB/step",
        "bound ms",
        "% bound",
        "launches"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<28} {:>3} {:>7} {:>10.3} {:>10.0} {:>12.1} {:>10.3} {:>7.1}% {:>9}\n",
            r.model,
            r.m,
            r.context,
            r.median_step_ms,
            r.tokens_per_second,
            r.bytes_per_step as f64 / 1e6,
            r.bound_ms,
            r.percent_of_bound,
            r.launches_per_step
        ));
    }
    s
}
