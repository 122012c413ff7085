//! A validated architecture contract: names it answers to, where each dimension comes from,
//! the tensor roles with their names and shapes, and the behaviour flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::behaviour::{Behaviour, Format, PerFormat, QkNorm, SlidingLayers};
use super::dim::Dim;
use super::error::{ContractError, SourcePos};
use super::formula::Formula;
use super::role::{Role, Scope};
use super::schema::{RawContract, RawDimRule, RawTensorRule};

/// The `{layer}` placeholder of per-layer tensor names.
const LAYER: &str = "{layer}";

/// A tensor name, with `{layer}` where per-layer roles put the block index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    prefix: String,
    /// `Some(suffix)` when the pattern has `{layer}`.
    suffix: Option<String>,
}

impl NamePattern {
    fn parse(text: &str) -> Result<NamePattern, String> {
        match text.split_once(LAYER) {
            None => Ok(NamePattern {
                prefix: text.to_string(),
                suffix: None,
            }),
            Some((_, rest)) if rest.contains(LAYER) => {
                Err(format!("`{text}` has `{LAYER}` more than once"))
            }
            Some((prefix, suffix)) => Ok(NamePattern {
                prefix: prefix.to_string(),
                suffix: Some(suffix.to_string()),
            }),
        }
    }

    /// True when the pattern has `{layer}`.
    pub fn is_per_layer(&self) -> bool {
        self.suffix.is_some()
    }

    /// The concrete name; `layer` is ignored by global patterns.
    pub fn render(&self, layer: Option<u32>) -> String {
        match (&self.suffix, layer) {
            (Some(suffix), Some(l)) => format!("{}{l}{suffix}", self.prefix),
            (Some(suffix), None) => format!("{}{LAYER}{suffix}", self.prefix),
            (None, _) => self.prefix.clone(),
        }
    }

    /// `Some(layer)` (or `Some(None)` for a global pattern) when `name` is an instance.
    pub fn matches(&self, name: &str) -> Option<Option<u32>> {
        let rest = name.strip_prefix(self.prefix.as_str())?;
        match &self.suffix {
            None => rest.is_empty().then_some(None),
            Some(suffix) => {
                let digits = rest.strip_suffix(suffix.as_str())?;
                // Canonical decimal only: "07" or "+7" are not block 7.
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                if digits.len() > 1 && digits.starts_with('0') {
                    return None;
                }
                digits.parse::<u32>().ok().map(Some)
            }
        }
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(None))
    }
}

/// Where one dimension's value comes from.
#[derive(Debug, Clone)]
pub struct DimRule {
    /// GGUF keys tried in order, with `{arch}` unsubstituted.
    pub gguf: Vec<String>,
    /// A GGUF array whose length is the value.
    pub gguf_array_len: Option<String>,
    /// `config.json` keys tried in order (dotted paths).
    pub hf: Vec<String>,
    pub default: Option<Formula>,
    pub optional: bool,
}

/// One fused tensor's part.
#[derive(Debug, Clone)]
pub struct SplitPart {
    pub role: Role,
    /// Rows of the fused tensor this part holds; parts follow each other in order.
    pub rows: Formula,
}

/// How a role is named and shaped.
#[derive(Debug, Clone)]
pub struct TensorRule {
    pub role: Role,
    pub gguf: Option<NamePattern>,
    pub hf: Option<NamePattern>,
    /// Row-major: outermost first, the row (reduction) dimension last.
    pub shape: Vec<Formula>,
    pub required: bool,
    pub split: Vec<SplitPart>,
}

impl TensorRule {
    /// The name pattern for `format`.
    pub fn name(&self, format: Format) -> Option<&NamePattern> {
        match format {
            Format::Gguf => self.gguf.as_ref(),
            Format::Hf => self.hf.as_ref(),
        }
    }
}

/// The behaviour flags as a contract states them (some per format).
#[derive(Debug, Clone)]
pub struct BehaviourRules {
    pub norm: super::behaviour::NormKind,
    pub norm_weight_offset: PerFormat<f32>,
    pub rope_style: PerFormat<super::behaviour::RopeStyle>,
    pub qk_norm: QkNorm,
    pub qkv_bias: bool,
    pub query_scale: PerFormat<super::behaviour::QueryScale>,
    pub sliding_layers: SlidingLayers,
    pub post_attn_norm: bool,
    pub post_ffn_norm: bool,
    pub activation: super::behaviour::Activation,
    pub gated_ffn: bool,
    pub embedding_scale: super::behaviour::EmbeddingScale,
    /// `config.json` key for tied embeddings (GGUF: tied when the file has no output tensor).
    pub tied_hf_key: Option<String>,
    pub tied_default: bool,
}

