//! Generation speed: planning and generating the full llama3-8b kernel set (single and
//! batched up to M = 8), and validating it (parse + static checks of every module).

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
    c.bench_function("validate llama3-8b (parse + static checks + parity)", |b| {
        b.iter(|| ptxforge::kernel_set::check_set(&set).expect("validation"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = generate
}
criterion_main!(benches);
