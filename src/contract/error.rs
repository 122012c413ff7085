//! Errors of loading and validating contracts and presets. Every one names the file, and the
//! line and column of the YAML node at fault where there is one.

use std::fmt;
use std::path::{Path, PathBuf};

use super::dims::DimsError;

/// A place in a contract or preset file. Line and column are 1-based; 0 when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
}

impl SourcePos {
    pub fn new(file: &Path, line: u64, column: u64) -> SourcePos {
        SourcePos {
            file: file.to_path_buf(),
            line,
            column,
        }
    }

    /// The position of a spanned YAML node.
    pub(crate) fn of<T>(file: &Path, spanned: &serde_saphyr::Spanned<T>) -> SourcePos {
        SourcePos::new(file, spanned.referenced.line(), spanned.referenced.column())
    }
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// What kind of YAML-level problem a [`ContractError::Yaml`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlProblem {
    /// Not YAML, or a YAML value of the wrong type for its field.
    Syntax,
    /// A field the schema does not have.
    UnknownField,
    /// A mapping key given twice.
    DuplicateKey,
    /// A required field is absent.
    MissingField,
}

/// Error of loading or validating a contract or preset.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },

    #[error("{pos}: {message}")]
    Yaml {
        pos: SourcePos,
        problem: YamlProblem,
        message: String,
    },

    /// A tensor role the contract's own flags or FFN/attention layout need is not declared.
    #[error("{pos}: contract `{contract}` has no `{role}` tensor, which {because}")]
    MissingRole {
        pos: SourcePos,
        contract: String,
        role: super::Role,
        because: String,
    },

    /// A tensor rule that contradicts itself or the contract's flags.
    #[error("{pos}: {message}")]
    BadTensorRule { pos: SourcePos, message: String },

    /// A dimension rule that can never produce a value, or defaults that refer to each other.
    #[error("{pos}: {message}")]
    BadDimRule { pos: SourcePos, message: String },

    /// Two contracts claim the same architecture name.
    #[error("{pos}: architecture name `{name}` is already claimed by contract `{other}`")]
    DuplicateName {
        pos: SourcePos,
        name: String,
        other: String,
    },

    /// A preset names an architecture no contract defines.
    #[error(
        "{pos}: preset `{preset}` names architecture `{architecture}`, which no contract defines"
    )]
    UnknownArchitecture {
        pos: SourcePos,
        preset: String,
        architecture: String,
    },

    /// A preset asked for by name that does not exist.
    #[error("no preset named `{name}` (known: {known})")]
    UnknownPreset { name: String, known: String },

    /// A preset's weight table is wrong for its contract or dims.
    #[error("{pos}: {message}")]
    BadPresetWeights { pos: SourcePos, message: String },

    /// A preset's dimensions fail the contract's derivation or validation; the position is
    /// the preset's `dims:` node.
    #[error("{pos}: preset `{preset}`: {source}")]
    PresetDims {
        pos: SourcePos,
        preset: String,
        source: Box<DimsError>,
    },
}

impl ContractError {
    /// A stable identifier of the error kind, for tests and tools.
    pub fn code(&self) -> &'static str {
        match self {
            ContractError::Io { .. } => "contract.io",
            ContractError::Yaml {
                problem: YamlProblem::Syntax,
                ..
            } => "contract.yaml",
            ContractError::Yaml {
                problem: YamlProblem::UnknownField,
                ..
            } => "contract.unknown_field",
            ContractError::Yaml {
                problem: YamlProblem::DuplicateKey,
                ..
            } => "contract.duplicate_key",
            ContractError::Yaml {
                problem: YamlProblem::MissingField,
                ..
            } => "contract.missing_field",
            ContractError::MissingRole { .. } => "contract.missing_role",
            ContractError::BadTensorRule { .. } => "contract.bad_tensor_rule",
            ContractError::BadDimRule { .. } => "contract.bad_dim_rule",
            ContractError::DuplicateName { .. } => "contract.duplicate_name",
            ContractError::UnknownArchitecture { .. } => "preset.unknown_architecture",
            ContractError::UnknownPreset { .. } => "preset.unknown",
            ContractError::BadPresetWeights { .. } => "preset.bad_weights",
            ContractError::PresetDims { .. } => "preset.dims",
        }
    }

    /// Converts a serde-saphyr error into one line with the file position.
    pub(crate) fn from_yaml(file: &Path, err: &serde_saphyr::Error) -> ContractError {
        let inner = err.without_snippet();
        let (line, column) = inner
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let problem = match inner {
            serde_saphyr::Error::SerdeUnknownField { .. } => YamlProblem::UnknownField,
            serde_saphyr::Error::DuplicateMappingKey { .. } => YamlProblem::DuplicateKey,
            serde_saphyr::Error::SerdeMissingField { .. } => YamlProblem::MissingField,
            _ => YamlProblem::Syntax,
        };
        let message = match inner {
            // The library's text suggests changing its options, which is not the user's fix.
            serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => {
                format!("duplicate key `{key}`")
            }
            serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
                "duplicate key".to_string()
            }
            other => one_line(&other.to_string()),
        };
        ContractError::Yaml {
            pos: SourcePos::new(file, line, column),
            problem,
            message,
        }
    }
}

/// Collapses a message to its first non-empty line, without the library's trailing
/// " at line L, column C" (the position is already in front).
fn one_line(message: &str) -> String {
    let first = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid YAML");
    match first.rfind(" at line ") {
        Some(i) if is_position(&first[i + " at line ".len()..]) => first[..i].to_string(),
        _ => first.to_string(),
    }
}

/// True for "12, column 5".
fn is_position(s: &str) -> bool {
    let Some((line, column)) = s.split_once(", column ") else {
        return false;
    };
    !line.is_empty()
        && !column.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && column.bytes().all(|b| b.is_ascii_digit())
}
