//! Model files: GGUF (nom over memmap2) and HF safetensors + `config.json`, read into one
//! [`ModelInfo`], bound to their contract ([`BoundModel`]: dims and tensor roles), and checked
//! by the completeness gate before any GPU work.

mod bind;
mod dim_sources;
mod error;
mod gate;
pub mod gguf;
mod info;
mod report;
mod safetensors;
mod vocab;
mod weights;

pub use self::safetensors::HfModel;
pub use bind::{open_checked, BoundModel};
pub use error::{ConfigError, ModelError, SafetensorsError};
pub use gate::{GateError, GateProblem, GateReport, SupportedTypes, LISTED_PROBLEMS};
pub use info::{ModelInfo, TensorDtype, TensorInfo};
pub use report::{InspectReport, RoleSummary, TensorSummary};
pub use vocab::{TokenType, Vocab, VocabError, VocabKind};
pub use weights::{
    tiny_spec, ModelWeights, TinySpecError, WeightQuant, WeightsError, TINY_CONTRACTS,
};
