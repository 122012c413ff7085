//! Typed virtual registers, immediates and special registers.

use crate::ast::Type;

/// A virtual register: a type and an index within the register bank of that type.
///
/// Registers are named by bank (see [`Bank`]) and numbered in creation order, so the
/// same generator always produces the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg {
    pub(crate) ty: Type,
    pub(crate) index: u32,
}

impl Reg {
    pub fn ty(self) -> Type {
        self.ty
    }

    /// The PTX name, e.g. `%r12`.
    pub fn name(self) -> String {
        format!("{}{}", Bank::of(self.ty).prefix(), self.index)
    }
}

/// Register banks: one `.reg` declaration each. A bank's declared type is a bit type (or
/// `.pred`/`.f16`/`.f32`/`.f64`) so that every IR type stored in it is a legal operand of
/// instructions of that IR type (PTX operand type-checking rules); the IR keeps the precise
/// type of each register for its own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bank {
    Pred,
    B8,
    B16,
    F16,
    B32,
    F32,
    B64,
    F64,
}

impl Bank {
    pub const ALL: [Bank; 8] = [
        Bank::Pred,
        Bank::B8,
        Bank::B16,
        Bank::F16,
        Bank::B32,
        Bank::F32,
        Bank::B64,
        Bank::F64,
    ];

    pub fn of(ty: Type) -> Bank {
        match ty {
            Type::Pred => Bank::Pred,
            Type::B8 | Type::U8 | Type::S8 => Bank::B8,
            Type::B16 | Type::U16 | Type::S16 | Type::Bf16 => Bank::B16,
            Type::F16 => Bank::F16,
            Type::B32 | Type::U32 | Type::S32 | Type::F16x2 | Type::Bf16x2 => Bank::B32,
            Type::F32 => Bank::F32,
            Type::B64 | Type::U64 | Type::S64 => Bank::B64,
            Type::F64 => Bank::F64,
            // 128-bit registers are not part of the IR; `Builder::reg` rejects them first.
            Type::B128 => Bank::B64,
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Bank::Pred => "%p",
            Bank::B8 => "%rc",
            Bank::B16 => "%rs",
            Bank::F16 => "%h",
            Bank::B32 => "%r",
            Bank::F32 => "%f",
            Bank::B64 => "%rd",
            Bank::F64 => "%fd",
        }
    }

    /// The type written in the bank's `.reg` declaration.
    pub fn decl_type(self) -> Type {
        match self {
            Bank::Pred => Type::Pred,
            Bank::B8 => Type::B8,
            Bank::B16 => Type::B16,
            Bank::F16 => Type::F16,
            Bank::B32 => Type::B32,
            Bank::F32 => Type::F32,
            Bank::B64 => Type::B64,
            Bank::F64 => Type::F64,
        }
    }
}

/// PTX special registers the IR can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sreg {
    TidX,
    TidY,
    TidZ,
    NtidX,
    NtidY,
    CtaidX,
    CtaidY,
    CtaidZ,
    NctaidX,
    NctaidY,
    LaneId,
    WarpId,
    Clock,
    Clock64,
    SmId,
}

impl Sreg {
    pub fn name(self) -> &'static str {
        match self {
            Sreg::TidX => "%tid.x",
            Sreg::TidY => "%tid.y",
            Sreg::TidZ => "%tid.z",
            Sreg::NtidX => "%ntid.x",
            Sreg::NtidY => "%ntid.y",
            Sreg::CtaidX => "%ctaid.x",
            Sreg::CtaidY => "%ctaid.y",
            Sreg::CtaidZ => "%ctaid.z",
            Sreg::NctaidX => "%nctaid.x",
            Sreg::NctaidY => "%nctaid.y",
            Sreg::LaneId => "%laneid",
            Sreg::WarpId => "%warpid",
            Sreg::Clock => "%clock",
            Sreg::Clock64 => "%clock64",
            Sreg::SmId => "%smid",
        }
    }

    pub fn ty(self) -> Type {
        match self {
            Sreg::Clock64 => Type::U64,
            _ => Type::U32,
        }
    }
}

/// A source operand: a register or an immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Value {
    Reg(Reg),
    /// A signed integer immediate; range-checked against the instruction type.
    Int(i64),
    /// An unsigned integer immediate; range-checked against the instruction type.
    UInt(u64),
    /// A bit pattern (masks, byte selectors): an unsigned immediate printed in hex.
    Hex(u64),
    /// Exact bits of an f32 immediate (`0f...`).
    F32(u32),
    /// Exact bits of an f64 immediate (`0d...`).
    F64(u64),
}

impl Value {
    /// An f32 immediate from its value (kept as exact bits).
    pub fn f32(v: f32) -> Value {
        Value::F32(v.to_bits())
    }

    pub fn f64(v: f64) -> Value {
        Value::F64(v.to_bits())
    }
}

impl From<Reg> for Value {
    fn from(r: Reg) -> Value {
        Value::Reg(r)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v as i64)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::UInt(v as u64)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::UInt(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::UInt(v as u64)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::f32(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::f64(v)
    }
}
