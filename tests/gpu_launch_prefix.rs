//! Launch-level agreement of the GPU decode step with the CPU reference forward (SmolLM2's
//! real dims, random weights): the step is cut after each launch of the first layer, both
//! sides run the cut step for four positions from the same tokens, and every f32 workspace
//! buffer is compared. A failure names the first launch whose output leaves the tolerance.

mod common;

use ptxforge::kernel_set::{KernelSet, SetOptions};
use ptxforge::model::ModelWeights;
use ptxforge::plan::Buffer;
use ptxforge::reference::forward::CpuForward;
use ptxforge::runtime::{Engine, Session};
use ptxforge::Registry;

/// Per f32 buffer, relative to its largest magnitude: the attention family's tolerance (the
/// softmax exponentiates base-2 logits of magnitude ~10-50, so their f32 rounding shows at
/// ~2e-5 on real dims; every other launch agrees to ~1e-7).
const TOLERANCE: f32 = 1e-4;

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn every_launch_of_the_first_layer_matches_the_cpu_reference() {
    let Some(dev) = common::gpu_or_skip("launch prefixes") else {
        return;
    };
    let mut rng = common::Rng::fresh("launch prefixes");
    let spec = Registry::builtin()
        .unwrap()
        .preset_spec("smollm2-135m")
        .unwrap()
        .clone();
    let weights = ModelWeights::random(&spec, rng.next_u64()).unwrap();
    let full = KernelSet::generate(
        weights.spec(),
        SetOptions {
            target: ptx_gen::Target::default(),
            max_context: 128,
            batch_max: 1,
        },
    )
    .unwrap();
    let first_layer_end = full
        .plan
        .step
        .iter()
        .position(|l| l.layer == Some(1))
        .unwrap();
    let tokens: Vec<u32> = (0..4)
        .map(|_| rng.below(spec.dims.vocab as u64) as u32)
        .collect();
    let f32_buffers = [
        Buffer::X,
        Buffer::Qkv,
        Buffer::Attn,
        Buffer::PartO,
        Buffer::PartMl,
        Buffer::GateUp,
    ];
    let mut worst = 0f32;
    for cut in 1..=first_layer_end {
        let mut set = full.clone();
        set.plan.step.truncate(cut);
        let engine = Engine::with_set(&dev, set.clone(), &weights, false).unwrap();
        let cpu = CpuForward::new(&weights, &set.plan).unwrap();
        let mut session = Session::new(&engine, 1).unwrap();
        let mut seq = cpu.sequence();
        let mut report = Vec::new();
        for (step, &t) in tokens.iter().enumerate() {
            session.step(&[t]).unwrap();
            cpu.step(&mut seq, t).unwrap();
            for b in f32_buffers {
                let g = f32s(&session.read_buffer(b).unwrap());
                let c = f32s(seq.buffer(b).unwrap());
                let scale = c.iter().map(|v| v.abs()).fold(1e-30f32, f32::max);
                let err = g
                    .iter()
                    .zip(&c)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max)
                    / scale;
                worst = worst.max(err);
                if err > TOLERANCE {
                    report.push(format!("step {step} {}: rel {err:.2e}", b.name()));
                }
            }
        }
        println!(
            "cut after launch {cut} ({}): {}",
            full.plan.step[cut - 1].kernel,
            if report.is_empty() {
                "all buffers within 1e-5".to_string()
            } else {
                report.join("; ")
            }
        );
    }
}
