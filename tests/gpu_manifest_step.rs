//! An engine that knows nothing of the generators: it reads `manifest.json` and the PTX
//! files written by `generate`, allocates what the manifest says, follows its step protocol
//! with cudarc directly, and must produce bit-identical logits and tokens to the runtime's
//! own path (`Engine` + `Session`), for the single step and a batched one.
//!
//! Weights are random (the manifest says which tensors, by role and layer; their bytes come
//! from the model, here `ModelWeights::random`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use serde_json::Value;

use ptxforge::contract::Role;
use ptxforge::kernel_set::{KernelSet, SetOptions};
use ptxforge::model::{tiny_spec, ModelWeights, TINY_CONTRACTS};
use ptxforge::runtime::{Engine, EngineOptions, Session};
use ptxforge::Registry;

/// The manifest-only engine.
struct ManifestEngine {
    stream: Arc<CudaStream>,
    manifest: Value,
    m: u32,
    functions: BTreeMap<String, CudaFunction>,
    buffers: BTreeMap<String, CudaSlice<u8>>,
    kv: Vec<(CudaSlice<u8>, CudaSlice<u8>)>,
    rope: Vec<CudaSlice<u8>>,
    weights: BTreeMap<(String, Option<u64>), CudaSlice<u8>>,
}

fn u(v: &Value) -> u64 {
    v.as_u64().expect("a non-negative integer in the manifest")
}

fn ptr(s: &CudaSlice<u8>, stream: &CudaStream) -> u64 {
    s.device_ptr(stream).0
}

impl ManifestEngine {
    fn load(dir: &Path, m: u32, weight: &dyn Fn(&str, Option<u64>) -> Vec<u8>) -> ManifestEngine {
        let ctx = CudaContext::new(0).unwrap();
        let stream = ctx.new_stream().unwrap();
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["schema_version"], 2);
        let step = manifest["decode_steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| u(&s["m"]) == m as u64)
            .expect("a step for this batch size");
        let mut functions = BTreeMap::new();
        for launch in step["launches"].as_array().unwrap() {
            let name = launch["kernel"].as_str().unwrap().to_string();
            if functions.contains_key(&name) {
                continue;
            }
            let entry = manifest["kernels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["name"] == name.as_str())
                .unwrap();
            let text = std::fs::read_to_string(dir.join(entry["file"].as_str().unwrap())).unwrap();
            assert_eq!(
                ptxforge::kernel_set::sha256_hex(text.as_bytes()),
                entry["sha256"].as_str().unwrap()
            );
            let module = ctx.load_module(Ptx::from_src(text)).unwrap();
            functions.insert(name.clone(), module.load_function(&name).unwrap());
        }
        let mut buffers = BTreeMap::new();
        for b in manifest["buffers"].as_array().unwrap() {
            let bytes = u(&b["bytes"]) as usize * m as usize;
            buffers.insert(
                b["name"].as_str().unwrap().to_string(),
                stream.alloc_zeros::<u8>(bytes.max(1)).unwrap(),
            );
        }
        let kv_each = u(&manifest["kv_cache"]["bytes_per_layer_each"]) as usize * m as usize;
        let kv = (0..u(&manifest["kv_cache"]["layers"]))
            .map(|_| {
                (
                    stream.alloc_zeros::<u8>(kv_each).unwrap(),
                    stream.alloc_zeros::<u8>(kv_each).unwrap(),
                )
            })
            .collect();
        let mut weights = BTreeMap::new();
        for w in manifest["weights"].as_array().unwrap() {
            let key = (w["role"].as_str().unwrap().to_string(), w["layer"].as_u64());
            let bytes = weight(&key.0, key.1);
            assert_eq!(bytes.len() as u64, u(&w["bytes"]), "{key:?}");
            weights.insert(key, stream.clone_htod(&bytes).unwrap());
        }
        // Rope tables as the protocol says: (cos, sin) of p * theta^(-2i / rope_dims) / factor.
        let rope = manifest["rope_tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let theta = t["theta"].as_f64().unwrap() as f32 as f64;
                let dims = u(&t["rope_dims"]);
                let ctx_len = u(&t["max_context"]);
                let factors: Option<Vec<f32>> = t["freq_factors"].as_str().map(|role| {
                    weight(role, None)
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect()
                });
                let mut table = Vec::new();
                for p in 0..ctx_len {
                    for i in 0..dims / 2 {
                        let f = theta.powf(-2.0 * i as f64 / dims as f64)
                            / factors.as_ref().map_or(1.0, |f| f[i as usize] as f64);
                        let a = p as f64 * f;
                        table.extend_from_slice(&(a.cos() as f32).to_le_bytes());
                        table.extend_from_slice(&(a.sin() as f32).to_le_bytes());
                    }
                }
                stream.clone_htod(&table).unwrap()
            })
            .collect();
        ManifestEngine {
            stream,
            manifest,
            m,
            functions,
            buffers,
            kv,
            rope,
            weights,
        }
    }

