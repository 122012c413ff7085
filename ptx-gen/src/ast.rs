//! Syntactic PTX: what the parser produces, what the typed IR lowers to, and what
//! `emit::print_module` turns into text.
//!
//! The tree keeps everything needed to reproduce the emitter's text byte for byte,
//! comments and blank lines included, so that emit -> parse -> print is the identity on
//! our own output. It is deliberately untyped above the level of declarations: an
//! instruction is an opcode, its dot-modifiers and operands, exactly as written. Typing
//! lives in the IR (`crate::ir`), and the static checks (`crate::check`) work on this tree.

use std::fmt;

/// A whole PTX module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Module {
    pub items: Vec<Item>,
}

/// A module-scope item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An empty source line.
    Blank,
    Comment(Comment),
    /// `.version 7.0`
    Version {
        major: u32,
        minor: u32,
    },
    /// `.target sm_61` (further comma-separated options such as `texmode_independent`).
    Target(Vec<String>),
    /// `.address_size 64`
    AddressSize(u32),
    /// A module-scope variable: `.global .align 4 .b8 table[16] = {...};`, `.extern .shared ...`.
    Var(VarDecl),
    Function(Function),
    /// Any other module directive (`.file 1 "x.cu"`, `.section ...`), kept as its raw text
    /// after the directive name, without the terminating `;` when it had one.
    Directive {
        name: String,
        args: String,
        semicolon: bool,
    },
}

/// `// text` (text keeps its leading space) or `/* text */`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comment {
    Line(String),
    Block(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Linkage {
    Visible,
    Extern,
    Weak,
    Common,
}

impl Linkage {
    pub fn as_str(self) -> &'static str {
        match self {
            Linkage::Visible => ".visible",
            Linkage::Extern => ".extern",
            Linkage::Weak => ".weak",
            Linkage::Common => ".common",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FnKind {
    Entry,
    Func,
}

/// `.entry` or `.func`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub linkage: Option<Linkage>,
    pub kind: FnKind,
    /// Return parameters of a `.func`: `.func (.param .b32 ret) name(...)`.
    pub returns: Option<Vec<ParamDecl>>,
    pub name: String,
    pub params: Vec<ParamDecl>,
    /// Performance directives between the signature and the body, in source order.
    pub directives: Vec<PerfDirective>,
    /// `None` for a prototype that ends in `;`.
    pub body: Option<Vec<Statement>>,
}

/// `.maxntid 256, 1, 1`, `.reqntid 128`, `.minnctapersm 2`, `.maxnreg 64`, `.noreturn`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfDirective {
    /// Without the dot: `maxntid`.
    pub name: String,
    pub values: Vec<u64>,
}

/// A kernel or function parameter: `.param .u64 .ptr .global .align 16 name`, `.param .align 8 .b8 name[16]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDecl {
    pub space: StateSpace,
    /// `.align N` written before the type.
    pub align: Option<u32>,
    pub ty: Type,
    /// Pointer attributes written after the type, without dots: `["ptr", "global", "align", "16"]`
    /// is kept as the raw modifier words `ptr`, `global`, `align 16`.
    pub ptr_attrs: Vec<String>,
    pub name: String,
    /// `[N]` (Some(Some(N))) or `[]` (Some(None)).
    pub array: Option<Option<u64>>,
}

/// State spaces of declarations and of memory instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateSpace {
    Reg,
    Sreg,
    Const,
    Global,
    Local,
    Param,
    Shared,
    Tex,
}

impl StateSpace {
    pub const ALL: [StateSpace; 8] = [
        StateSpace::Reg,
        StateSpace::Sreg,
        StateSpace::Const,
        StateSpace::Global,
        StateSpace::Local,
        StateSpace::Param,
        StateSpace::Shared,
        StateSpace::Tex,
    ];

