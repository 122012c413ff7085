//! `KernelSet`: the generated kernels of one model with their plan and manifest; written to
//! `kernels/<model>/` by `ptxforge generate`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use ptx_gen::kernels::{generate, GenError, GeneratedKernel, KernelSpec};
use ptx_gen::parity::{validate_pairs, BatchDecl, KernelSource, PairInput, ParityReport};
use ptx_gen::target::Feature;
use ptx_gen::Target;

use crate::contract::ModelSpec;
use crate::manifest::{
    DecodeStep, KernelEntry, KvCacheLayout, Manifest, ModelIdentity, WeightEntry,
    MANIFEST_SCHEMA_VERSION,
};
use crate::plan::{KernelPlan, Launch, PlanError, PlanOptions};

/// Options of generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOptions {
    pub target: Target,
    pub max_context: u32,
    /// Batched variants 2..=batch_max of every batched family (1: none).
    pub batch_max: u32,
}

/// Why a kernel set could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error(transparent)]
    Plan(#[from] Box<PlanError>),
    #[error("{kernel}: {source}")]
    Generate {
        kernel: String,
        #[source]
        source: Box<GenError>,
    },
    #[error("{kernel}: launch binds parameters {bound:?}, the kernel has {params:?}")]
    Binding {
        kernel: String,
        bound: Vec<String>,
        params: Vec<String>,
    },
    #[error("{kernel}: batched kernel without a batching claim to check")]
    NoBatchClaim { kernel: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A batched kernel and the single-vector kernel it must equal.
#[derive(Debug, Clone)]
pub struct BatchedPair {
    pub single: String,
    pub batched: GeneratedKernel,
}

/// The generated kernels of one model.
#[derive(Debug, Clone)]
pub struct KernelSet {
    pub model: ModelSpec,
    pub options: SetOptions,
    pub plan: KernelPlan,
    /// The plan's kernels, in order of first use.
    pub kernels: Vec<GeneratedKernel>,
    /// Single-vector kernels no step launches: the parity twins of batched kernels whose
    /// tile differs from their single kernel's (see `KernelSpec::parity_twin`).
    pub twins: Vec<GeneratedKernel>,
    pub batched: Vec<BatchedPair>,
    /// Structural parity of every batched kernel with its single twin.
    pub parity: ParityReport,
}

fn gen(spec: &KernelSpec, target: Target) -> Result<GeneratedKernel, SetError> {
    generate(spec, target).map_err(|source| SetError::Generate {
        kernel: spec.name(),
        source: Box::new(source),
    })
}

/// `f` over `items` on every core (item i on thread i mod n, which balances runs of large
/// and small kernels), results in input order so the output stays deterministic.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, items.len().max(1));
    let mut parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                scope.spawn(move || {
                    items
                        .iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .map(|(i, x)| (i, f(x)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all: Vec<(usize, R)> = parts.iter_mut().flat_map(std::mem::take).collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

impl KernelSet {
    /// Plans `model`, generates every kernel and checks every launch binds exactly the
    /// kernel's parameters in order.
    pub fn generate(model: &ModelSpec, options: SetOptions) -> Result<KernelSet, SetError> {
        let plan =
            KernelPlan::build(model, PlanOptions::new(options.max_context)).map_err(Box::new)?;
        let kernels = par_map(&plan.kernels, |s| gen(s, options.target))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        for launch in &plan.step {
            check_binding(launch, kernels.iter().find(|k| k.name == launch.kernel))?;
        }
        let mut wanted = Vec::new();
        let mut twin_specs: Vec<KernelSpec> = Vec::new();
        for spec in &plan.kernels {
            for m in 2..=options.batch_max {
                if let Some(b) = spec.batched(m) {
                    let single = match spec.parity_twin(&b) {
                        Some(twin) => {
                            let name = twin.name();
                            if !twin_specs.iter().any(|t| t.name() == name) {
                                twin_specs.push(twin);
                            }
                            name
                        }
                        None => spec.name(),
                    };
                    wanted.push((single, b));
                }
            }
        }
        let twins = par_map(&twin_specs, |s| gen(s, options.target))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let batched = par_map(&wanted, |(single, b)| {
            gen(b, options.target).map(|k| BatchedPair {
                single: single.clone(),
                batched: k,
            })
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        // Every batch size's step must derive (regions consistent) and bind its kernels'
        // parameters exactly.
        for m in 2..=options.batch_max {
            let step = plan.step_for(m).map_err(Box::new)?;
            for launch in &step {
                let k = batched.iter().find(|p| p.batched.name == launch.kernel);
                check_binding(launch, k.map(|p| &p.batched))?;
            }
        }
        let singles: Vec<GeneratedKernel> = kernels.iter().chain(&twins).cloned().collect();
        let parity = parity_of(&singles, &batched)?;
        tracing::info!(
            model = %model.name,
            kernels = kernels.len(),
            twins = twins.len(),
            batched = batched.len(),
            launches = plan.step.len(),
            parity = if parity.passed() { "passed" } else { "FAILED" },
            "generated kernel set"
        );
        Ok(KernelSet {
            model: model.clone(),
            options,
            plan,
            kernels,
            twins,
            batched,
            parity,
        })
    }

    /// Every kernel (single, parity twins, then batched) with the single kernel a batched one
    /// pairs with.
    pub fn all_kernels(&self) -> impl Iterator<Item = (&GeneratedKernel, Option<&str>)> {
        self.kernels
            .iter()
            .chain(&self.twins)
            .map(|k| (k, None))
            .chain(
                self.batched
                    .iter()
                    .map(|p| (&p.batched, Some(p.single.as_str()))),
            )
    }

    /// The single-vector kernel named `name`: one the plan launches, or a parity twin.
    pub fn single(&self, name: &str) -> Option<&GeneratedKernel> {
        self.kernels
            .iter()
            .chain(&self.twins)
            .find(|k| k.name == name)
    }

    /// The manifest of the set (file names as `write_to` writes them).
    pub fn manifest(&self) -> Manifest {
        let d = &self.model.dims;
        let kernels = self
            .all_kernels()
            .map(|(k, single)| KernelEntry {
                name: k.name.clone(),
                file: ptx_file(&k.name),
                sha256: sha256_hex(k.ptx.as_bytes()),
                spec: k.spec.clone(),
                params: k.params.clone(),
                launch: k.launch.clone(),
                single: single.map(str::to_string),
            })
            .collect();
        let weights = self
            .model
            .weights
            .iter()
            .map(|(key, ty)| {
                let shape = self
                    .model
                    .shape(key.role)
                    .and_then(Result::ok)
                    .unwrap_or_default();
                let bytes = ty.tensor_bytes(&shape).unwrap_or(0);
                WeightEntry {
                    role: key.role.name().to_string(),
                    layer: key.layer,
                    ty: ty.name().to_string(),
                    shape,
                    bytes,
                }
            })
            .collect();
        let summary = self.model.summary();
        let kv_each = d.kv_heads as u64 * self.plan.max_context as u64 * d.head_dim as u64 * 2;
        Manifest {
            schema_version: MANIFEST_SCHEMA_VERSION,
            generator: format!("ptxforge {}", env!("CARGO_PKG_VERSION")),
            model: ModelIdentity {
                name: summary.name.clone(),
                contract: summary.architecture.clone(),
                format: summary.format.to_string(),
                dims: serde_json::to_value(&summary.dims).unwrap_or_default(),
                behaviour: serde_json::to_value(&summary.behaviour).unwrap_or_default(),
            },
            target: format!("sm_{}", self.options.target.sm),
            ptx_version: format!("{}.{}", self.options.target.ptx_version.0, self.options.target.ptx_version.1),
            programmatic_dependent_launch: self.options.target.allows(Feature::GridDependency),
            max_context: self.plan.max_context,
            batch_max: self.options.batch_max,
            kernels,
            buffers: self.plan.buffers.clone(),
            kv_cache: KvCacheLayout {
                layers: d.layers,
                layout: format!("f16[{}][{}][{}]", d.kv_heads, self.plan.max_context, d.head_dim),
                bytes_per_layer_each: kv_each,
                element: "IEEE half, little endian; element (h, p, d) at ((h * max_context) + p) * head_dim + d".into(),
            },
            rope_tables: self.plan.rope_tables.clone(),
            weights,
            decode_steps: self.decode_steps(),
            step_protocol: step_protocol(self.options.target),
        }
    }

    /// The decode step of one sequence and of every batch size 2..=batch_max.
    pub fn decode_steps(&self) -> Vec<DecodeStep> {
        (1..=self.options.batch_max.max(1))
            .filter_map(|m| {
                // Every batched twin exists (generated above), so the derivation only fails
                // on a plan bug, which `generate` has already refused.
                self.plan
                    .step_for(m)
                    .ok()
                    .map(|launches| DecodeStep { m, launches })
            })
            .collect()
    }

    /// Writes one `.ptx` per kernel, `manifest.json` and `parity.json` into `dir` (created
    /// if needed). Callers refuse to write a set whose parity failed.
    pub fn write_to(&self, dir: &Path) -> Result<Manifest, SetError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SetError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (k, _) in self.all_kernels() {
            let path = dir.join(ptx_file(&k.name));
            std::fs::write(&path, &k.ptx).map_err(io(&path))?;
        }
        let manifest = self.manifest();
        let path = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| SetError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&path, text + "\n").map_err(io(&path))?;
        let path = dir.join("parity.json");
        let text = serde_json::to_string_pretty(&self.parity).map_err(|e| SetError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&path, text + "\n").map_err(io(&path))?;
        Ok(manifest)
    }
}

/// A launch must bind exactly its kernel's parameters, in order.
fn check_binding(launch: &Launch, kernel: Option<&GeneratedKernel>) -> Result<(), SetError> {
    let params: Vec<String> = kernel
        .map(|k| k.params.iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default();
    let bound: Vec<String> = launch.args.iter().map(|(p, _)| p.clone()).collect();
    if bound != params {
        return Err(SetError::Binding {
            kernel: launch.kernel.clone(),
            bound,
            params,
        });
    }
    Ok(())
}

/// Checks every batched kernel against its single twin under the generator's batching claim.
pub fn parity_of(
    kernels: &[GeneratedKernel],
    batched: &[BatchedPair],
) -> Result<ParityReport, SetError> {
    let mut claims: Vec<(&GeneratedKernel, &GeneratedKernel, BatchDecl)> = Vec::new();
    for pair in batched {
        let decl = pair
            .batched
            .spec
            .batch_decl()
            .ok_or_else(|| SetError::NoBatchClaim {
                kernel: pair.batched.name.clone(),
            })?;
        let single = kernels
            .iter()
            .find(|k| k.name == pair.single)
            .ok_or_else(|| SetError::NoBatchClaim {
                kernel: pair.single.clone(),
            })?;
        claims.push((single, &pair.batched, decl));
    }
    let inputs: Vec<PairInput> = claims
        .iter()
        .map(|(s, b, d)| PairInput {
            single: KernelSource::from(*s),
            batched: KernelSource::from(*b),
            decl: d,
        })
        .collect();
    Ok(validate_pairs(&inputs))
}

/// The file a kernel's PTX is written to: one module per kernel.
pub fn ptx_file(name: &str) -> String {
    format!("{name}.ptx")
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The protocol an engine follows around `decode_steps` (also in docs/manifest.md).
fn step_protocol(target: Target) -> Vec<String> {
    let mut steps = [
        "For a step of m sequences (an entry of `decode_steps`), allocate every buffer of `buffers` with m times its bytes, a K and a V cache per layer of m times kv_cache.bytes_per_layer_each, and one rope table per entry of `rope_tables`; upload every weight of `weights` exactly as stored in the model file.",
        "Build each rope table as f32[max_context][rope_dims / 2][2]: entry (p, i) = (cos, sin) of p * theta^(-2i / rope_dims) (divided by freq_factors[i] when given), computed in f64 and rounded to f32.",
        "Before a step, for each sequence s < m at 0-based position p: write its token id to `token`[s], p to `pos`[s] and p + 1 to `seq_len`[s] (u32, little endian).",
        "Launch every entry of the step's `launches` in order on one stream; each argument is the device address of its binding plus `offset` (weights included: a part of a fused tensor starts `offset` bytes in). Grids and blocks are the kernel's `launch` values.",
        "After the step `token`[s] holds sequence s's greedy next token and `logits` its logits at s * vocab.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>();
    if target.allows(Feature::GridDependency) {
        steps.insert(
            4,
            "Each launch may carry CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1 (programmatic dependent launch): every kernel waits with griddepcontrol.wait for its predecessor before it reads or writes anything another kernel touches (only GEMVs issue weight loads before it).".into(),
        );
    }
    steps
}

/// Static findings of a generated set: a kernel name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetFinding {
    pub kernel: String,
    pub message: String,
}

/// Re-parses every module of the set and runs the static checks on it (the parity of every
/// batched kernel is checked when the set is generated: [`KernelSet::parity`]).
pub fn check_set(set: &KernelSet) -> Result<Vec<SetFinding>, SetError> {
    let kernels: Vec<&GeneratedKernel> = set.all_kernels().map(|(k, _)| k).collect();
    let per_kernel = par_map(&kernels, |k| match ptx_gen::parse::parse_module(&k.ptx) {
        Err(e) => vec![SetFinding {
            kernel: k.name.clone(),
            message: format!("does not re-parse: {e}"),
        }],
        Ok(m) => ptx_gen::check::check_module(&m)
            .into_iter()
            .map(|f| SetFinding {
                kernel: k.name.clone(),
                message: f.to_string(),
            })
            .collect(),
    });
    Ok(per_kernel.into_iter().flatten().collect())
}
