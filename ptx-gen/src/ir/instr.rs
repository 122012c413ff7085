//! IR instructions and their lowering to syntactic PTX: one table from operation to
//! opcode, modifiers and operands.

use crate::ast::{self, AddrBase, Operand, StateSpace, Type};

use super::reg::{Reg, Sreg, Value};

/// A label inside one kernel; its name is unique within the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(pub(crate) String);

impl Label {
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Base of a memory address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// A 64-bit (generic/global) or 32-bit (shared) address register.
    Reg(Reg),
    /// A named variable: a kernel parameter (for `ld.param`) or a shared array.
    Var(String),
}

/// `[base+offset]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub base: Base,
    pub offset: i64,
}

impl Addr {
    pub fn reg(r: Reg) -> Addr {
        Addr {
            base: Base::Reg(r),
            offset: 0,
        }
    }

    pub fn reg_off(r: Reg, offset: i64) -> Addr {
        Addr {
            base: Base::Reg(r),
            offset,
        }
    }

    /// The same address `bytes` further on.
    pub fn plus(&self, bytes: i64) -> Addr {
        Addr {
            base: self.base.clone(),
            offset: self.offset + bytes,
        }
    }
}

/// Cache behaviour of a load or store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheHint {
    /// `ld.global.nc`: read-only data path (loads only).
    NonCoherent,
    /// `.cs`: streaming, likely accessed once.
    Streaming,
    /// `.cg`: cache in L2, not L1.
    CacheGlobal,
    /// `.L1::no_allocate`.
    L1NoAllocate,
    /// `.L1::evict_last`.
    L1EvictLast,
    /// `.L1::evict_first`.
    L1EvictFirst,
}

impl CacheHint {
    pub(crate) fn modifier(self) -> &'static str {
        match self {
            CacheHint::NonCoherent => "nc",
            CacheHint::Streaming => "cs",
            CacheHint::CacheGlobal => "cg",
            CacheHint::L1NoAllocate => "L1::no_allocate",
            CacheHint::L1EvictLast => "L1::evict_last",
            CacheHint::L1EvictFirst => "L1::evict_first",
        }
    }
}

/// L2 eviction priority of a `createpolicy` cache policy (used through `.L2::cache_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L2Evict {
    First,
    Last,
    Normal,
}

/// Rounding modes (`cvt`, float arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Round {
    /// Float rounding: nearest even, toward zero, down, up.
    Rn,
    Rz,
    Rm,
    Rp,
    /// Float-to-integer rounding: nearest even, toward zero, down, up.
    Rni,
    Rzi,
    Rmi,
    Rpi,
}

impl Round {
    pub(crate) fn modifier(self) -> &'static str {
        match self {
            Round::Rn => "rn",
            Round::Rz => "rz",
            Round::Rm => "rm",
            Round::Rp => "rp",
            Round::Rni => "rni",
            Round::Rzi => "rzi",
            Round::Rmi => "rmi",
            Round::Rpi => "rpi",
        }
    }

    pub fn is_integer(self) -> bool {
        matches!(self, Round::Rni | Round::Rzi | Round::Rmi | Round::Rpi)
    }
}

/// Two-operand arithmetic and logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinOp {
    Add,
    Sub,
    /// `mul.lo` for integers, `mul` for floats.
    Mul,
    /// `mul.hi` (integers).
    MulHi,
    Div,
    Rem,
    Min,
    Max,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

impl BinOp {
    pub(crate) fn opcode(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul | BinOp::MulHi => "mul",
            BinOp::Div => "div",
            BinOp::Rem => "rem",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Xor => "xor",
            BinOp::Shl => "shl",
            BinOp::Shr => "shr",
        }
    }
}

/// One-operand arithmetic and special functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnOp {
    Neg,
    Abs,
    Not,
    /// `rcp.approx.ftz.f32` style approximations are selected by [`UnMode`].
    Rcp,
    Rsqrt,
    Sqrt,
    Ex2,
    Lg2,
    Sin,
    Cos,
    Tanh,
    Popc,
    Clz,
    Brev,
}