    /// Without the dot.
    pub fn name(self) -> &'static str {
        match self {
            StateSpace::Reg => "reg",
            StateSpace::Sreg => "sreg",
            StateSpace::Const => "const",
            StateSpace::Global => "global",
            StateSpace::Local => "local",
            StateSpace::Param => "param",
            StateSpace::Shared => "shared",
            StateSpace::Tex => "tex",
        }
    }

    pub fn from_name(s: &str) -> Option<StateSpace> {
        Some(match s {
            "reg" => StateSpace::Reg,
            "sreg" => StateSpace::Sreg,
            "const" => StateSpace::Const,
            "global" => StateSpace::Global,
            "local" => StateSpace::Local,
            "param" => StateSpace::Param,
            "shared" => StateSpace::Shared,
            "tex" => StateSpace::Tex,
            _ => return None,
        })
    }
}

/// PTX fundamental types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    Pred,
    B8,
    B16,
    B32,
    B64,
    B128,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    F16x2,
    Bf16,
    Bf16x2,
    F32,
    F64,
}

/// The broad class of a type, which decides operand compatibility (PTX ISA, "Operand Type
/// Checking": bit-size types fit any type of the same size, signed and unsigned integers of
/// one size fit each other, float types only themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TypeClass {
    Pred,
    Bits,
    Unsigned,
    Signed,
    Float,
}

impl Type {
    pub const ALL: [Type; 20] = [
        Type::Pred,
        Type::B8,
        Type::B16,
        Type::B32,
        Type::B64,
        Type::B128,
        Type::U8,
        Type::U16,
        Type::U32,
        Type::U64,
        Type::S8,
        Type::S16,
        Type::S32,
        Type::S64,
        Type::F16,
        Type::F16x2,
        Type::Bf16,
        Type::Bf16x2,
        Type::F32,
        Type::F64,
    ];

    /// Without the dot: `u32`.
    pub fn name(self) -> &'static str {
        match self {
            Type::Pred => "pred",
            Type::B8 => "b8",
            Type::B16 => "b16",
            Type::B32 => "b32",
            Type::B64 => "b64",
            Type::B128 => "b128",
            Type::U8 => "u8",
            Type::U16 => "u16",
            Type::U32 => "u32",
            Type::U64 => "u64",
            Type::S8 => "s8",
            Type::S16 => "s16",
            Type::S32 => "s32",
            Type::S64 => "s64",
            Type::F16 => "f16",
            Type::F16x2 => "f16x2",
            Type::Bf16 => "bf16",
            Type::Bf16x2 => "bf16x2",
            Type::F32 => "f32",
            Type::F64 => "f64",
        }
    }

    pub fn from_name(s: &str) -> Option<Type> {
        // The inverse of `name` (a match rather than a scan of `ALL`: modifiers are looked
        // up for every instruction).
        Some(match s {
            "pred" => Type::Pred,
            "b8" => Type::B8,
            "b16" => Type::B16,
            "b32" => Type::B32,
            "b64" => Type::B64,
            "b128" => Type::B128,
            "u8" => Type::U8,
            "u16" => Type::U16,
            "u32" => Type::U32,
            "u64" => Type::U64,
            "s8" => Type::S8,
            "s16" => Type::S16,
            "s32" => Type::S32,
            "s64" => Type::S64,
            "f16" => Type::F16,
            "f16x2" => Type::F16x2,
            "bf16" => Type::Bf16,
            "bf16x2" => Type::Bf16x2,
            "f32" => Type::F32,
            "f64" => Type::F64,
            _ => return None,
        })
    }

    /// Size in bits; a predicate counts as 1.
    pub fn bits(self) -> u32 {
        match self {
            Type::Pred => 1,
            Type::B8 | Type::U8 | Type::S8 => 8,
            Type::B16 | Type::U16 | Type::S16 | Type::F16 | Type::Bf16 => 16,
            Type::B32 | Type::U32 | Type::S32 | Type::F32 | Type::F16x2 | Type::Bf16x2 => 32,
            Type::B64 | Type::U64 | Type::S64 | Type::F64 => 64,
            Type::B128 => 128,
        }
    }

    /// Size in bytes in memory (a predicate has no memory form; 1 is returned).
    pub fn bytes(self) -> u32 {
        self.bits().div_ceil(8)
    }

    pub fn class(self) -> TypeClass {
        match self {
            Type::Pred => TypeClass::Pred,
            Type::B8 | Type::B16 | Type::B32 | Type::B64 | Type::B128 => TypeClass::Bits,
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => TypeClass::Unsigned,
            Type::S8 | Type::S16 | Type::S32 | Type::S64 => TypeClass::Signed,
            Type::F16 | Type::F16x2 | Type::Bf16 | Type::Bf16x2 | Type::F32 | Type::F64 => {
                TypeClass::Float
            }
        }
    }

    pub fn is_int(self) -> bool {
        matches!(self.class(), TypeClass::Unsigned | TypeClass::Signed)
    }

    pub fn is_float(self) -> bool {
        self.class() == TypeClass::Float
    }

    /// Whether a register declared `self` may be an operand of an instruction typed `instr`
    /// (PTX ISA operand type-checking rules).
    pub fn fits(self, instr: Type) -> bool {
        if self == instr {
            return true;
        }
        if self.bits() != instr.bits() {
            return false;
        }
        match (self.class(), instr.class()) {
            (TypeClass::Bits, c) | (c, TypeClass::Bits) => c != TypeClass::Pred,
            (TypeClass::Unsigned | TypeClass::Signed, TypeClass::Unsigned | TypeClass::Signed) => {
                true
            }
            _ => false,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ".{}", self.name())
    }
}