    fn binding(&self, b: &Value) -> u64 {
        let s = &self.stream;
        if let Some(w) = b.get("weight") {
            let key = (w["role"].as_str().unwrap().to_string(), w["layer"].as_u64());
            ptr(&self.weights[&key], s) + w.get("offset").map_or(0, u)
        } else if let Some(x) = b.get("buffer") {
            ptr(&self.buffers[x["buffer"].as_str().unwrap()], s) + u(&x["offset"])
        } else if let Some(x) = b.get("k_cache") {
            ptr(&self.kv[u(&x["layer"]) as usize].0, s)
        } else if let Some(x) = b.get("v_cache") {
            ptr(&self.kv[u(&x["layer"]) as usize].1, s)
        } else if let Some(x) = b.get("rope_table") {
            ptr(&self.rope[u(&x["index"]) as usize], s)
        } else {
            panic!("unknown binding {b}")
        }
    }

    /// One step: tokens and positions of every sequence in, next tokens out.
    fn step(&mut self, tokens: &[u32], positions: &[u32]) -> Vec<u32> {
        let s = self.stream.clone();
        for (name, values) in [
            ("token", tokens.to_vec()),
            ("pos", positions.to_vec()),
            ("seq_len", positions.iter().map(|p| p + 1).collect()),
        ] {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            s.memcpy_htod(&bytes, self.buffers.get_mut(name).unwrap())
                .unwrap();
        }
        let step = self.manifest["decode_steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| u(&x["m"]) == self.m as u64)
            .unwrap()
            .clone();
        for launch in step["launches"].as_array().unwrap() {
            let name = launch["kernel"].as_str().unwrap();
            let entry = self.manifest["kernels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["name"] == name)
                .unwrap();
            let l = &entry["launch"];
            let ext = |v: &Value| u(&v["const"]) as u32;
            let cfg = LaunchConfig {
                grid_dim: (ext(&l["grid"][0]), ext(&l["grid"][1]), ext(&l["grid"][2])),
                block_dim: (
                    u(&l["block"][0]) as u32,
                    u(&l["block"][1]) as u32,
                    u(&l["block"][2]) as u32,
                ),
                shared_mem_bytes: ext(&l["dynamic_shared_bytes"]),
            };
            let args: Vec<u64> = launch["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| self.binding(&a[1]))
                .collect();
            let f = &self.functions[name];
            let mut b = s.launch_builder(f);
            for a in &args {
                b.arg(a);
            }
            unsafe { b.launch(cfg) }.unwrap();
        }
        let out = s.clone_dtoh(&self.buffers["token"]).unwrap();
        out.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn logits(&self) -> Vec<f32> {
        let out = self.stream.clone_dtoh(&self.buffers["logits"]).unwrap();
        out.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn run_spec(
    dev: &ptxforge::runtime::Device,
    preset: &str,
    spec: ptxforge::ModelSpec,
    m: u32,
    steps: u32,
) {
    let mut rng = common::Rng::fresh(preset);
    let weights = ModelWeights::random(&spec, rng.next_u64()).unwrap();
    let options = SetOptions {
        target: ptx_gen::Target::default(),
        max_context: 64,
        batch_max: 4,
    };
    let set = KernelSet::generate(weights.spec(), options).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "ptxforge-manifest-step-{preset}-{}",
        std::process::id()
    ));
    set.write_to(&dir).unwrap();
    let lookup = |role: &str, layer: Option<u64>| -> Vec<u8> {
        let role: Role = role.parse().unwrap();
        weights.get(role, layer.map(|l| l as u32)).unwrap().to_vec()
    };
    let mut ext = ManifestEngine::load(&dir, m, &lookup);

    let engine = Engine::load(
        dev,
        &weights,
        EngineOptions {
            max_context: 64,
            batch_max: 4,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let mut session = Session::new(&engine, m).unwrap();
    let vocab = spec.dims.vocab as usize;
    let mut tokens: Vec<u32> = (0..m).map(|_| rng.below(vocab as u64) as u32).collect();
    for step in 0..steps {
        let positions = vec![step; m as usize];
        let theirs = ext.step(&tokens, &positions);
        let ours = session.step(&tokens).unwrap();
        assert_eq!(theirs, ours, "{preset} m={m} step {step}: next tokens");
        let their_logits = ext.logits();
        for s in 0..m as usize {
            let mine = session.logits(s).unwrap();
            let theirs = &their_logits[s * vocab..(s + 1) * vocab];
            assert!(
                mine.iter().all(|v| v.is_finite()),
                "{preset}: non-finite logits"
            );
            for (i, (a, b)) in mine.iter().zip(theirs).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{preset} m={m} step {step} seq {s} logit {i}"
                );
            }
        }
        tokens = ours;
    }
    println!("{preset}: manifest-driven step equals the runtime's (m = {m}, {steps} steps)");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_manifest_only_engine_matches_the_runtime() {
    let Some(dev) = common::gpu_or_skip("manifest-driven decode") else {
        return;
    };
    // Real dims of two presets, and every contract at small dims (phi3's fused tensors,
    // qwen2's biases, qwen3's QK norms, gemma3's post-norms and sliding layers).
    for (preset, m) in [("smollm2-135m", 1), ("gemma3-270m", 4)] {
        let spec = Registry::builtin()
            .unwrap()
            .preset_spec(preset)
            .unwrap()
            .clone();
        run_spec(&dev, preset, spec, m, 4);
    }
    for contract in TINY_CONTRACTS {
        for m in [1, 3] {
            run_spec(&dev, contract, tiny_spec(contract).unwrap(), m, 4);
        }
    }
}