impl UnOp {
    pub(crate) fn opcode(self) -> &'static str {
        match self {
            UnOp::Neg => "neg",
            UnOp::Abs => "abs",
            UnOp::Not => "not",
            UnOp::Rcp => "rcp",
            UnOp::Rsqrt => "rsqrt",
            UnOp::Sqrt => "sqrt",
            UnOp::Ex2 => "ex2",
            UnOp::Lg2 => "lg2",
            UnOp::Sin => "sin",
            UnOp::Cos => "cos",
            UnOp::Tanh => "tanh",
            UnOp::Popc => "popc",
            UnOp::Clz => "clz",
            UnOp::Brev => "brev",
        }
    }
}

/// Float modes: exactness and flush-to-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FMode {
    /// `.rn`/`.rz`/... for IEEE-rounded operations.
    pub round: Option<Round>,
    /// `.approx`.
    pub approx: bool,
    /// `.full` (div.full.f32).
    pub full: bool,
    /// `.ftz`.
    pub ftz: bool,
    /// `.sat`.
    pub sat: bool,
}

impl FMode {
    pub const NONE: FMode = FMode {
        round: None,
        approx: false,
        full: false,
        ftz: false,
        sat: false,
    };

    pub fn rn() -> FMode {
        FMode {
            round: Some(Round::Rn),
            ..FMode::NONE
        }
    }

    pub fn approx() -> FMode {
        FMode {
            approx: true,
            ..FMode::NONE
        }
    }

    pub fn approx_ftz() -> FMode {
        FMode {
            approx: true,
            ftz: true,
            ..FMode::NONE
        }
    }

    fn push(self, mods: &mut Vec<String>) {
        if let Some(r) = self.round {
            mods.push(r.modifier().into());
        }
        if self.approx {
            mods.push("approx".into());
        }
        if self.full {
            mods.push("full".into());
        }
        if self.ftz {
            mods.push("ftz".into());
        }
        if self.sat {
            mods.push("sat".into());
        }
    }
}

/// Comparison of `setp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Unsigned/unordered variants (`lo`, `ls`, `hi`, `hs` for integers; `equ`... for floats).
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

impl Cmp {
    pub(crate) fn modifier(self) -> &'static str {
        match self {
            Cmp::Eq => "eq",
            Cmp::Ne => "ne",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
            Cmp::Lo => "lo",
            Cmp::Ls => "ls",
            Cmp::Hi => "hi",
            Cmp::Hs => "hs",
            Cmp::Equ => "equ",
            Cmp::Neu => "neu",
            Cmp::Ltu => "ltu",
            Cmp::Leu => "leu",
            Cmp::Gtu => "gtu",
            Cmp::Geu => "geu",
            Cmp::Num => "num",
            Cmp::Nan => "nan",
        }
    }

    /// Whether the comparison is only defined for floats.
    pub fn float_only(self) -> bool {
        matches!(
            self,
            Cmp::Equ | Cmp::Neu | Cmp::Ltu | Cmp::Leu | Cmp::Gtu | Cmp::Geu | Cmp::Num | Cmp::Nan
        )
    }

    /// Whether the comparison is only defined for integers.
    pub fn int_only(self) -> bool {
        matches!(self, Cmp::Lo | Cmp::Ls | Cmp::Hi | Cmp::Hs)
    }
}

/// `shfl.sync` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

impl ShflMode {
    pub(crate) fn modifier(self) -> &'static str {
        match self {
            ShflMode::Up => "up",
            ShflMode::Down => "down",
            ShflMode::Bfly => "bfly",
            ShflMode::Idx => "idx",
        }
    }
}

/// Atomic and reduction operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AtomOp {
    Add,
    Min,
    Max,
    And,
    Or,
    Xor,
    Exch,
    Cas,
    Inc,
    Dec,
}

