//! Reviewable PTX: insta snapshots in `snapshots/` of every kernel (single and M = 2) and the
//! manifest of four reference presets. A change to a generator shows up as a diff here;
//! review it with `cargo insta review` from the repo root. Batched kernels past M = 2 come
//! from the same generator code and are not snapshotted, to keep the files reviewable.

use ptx_gen::Target;
use ptxforge::contract::Registry;
use ptxforge::kernel_set::{KernelSet, SetOptions};

const PRESETS: [&str; 4] = ["llama3-8b", "qwen2.5-0.5b", "gemma3-270m", "smollm2-135m"];

fn snapshot_preset(preset: &str) {
    snapshot_set(preset, preset, Target::dp4a_default(), 2);
}

/// Every kernel of `preset`'s set for `target` (batched up to `batch_max`) and its manifest,
/// as `<prefix>__<kernel>`.
fn snapshot_set(preset: &str, prefix: &str, target: Target, batch_max: u32) {
    let registry = Registry::builtin().unwrap();
    let spec = registry.preset_spec(preset).unwrap();
    let options = SetOptions {
        target,
        max_context: 4096,
        batch_max,
    };
    let set = KernelSet::generate(spec, options).unwrap();
    let manifest = serde_json::to_string_pretty(&set.manifest()).unwrap();
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        for (k, _) in set.all_kernels() {
            insta::assert_snapshot!(format!("{prefix}__{}", k.name), k.ptx);
        }
        insta::assert_snapshot!(format!("{prefix}__manifest"), manifest);
    });
}

#[test]
fn llama3_8b() {
    snapshot_preset(PRESETS[0]);
}

#[test]
fn qwen2_5_0_5b() {
    snapshot_preset(PRESETS[1]);
}

#[test]
fn gemma3_270m() {
    snapshot_preset(PRESETS[2]);
}

#[test]
fn smollm2_135m() {
    snapshot_preset(PRESETS[3]);
}

/// The same model for sm_90, single-vector kernels and the manifest: what the newer target
/// changes (the grid dependency wait of programmatic dependent launch, L1 cache hints).
#[test]
fn smollm2_135m_sm90() {
    snapshot_set(PRESETS[3], "smollm2-135m-sm90", Target::sm(90), 1);
}
