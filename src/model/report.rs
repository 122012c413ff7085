//! What `ptxforge inspect` prints: architecture and contract, dims, per-role weight types and
//! bytes, totals and the gate result, as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::bind::BoundModel;
use super::gate::GateReport;
use crate::contract::{Behaviour, Format, ModelDims, Role, SlidingLayers};

/// One role's tensors.
#[derive(Debug, Clone, Serialize)]
pub struct RoleSummary {
    pub role: Role,
    pub tensors: usize,
    pub bytes: u64,
    /// Tensors per type.
    pub types: BTreeMap<String, usize>,
    /// The type of each block, for per-layer roles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

/// One tensor of the file.
#[derive(Debug, Clone, Serialize)]
pub struct TensorSummary {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    #[serde(rename = "type")]
    pub dtype: String,
    pub shape: Vec<u64>,
    pub bytes: u64,
}

/// The result of inspecting one model.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub file: String,
    pub format: Format,
    /// The architecture name the file gives.
    pub architecture: String,
    /// The contract that serves it.
    pub contract: String,
    pub contract_file: String,
    pub dims: ModelDims,
    pub behaviour: Behaviour,
    pub roles: Vec<RoleSummary>,
    /// Every tensor of the file, in file order.
    pub tensors: Vec<TensorSummary>,
    /// Tensors of the file per type.
    pub type_counts: BTreeMap<String, usize>,
    /// Bytes of tensor data.
    pub tensor_bytes: u64,
    /// Bytes of the file(s).
    pub file_bytes: u64,
    /// Tensors no role claims.
    pub unrecognised: Vec<String>,
    pub gate: GateReport,
}

impl InspectReport {
    pub fn new(bound: &BoundModel, gate: GateReport) -> InspectReport {
        let info = &bound.info;
        let role_of: BTreeMap<usize, (Role, Option<u32>)> = bound
            .tensors
            .iter()
            .map(|(k, &i)| (i, (k.role, k.layer)))
            .collect();
        let tensors: Vec<TensorSummary> = info
            .tensors()
            .iter()
            .enumerate()
            .map(|(i, t)| TensorSummary {
                name: t.name.clone(),
                role: role_of.get(&i).map(|r| r.0),
                layer: role_of.get(&i).and_then(|r| r.1),
                dtype: t.dtype.to_string(),
                shape: t.shape.clone(),
                bytes: t.bytes,
            })
            .collect();
        let mut roles: Vec<RoleSummary> = Vec::new();
        for (key, &i) in &bound.tensors {
            let t = &info.tensors()[i];
            if roles.last().is_none_or(|r| r.role != key.role) {
                roles.push(RoleSummary {
                    role: key.role,
                    tensors: 0,
                    bytes: 0,
                    types: BTreeMap::new(),
                    layers: vec![],
                });
            }
            let Some(r) = roles.last_mut() else { continue };
            r.tensors += 1;
            r.bytes += t.bytes;
            *r.types.entry(t.dtype.to_string()).or_insert(0) += 1;
            if key.layer.is_some() {
                r.layers.push(t.dtype.to_string());
            }
        }
        let mut type_counts = BTreeMap::new();
        for t in info.tensors() {
            *type_counts.entry(t.dtype.to_string()).or_insert(0) += 1;
        }
        InspectReport {
            file: info.path().display().to_string(),
            format: info.format(),
            architecture: info.architecture().to_string(),
            contract: bound.contract().name().to_string(),
            contract_file: bound.contract().file().display().to_string(),
            dims: bound.spec.dims.clone(),
            behaviour: bound.spec.behaviour.clone(),
            roles,
            tensor_bytes: info.tensors().iter().map(|t| t.bytes).sum(),
            file_bytes: info.file_bytes(),
            unrecognised: bound
                .unrecognised
                .iter()
                .map(|&i| info.tensors()[i].name.clone())
                .collect(),
            tensors,
            type_counts,
            gate,
        }
    }