/// A declaration of registers or variables: `.reg .b32 %r<12>;`, `.shared .align 16 .b8 smem[1024];`,
/// `.global .align 4 .u32 table[4] = {1, 2, 3, 4};`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarDecl {
    pub linkage: Option<Linkage>,
    pub space: StateSpace,
    pub align: Option<u32>,
    /// `.v2`/`.v4` vector variables.
    pub vector: Option<u32>,
    pub ty: Type,
    pub names: Vec<Declarator>,
    /// `= {...}` or `= value`.
    pub init: Option<Initializer>,
}

/// One declared name with its suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declarator {
    pub name: String,
    pub suffix: DeclSuffix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclSuffix {
    None,
    /// `%r<12>` declares `%r0` .. `%r11`.
    Range(u32),
    /// `name[4][8]`; an empty `[]` is `None`.
    Array(Vec<Option<u64>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initializer {
    Scalar(Operand),
    List(Vec<Initializer>),
}

/// A statement inside a function body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Blank,
    Comment(Comment),
    Decl(VarDecl),
    Label(String),
    Instr(Instruction),
    /// A nested `{ ... }` scope (nvcc wraps inline asm in these).
    Block(Vec<Statement>),
    /// Any other directive inside a body (`.pragma "nounroll";`, `.loc 1 5 3`), raw args.
    Directive {
        name: String,
        args: String,
        semicolon: bool,
    },
}

/// `@!%p1 ld.global.nc.v4.u32 {%r1, %r2, %r3, %r4}, [%rd2+16];`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub guard: Option<Guard>,
    /// `ld`
    pub opcode: String,
    /// `["global", "nc", "v4", "u32"]`, in source order, without dots.
    pub mods: Vec<String>,
    pub operands: Vec<Operand>,
}

impl Instruction {
    pub fn has_mod(&self, m: &str) -> bool {
        self.mods.iter().any(|x| x == m)
    }

    /// The last modifier that names a type (the instruction type of most instructions).
    pub fn last_type(&self) -> Option<Type> {
        self.mods.iter().rev().find_map(|m| Type::from_name(m))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub negated: bool,
    pub pred: String,
}

/// Integer literal as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntLit {
    pub negative: bool,
    pub magnitude: u64,
    pub radix: Radix,
    /// A trailing `U`.
    pub unsigned_suffix: bool,
}

