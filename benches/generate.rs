//! Generation speed: planning and generating the full llama3-8b kernel set (single and
//! batched up to M = 8, parity included), re-checking it (parse + static checks of every
//! module), and its structural parity alone.

use criterion::{criterion_group, criterion_main, Criterion};
use ptx_gen::Target;
use ptxforge::contract::Registry;
use ptxforge::kernel_set::{KernelSet, SetOptions};

fn options() -> SetOptions {
    SetOptions {
        target: Target::dp4a_default(),
        max_context: 4096,
        batch_max: 8,
    }
}

fn generate(c: &mut Criterion) {
    let registry = Registry::builtin().expect("built-in contracts");
    let spec = registry
        .preset_spec("llama3-8b")
        .expect("llama3-8b preset")
        .clone();
    c.bench_function("generate llama3-8b (batch max 8)", |b| {
        b.iter(|| KernelSet::generate(&spec, options()).expect("generation"))
    });
    let set = KernelSet::generate(&spec, options()).expect("generation");
    c.bench_function("check llama3-8b (parse + static checks)", |b| {
        b.iter(|| ptxforge::kernel_set::check_set(&set).expect("validation"))
    });
    c.bench_function(
        "parity llama3-8b (every batched kernel vs its single twin)",
        |b| b.iter(|| ptxforge::kernel_set::parity_of(&set.kernels, &set.batched).expect("parity")),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = generate
}
criterion_main!(benches);