impl AtomOp {
    pub(crate) fn modifier(self) -> &'static str {
        match self {
            AtomOp::Add => "add",
            AtomOp::Min => "min",
            AtomOp::Max => "max",
            AtomOp::And => "and",
            AtomOp::Or => "or",
            AtomOp::Xor => "xor",
            AtomOp::Exch => "exch",
            AtomOp::Cas => "cas",
            AtomOp::Inc => "inc",
            AtomOp::Dec => "dec",
        }
    }
}

/// `prmt` selector modes (`None` is the generic 4-nibble selector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrmtMode {
    F4e,
    B4e,
    Rc8,
    Ecl,
    Ecr,
    Rc16,
}

impl PrmtMode {
    pub(crate) fn modifier(self) -> &'static str {
        match self {
            PrmtMode::F4e => "f4e",
            PrmtMode::B4e => "b4e",
            PrmtMode::Rc8 => "rc8",
            PrmtMode::Ecl => "ecl",
            PrmtMode::Ecr => "ecr",
            PrmtMode::Rc16 => "rc16",
        }
    }
}

/// One IR operation. Operand types were checked by the builder when it was added.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Comment(String),
    Label(Label),
    Mov {
        ty: Type,
        dst: Reg,
        src: Value,
    },
    MovSpecial {
        dst: Reg,
        sreg: Sreg,
    },
    /// `mov.u32 %r, smem;`: the address of a shared variable.
    MovSymbol {
        ty: Type,
        dst: Reg,
        symbol: String,
    },
    /// `mov.b32 %r, {%h0, %h1};`
    Pack {
        ty: Type,
        dst: Reg,
        parts: Vec<Reg>,
    },
    /// `mov.b32 {%h0, %h1}, %r;`
    Unpack {
        ty: Type,
        parts: Vec<Reg>,
        src: Reg,
    },
    Ld {
        space: StateSpace,
        hints: Vec<CacheHint>,
        ty: Type,
        dst: Vec<Reg>,
        addr: Addr,
        policy: Option<Reg>,
    },
    St {
        space: StateSpace,
        hints: Vec<CacheHint>,
        ty: Type,
        src: Vec<Value>,
        addr: Addr,
        policy: Option<Reg>,
    },
    CreatePolicy {
        evict: L2Evict,
        dst: Reg,
    },
    /// `cvta.to.global.u64`.
    CvtaToGlobal {
        dst: Reg,
        src: Reg,
    },
    Bin {
        op: BinOp,
        ty: Type,
        mode: FMode,
        dst: Reg,
        a: Value,
        b: Value,
    },
    /// `mul.wide.{u,s}32`: 32 x 32 -> 64.
    MulWide {
        ty: Type,
        dst: Reg,
        a: Value,
        b: Value,
    },
    Un {
        op: UnOp,
        ty: Type,
        mode: FMode,
        dst: Reg,
        a: Value,
    },
    /// `mad.lo` (integers) or `fma.rn` (floats): d = a * b + c.
    Mad {
        ty: Type,
        mode: FMode,
        dst: Reg,
        a: Value,
        b: Value,
        c: Value,
    },
    /// `mad.wide.{u,s}32`: 32 x 32 + 64 -> 64.
    MadWide {
        ty: Type,
        dst: Reg,
        a: Value,
        b: Value,
        c: Value,
    },
    Dp4a {
        a_ty: Type,
        b_ty: Type,
        dst: Reg,
        a: Value,
        b: Value,
        c: Value,
    },
    Prmt {
        mode: Option<PrmtMode>,
        dst: Reg,
        a: Value,
        b: Value,
        sel: Value,
    },
    Bfe {
        ty: Type,
        dst: Reg,
        a: Value,
        pos: Value,
        len: Value,
    },
    Bfi {
        ty: Type,
        dst: Reg,
        a: Value,
        b: Value,
        pos: Value,
        len: Value,
    },
    Lop3 {
        dst: Reg,
        a: Value,
        b: Value,
        c: Value,
        lut: u8,
    },
    Cvt {
        dst_ty: Type,
        src_ty: Type,
        mode: FMode,
        dst: Reg,
        src: Value,
    },
    /// `cvt.rn.f16x2.f32 d, hi, lo`.
    CvtPack {
        dst_ty: Type,
        mode: FMode,
        dst: Reg,
        hi: Value,
        lo: Value,
    },
    Setp {
        cmp: Cmp,
        ty: Type,
        dst: Reg,
        a: Value,
        b: Value,
    },
    Selp {
        ty: Type,
        dst: Reg,
        a: Value,
        b: Value,
        pred: Reg,
    },
    Shfl {
        mode: ShflMode,
        dst: Reg,
        pred_out: Option<Reg>,
        a: Value,
        b: Value,
        c: Value,
        mask: Value,
    },
    BarSync {
        id: u32,
    },
    BarWarpSync {
        mask: Value,
    },
    /// `griddepcontrol.wait` (sm_90, programmatic dependent launch): waits until every grid
    /// this one depends on has completed and its memory operations are visible; a no-op
    /// when the grid was launched without a programmatic dependency.
    GridDepWait,
    Atom {
        space: StateSpace,
        op: AtomOp,
        ty: Type,
        dst: Reg,
        addr: Addr,
        b: Value,
        c: Option<Value>,
    },
    Red {
        space: StateSpace,
        op: AtomOp,
        ty: Type,
        addr: Addr,
        b: Value,
    },
    Bra {
        target: Label,
        uni: bool,
    },
    Ret,
    Exit,
}

