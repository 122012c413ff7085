//! The `inspect` report (library side): what it says about a tiny GGUF written by the test,
//! as text and as JSON, for a model that passes the gate and one that fails it.

#[path = "fixtures/gguf_writer.rs"]
mod gguf_writer;

use std::path::{Path, PathBuf};

use gguf_writer::{ggml, tiny_llama, Tiny};
use ptxforge::contract::Registry;
use ptxforge::model::{BoundModel, InspectReport, ModelInfo, SupportedTypes};

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ptxforge-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn report(path: &Path) -> InspectReport {
    let b = BoundModel::bind(
        ModelInfo::open(path).unwrap(),
        &Registry::builtin().unwrap(),
    )
    .unwrap();
    let gate = b.gate(&SupportedTypes::all());
    InspectReport::new(&b, gate)
}

#[test]
fn text_report_names_contract_dims_roles_and_gate() {
    let p = write("ok.gguf", &tiny_llama(Tiny::LLAMA, ggml::Q8_0).build());
    let r = report(&p);
    let text = r.to_text();
    for want in [
        "contract      llama",
        "format        gguf (architecture `llama`)",
        "dims          hidden 64, layers 2, heads 4, kv_heads 2, head_dim 16, ffn 128, vocab 96, context 256",
        "rope norm",
        "ffn silu gated",
        "tied embeddings",
        "attn_q",
        "Q8_0 x2",
        "types         F32 5, Q8_0 15 (20 tensors)",
        "unrecognised  none",
        "gate          passed (20 tensors checked)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let attn_q = r.roles.iter().find(|x| x.role.name() == "attn_q").unwrap();
    assert_eq!((attn_q.tensors, attn_q.bytes), (2, 2 * 64 * 64 / 32 * 34));
    assert_eq!(
        r.tensor_bytes,
        r.tensors.iter().map(|t| t.bytes).sum::<u64>()
    );
    assert!(r.file_bytes > r.tensor_bytes);
}

#[test]
fn json_report_round_trips_through_serde() {
    let p = write("json.gguf", &tiny_llama(Tiny::LLAMA, ggml::Q4_0).build());
    let v: serde_json::Value = serde_json::from_str(&report(&p).to_json()).unwrap();
    assert_eq!(v["contract"], "llama");
    assert_eq!(v["format"], "gguf");
    assert_eq!(v["dims"]["hidden"], 64);
    assert_eq!(v["dims"]["kv_heads"], 2);
    assert_eq!(v["dims"]["tied_embeddings"], true);
    assert_eq!(v["behaviour"]["rope_style"], "norm");
    assert_eq!(v["gate"]["problems"].as_array().unwrap().len(), 0);
    let t = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "blk.1.ffn_down.weight")
        .unwrap();
    assert_eq!(t["type"], "Q4_0");
    assert_eq!(t["role"], "ffn_down");
    assert_eq!(t["layer"], 1);
    assert_eq!(t["shape"], serde_json::json!([64, 128]));
}

#[test]
fn failing_gate_is_reported_with_every_problem() {
    let mut b = tiny_llama(Tiny::LLAMA, ggml::Q8_0);
    b.tensors.retain(|t| !t.name.starts_with("blk.1.attn"));
    let p = write("gate.gguf", &b.build());
    let r = report(&p);
    assert!(!r.gate.passed());
    assert_eq!(r.gate.problems.len(), 5);
    let text = r.to_text();
    assert!(text.contains("gate          FAILED (5 problems)"), "{text}");
    assert!(
        text.contains("blk.1.attn_norm.weight (attn_norm[1]) is missing"),
        "{text}"
    );
}
