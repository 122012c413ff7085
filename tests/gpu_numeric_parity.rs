//! The engine's second line of defence: on first load on a device it runs every batched
//! kernel against its single twin on random inputs. A set whose batched kernel was altered
//! after its (structural) parity report was made is refused with a typed error naming the
//! pair, even though the report says it passed.

mod common;

use ptxforge::kernel_set::{KernelSet, SetOptions};
use ptxforge::model::{tiny_spec, ModelWeights};
use ptxforge::runtime::{Engine, RuntimeError};

#[test]
fn a_batched_kernel_altered_after_its_report_is_caught_on_the_device() {
    let Some(dev) = common::gpu_or_skip("numeric parity on load") else {
        return;
    };
    let mut rng = common::Rng::fresh("numeric parity");
    let spec = tiny_spec("qwen2").unwrap();
    let weights = ModelWeights::random(&spec, rng.next_u64()).unwrap();
    let options = SetOptions {
        target: ptx_gen::Target::default(),
        max_context: 64,
        batch_max: 3,
    };
    // The untouched set loads (and passes the numeric check).
    let set = KernelSet::generate(weights.spec(), options).unwrap();
    Engine::with_set(&dev, set.clone(), &weights, false).unwrap();

    // Each alteration keeps the PTX valid but changes what one vector gets.
    let cases: [(&str, &str, &str); 3] = [
        ("gemv_", "add.rn.f32", "sub.rn.f32"),
        ("rmsnorm_q8_1_", "mul.rn.f32", "add.rn.f32"),
        ("glu_", "mul.rn.f64", "add.rn.f64"),
    ];
    for (family, from, to) in cases {
        let mut forged = set.clone();
        let pair = forged
            .batched
            .iter_mut()
            .find(|p| p.batched.name.starts_with(family) && p.batched.ptx.contains(from))
            .unwrap_or_else(|| panic!("no batched {family} kernel with {from}"));
        // The last occurrence: late in the kernel, on every vector's path.
        let at = pair.batched.ptx.rfind(from).unwrap();
        pair.batched.ptx.replace_range(at..at + from.len(), to);
        let name = pair.batched.name.clone();
        assert!(
            forged.parity.passed(),
            "the forged report still says it passed"
        );
        match Engine::with_set(&dev, forged, &weights, false) {
            Err(RuntimeError::NumericParity { batched, .. }) => assert_eq!(batched, name),
            Err(e) => panic!("{name}: expected a numeric parity error, got {e}"),
            Ok(_) => panic!("{name}: an altered batched kernel was loaded"),
        }
        println!("{name}: {from} -> {to} refused on {}", dev.name());
    }
}