impl IntLit {
    pub fn dec(v: i64) -> IntLit {
        IntLit {
            negative: v < 0,
            magnitude: v.unsigned_abs(),
            radix: Radix::Dec,
            unsigned_suffix: false,
        }
    }

    pub fn unsigned(v: u64) -> IntLit {
        IntLit {
            negative: false,
            magnitude: v,
            radix: Radix::Dec,
            unsigned_suffix: false,
        }
    }

    /// The value as i128 (covers the whole u64 and i64 ranges).
    pub fn value(&self) -> i128 {
        let m = self.magnitude as i128;
        if self.negative {
            -m
        } else {
            m
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Radix {
    Dec,
    Hex,
    Octal,
    Binary,
}

/// An instruction operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// A `%`-name: virtual register or special register (`%r3`, `%tid.x`, `%laneid`).
    Reg(String),
    /// Any other identifier: a label, a parameter, a variable, a function (`$L__BB0_3`, `smem`).
    Symbol(String),
    Int(IntLit),
    /// `0f3F800000`: exact bits of an f32.
    F32(u32),
    /// `0d3FF0000000000000`: exact bits of an f64.
    F64(u64),
    /// A decimal float literal as written (`1.5`, `1e-5`).
    FloatDec(String),
    /// `{%r1, %r2}` (entries may be `_` sinks, kept as `Symbol("_")`).
    Vector(Vec<Operand>),
    /// `[base]`, `[base+off]`, `[base+-off]`, `[imm]`.
    Address(Address),
    /// `!%p` as an operand (setp/selp sources and friends).
    Not(Box<Operand>),
    /// `%p|%q`: the two destinations of `setp`.
    PredPair(String, String),
    /// `(a, b)`: argument and return lists of `call`.
    Tuple(Vec<Operand>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// A register or symbol; `None` for an absolute address `[1024]` (offset holds it).
    pub base: Option<AddrBase>,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrBase {
    Reg(String),
    Symbol(String),
}

impl AddrBase {
    pub fn name(&self) -> &str {
        match self {
            AddrBase::Reg(s) | AddrBase::Symbol(s) => s,
        }
    }
}

impl Module {
    /// All functions of the module, in order.
    pub fn functions(&self) -> impl Iterator<Item = &Function> {
        self.items.iter().filter_map(|i| match i {
            Item::Function(f) => Some(f),
            _ => None,
        })
    }

    /// The `.entry` functions.
    pub fn entries(&self) -> impl Iterator<Item = &Function> {
        self.functions().filter(|f| f.kind == FnKind::Entry)
    }
}

impl Function {
    /// Every statement of the body in source order, nested blocks flattened.
    pub fn statements(&self) -> Vec<&Statement> {
        fn walk<'a>(stmts: &'a [Statement], out: &mut Vec<&'a Statement>) {
            for s in stmts {
                out.push(s);
                if let Statement::Block(inner) = s {
                    walk(inner, out);
                }
            }
        }
        let mut out = Vec::new();
        if let Some(body) = &self.body {
            walk(body, &mut out);
        }
        out
    }

    /// Every instruction of the body in source order, nested blocks flattened.
    pub fn instructions(&self) -> Vec<&Instruction> {
        self.statements()
            .into_iter()
            .filter_map(|s| match s {
                Statement::Instr(i) => Some(i),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for t in Type::ALL {
            assert_eq!(Type::from_name(t.name()), Some(t));
        }
        for sp in StateSpace::ALL {
            assert_eq!(StateSpace::from_name(sp.name()), Some(sp));
        }
        assert_eq!(Type::from_name("u31"), None);
        assert_eq!(StateSpace::from_name("Reg"), None);
    }
}
