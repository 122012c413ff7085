//! Operand rules of each instruction: which type each operand position wants of the
//! registers in it (check 1's [`CheckKind::OperandType`](super::CheckKind::OperandType)),
//! and whether the first operand is written.
//!
//! Kept apart from the scoping in `registers` because this is a table of PTX ISA rules,
//! one entry per opcode, that grows with every instruction the generators learn to emit;
//! `registers` asks it what each position wants and reports what does not fit.

use crate::ast::{Instruction, Operand, Type, TypeClass};

/// What an operand position wants of the registers in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// Declared is enough (unknown opcodes, labels, call lists).
    Any,
    /// The declared type must fit this type.
    Exact(Type),
    /// `ld`/`st`/`cvt` data: may also be a wider integer or bit-size register
    /// (PTX ISA, "Operand Size Exceeding Instruction-Type Size").
    Relaxed(Type),
    /// `mov`: a scalar of this type, or a vector `{a, b}` packing it from equal parts.
    Packed(Type),
    /// An address register: a 32- or 64-bit integer.
    Pointer,
}

impl Expect {
    /// What each element of a `{...}` operand of `n` elements wants.
    pub(super) fn element(self, n: usize) -> Expect {
        match self {
            Expect::Packed(t) => u32::try_from(n)
                .ok()
                .filter(|&n| n > 0 && t.bits() % n == 0)
                .and_then(|n| bits_type(t.bits() / n))
                .map_or(Expect::Any, Expect::Exact),
            other => other,
        }
    }

    pub(super) fn accepts(self, declared: Type) -> bool {
        match self {
            Expect::Any => true,
            Expect::Exact(t) | Expect::Packed(t) => declared.fits(t),
            Expect::Relaxed(t) => {
                declared.fits(t)
                    || (is_int_or_bits(t)
                        && is_int_or_bits(declared)
                        && declared.bits() >= t.bits())
            }
            Expect::Pointer => is_int_or_bits(declared) && matches!(declared.bits(), 32 | 64),
        }
    }

    pub(super) fn describe(self) -> String {
        match self {
            Expect::Any => "any type".into(),
            Expect::Exact(t) | Expect::Packed(t) => t.to_string(),
            Expect::Relaxed(t) if is_int_or_bits(t) => {
                format!("{t} or a wider integer register")
            }
            Expect::Relaxed(t) => t.to_string(),
            Expect::Pointer => "a 32- or 64-bit integer address".into(),
        }
    }
}

fn is_int_or_bits(t: Type) -> bool {
    matches!(
        t.class(),
        TypeClass::Bits | TypeClass::Unsigned | TypeClass::Signed
    )
}

fn bits_type(bits: u32) -> Option<Type> {
    match bits {
        8 => Some(Type::B8),
        16 => Some(Type::B16),
        32 => Some(Type::B32),
        64 => Some(Type::B64),
        128 => Some(Type::B128),
        _ => None,
    }
}

/// The double-width type of `mul.wide`/`mad.wide`.
fn wide(t: Type) -> Option<Type> {
    match t {
        Type::U16 => Some(Type::U32),
        Type::U32 => Some(Type::U64),
        Type::S16 => Some(Type::S32),
        Type::S32 => Some(Type::S64),
        _ => None,
    }
}

/// Opcodes whose operands all have the instruction type (its last type modifier).
const UNIFORM: &[&str] = &[
    "add",
    "sub",
    "addc",
    "subc",
    "madc",
    "mul",
    "mad",
    "mul24",
    "mad24",
    "div",
    "rem",
    "abs",
    "neg",
    "min",
    "max",
    "sad",
    "fma",
    "rcp",
    "rsqrt",
    "sqrt",
    "ex2",
    "lg2",
    "sin",
    "cos",
    "tanh",
    "copysign",
    "and",
    "or",
    "xor",
    "not",
    "cnot",
    "brev",
    "lop3",
    "fns",
    "cvta",
    "activemask",
];

