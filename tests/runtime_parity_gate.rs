//! The runtime loads a kernel set only with a passing parity report that covers every
//! batched kernel; the refusal names the pair.

use ptx_gen::parity::CheckStatus;
use ptx_gen::Target;
use ptxforge::contract::Registry;
use ptxforge::kernel_set::{KernelSet, SetOptions};
use ptxforge::runtime::{LoadedSet, RuntimeError};

fn set() -> KernelSet {
    let registry = Registry::builtin().unwrap();
    let spec = registry.preset_spec("smollm2-135m").unwrap();
    KernelSet::generate(
        spec,
        SetOptions {
            target: Target::dp4a_default(),
            max_context: 512,
            batch_max: 3,
        },
    )
    .unwrap()
}

#[test]
fn a_generated_set_passes_the_gate() {
    let set = set();
    assert!(set.parity.passed() && !set.batched.is_empty());
    assert_eq!(set.parity.pairs.len(), set.batched.len());
    LoadedSet::check(&set).unwrap();
}

#[test]
fn a_failed_report_is_refused_naming_the_pair() {
    let mut set = set();
    let pair = &mut set.parity.pairs[3];
    let (single, batched) = (pair.single.clone(), pair.batched.clone());
    pair.checks[4].status = CheckStatus::Fail;
    match LoadedSet::check(&set) {
        Err(e @ RuntimeError::ParityFailed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&single) && msg.contains(&batched), "{msg}");
        }
        other => panic!("expected a parity refusal, got {other:?}"),
    }
}

#[test]
fn a_batched_kernel_without_a_report_is_refused() {
    let mut set = set();
    let dropped = set.parity.pairs.remove(0);
    match LoadedSet::check(&set) {
        Err(RuntimeError::ParityFailed { batched, check, .. }) => {
            assert_eq!(batched, dropped.batched);
            assert!(check.contains("no parity report"));
        }
        other => panic!("expected a parity refusal, got {other:?}"),
    }
}
