//! Kernel specs (the exact input of a generator), their names and validation, and the
//! typed description of kernel parameters.

use serde::{Deserialize, Serialize};

use crate::ast::Type;
use crate::ir::IrError;
use crate::target::Target;

use super::GeneratedKernel;

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

/// What every kernel family's spec provides. A family is one file in `kernels/` holding its
/// spec type and generator; it is listed once in [`KernelSpec`] and in `for_each_family!`.
pub trait FamilySpec: Sized {
    /// The family name used by the CLI and at the start of kernel names.
    const FAMILY: &'static str;
    /// The CLI's dimension list for `ptxforge emit FAMILY DIMS...`.
    const CLI_DIMS: &'static str;
    /// Parses the CLI's dimensions (strings in `CLI_DIMS` order).
    fn from_cli(dims: &[String]) -> Result<Self, String>;
    /// The PTX entry name, encoding every field of the spec (floats by their bits).
    fn name(&self) -> String;
    /// A one-line description for the PTX header.
    fn describe(&self) -> String;
    /// Checks the dimensions against what the generator can do.
    fn validate(&self) -> Result<(), GenError>;
    /// Generates the kernel; called only on a validated spec.
    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError>;
    /// Specs at the shapes of the reference models and at edge sizes (tests assemble each).
    fn samples() -> Vec<Self>;
    /// For a batched spec: how the batched kernel addresses each vector, the claim
    /// `crate::parity` verifies against the single-vector twin (`None`: not batched).
    fn batch_decl(&self) -> Option<crate::parity::BatchDecl> {
        None
    }
    /// The batched variant of this single-vector spec for `m` vectors, when the family has
    /// one (`None`: the family is single-vector only).
    fn batched(&self, _m: u32) -> Option<Self> {
        None
    }
    /// The single-vector kernel a batched variant of this spec is proven equal to, where it
    /// is not this spec's own kernel (`None`: it is). A GEMV batch takes more rows per group
    /// than its single kernel; its twin is the single kernel with the batch's tile, which
    /// computes every row's bits as this one does (see `Gemv::tile`).
    fn parity_twin(&self, _batched: &Self) -> Option<Self> {
        None
    }
    /// For a parity twin: the spec of the single kernel it stands in for (`None`: not a twin).
    fn twin_source(&self) -> Option<Self> {
        None
    }
}

/// Calls `$m!(Variant, Type)` for every family: the one list of families.
macro_rules! for_each_family {
    ($m:ident) => {
        $m! {
            QuantizeQ8_1 => crate::kernels::quantize_q8_1::QuantizeQ8_1,
            RmsNorm => crate::kernels::rmsnorm::RmsNorm,
            RmsNormQ8_1 => crate::kernels::rmsnorm_q8_1::RmsNormQ8_1,
            ResidualRmsNorm => crate::kernels::residual_rmsnorm::ResidualRmsNorm,
            HeadRmsNorm => crate::kernels::head_rmsnorm::HeadRmsNorm,
            RopeKv => crate::kernels::rope_kv::RopeKv,
            Glu => crate::kernels::glu::Glu,
            Attention => crate::kernels::attention::DecodeAttention,
            AttentionCombine => crate::kernels::attention_combine::AttentionCombine,
            Embed => crate::kernels::embed::Embed,
            ResidualAdd => crate::kernels::residual_add::ResidualAdd,
            Argmax => crate::kernels::argmax::Argmax,
            Gemv => crate::kernels::gemv::Gemv,
        }
    };
}