/// The expectation of each operand position of `i` (PTX ISA, each instruction's
/// operand types). Positions past the list, and unknown opcodes, want `Any`.
pub(super) fn expectations(i: &Instruction) -> Vec<Expect> {
    use Expect::{Any, Exact, Packed, Relaxed};
    // The type modifiers: how many, the first two and the last (no vector of them).
    let (mut n, mut first, mut second, mut last) = (0, None, None, None);
    for t in i.mods.iter().filter_map(|m| Type::from_name(m)) {
        match n {
            0 => first = Some(t),
            1 => second = Some(t),
            _ => {}
        }
        n += 1;
        last = Some(t);
    }
    let Some(t) = last else {
        return Vec::new();
    };
    let pair = first.zip(second).filter(|_| n == 2);
    let pred = Exact(Type::Pred);
    let op = i.opcode.as_str();
    match op {
        "ld" | "ldu" => vec![Relaxed(t), Any],
        "st" => vec![Any, Relaxed(t)],
        "cvt" => match pair {
            Some((d, s)) => vec![Relaxed(d), Relaxed(s), Relaxed(s)],
            None => Vec::new(),
        },
        "mov" => vec![Packed(t), Packed(t)],
        "setp" => vec![pred, Exact(t), Exact(t), pred],
        "set" => match pair {
            Some((d, s)) => vec![Exact(d), Exact(s), Exact(s), pred],
            None => Vec::new(),
        },
        "selp" => vec![Exact(t), Exact(t), Exact(t), pred],
        "slct" => match pair {
            Some((d, s)) => vec![Exact(d), Exact(d), Exact(d), Exact(s)],
            None => Vec::new(),
        },
        "mul" | "mad" if i.has_mod("wide") => match wide(t) {
            Some(w) => vec![Exact(w), Exact(t), Exact(t), Exact(w)],
            None => Vec::new(),
        },
        "dp4a" | "dp2a" => match pair {
            Some((a, b)) => {
                let acc = if a == Type::U32 && b == Type::U32 {
                    Type::U32
                } else {
                    Type::S32
                };
                vec![Exact(acc), Exact(a), Exact(b), Exact(acc)]
            }
            None => Vec::new(),
        },
        "prmt" | "shf" => vec![Exact(Type::B32); 4],
        "bfe" => vec![Exact(t), Exact(t), Exact(Type::U32), Exact(Type::U32)],
        "bfi" => vec![
            Exact(t),
            Exact(t),
            Exact(t),
            Exact(Type::U32),
            Exact(Type::U32),
        ],
        "shl" | "shr" => vec![Exact(t), Exact(t), Exact(Type::U32)],
        "shfl" => vec![
            Exact(t),
            Exact(t),
            Exact(Type::B32),
            Exact(Type::B32),
            Exact(Type::B32),
        ],
        "vote" => vec![Exact(t), pred, Exact(Type::B32)],
        "redux" => vec![Exact(t), Exact(t), Exact(Type::B32)],
        "atom" => vec![Exact(t), Any, Exact(t), Exact(t)],
        "red" => vec![Any, Exact(t)],
        "popc" | "clz" | "bfind" => vec![Exact(Type::U32), Exact(t)],
        "testp" => vec![pred, Exact(t)],
        _ if UNIFORM.contains(&op) => vec![Exact(t); i.operands.len()],
        _ => Vec::new(),
    }
}

/// Barrier operands: ids and thread counts are 32-bit integers; `bar.red` also writes
/// a result of the instruction type and reads a predicate last.
pub(super) fn barrier_expectations(i: &Instruction) -> Vec<Expect> {
    let n = i.operands.len();
    let mut out = vec![Expect::Exact(Type::U32); n];
    if i.has_mod("red") && n > 0 {
        out[0] = i.last_type().map_or(Expect::Any, Expect::Exact);
        out[n - 1] = Expect::Exact(Type::Pred);
    }
    out
}

/// Opcodes that write no register through their first operand.
const NO_DESTINATION: &[&str] = &[
    "st",
    "red",
    "bra",
    "brx",
    "ret",
    "exit",
    "trap",
    "membar",
    "fence",
    "prefetch",
    "prefetchu",
    "cp",
    "stmatrix",
    "nanosleep",
    "pmevent",
    "discard",
    "applypriority",
    "griddepcontrol",
    "wgmma",
    "call",
    "setmaxnreg",
];

pub(super) fn writes_first_operand(i: &Instruction) -> bool {
    let op = i.opcode.as_str();
    if op == "bar" || op == "barrier" {
        return i.has_mod("red");
    }
    if NO_DESTINATION.contains(&op) || (op == "wmma" && i.has_mod("store")) {
        return false;
    }
    !matches!(i.operands.first(), None | Some(Operand::Address(_)))
}
