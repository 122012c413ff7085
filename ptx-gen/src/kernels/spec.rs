//! Kernel specs (the exact input of a generator), their names and validation, and the
//! typed description of kernel parameters.

use serde::{Deserialize, Serialize};

use crate::ast::Type;
use crate::ir::IrError;

/// Why a kernel could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    #[error("{kernel}: {field} must be {expected}, got {found}")]
    InvalidSpec {
        kernel: &'static str,
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// Q8_1 quantization of an f32 vector of length `k`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantizeQ8_1 {
    pub k: u32,
}

/// RMSNorm of an f32 vector: `y = x / sqrt(mean(x^2) + eps) * (w + weight_offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RmsNorm {
    pub hidden: u32,
    pub eps: f32,
    /// Added to every weight (1.0 for checkpoints that store `w - 1`, as HF Gemma does).
    pub weight_offset: f32,
}

/// The exact input of a kernel generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KernelSpec {
    QuantizeQ8_1(QuantizeQ8_1),
    RmsNorm(RmsNorm),
}

fn invalid(
    kernel: &'static str,
    field: &'static str,
    expected: &str,
    found: impl ToString,
) -> GenError {
    GenError::InvalidSpec {
        kernel,
        field,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// Largest RMSNorm row the register-resident kernel holds (16 float4 per thread, 1024 threads).
pub const RMSNORM_MAX_HIDDEN: u32 = 65536;

impl KernelSpec {
    /// The family name used by the CLI and in kernel names.
    pub fn family(&self) -> &'static str {
        match self {
            KernelSpec::QuantizeQ8_1(_) => "quantize_q8_1",
            KernelSpec::RmsNorm(_) => "rmsnorm",
        }
    }

    /// The PTX entry name, which encodes every field of the spec (floats by their bits).
    pub fn name(&self) -> String {
        match self {
            KernelSpec::QuantizeQ8_1(s) => format!("quantize_q8_1_k{}", s.k),
            KernelSpec::RmsNorm(s) => {
                let mut n = format!("rmsnorm_f32_n{}_eps{:08x}", s.hidden, s.eps.to_bits());
                if s.weight_offset != 0.0 {
                    n.push_str(&format!("_woff{:08x}", s.weight_offset.to_bits()));
                }
                n
            }
        }
    }

    /// A one-line description for the PTX header.
    pub fn describe(&self) -> String {
        match self {
            KernelSpec::QuantizeQ8_1(s) => {
                format!("quantize_q8_1: f32[{}] -> {} Q8_1 blocks", s.k, s.k / 32)
            }
            KernelSpec::RmsNorm(s) => format!(
                "rmsnorm: f32[{}], eps = {:e} (0x{:08x}), weight offset = {}",
                s.hidden,
                s.eps,
                s.eps.to_bits(),
                s.weight_offset
            ),
        }
    }

    /// Checks the dimensions against what the generator can do.
    pub fn validate(&self) -> Result<(), GenError> {
        match self {
            KernelSpec::QuantizeQ8_1(s) => {
                if s.k == 0 || s.k % 32 != 0 {
                    return Err(invalid(
                        "quantize_q8_1",
                        "k",
                        "a positive multiple of 32 (the Q8_1 block)",
                        s.k,
                    ));
                }
            }
            KernelSpec::RmsNorm(s) => {
                if s.hidden == 0 || s.hidden > RMSNORM_MAX_HIDDEN {
                    return Err(invalid(
                        "rmsnorm",
                        "hidden",
                        &format!("in 1..={RMSNORM_MAX_HIDDEN}"),
                        s.hidden,
                    ));
                }
                if !(s.eps.is_finite() && s.eps > 0.0) {
                    return Err(invalid("rmsnorm", "eps", "a positive finite number", s.eps));
                }
                if !s.weight_offset.is_finite() {
                    return Err(invalid(
                        "rmsnorm",
                        "weight_offset",
                        "a finite number",
                        s.weight_offset,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// How a kernel touches a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

/// A device buffer parameter: what it holds and how many bytes the kernel touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferParam {
    /// Layout of the data, e.g. `f32[4096]` or `block_q8_1[128]` (36-byte GGML blocks).
    pub layout: String,
    pub bytes: u64,
    /// Required alignment of the pointer in bytes.
    pub align: u32,
    pub access: Access,
}

/// A parameter's kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// A `.u64` global pointer.
    Buffer(BufferParam),
    /// A scalar passed by value, with its PTX type name (`u32`).
    Scalar { ty: String },
}

/// One kernel parameter in PTX order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
    pub meaning: String,
}

impl ParamSpec {
    pub fn buffer(
        name: &str,
        layout: String,
        bytes: u64,
        align: u32,
        access: Access,
        meaning: &str,
    ) -> ParamSpec {
        ParamSpec {
            name: name.to_string(),
            kind: ParamKind::Buffer(BufferParam {
                layout,
                bytes,
                align,
                access,
            }),
            meaning: meaning.to_string(),
        }
    }

    pub fn scalar(name: &str, ty: Type, meaning: &str) -> ParamSpec {
        ParamSpec {
            name: name.to_string(),
            kind: ParamKind::Scalar {
                ty: ty.name().to_string(),
            },
            meaning: meaning.to_string(),
        }
    }

    /// The PTX type of the parameter.
    pub fn ptx_type(&self) -> Type {
        match &self.kind {
            ParamKind::Buffer(_) => Type::U64,
            ParamKind::Scalar { ty } => Type::from_name(ty).unwrap_or(Type::U32),
        }
    }
}
