//! Architecture contracts: the only place that knows an architecture.
//!
//! A contract (`contracts/architectures/*.yaml`) states the names an architecture answers to,
//! where each dimension comes from in GGUF metadata and HF `config.json`, its tensor roles with
//! names and shapes, and the behaviour flags kernels and the decode schedule read. A preset
//! (`contracts/presets/*.yaml`) gives one model's dimensions and weight types so kernels can be
//! generated with no model file.
//!
//! Loading rejects unknown fields and duplicate keys, and every error names the file, line and
//! column.

mod architecture;
mod behaviour;
mod dim;
mod dims;
mod error;
mod formula;
mod preset;
mod registry;
mod role;
mod schema;
mod spec;

pub use architecture::{BehaviourRules, Contract, DimRule, NamePattern, SplitPart, TensorRule};
pub use behaviour::{
    Activation, Behaviour, EmbeddingScale, Format, NormKind, PerFormat, QkNorm, QueryScale,
    RopeStyle, SlidingLayers,
};
pub use dim::{Dim, DimKind};
pub use dims::{DimSource, DimsError, LayerAttention, ModelDims, RopeScaling, MAX_GQA_RATIO};
pub use error::{ContractError, SourcePos, YamlProblem};
pub use formula::{Formula, FormulaEvalError, FormulaSyntaxError};
pub use preset::Preset;
pub use registry::{Registry, BUILTIN_ARCHITECTURES, BUILTIN_PRESETS};
pub use role::{Role, Scope, TensorKey, UnknownRole};
pub use spec::{ModelSpec, SpecSummary, WeightTable};