/// A validated architecture contract.
#[derive(Debug, Clone)]
pub struct Contract {
    name: String,
    file: PathBuf,
    gguf_names: Vec<String>,
    hf_names: Vec<String>,
    /// In evaluation order: every default only refers to dimensions before it.
    dims: Vec<(Dim, DimRule)>,
    behaviour: BehaviourRules,
    tensors: BTreeMap<Role, TensorRule>,
}

/// Dimensions every contract must be able to produce.
pub(crate) const REQUIRED_DIMS: [Dim; 12] = [
    Dim::Hidden,
    Dim::Layers,
    Dim::Heads,
    Dim::KvHeads,
    Dim::HeadDim,
    Dim::Ffn,
    Dim::Vocab,
    Dim::Context,
    Dim::RopeTheta,
    Dim::RopeDims,
    Dim::RmsEps,
    Dim::QueryPreAttnScalar,
];

impl Contract {
    /// Parses and validates the contract in `text`; `file` is used in messages.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Contract, ContractError> {
        let raw: RawContract =
            serde_saphyr::from_str(text).map_err(|e| ContractError::from_yaml(file, &e))?;
        validate(file, raw)
    }

    /// Reads, parses and validates the contract at `path`.
    pub fn load(path: &Path) -> Result<Contract, ContractError> {
        let text = std::fs::read_to_string(path).map_err(|source| ContractError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        Contract::from_yaml(path, &text)
    }

    /// The architecture's name (`llama`, `gemma3`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the contract was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// GGUF `general.architecture` values this contract serves.
    pub fn gguf_names(&self) -> &[String] {
        &self.gguf_names
    }

    /// HF `architectures[]` values this contract serves.
    pub fn hf_names(&self) -> &[String] {
        &self.hf_names
    }

    /// Dimension rules in evaluation order.
    pub fn dim_rules(&self) -> &[(Dim, DimRule)] {
        &self.dims
    }

    /// The rule for `dim`, if the contract has one.
    pub fn dim_rule(&self, dim: Dim) -> Option<&DimRule> {
        self.dims.iter().find(|(d, _)| *d == dim).map(|(_, r)| r)
    }

    /// Behaviour flags as stated.
    pub fn behaviour_rules(&self) -> &BehaviourRules {
        &self.behaviour
    }

    /// Behaviour flags resolved for `format`.
    pub fn behaviour(&self, format: Format) -> Behaviour {
        let b = &self.behaviour;
        Behaviour {
            norm: b.norm,
            norm_weight_offset: b.norm_weight_offset.get(format),
            rope_style: b.rope_style.get(format),
            qk_norm: b.qk_norm,
            qkv_bias: b.qkv_bias,
            query_scale: b.query_scale.get(format),
            sliding_layers: b.sliding_layers,
            post_attn_norm: b.post_attn_norm,
            post_ffn_norm: b.post_ffn_norm,
            activation: b.activation,
            gated_ffn: b.gated_ffn,
            embedding_scale: b.embedding_scale,
        }
    }

    /// The rule for `role`, if the contract declares it.
    pub fn tensor(&self, role: Role) -> Option<&TensorRule> {
        self.tensors.get(&role)
    }

    /// Every declared tensor rule, in role order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorRule> {
        self.tensors.values()
    }

    /// The role and layer a tensor called `name` has in `format`, if any rule matches.
    pub fn role_of(&self, format: Format, name: &str) -> Option<(Role, Option<u32>)> {
        self.tensors.values().find_map(|rule| {
            rule.name(format)?
                .matches(name)
                .map(|layer| (rule.role, layer))
        })
    }
}

