//! Where dimension derivation reads a model's numbers: GGUF metadata (keys with `{arch}`
//! substituted) and HF `config.json` (dotted paths). The contract says which keys; these only
//! know the formats.

use std::collections::HashSet;

use serde_json::Value;

use super::gguf::{GgufHeader, MetaValue};
use crate::contract::{Contract, Dim, DimRule, DimSource, DimsError, Format, Role, RopeScaling};

/// GGUF metadata as a [`DimSource`].
pub(crate) struct GgufDims<'a> {
    pub header: &'a GgufHeader,
    /// The file's `general.architecture`, substituted for `{arch}`.
    pub arch: &'a str,
    pub tensor_names: HashSet<&'a str>,
}

impl GgufDims<'_> {
    fn key(&self, pattern: &str) -> String {
        pattern.replace("{arch}", self.arch)
    }
}

impl DimSource for GgufDims<'_> {
    fn dim_value(&self, dim: Dim, rule: &DimRule) -> Result<Option<f64>, DimsError> {
        for pattern in &rule.gguf {
            let key = self.key(pattern);
            if let Some(v) = self.header.get(&key) {
                return v.as_f64().map(Some).ok_or_else(|| DimsError::WrongType {
                    dim,
                    key,
                    expected: "a number",
                    found: v.value_type().name().to_string(),
                });
            }
        }
        if let Some(key) = &rule.gguf_array_len {
            if let Some(v) = self.header.get(key) {
                let a = v.as_array().ok_or_else(|| DimsError::WrongType {
                    dim,
                    key: key.clone(),
                    expected: "an array",
                    found: v.value_type().name().to_string(),
                })?;
                return Ok(Some(a.len() as f64));
            }
        }
        Ok(None)
    }

    fn keys_tried(&self, _dim: Dim, rule: &DimRule) -> Vec<String> {
        let mut keys: Vec<String> = rule
            .gguf
            .iter()
            .map(|k| format!("`{}`", self.key(k)))
            .collect();
        keys.extend(
            rule.gguf_array_len
                .iter()
                .map(|k| format!("length of `{k}`")),
        );
        if keys.is_empty() {
            keys.push("no GGUF key in the contract".to_string());
        }
        keys
    }

    /// A GGUF model reuses the embedding exactly when it has no output tensor (llama.cpp's
    /// loader falls back to token_embd then).
    fn tied_embeddings(&self, contract: &Contract) -> Result<bool, DimsError> {
        let output = contract
            .tensor(Role::Output)
            .and_then(|r| r.name(Format::Gguf));
        Ok(output.is_none_or(|n| !self.tensor_names.contains(n.render(None).as_str())))
    }

    fn rope_scaling(&self) -> Result<Option<RopeScaling>, DimsError> {
        let ty = self.key("{arch}.rope.scaling.type");
        let factor_key = self.key("{arch}.rope.scaling.factor");
        let Some(kind) = self.header.get(&ty) else {
            return Ok(None);
        };
        let kind = kind
            .as_str()
            .ok_or_else(|| DimsError::RopeScaling(format!("`{ty}` is not a string")))?;
        match kind {
            "none" => Ok(None),
            "linear" => {
                let factor = self
                    .header
                    .get(&factor_key)
                    .and_then(MetaValue::as_f64)
                    .ok_or_else(|| {
                        DimsError::RopeScaling(format!(
                            "linear scaling needs a number `{factor_key}`"
                        ))
                    })?;
                Ok(Some(RopeScaling::Linear {
                    factor: factor as f32,
                }))
            }
            other => Err(DimsError::RopeScaling(format!(
                "`{ty}` = `{other}` is not supported"
            ))),
        }
    }
}

/// HF `config.json` as a [`DimSource`].
pub(crate) struct HfDims<'a> {
    pub config: &'a Value,
}

/// `a.b.c` inside nested objects.
fn lookup<'v>(config: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(config, |v, k| v.get(k))
}

impl DimSource for HfDims<'_> {
    fn dim_value(&self, dim: Dim, rule: &DimRule) -> Result<Option<f64>, DimsError> {
        for key in &rule.hf {
            match lookup(self.config, key) {
                // JSON null means "not set" (Mistral's sliding_window, Gemma's softcaps).
                None | Some(Value::Null) => continue,
                Some(Value::Number(n)) => {
                    return n.as_f64().map(Some).ok_or_else(|| DimsError::WrongType {
                        dim,
                        key: key.clone(),
                        expected: "a number",
                        found: n.to_string(),
                    })
                }
                Some(other) => {
                    return Err(DimsError::WrongType {
                        dim,
                        key: key.clone(),
                        expected: "a number",
                        found: json_kind(other).to_string(),
                    })
                }
            }
        }
        Ok(None)
    }

    fn keys_tried(&self, _dim: Dim, rule: &DimRule) -> Vec<String> {
        if rule.hf.is_empty() {
            vec!["no config.json key in the contract".to_string()]
        } else {
            rule.hf
                .iter()
                .map(|k| format!("config.json `{k}`"))
                .collect()
        }
    }

    fn tied_embeddings(&self, contract: &Contract) -> Result<bool, DimsError> {
        let rules = contract.behaviour_rules();
        let Some(key) = &rules.tied_hf_key else {
            return Ok(rules.tied_default);
        };
        match lookup(self.config, key) {
            None | Some(Value::Null) => Ok(rules.tied_default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(DimsError::Invalid(format!(
                "config.json `{key}` should be a bool, found {}",
                json_kind(other)
            ))),
        }
    }

    /// `rope_scaling` (or the newer `rope_parameters` when it is flat): `linear`, `llama3`, or
    /// `default` / absent. Anything else is refused rather than ignored.
    fn rope_scaling(&self) -> Result<Option<RopeScaling>, DimsError> {
        let Some(obj) = ["rope_scaling", "rope_parameters"]
            .iter()
            .filter_map(|k| lookup(self.config, k))
            .find(|v| !v.is_null())
        else {
            return Ok(None);
        };
        let Some(obj) = obj.as_object() else {
            return Err(DimsError::RopeScaling(format!(
                "expected an object, found {}",
                json_kind(obj)
            )));
        };
        let kind = obj
            .get("rope_type")
            .or_else(|| obj.get("type"))
            .and_then(Value::as_str);
        let num = |k: &str| -> Result<f32, DimsError> {
            obj.get(k)
                .and_then(Value::as_f64)
                .map(|v| v as f32)
                .ok_or_else(|| DimsError::RopeScaling(format!("`{k}` missing or not a number")))
        };
        match kind {
            None | Some("default") => Ok(None),
            Some("linear") => Ok(Some(RopeScaling::Linear {
                factor: num("factor")?,
            })),
            Some("llama3") => Ok(Some(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_context: num("original_max_position_embeddings")? as u32,
            })),
            Some(other) => Err(DimsError::RopeScaling(format!(
                "rope_type `{other}` is not supported"
            ))),
        }
    }

    fn layer_types(&self) -> Option<Vec<String>> {
        let list = self.config.get("layer_types")?.as_array()?;
        Some(
            list.iter()
                .map(|v| v.as_str().unwrap_or("?").to_string())
                .collect(),
        )
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