    /// JSON, pretty-printed.
    pub fn to_json(&self) -> String {
        // Every field is a plain number, string, list or map: serialization can't fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let d = &self.dims;
        let b = &self.behaviour;
        let mut s = String::new();
        let _ = writeln!(s, "file          {} ({} bytes)", self.file, self.file_bytes);
        let _ = writeln!(
            s,
            "format        {} (architecture `{}`)",
            self.format, self.architecture
        );
        let _ = writeln!(
            s,
            "contract      {} ({})",
            self.contract, self.contract_file
        );
        let _ = writeln!(
            s,
            "dims          hidden {}, layers {}, heads {}, kv_heads {}, head_dim {}, ffn {}, vocab {}, context {}",
            d.hidden, d.layers, d.heads, d.kv_heads, d.head_dim, d.ffn, d.vocab, d.context
        );
        let mut extra = format!(
            "rope_theta {}, rope_dims {}, rms_eps {:e}, query_pre_attn_scalar {}",
            d.rope_theta, d.rope_dims, d.rms_eps, d.query_pre_attn_scalar
        );
        if let Some(w) = d.sliding_window {
            match d.sliding_layers {
                SlidingLayers::None => {}
                SlidingLayers::All => extra += &format!(", sliding_window {w} (all layers)"),
                SlidingLayers::PeriodicGlobal => {
                    extra += &format!(
                        ", sliding_window {w} (every {}th layer global, local rope_theta {})",
                        d.sliding_period.unwrap_or(0),
                        d.rope_theta_local.unwrap_or(d.rope_theta)
                    )
                }
            }
        }
        if let Some(c) = d.final_logit_softcap {
            extra += &format!(", final_logit_softcap {c}");
        }
        if let Some(r) = &d.rope_scaling {
            extra += &format!(", rope_scaling {r:?}");
        }
        extra += if d.tied_embeddings {
            ", tied embeddings"
        } else {
            ", separate LM head"
        };
        let _ = writeln!(s, "              {extra}");
        let _ = writeln!(
            s,
            "behaviour     {} norm (weight offset {}), rope {}, qk_norm {}, qkv_bias {}, query scale on {}, \
             post_attn_norm {}, post_ffn_norm {}, ffn {}{}, embedding scale {}",
            name(&b.norm),
            b.norm_weight_offset,
            name(&b.rope_style),
            name(&b.qk_norm),
            b.qkv_bias,
            name(&b.query_scale),
            b.post_attn_norm,
            b.post_ffn_norm,
            name(&b.activation),
            if b.gated_ffn { " gated" } else { "" },
            name(&b.embedding_scale)
        );
        let _ = writeln!(
            s,
            "weights       {:<16} {:>7} {:>12}  types",
            "role", "tensors", "bytes"
        );
        for r in &self.roles {
            let types: Vec<String> = r.types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
            let _ = write!(
                s,
                "              {:<16} {:>7} {:>12}  {}",
                r.role.name(),
                r.tensors,
                r.bytes,
                types.join(", ")
            );
            if r.types.len() > 1 {
                let _ = write!(s, "  [{}]", r.layers.join(" "));
            }
            s.push('\n');
        }
        let counts: Vec<String> = self
            .type_counts
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "types         {} ({} tensors)",
            counts.join(", "),
            self.tensors.len()
        );
        let _ = writeln!(
            s,
            "total         {} bytes of tensor data",
            self.tensor_bytes
        );
        if self.unrecognised.is_empty() {
            let _ = writeln!(s, "unrecognised  none");
        } else {
            let _ = writeln!(
                s,
                "unrecognised  {} ({})",
                self.unrecognised.len(),
                self.unrecognised.join(", ")
            );
        }
        if self.gate.passed() {
            let _ = writeln!(
                s,
                "gate          passed ({} tensors checked)",
                self.gate.checked
            );
        } else {
            let n = self.gate.problems.len();
            let _ = writeln!(
                s,
                "gate          FAILED ({n} problem{})",
                if n == 1 { "" } else { "s" }
            );
            for p in &self.gate.problems {
                let _ = writeln!(s, "              {p}");
            }
        }
        s
    }
}

/// The name a flag has in contracts (its serde name), e.g. `per_head_rms`.
fn name<T: Serialize>(flag: &T) -> String {
    match serde_json::to_value(flag) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_string(),
    }
}
