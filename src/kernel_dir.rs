//! Reading a directory written by `ptxforge generate` back into a [`KernelSet`], for engines
//! that load offline-generated kernels: the manifest must describe the model being loaded
//! (same dims and weight types), every module must match its sha256, and the parity of every
//! batched kernel is proven again from the PTX files (the set's own `parity.json` is not
//! trusted), as is every batch size's decode step.

use std::path::{Path, PathBuf};

use ptx_gen::kernels::GeneratedKernel;
use ptx_gen::Target;

use crate::contract::ModelSpec;
use crate::kernel_set::{parity_of, sha256_hex, BatchedPair, KernelSet, SetOptions};
use crate::manifest::{Manifest, MANIFEST_SCHEMA_VERSION};
use crate::plan::KernelPlan;

/// Why a generated directory cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{dir}: {message}")]
    Mismatch { dir: PathBuf, message: String },
}

impl KernelSet {
    /// Loads the kernel set in `dir` for `model`.
    pub fn from_dir(dir: &Path, model: &ModelSpec) -> Result<KernelSet, DirError> {
        let mismatch = |message: String| DirError::Mismatch {
            dir: dir.to_path_buf(),
            message,
        };
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| DirError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| DirError::Read {
            path: path.clone(),
            message: format!("not a ptxforge manifest: {e}"),
        })?;
        if manifest.schema_version != MANIFEST_SCHEMA_VERSION {
            return Err(mismatch(format!(
                "manifest schema {} (this ptxforge reads {MANIFEST_SCHEMA_VERSION})",
                manifest.schema_version
            )));
        }
        let summary = model.summary();
        let dims = serde_json::to_value(&summary.dims).unwrap_or_default();
        if manifest.model.dims != dims || manifest.model.contract != summary.architecture {
            return Err(mismatch(format!(
                "generated for {} ({}), not for {} ({})",
                manifest.model.name, manifest.model.contract, model.name, summary.architecture
            )));
        }
        let target = Target::parse(&manifest.target)
            .ok_or_else(|| mismatch(format!("unknown target {}", manifest.target)))?;
        let mut kernels = Vec::new();
        let mut batched = Vec::new();
        for k in &manifest.kernels {
            let path = dir.join(&k.file);
            let ptx = std::fs::read_to_string(&path).map_err(|e| DirError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let sha = sha256_hex(ptx.as_bytes());
            if sha != k.sha256 {
                return Err(mismatch(format!(
                    "{} has sha256 {sha}, the manifest says {}",
                    k.file, k.sha256
                )));
            }
            let g = GeneratedKernel {
                name: k.name.clone(),
                ptx,
                launch: k.launch.clone(),
                params: k.params.clone(),
                spec: k.spec.clone(),
                target,
            };
            match &k.single {
                Some(single) => batched.push(BatchedPair {
                    single: single.clone(),
                    batched: g,
                }),
                None => kernels.push(g),
            }
        }
        // Single kernels the single step does not launch are parity twins.
        let launched = |k: &GeneratedKernel| {
            manifest
                .decode_steps
                .iter()
                .filter(|s| s.m == 1)
                .any(|s| s.launches.iter().any(|l| l.kernel == k.name))
        };
        let (kernels, twins): (Vec<_>, Vec<_>) = kernels.into_iter().partition(launched);
        let step = manifest
            .decode_steps
            .iter()
            .find(|s| s.m == 1)
            .ok_or_else(|| mismatch("no single-sequence decode step".into()))?
            .launches
            .clone();
        let plan = KernelPlan {
            kernels: kernels.iter().map(|k| k.spec.clone()).collect(),
            step,
            buffers: manifest.buffers.clone(),
            rope_tables: manifest.rope_tables.clone(),
            max_context: manifest.max_context,
            kv_cache_bytes: manifest.kv_cache.bytes_per_layer_each,
        };
        // Every batch size's step must be the one this plan derives, on kernels of the set.
        for s in &manifest.decode_steps {
            let derived = plan
                .step_for(s.m)
                .map_err(|e| mismatch(format!("decode step m = {}: {e}", s.m)))?;
            if derived != s.launches {
                return Err(mismatch(format!(
                    "decode step m = {} differs from the one its kernels imply",
                    s.m
                )));
            }
            for l in &s.launches {
                let known = kernels.iter().any(|k| k.name == l.kernel)
                    || batched.iter().any(|b| b.batched.name == l.kernel);
                if !known {
                    return Err(mismatch(format!("launch of unknown kernel {}", l.kernel)));
                }
            }
        }
        for w in &manifest.weights {
            let role: crate::contract::Role = w
                .role
                .parse()
                .map_err(|_| mismatch(format!("unknown weight role {}", w.role)))?;
            let ours = model.weights.get(role, w.layer);
            if ours.map(|t| t.name()) != Some(w.ty.as_str()) {
                return Err(mismatch(format!(
                    "weight {} is {} in the manifest, {} in the model",
                    crate::plan::tensor_name(role, w.layer),
                    w.ty,
                    ours.map_or("absent", |t| t.name())
                )));
            }
        }
        let singles: Vec<GeneratedKernel> = kernels.iter().chain(&twins).cloned().collect();
        let parity = parity_of(&singles, &batched).map_err(|e| mismatch(e.to_string()))?;
        Ok(KernelSet {
            model: model.clone(),
            options: SetOptions {
                target,
                max_context: manifest.max_context,
                batch_max: manifest.batch_max,
            },
            plan,
            kernels,
            twins,
            batched,
            parity,
        })
    }
}
