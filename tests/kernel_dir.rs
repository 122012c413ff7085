//! Loading a directory `generate` wrote back into a kernel set: the same kernels, plan and a
//! passing parity report proven again from the files; refused with a typed error naming the
//! problem for a tampered module, a manifest of another model, or a decode step that does not
//! follow from its kernels.

use std::path::PathBuf;

use ptxforge::kernel_set::{KernelSet, SetOptions};
use ptxforge::Registry;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ptxforge-kernel-dir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn set(preset: &str) -> KernelSet {
    let spec = Registry::builtin()
        .unwrap()
        .preset_spec(preset)
        .unwrap()
        .clone();
    KernelSet::generate(
        &spec,
        SetOptions {
            target: ptx_gen::Target::default(),
            max_context: 256,
            batch_max: 3,
        },
    )
    .unwrap()
}

#[test]
fn a_written_set_loads_back_identically() {
    let original = set("smollm2-135m");
    let d = dir("roundtrip");
    original.write_to(&d).unwrap();
    let loaded = KernelSet::from_dir(&d, &original.model).unwrap();
    assert!(loaded.parity.passed());
    assert_eq!(loaded.parity.pairs.len(), original.parity.pairs.len());
    assert_eq!(loaded.plan, original.plan);
    let names = |s: &KernelSet| {
        s.all_kernels()
            .map(|(k, _)| (k.name.clone(), k.ptx.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&loaded), names(&original));
    assert_eq!(loaded.decode_steps(), original.decode_steps());
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_tampered_module_is_refused() {
    let original = set("smollm2-135m");
    let d = dir("tampered");
    original.write_to(&d).unwrap();
    let file = d.join(format!("{}.ptx", original.kernels[2].name));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("add.f32", "sub.f32", 1)).unwrap();
    let e = KernelSet::from_dir(&d, &original.model)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sha256") && e.contains(&original.kernels[2].name),
        "{e}"
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_manifest_of_another_model_is_refused() {
    let original = set("smollm2-135m");
    let d = dir("other-model");
    original.write_to(&d).unwrap();
    let other = Registry::builtin()
        .unwrap()
        .preset_spec("qwen2.5-0.5b")
        .unwrap()
        .clone();
    let e = KernelSet::from_dir(&d, &other).unwrap_err().to_string();
    assert!(e.contains("generated for"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_decode_step_that_does_not_follow_from_its_kernels_is_refused() {
    let original = set("smollm2-135m");
    let d = dir("bad-step");
    original.write_to(&d).unwrap();
    let path = d.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // The batched step of m = 2 binds the K projection's output one region too early.
    let launches = m["decode_steps"][1]["launches"].as_array_mut().unwrap();
    let k = launches
        .iter_mut()
        .find(|l| {
            l["args"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a[1]["weight"]["role"] == "attn_k")
        })
        .unwrap();
    // K is `w` of its own GEMV or `w1` of one launch with Q (and V): its output is `y`/`y1`.
    let w_name = k["args"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a[1]["weight"]["role"] == "attn_k")
        .unwrap()[0]
        .as_str()
        .unwrap()
        .to_string();
    let y_name = w_name.replacen('w', "y", 1);
    for a in k["args"].as_array_mut().unwrap() {
        if a[0] == y_name.as_str() {
            a[1]["buffer"]["offset"] = serde_json::json!(0);
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let e = KernelSet::from_dir(&d, &original.model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("m = 2"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}
