//! `ptxforge generate`: byte-identical output across processes, the default preset, and
//! one-line errors with exit code 2 for bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ptxforge(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ptxforge"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("running ptxforge")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ptxforge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file of a directory, sorted by name, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn two_processes_write_byte_identical_directories() {
    let root = scratch("determinism");
    for preset in ["gemma3-270m", "qwen2.5-0.5b"] {
        let (a, b) = (
            root.join(format!("{preset}-a")),
            root.join(format!("{preset}-b")),
        );
        for out in [&a, &b] {
            let o = ptxforge(
                &[
                    "generate",
                    "--quiet",
                    "--preset",
                    preset,
                    "--out",
                    out.to_str().unwrap(),
                ],
                &root,
            );
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let (fa, fb) = (files(&a), files(&b));
        assert!(
            fa.len() > 10 && fa.iter().any(|(n, _)| n == "manifest.json"),
            "{preset}: {} files",
            fa.len()
        );
        assert_eq!(fa.len(), fb.len());
        for ((na, ba), (nb, bb)) in fa.iter().zip(&fb) {
            assert_eq!(na, nb);
            assert!(ba == bb, "{preset}: {na} differs between two processes");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn with_no_source_it_writes_the_default_preset_under_kernels() {
    let root = scratch("default");
    let o = ptxforge(&["generate", "--quiet", "--batch-max", "2"], &root);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("kernels/llama3-8b/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["model"]["name"], "llama3-8b");
    assert_eq!(manifest["model"]["dims"]["hidden"], 4096);
    // Every kernel file of the manifest is there with the sha256 it lists.
    for k in manifest["kernels"].as_array().unwrap() {
        let bytes = std::fs::read(
            root.join("kernels/llama3-8b")
                .join(k["file"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(
            k["sha256"].as_str().unwrap(),
            ptxforge::kernel_set::sha256_hex(&bytes)
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let root = scratch("errors");
    let mut args = args.to_vec();
    args.push("--quiet");
    let o = ptxforge(&args, &root);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    assert_usage_error(&["generate", "--preset", "llama9-1t"], "llama3-8b");
    assert_usage_error(
        &["generate", "--model", "/nonexistent/model.gguf"],
        "/nonexistent/model.gguf",
    );
    assert_usage_error(
        &[
            "generate",
            "--preset",
            "gemma3-270m",
            "--out",
            "/proc/forbidden/dir",
        ],
        "/proc/forbidden/dir",
    );
    assert_usage_error(
        &["generate", "--preset", "gemma3-270m", "--target", "turing"],
        "--target",
    );
    assert_usage_error(
        &["generate", "--preset", "gemma3-270m", "--batch-max", "17"],
        "--batch-max",
    );
}

#[test]
fn validate_passes_a_fresh_directory_and_catches_tampering() {
    let root = scratch("validate");
    let out = root.join("g");
    let o = ptxforge(
        &[
            "generate",
            "--quiet",
            "--preset",
            "smollm2-135m",
            "--batch-max",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ok = ptxforge(&["validate", "--quiet", out.to_str().unwrap()], &root);
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );

    // Change one instruction of one module: its sha256 no longer matches the manifest.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let file = manifest["kernels"][0]["file"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(out.join(&file)).unwrap();
    std::fs::write(out.join(&file), text.replacen("mov.u32", "mov.s32", 1)).unwrap();
    // Break another module's syntax.
    let file2 = manifest["kernels"][1]["file"].as_str().unwrap().to_string();
    std::fs::write(
        out.join(&file2),
        ".version 7.8\n.target sm_61\n.address_size 64\n.visible .entry (",
    )
    .unwrap();
    let bad = ptxforge(&["validate", "--quiet", out.to_str().unwrap()], &root);
    assert_eq!(bad.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains(&format!(
            "{}: sha256:",
            manifest["kernels"][0]["name"].as_str().unwrap()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}: parse:",
            manifest["kernels"][1]["name"].as_str().unwrap()
        )),
        "{stdout}"
    );

    // Change a batched GEMV's reduction: parity must name it.
    let batched = manifest["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| !k["single"].is_null() && k["name"].as_str().unwrap().starts_with("gemv_"))
        .unwrap();
    let bfile = out.join(batched["file"].as_str().unwrap());
    let btext = std::fs::read_to_string(&bfile).unwrap();
    assert!(btext.contains(", 16, 31, 0xffffffff;"));
    std::fs::write(
        &bfile,
        btext.replacen(", 16, 31, 0xffffffff;", ", 8, 31, 0xffffffff;", 1),
    )
    .unwrap();
    let bad = ptxforge(&["validate", "--quiet", out.to_str().unwrap()], &root);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains(&format!("{}: parity:", batched["name"].as_str().unwrap())),
        "{stdout}"
    );
    assert!(std::fs::read(out.join("parity.json")).is_ok());

    assert_usage_error(
        &["validate", root.join("nowhere").to_str().unwrap()],
        "manifest.json",
    );
    let _ = std::fs::remove_dir_all(&root);
}
