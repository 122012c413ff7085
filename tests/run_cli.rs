//! `ptxforge run` and `ptxforge score`: the CPU reference path on the real models against
//! llama.cpp's fixture, GPU commands without a GPU (exit 2, clear message), bad input.

#[path = "fixtures/real_models.rs"]
mod real_models;

use std::process::{Command, Output};

use serde_json::Value;

fn ptxforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptxforge"))
        .args(args)
        .arg("--quiet")
        .output()
        .expect("running ptxforge")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture_prompt(file: &str, index: usize) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llamacpp/llamacpp-greedy.json"
    ))
    .unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    fx["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["file"] == file)
        .unwrap()["prompts"][index]
        .clone()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn run_on_the_cpu_continues_like_llama_cpp() {
    let Some(model) = real_models::model(real_models::SMOLLM2_135M, "run --device cpu") else {
        return;
    };
    let p = fixture_prompt("SmolLM2-135M-Instruct.Q4_1.gguf", 0);
    let prompt = u32s(&p["prompt_ids"]);
    let want = u32s(&p["generated_ids"]);
    // Greedy tokens must agree up to llama.cpp's first near tie (top-2 gap < 0.1).
    let top5 = p["top5"].as_array().unwrap();
    let sure = top5
        .iter()
        .take_while(|r| {
            let l = r["logits"].as_array().unwrap();
            l[0].as_f64().unwrap() - l[1].as_f64().unwrap() >= 0.1
        })
        .count()
        .min(4);
    assert!(
        sure >= 2,
        "the fixture prompt should start with clear choices"
    );
    let o = ptxforge(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--prompt-tokens",
        &csv(&prompt),
        "--max-new-tokens",
        &sure.to_string(),
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(u32s(&report["new_tokens"]), want[..sure]);
    let text = report["text"].as_str().unwrap();
    assert!(
        p["continuation"].as_str().unwrap().starts_with(text),
        "{text:?} is not how llama.cpp's continuation starts"
    );
    assert_eq!(report["device"], "cpu");
}

#[test]
fn score_on_the_cpu_is_within_tolerance_of_llama_cpp() {
    let Some(model) = real_models::model(real_models::GEMMA3_270M, "score --device cpu") else {
        return;
    };
    let p = fixture_prompt("gemma-3-270m-q4_k_m.gguf", 0);
    let mut tokens = u32s(&p["prompt_ids"]);
    tokens.extend(&u32s(&p["generated_ids"])[..2]);
    let from = p["n_prompt"].as_u64().unwrap() as usize - 1;
    let o = ptxforge(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        &csv(&tokens),
        "--from",
        &from.to_string(),
        "--top",
        "5",
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), tokens.len() - from);
    for (row, theirs) in rows.iter().zip(p["top5"].as_array().unwrap()) {
        assert_eq!(row["pos"], theirs["pos"]);
        let (ids, logits) = (u32s(&row["ids"]), row["logits"].as_array().unwrap());
        let (their_ids, their_logits) =
            (u32s(&theirs["ids"]), theirs["logits"].as_array().unwrap());
        let gap = their_logits[0].as_f64().unwrap() - their_logits[1].as_f64().unwrap();
        if gap >= 0.5 {
            assert_eq!(ids[0], their_ids[0], "top-1 at pos {}", row["pos"]);
        }
        // Every token both top-5 lists hold is within Gemma's tolerance of llama.cpp.
        for (i, id) in ids.iter().enumerate() {
            if let Some(j) = their_ids.iter().position(|t| t == id) {
                let d = (logits[i].as_f64().unwrap() - their_logits[j].as_f64().unwrap()).abs();
                assert!(d <= 0.5, "pos {} token {id}: off by {d}", row["pos"]);
            }
        }
    }
}

#[test]
fn gpu_commands_without_a_gpu_exit_2_with_a_clear_message() {
    if ptxforge::runtime::driver_present() {
        println!("SKIPPED: a CUDA driver is present here");
        return;
    }
    let Some(model) = real_models::model(real_models::SMOLLM2_135M, "run without a gpu") else {
        return;
    };
    let m = model.to_str().unwrap();
    for args in [
        vec!["run", "--model", m, "--prompt-tokens", "1,2"],
        vec![
            "score", "--model", m, "--tokens", "1,2,3", "--device", "cuda:1",
        ],
        vec!["bench", "--skip-gemv", "--decode", "smollm2-135m"],
    ] {
        let o = ptxforge(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("needs a CUDA GPU"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_2() {
    let Some(model) = real_models::model(real_models::SMOLLM2_135M, "run bad input") else {
        return;
    };
    let m = model.to_str().unwrap();
    for (args, needle) in [
        (
            vec![
                "run",
                "--model",
                m,
                "--prompt-tokens",
                "1",
                "--device",
                "tpu",
            ],
            "--device",
        ),
        (
            vec![
                "run",
                "--model",
                m,
                "--prompt-tokens",
                "99999999",
                "--device",
                "cpu",
            ],
            "outside the vocabulary",
        ),
        (
            vec![
                "score", "--model", m, "--tokens", "1,2", "--from", "2", "--device", "cpu",
            ],
            "--from",
        ),
        (
            vec![
                "run",
                "--model",
                "/nonexistent.gguf",
                "--prompt-tokens",
                "1",
                "--device",
                "cpu",
            ],
            "nonexistent",
        ),
    ] {
        let o = ptxforge(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}
