//! The completeness gate: before any GPU work, every tensor the contract requires is present,
//! has the shape the contract's formulas give for these dimensions, and a type the kernels
//! support, with rows that are whole blocks. Its error lists the first problems and how many
//! there are in total.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::bind::BoundModel;
use super::info::TensorDtype;
use crate::contract::Role;
use crate::quant::GgmlType;

/// How many problems a gate error spells out.
pub const LISTED_PROBLEMS: usize = 5;

/// The weight types the consumer of the model can handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedTypes {
    /// For matrices (embedding, projections, LM head).
    pub matrix: BTreeSet<GgmlType>,
    /// For vectors (norm weights, biases, rope factors).
    pub vector: BTreeSet<GgmlType>,
}

impl SupportedTypes {
    /// Every type of the GGML table: a format-level check (the file is complete and
    /// well-formed), which is what `inspect` reports. Kernel planning passes the set its
    /// kernels implement instead.
    pub fn all() -> SupportedTypes {
        SupportedTypes {
            matrix: GgmlType::ALL.into_iter().collect(),
            vector: GgmlType::ALL.into_iter().collect(),
        }
    }

    pub fn new(matrix: &[GgmlType], vector: &[GgmlType]) -> SupportedTypes {
        SupportedTypes {
            matrix: matrix.iter().copied().collect(),
            vector: vector.iter().copied().collect(),
        }
    }

    fn allows(&self, role: Role, ty: GgmlType) -> bool {
        if role.is_matrix() {
            self.matrix.contains(&ty)
        } else {
            self.vector.contains(&ty)
        }
    }
}

/// One reason a model fails the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum GateProblem {
    Missing {
        tensor: String,
        name: String,
    },
    Shape {
        tensor: String,
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    UnsupportedType {
        tensor: String,
        name: String,
        dtype: String,
    },
    RowNotBlockAligned {
        tensor: String,
        name: String,
        dtype: String,
        row: u64,
        block: u32,
    },
    /// The contract's shape or split formulas fail for these dims.
    Formula {
        tensor: String,
        message: String,
    },
}

impl fmt::Display for GateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateProblem::Missing { tensor, name } => write!(f, "{name} ({tensor}) is missing"),
            GateProblem::Shape {
                name,
                expected,
                found,
                ..
            } => {
                write!(f, "{name}: shape {found:?}, expected {expected:?}")
            }
            GateProblem::UnsupportedType { name, dtype, .. } => {
                write!(f, "{name}: type {dtype} is not supported")
            }
            GateProblem::RowNotBlockAligned {
                name,
                dtype,
                row,
                block,
                ..
            } => {
                write!(f, "{name}: {dtype} needs K % {block} == 0, got {row}")
            }
            GateProblem::Formula { tensor, message } => write!(f, "{tensor}: {message}"),
        }
    }
}

/// The gate's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateReport {
    /// Role instances checked: those present plus the required ones missing.
    pub checked: usize,
    pub problems: Vec<GateProblem>,
}

impl GateReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// `Ok` when passed, else the error with the first problems and the total.
    pub fn into_result(self) -> Result<(), GateError> {
        if self.passed() {
            return Ok(());
        }
        let total = self.problems.len();
        let mut first = self.problems;
        first.truncate(LISTED_PROBLEMS);
        Err(GateError { first, total })
    }
}

/// A failed gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateError {
    /// The first problems, in role and layer order.
    pub first: Vec<GateProblem>,
    pub total: usize,
}

impl std::error::Error for GateError {}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "completeness gate failed ({} problem{}): ",
            self.total,
            if self.total == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.first.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        if self.total > self.first.len() {
            write!(f, "; and {} more", self.total - self.first.len())?;
        }
        Ok(())
    }
}

pub(super) fn check(bound: &BoundModel, supported: &SupportedTypes) -> GateReport {
    let contract = bound.contract();
    let dims = &bound.spec.dims;
    let format = bound.spec.format;
    let mut problems = Vec::new();
    let mut checked = 0;
    for key in &bound.expected_keys() {
        let Some(rule) = contract.tensor(key.role) else {
            continue;
        };
        let name = rule
            .name(format)
            .map(|n| n.render(key.layer))
            .unwrap_or_else(|| format!("<{key}>"));
        let tensor = key.to_string();
        let Some(&index) = bound.tensors.get(key) else {
            // An absent output means tied embeddings (decided when the dims were derived).
            let needed = rule.required || (key.role == Role::Output && !dims.tied_embeddings);
            if needed {
                checked += 1;
                problems.push(GateProblem::Missing { tensor, name });
            }
            continue;
        };
        checked += 1;
        let t = &bound.info.tensors()[index];
        let expected = match dims.shape(contract, key.role) {
            Some(Ok(shape)) => shape,
            Some(Err(e)) => {
                problems.push(GateProblem::Formula {
                    tensor,
                    message: e.to_string(),
                });
                continue;
            }
            None => continue,
        };
        if t.shape != expected {
            problems.push(GateProblem::Shape {
                tensor: tensor.clone(),
                name: name.clone(),
                expected: expected.clone(),
                found: t.shape.clone(),
            });
        }
        if let Some(message) = split_mismatch(rule, dims, &expected) {
            problems.push(GateProblem::Formula {
                tensor: tensor.clone(),
                message,
            });
        }
        match &t.dtype {
            TensorDtype::Ggml(ty) if !supported.allows(key.role, *ty) => {
                problems.push(GateProblem::UnsupportedType {
                    tensor,
                    name,
                    dtype: ty.to_string(),
                })
            }
            TensorDtype::Ggml(ty) => {
                let row = t.shape.last().copied().unwrap_or(0);
                if row % u64::from(ty.block_size()) != 0 {
                    problems.push(GateProblem::RowNotBlockAligned {
                        tensor,
                        name,
                        dtype: ty.to_string(),
                        row,
                        block: ty.block_size(),
                    });
                }
            }
            TensorDtype::Other(d) => problems.push(GateProblem::UnsupportedType {
                tensor,
                name,
                dtype: d.clone(),
            }),
        }
    }
    GateReport { checked, problems }
}

/// A fused tensor's parts must tile its rows exactly.
fn split_mismatch(
    rule: &crate::contract::TensorRule,
    dims: &crate::contract::ModelDims,
    shape: &[u64],
) -> Option<String> {
    if rule.split.is_empty() {
        return None;
    }
    let mut sum = 0u64;
    for part in &rule.split {
        match part.rows.eval_count(&|d| dims.value(d)) {
            Ok(rows) => sum = sum.saturating_add(rows),
            Err(e) => return Some(format!("split `{}`: {e}", part.role)),
        }
    }
    let rows = shape.first().copied().unwrap_or(0);
    (sum != rows).then(|| format!("split parts cover {sum} rows, the tensor has {rows}"))
}