fn validate(file: &Path, raw: RawContract) -> Result<Contract, ContractError> {
    let name = raw.architecture.value.clone();

    // Names it answers to.
    let answers = &raw.answers_to.value;
    if answers.gguf.is_empty() && answers.hf.is_empty() {
        return Err(ContractError::BadTensorRule {
            pos: SourcePos::of(file, &raw.answers_to),
            message: format!("contract `{name}` answers to no GGUF or HF architecture name"),
        });
    }

    let dims = dim_rules(file, &raw)?;
    let tensors = tensor_rules(file, &raw, &dims)?;
    let b = &raw.behaviour;
    let behaviour = BehaviourRules {
        norm: b.norm.kind,
        norm_weight_offset: b.norm.weight_offset,
        rope_style: b.rope.style,
        qk_norm: b.qk_norm.value,
        qkv_bias: b.qkv_bias.value,
        query_scale: b.query_scale,
        sliding_layers: b.sliding_window.value,
        post_attn_norm: b.post_attn_norm.value,
        post_ffn_norm: b.post_ffn_norm.value,
        activation: b.ffn.value.activation,
        gated_ffn: b.ffn.value.gated,
        embedding_scale: b.embedding_scale,
        tied_hf_key: b.tied_embeddings.hf.clone(),
        tied_default: b.tied_embeddings.default,
    };
    let contract = Contract {
        name,
        file: file.to_path_buf(),
        gguf_names: answers.gguf.iter().map(|s| s.value.clone()).collect(),
        hf_names: answers.hf.iter().map(|s| s.value.clone()).collect(),
        dims,
        behaviour,
        tensors,
    };
    check_roles(file, &raw, &contract)?;
    check_sliding_dims(file, &raw, &contract)?;
    Ok(contract)
}

/// Dimension rules, checked and put in evaluation order.
fn dim_rules(file: &Path, raw: &RawContract) -> Result<Vec<(Dim, DimRule)>, ContractError> {
    let at = |s: &Spanned<RawDimRule>| SourcePos::of(file, s);
    for dim in REQUIRED_DIMS {
        if !raw.dims.value.contains_key(&dim) {
            return Err(ContractError::BadDimRule {
                pos: SourcePos::of(file, &raw.dims),
                message: format!(
                    "contract `{}` has no rule for dimension `{dim}`",
                    raw.architecture.value
                ),
            });
        }
    }
    let mut pending: Vec<(Dim, &Spanned<RawDimRule>)> =
        raw.dims.value.iter().map(|(d, r)| (*d, r)).collect();
    for (dim, rule) in &pending {
        let r = &rule.value;
        if r.gguf.0.is_empty()
            && r.gguf_array_len.is_none()
            && r.hf.0.is_empty()
            && r.default.is_none()
            && !r.optional
        {
            return Err(ContractError::BadDimRule {
                pos: at(rule),
                message: format!("dimension `{dim}` has no source, no default and is not optional"),
            });
        }
        if let Some(default) = &r.default {
            if let Some(missing) = default
                .dims()
                .into_iter()
                .find(|d| !raw.dims.value.contains_key(d))
            {
                return Err(ContractError::BadDimRule {
                    pos: at(rule),
                    message: format!(
                        "default of `{dim}` (`{default}`) refers to `{missing}`, which has no rule"
                    ),
                });
            }
        }
    }
    // Topological order: a dimension is ready once every dimension its default names is placed.
    let mut ordered: Vec<(Dim, DimRule)> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|(_, rule)| {
            rule.value
                .default
                .as_ref()
                .is_none_or(|f| f.dims().iter().all(|d| ordered.iter().any(|(o, _)| o == d)))
        });
        let Some(i) = ready else {
            return Err(ContractError::BadDimRule {
                pos: at(pending[0].1),
                message: format!(
                    "dimension defaults refer to each other: {}",
                    cycle(&pending)
                ),
            });
        };
        let (dim, rule) = pending.remove(i);
        let r = &rule.value;
        ordered.push((
            dim,
            DimRule {
                gguf: r.gguf.0.clone(),
                gguf_array_len: r.gguf_array_len.clone(),
                hf: r.hf.0.clone(),
                default: r.default.clone(),
                optional: r.optional,
            },
        ));
    }
    Ok(ordered)
}

/// A cycle among dimensions none of which is ready: each has a default naming another pending
/// one (else it would be ready), so following the first such reference must revisit one.
fn cycle(pending: &[(Dim, &Spanned<RawDimRule>)]) -> String {
    let next = |d: Dim| -> Option<Dim> {
        let (_, rule) = pending.iter().find(|(p, _)| *p == d)?;
        let deps = rule.value.default.as_ref()?.dims();
        deps.into_iter()
            .find(|x| pending.iter().any(|(p, _)| p == x))
    };
    let mut path = vec![pending[0].0];
    while let Some(n) = next(path[path.len() - 1]) {
        if let Some(start) = path.iter().position(|p| *p == n) {
            let mut names: Vec<&str> = path[start..].iter().map(|d| d.name()).collect();
            names.push(n.name());
            return names.join(" -> ");
        }
        path.push(n);
    }
    path.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
}