/// An operation with an optional guard predicate (`@p` or `@!p`).
#[derive(Debug, Clone, PartialEq)]
pub struct Instr {
    pub guard: Option<(Reg, bool)>,
    pub op: Op,
}

pub(crate) fn reg(r: Reg) -> Operand {
    Operand::Reg(r.name())
}

/// Lowers a source operand.
pub(crate) fn value(v: Value) -> Operand {
    match v {
        Value::Reg(r) => reg(r),
        Value::Int(i) => Operand::Int(ast::IntLit::dec(i)),
        Value::UInt(u) => Operand::Int(ast::IntLit::unsigned(u)),
        Value::Hex(u) => Operand::Int(ast::IntLit {
            radix: ast::Radix::Hex,
            ..ast::IntLit::unsigned(u)
        }),
        Value::F32(bits) => Operand::F32(bits),
        Value::F64(bits) => Operand::F64(bits),
    }
}

fn address(a: &Addr) -> Operand {
    Operand::Address(ast::Address {
        base: Some(match &a.base {
            Base::Reg(r) => AddrBase::Reg(r.name()),
            Base::Var(s) => AddrBase::Symbol(s.clone()),
        }),
        offset: a.offset,
    })
}

/// A single register or a `{...}` vector of them.
fn regs(rs: &[Reg]) -> Operand {
    if rs.len() == 1 {
        reg(rs[0])
    } else {
        Operand::Vector(rs.iter().map(|r| reg(*r)).collect())
    }
}

fn values(vs: &[Value]) -> Operand {
    if vs.len() == 1 {
        value(vs[0])
    } else {
        Operand::Vector(vs.iter().map(|v| value(*v)).collect())
    }
}

