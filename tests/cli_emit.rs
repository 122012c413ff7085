//! `ptxforge emit`: output matches the library, is byte-identical across processes, and bad
//! input is a one-line error with exit code 2.

use std::process::Command;

use ptx_gen::kernels::{KernelSpec, QuantizeQ8_1, RmsNorm};

fn ptxforge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ptxforge"))
        .args(args)
        .output()
        .expect("running ptxforge")
}

#[test]
fn emit_prints_the_generated_ptx() {
    let out = ptxforge(&["emit", "rmsnorm", "640", "1e-6", "1", "--target", "sm_80"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = KernelSpec::RmsNorm(RmsNorm {
        hidden: 640,
        eps: 1e-6,
        weight_offset: 1.0,
        m: 1,
    });
    let want = ptx_gen::generate(&spec, ptx_gen::Target::sm(80)).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want.ptx);
}

#[test]
fn emit_is_byte_identical_across_processes() {
    for args in [
        vec!["emit", "quantize_q8_1", "14336"],
        vec!["emit", "rmsnorm", "4096", "1e-5"],
        vec!["emit", "rmsnorm", "99", "1e-6", "1", "--target", "sm_90"],
    ] {
        let a = ptxforge(&args);
        let b = ptxforge(&args);
        assert!(a.status.success() && !a.stdout.is_empty(), "{args:?}");
        assert_eq!(a.stdout, b.stdout, "{args:?} differs between two processes");
    }
}

#[test]
fn emit_describe_gives_the_launch_and_params() {
    let out = ptxforge(&["emit", "quantize_q8_1", "4096", "--describe"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = ptx_gen::generate(
        &KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: 4096, m: 1 }),
        ptx_gen::Target::default(),
    )
    .unwrap();
    assert_eq!(v["name"], want.name.as_str());
    assert_eq!(v["launch"], serde_json::to_value(&want.launch).unwrap());
    assert_eq!(v["params"][1]["kind"]["buffer"]["bytes"], 128 * 36);
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let out = ptxforge(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    assert_usage_error(
        &["emit", "softmax", "4"],
        "unknown kernel `softmax`; known kernels: quantize_q8_1, rmsnorm",
    );
    assert_usage_error(
        &["emit", "quantize_q8_1", "100"],
        "k must be a positive multiple of 32",
    );
    assert_usage_error(&["emit", "quantize_q8_1"], "missing K");
    assert_usage_error(
        &["emit", "rmsnorm", "4096", "tiny"],
        "EPS must be a number, got `tiny`",
    );
    assert_usage_error(
        &["emit", "rmsnorm", "4096", "--target", "volta"],
        "--target: expected sm_XX",
    );
    assert_usage_error(
        &["emit", "quantize_q8_1", "64", "--target", "sm_35"],
        "--target: expected sm_XX",
    );
}

#[test]
fn help_lists_the_kernels_and_their_dimensions() {
    let out = ptxforge(&["emit", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (family, _) in ptx_gen::kernels::families() {
        assert!(help.contains(family), "{family} missing from emit --help");
    }
}