macro_rules! define_kernel_spec {
    ($($variant:ident => $ty:path,)*) => {
        /// The exact input of a kernel generator.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum KernelSpec {
            $($variant($ty),)*
        }

        impl KernelSpec {
            pub fn family(&self) -> &'static str {
                match self { $(KernelSpec::$variant(_) => <$ty as FamilySpec>::FAMILY,)* }
            }
            pub fn name(&self) -> String {
                match self { $(KernelSpec::$variant(s) => s.name(),)* }
            }
            pub fn describe(&self) -> String {
                match self { $(KernelSpec::$variant(s) => s.describe(),)* }
            }
            pub fn validate(&self) -> Result<(), GenError> {
                match self { $(KernelSpec::$variant(s) => s.validate(),)* }
            }
            /// The batched variant for `m` vectors (see [`FamilySpec::batched`]).
            pub fn batched(&self, m: u32) -> Option<KernelSpec> {
                match self { $(KernelSpec::$variant(s) => s.batched(m).map(KernelSpec::$variant),)* }
            }
            /// The single twin of `batched` where it is not this spec (see
            /// [`FamilySpec::parity_twin`]).
            pub fn parity_twin(&self, batched: &KernelSpec) -> Option<KernelSpec> {
                match (self, batched) {
                    $((KernelSpec::$variant(s), KernelSpec::$variant(b)) => s.parity_twin(b).map(KernelSpec::$variant),)*
                    _ => None,
                }
            }
            /// For a parity twin, the spec it stands in for (see [`FamilySpec::twin_source`]).
            pub fn twin_source(&self) -> Option<KernelSpec> {
                match self { $(KernelSpec::$variant(s) => s.twin_source().map(KernelSpec::$variant),)* }
            }
            /// The batching claim of a batched spec (see [`FamilySpec::batch_decl`]).
            pub fn batch_decl(&self) -> Option<crate::parity::BatchDecl> {
                match self { $(KernelSpec::$variant(s) => s.batch_decl(),)* }
            }
            pub(crate) fn generate_validated(&self, target: Target) -> Result<GeneratedKernel, GenError> {
                match self { $(KernelSpec::$variant(s) => s.generate(target),)* }
            }
            /// Every family: (name, CLI dimension list).
            pub fn families() -> Vec<(&'static str, &'static str)> {
                vec![$((<$ty as FamilySpec>::FAMILY, <$ty as FamilySpec>::CLI_DIMS),)*]
            }
            /// The spec of `family` from CLI dimension strings.
            pub fn from_cli(family: &str, dims: &[String]) -> Result<KernelSpec, String> {
                $(if family == <$ty as FamilySpec>::FAMILY {
                    return <$ty as FamilySpec>::from_cli(dims).map(KernelSpec::$variant);
                })*
                let known: Vec<&str> = vec![$(<$ty as FamilySpec>::FAMILY,)*];
                Err(format!("unknown kernel `{family}`; known kernels: {}", known.join(", ")))
            }
            /// Every family's sample specs.
            pub fn samples() -> Vec<KernelSpec> {
                let mut all = Vec::new();
                $(all.extend(<$ty as FamilySpec>::samples().into_iter().map(KernelSpec::$variant));)*
                all
            }
        }
    };
}

for_each_family!(define_kernel_spec);

/// A spec error naming the kernel family, the field, what was expected and what was found.
pub(crate) fn invalid(
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

/// Reads CLI dimension `i`, or `default` when it is absent (`None`: required).
pub(crate) fn cli_dim<T: std::str::FromStr>(
    dims: &[String],
    i: usize,
    what: &str,
    default: Option<T>,
) -> Result<T, String> {
    match dims.get(i) {
        Some(s) => s
            .parse()
            .map_err(|_| format!("{what} must be a number, got `{s}`")),
        None => default.ok_or_else(|| format!("missing {what}")),
    }
}

/// Refuses more CLI dimensions than a family takes.
pub(crate) fn cli_max(dims: &[String], max: usize) -> Result<(), String> {
    if dims.len() > max {
        return Err(format!(
            "takes at most {max} dimension(s), got {}",
            dims.len()
        ));
    }
    Ok(())
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
    /// Layout of the data, e.g. `f32[4096]` or `block_q8_1_planar[128]` (128 Q8_1 blocks in
    /// the planar layout of `quantize_q8_1`).
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