fn mods(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn mem_mods(
    space: StateSpace,
    hints: &[CacheHint],
    width: usize,
    policy: bool,
    ty: Type,
) -> Vec<String> {
    let mut m = vec![space.name().to_string()];
    m.extend(hints.iter().map(|h| h.modifier().to_string()));
    if policy {
        m.push("L2::cache_hint".into());
    }
    if width > 1 {
        m.push(format!("v{width}"));
    }
    m.push(ty.name().into());
    m
}

impl Instr {
    /// The syntactic form of this instruction, or the statement for labels and comments.
    pub(crate) fn lower(&self) -> ast::Statement {
        let (opcode, modifiers, operands): (&str, Vec<String>, Vec<Operand>) = match &self.op {
            Op::Comment(text) => {
                return ast::Statement::Comment(ast::Comment::Line(format!(" {text}")));
            }
            Op::Label(l) => return ast::Statement::Label(l.0.clone()),
            Op::Mov { ty, dst, src } => ("mov", mods(&[ty.name()]), vec![reg(*dst), value(*src)]),
            Op::MovSpecial { dst, sreg } => (
                "mov",
                mods(&[sreg.ty().name()]),
                vec![reg(*dst), Operand::Reg(sreg.name().into())],
            ),
            Op::MovSymbol { ty, dst, symbol } => (
                "mov",
                mods(&[ty.name()]),
                vec![reg(*dst), Operand::Symbol(symbol.clone())],
            ),
            Op::Pack { ty, dst, parts } => {
                ("mov", mods(&[ty.name()]), vec![reg(*dst), regs(parts)])
            }
            Op::Unpack { ty, parts, src } => {
                ("mov", mods(&[ty.name()]), vec![regs(parts), reg(*src)])
            }
            Op::Ld {
                space,
                hints,
                ty,
                dst,
                addr,
                policy,
            } => {
                let mut ops = vec![regs(dst), address(addr)];
                if let Some(p) = policy {
                    ops.push(reg(*p));
                }
                (
                    "ld",
                    mem_mods(*space, hints, dst.len(), policy.is_some(), *ty),
                    ops,
                )
            }
            Op::St {
                space,
                hints,
                ty,
                src,
                addr,
                policy,
            } => {
                let mut ops = vec![address(addr), values(src)];
                if let Some(p) = policy {
                    ops.push(reg(*p));
                }
                (
                    "st",
                    mem_mods(*space, hints, src.len(), policy.is_some(), *ty),
                    ops,
                )
            }
            Op::CreatePolicy { evict, dst } => {
                let e = match evict {
                    L2Evict::First => "L2::evict_first",
                    L2Evict::Last => "L2::evict_last",
                    L2Evict::Normal => "L2::evict_normal",
                };
                (
                    "createpolicy",
                    mods(&["fractional", e, "b64"]),
                    vec![reg(*dst), Operand::F32(1.0f32.to_bits())],
                )
            }
            Op::CvtaToGlobal { dst, src } => (
                "cvta",
                mods(&["to", "global", "u64"]),
                vec![reg(*dst), reg(*src)],
            ),
            Op::Bin {
                op,
                ty,
                mode,
                dst,
                a,
                b,
            } => {
                let mut m = Vec::new();
                match op {
                    BinOp::Mul if ty.is_int() => m.push("lo".to_string()),
                    BinOp::MulHi => m.push("hi".to_string()),
                    _ => {}
                }
                mode.push(&mut m);
                m.push(ty.name().into());
                (op.opcode(), m, vec![reg(*dst), value(*a), value(*b)])
            }
            Op::MulWide { ty, dst, a, b } => (
                "mul",
                mods(&["wide", ty.name()]),
                vec![reg(*dst), value(*a), value(*b)],
            ),
            Op::Un {
                op,
                ty,
                mode,
                dst,
                a,
            } => {
                let mut m = Vec::new();
                mode.push(&mut m);
                m.push(ty.name().into());
                (op.opcode(), m, vec![reg(*dst), value(*a)])
            }
            Op::Mad {
                ty,
                mode,
                dst,
                a,
                b,
                c,
            } => {
                let mut m = Vec::new();
                let opcode = if ty.is_float() {
                    "fma"
                } else {
                    m.push("lo".to_string());
                    "mad"
                };
                mode.push(&mut m);
                m.push(ty.name().into());
                (opcode, m, vec![reg(*dst), value(*a), value(*b), value(*c)])
            }
            Op::MadWide { ty, dst, a, b, c } => (
                "mad",
                mods(&["wide", ty.name()]),
                vec![reg(*dst), value(*a), value(*b), value(*c)],
            ),
            Op::Dp4a {
                a_ty,
                b_ty,
                dst,
                a,
                b,
                c,
            } => (
                "dp4a",
                mods(&[a_ty.name(), b_ty.name()]),
                vec![reg(*dst), value(*a), value(*b), value(*c)],
            ),
            Op::Prmt {
                mode,
                dst,
                a,
                b,
                sel,
            } => {
                let mut m = vec!["b32".to_string()];
                if let Some(md) = mode {
                    m.push(md.modifier().into());
                }
                (
                    "prmt",
                    m,
                    vec![reg(*dst), value(*a), value(*b), value(*sel)],
                )
            }
            Op::Bfe {
                ty,
                dst,
                a,
                pos,
                len,
            } => (
                "bfe",
                mods(&[ty.name()]),
                vec![reg(*dst), value(*a), value(*pos), value(*len)],
            ),
            Op::Bfi {
                ty,
                dst,
                a,
                b,
                pos,
                len,
            } => (
                "bfi",
                mods(&[ty.name()]),
                vec![reg(*dst), value(*a), value(*b), value(*pos), value(*len)],
            ),
            Op::Lop3 { dst, a, b, c, lut } => (
                "lop3",
                mods(&["b32"]),
                vec![
                    reg(*dst),
                    value(*a),
                    value(*b),
                    value(*c),
                    Operand::Int(ast::IntLit::unsigned(*lut as u64)),
                ],
            ),
            Op::Cvt {
                dst_ty,
                src_ty,
                mode,
                dst,
                src,
            } => {
                let mut m = Vec::new();
                mode.push(&mut m);
                m.push(dst_ty.name().into());
                m.push(src_ty.name().into());
                ("cvt", m, vec![reg(*dst), value(*src)])
            }
            Op::CvtPack {
                dst_ty,
                mode,
                dst,
                hi,
                lo,
            } => {
                let mut m = Vec::new();
                mode.push(&mut m);
                m.push(dst_ty.name().into());
                m.push("f32".into());
                ("cvt", m, vec![reg(*dst), value(*hi), value(*lo)])
            }
            Op::Setp { cmp, ty, dst, a, b } => (
                "setp",
                mods(&[cmp.modifier(), ty.name()]),
                vec![reg(*dst), value(*a), value(*b)],
            ),
            Op::Selp {
                ty,
                dst,
                a,
                b,
                pred,
            } => (
                "selp",
                mods(&[ty.name()]),
                vec![reg(*dst), value(*a), value(*b), reg(*pred)],
            ),
            Op::Shfl {
                mode,
                dst,
                pred_out,
                a,
                b,
                c,
                mask,
            } => {
                let d = match pred_out {
                    Some(p) => Operand::PredPair(dst.name(), p.name()),
                    None => reg(*dst),
                };
                (
                    "shfl",
                    mods(&["sync", mode.modifier(), "b32"]),
                    vec![d, value(*a), value(*b), value(*c), value(*mask)],
                )
            }
            Op::BarSync { id } => (
                "bar",
                mods(&["sync"]),
                vec![Operand::Int(ast::IntLit::unsigned(*id as u64))],
            ),
            Op::BarWarpSync { mask } => ("bar", mods(&["warp", "sync"]), vec![value(*mask)]),
            Op::GridDepWait => ("griddepcontrol", mods(&["wait"]), Vec::new()),
            Op::Atom {
                space,
                op,
                ty,
                dst,
                addr,
                b,
                c,
            } => {
                let mut ops = vec![reg(*dst), address(addr), value(*b)];
                if let Some(c) = c {
                    ops.push(value(*c));
                }
                ("atom", mods(&[space.name(), op.modifier(), ty.name()]), ops)
            }
            Op::Red {
                space,
                op,
                ty,
                addr,
                b,
            } => (
                "red",
                mods(&[space.name(), op.modifier(), ty.name()]),
                vec![address(addr), value(*b)],
            ),
            Op::Bra { target, uni } => (
                "bra",
                if *uni { mods(&["uni"]) } else { Vec::new() },
                vec![Operand::Symbol(target.0.clone())],
            ),
            Op::Ret => ("ret", Vec::new(), Vec::new()),
            Op::Exit => ("exit", Vec::new(), Vec::new()),
        };
        ast::Statement::Instr(ast::Instruction {
            guard: self.guard.map(|(p, negated)| ast::Guard {
                negated,
                pred: p.name(),
            }),
            opcode: opcode.to_string(),
            mods: modifiers,
            operands,
        })
    }
}