fn tensor_rules(
    file: &Path,
    raw: &RawContract,
    dims: &[(Dim, DimRule)],
) -> Result<BTreeMap<Role, TensorRule>, ContractError> {
    let mut out = BTreeMap::new();
    let mut seen_names: BTreeMap<(Format, String), Role> = BTreeMap::new();
    for (&role, spanned) in &raw.tensors.value {
        let rule: &RawTensorRule = &spanned.value;
        let bad = |message: String| ContractError::BadTensorRule {
            pos: SourcePos::of(file, spanned),
            message,
        };
        if rule.gguf.is_none() && rule.hf.is_none() {
            return Err(bad(format!(
                "tensor `{role}` has neither a `gguf` nor an `hf` name"
            )));
        }
        let mut names = [None, None];
        for (i, (format, text)) in [(Format::Gguf, &rule.gguf), (Format::Hf, &rule.hf)]
            .into_iter()
            .enumerate()
        {
            let Some(text) = text else { continue };
            let bad_name = |message: String| ContractError::BadTensorRule {
                pos: SourcePos::of(file, text),
                message,
            };
            let pattern = NamePattern::parse(&text.value).map_err(bad_name)?;
            match (role.scope(), pattern.is_per_layer()) {
                (Scope::PerLayer, false) => {
                    return Err(bad_name(format!(
                        "`{role}` is per layer, so its name `{}` needs `{LAYER}`",
                        text.value
                    )))
                }
                (Scope::Global, true) => {
                    return Err(bad_name(format!(
                        "`{role}` is global, so its name `{}` can't have `{LAYER}`",
                        text.value
                    )))
                }
                _ => {}
            }
            if let Some(other) = seen_names.insert((format, text.value.clone()), role) {
                return Err(bad_name(format!(
                    "`{}` names both `{other}` and `{role}`",
                    text.value
                )));
            }
            names[i] = Some(pattern);
        }
        if rule.shape.value.is_empty() {
            return Err(ContractError::BadTensorRule {
                pos: SourcePos::of(file, &rule.shape),
                message: format!("tensor `{role}` has an empty shape"),
            });
        }
        for formula in rule
            .shape
            .value
            .iter()
            .chain(rule.split.iter().map(|s| &s.rows))
        {
            if let Some(d) = formula
                .dims()
                .into_iter()
                .find(|d| !dims.iter().any(|(o, _)| o == d))
            {
                return Err(ContractError::BadTensorRule {
                    pos: SourcePos::of(file, &rule.shape),
                    message: format!(
                        "shape of `{role}` refers to `{d}`, which has no dimension rule"
                    ),
                });
            }
        }
        let fused_parts: &[Role] = match role {
            Role::AttnQkv => &[Role::AttnQ, Role::AttnK, Role::AttnV],
            Role::FfnGateUp => &[Role::FfnGate, Role::FfnUp],
            _ => &[],
        };
        let split_roles: Vec<Role> = rule.split.iter().map(|s| s.role).collect();
        if split_roles != fused_parts {
            let expect: Vec<&str> = fused_parts.iter().map(|r| r.name()).collect();
            return Err(bad(if fused_parts.is_empty() {
                format!("tensor `{role}` is not fused, so it can't have a `split`")
            } else {
                format!(
                    "fused tensor `{role}` must split into [{}] in that order",
                    expect.join(", ")
                )
            }));
        }
        let [gguf, hf] = names;
        out.insert(
            role,
            TensorRule {
                role,
                gguf,
                hf,
                shape: rule.shape.value.clone(),
                required: rule.required,
                split: rule
                    .split
                    .iter()
                    .map(|s| SplitPart {
                        role: s.role,
                        rows: s.rows.clone(),
                    })
                    .collect(),
            },
        );
    }
    Ok(out)
}

/// The roles a contract needs given its layout and flags.
fn check_roles(file: &Path, raw: &RawContract, c: &Contract) -> Result<(), ContractError> {
    let tensors_pos = SourcePos::of(file, &raw.tensors);
    let missing = |role: Role, pos: &SourcePos, because: &str| ContractError::MissingRole {
        pos: pos.clone(),
        contract: c.name.clone(),
        role,
        because: because.to_string(),
    };
    let split_provides = |role: Role| {
        c.tensors
            .values()
            .any(|t| t.split.iter().any(|s| s.role == role))
    };
    let provided = |role: Role| c.tensors.contains_key(&role) || split_provides(role);
    for role in [
        Role::TokenEmbd,
        Role::AttnNorm,
        Role::AttnOutput,
        Role::FfnDown,
        Role::OutputNorm,
        Role::Output,
    ] {
        if !c.tensors.contains_key(&role) {
            return Err(missing(role, &tensors_pos, "every decoder needs"));
        }
    }
    for role in [Role::AttnQ, Role::AttnK, Role::AttnV] {
        if !provided(role) {
            return Err(missing(
                role,
                &tensors_pos,
                "attention needs (directly or as a split of attn_qkv)",
            ));
        }
        if c.tensors.contains_key(&role) && split_provides(role) {
            return Err(ContractError::BadTensorRule {
                pos: tensors_pos.clone(),
                message: format!("`{role}` is both a tensor and a part of attn_qkv"),
            });
        }
    }
    let ffn_pos = SourcePos::of(file, &raw.behaviour.ffn);
    let ffn_roles: &[Role] = if c.behaviour.gated_ffn {
        &[Role::FfnGate, Role::FfnUp]
    } else {
        &[Role::FfnUp]
    };
    for &role in ffn_roles {
        if !provided(role) {
            return Err(missing(role, &ffn_pos, "the FFN layout (ffn.gated) needs"));
        }
    }
    if !c.behaviour.gated_ffn && provided(Role::FfnGate) {
        return Err(ContractError::BadTensorRule {
            pos: ffn_pos,
            message: "an ungated FFN (ffn.gated: false) can't have ffn_gate".to_string(),
        });
    }
    let b = &raw.behaviour;
    let flagged: [(bool, &[Role], SourcePos, &str); 4] = [
        (
            b.qk_norm.value == QkNorm::PerHeadRms,
            &[Role::AttnQNorm, Role::AttnKNorm],
            SourcePos::of(file, &b.qk_norm),
            "qk_norm: per_head_rms",
        ),
        (
            b.qkv_bias.value,
            &[Role::AttnQBias, Role::AttnKBias, Role::AttnVBias],
            SourcePos::of(file, &b.qkv_bias),
            "qkv_bias: true",
        ),
        (
            b.post_attn_norm.value,
            &[Role::AttnPostNorm],
            SourcePos::of(file, &b.post_attn_norm),
            "post_attn_norm: true",
        ),
        (
            b.post_ffn_norm.value,
            &[Role::FfnPostNorm],
            SourcePos::of(file, &b.post_ffn_norm),
            "post_ffn_norm: true",
        ),
    ];
    for (on, roles, pos, flag) in flagged {
        for &role in roles {
            match (on, c.tensors.get(&role)) {
                (true, None) => return Err(missing(role, &pos, &format!("`{flag}` needs"))),
                (true, Some(rule)) if !rule.required => {
                    return Err(ContractError::BadTensorRule {
                        pos,
                        message: format!(
                            "`{flag}` makes `{role}` required, but the contract marks it optional"
                        ),
                    })
                }
                (false, Some(_)) => {
                    return Err(ContractError::BadTensorRule {
                        pos,
                        message: format!(
                            "`{role}` is declared but the flag for it is off (`{flag}` is not set)"
                        ),
                    })
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Sliding-window layouts need their dimensions.
fn check_sliding_dims(file: &Path, raw: &RawContract, c: &Contract) -> Result<(), ContractError> {
    let needs: &[Dim] = match c.behaviour.sliding_layers {
        SlidingLayers::None => &[],
        SlidingLayers::All => &[Dim::SlidingWindow],
        SlidingLayers::PeriodicGlobal => {
            &[Dim::SlidingWindow, Dim::SlidingPeriod, Dim::RopeThetaLocal]
        }
    };
    for &dim in needs {
        if c.dim_rule(dim).is_none() {
            return Err(ContractError::BadDimRule {
                pos: SourcePos::of(file, &raw.behaviour.sliding_window),
                message: format!("this sliding_window layout needs a rule for dimension `{dim}`"),
            });
        }
    }
    Ok(())
}
