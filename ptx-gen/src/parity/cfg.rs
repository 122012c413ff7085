//! One entry lowered for evaluation: instructions with registers resolved to ids and
//! opcodes classified, basic blocks, immediate post-dominators (where the two sides of a
//! branch meet again) and natural loops.

use crate::ast::{AddrBase, FnKind, Function, Instruction, Module, Operand, Statement, Type};
use crate::parse::fast::{FInstr, FOp, LStmt, LeanEntry};

use super::graph::{FxMap, Names, Sym};

/// The source of one instruction: a parsed tree, or the text of a fast-parsed statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SrcInstr<'a> {
    Ast(&'a Instruction),
    /// The statement's text through its `;`; the real parser reads it as one instruction.
    Text(&'a str),
}

impl SrcInstr<'_> {
    fn tree(&self) -> Option<std::borrow::Cow<'_, Instruction>> {
        match self {
            SrcInstr::Ast(i) => Some(std::borrow::Cow::Borrowed(*i)),
            SrcInstr::Text(t) => crate::parse::body::instruction(t)
                .ok()
                .map(|(_, i)| std::borrow::Cow::Owned(i)),
        }
    }

    /// The instruction as `emit::instruction_text` prints it.
    pub(crate) fn text(&self) -> String {
        match self.tree() {
            Some(i) => crate::emit::instruction_text(&i),
            None => self.raw().to_string(),
        }
    }

    /// The instruction without its guard, printed.
    pub(crate) fn unguarded_text(&self) -> String {
        match self.tree() {
            Some(i) => {
                let mut i = i.into_owned();
                i.guard = None;
                crate::emit::instruction_text(&i)
            }
            None => self.raw().to_string(),
        }
    }

    fn raw(&self) -> &str {
        match self {
            SrcInstr::Ast(i) => &i.opcode,
            SrcInstr::Text(t) => t,
        }
    }
}

/// An entry to lower: a parsed function, or a fast-parsed one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry<'a> {
    Ast(&'a Function),
    Lean(&'a LeanEntry<'a>),
}

impl<'a> Entry<'a> {
    /// The function header (parameters, directives).
    pub(crate) fn header(&self) -> &'a Function {
        match self {
            Entry::Ast(f) => f,
            Entry::Lean(e) => &e.func,
        }
    }

    /// The body's variable declarations, nested scopes included.
    pub(crate) fn decls(&self) -> Vec<&'a crate::ast::VarDecl> {
        fn walk<'a>(body: &'a [Statement], out: &mut Vec<&'a crate::ast::VarDecl>) {
            for s in body {
                match s {
                    Statement::Decl(d) => out.push(d),
                    Statement::Block(inner) => walk(inner, out),
                    _ => {}
                }
            }
        }
        match self {
            Entry::Ast(f) => {
                let mut out = Vec::new();
                walk(f.body.as_deref().unwrap_or(&[]), &mut out);
                out
            }
            Entry::Lean(e) => e.decls.iter().collect(),
        }
    }
}

/// Opcodes that constant folding tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FoldOp {
    And,
    Or,
    Xor,
    Not,
    Shr,
    Min,
    Max,
    Rem,
    Div,
    Other,
}

impl FoldOp {
    fn of(op: &str) -> FoldOp {
        match op {
            "and" => FoldOp::And,
            "or" => FoldOp::Or,
            "xor" => FoldOp::Xor,
            "not" => FoldOp::Not,
            "shr" => FoldOp::Shr,
            "min" => FoldOp::Min,
            "max" => FoldOp::Max,
            "rem" => FoldOp::Rem,
            "div" => FoldOp::Div,
            _ => FoldOp::Other,
        }
    }
}

/// The opcode classes evaluation treats specially; the rest are [`Opc::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opc {
    Ld,
    St,
    Red,
    Atom,
    /// A CTA barrier (`bar.sync`, `barrier.sync`, `bar.red`, `bar.arrive`).
    Bar,
    Mov,
    Cvt,
    Add,
    Sub,
    Mul,
    Mad,
    Shl,
    Neg,
    Setp,
    Selp,
    Bra,
    Ret,
    Call,
    /// No effect on values or memory (`bar.warp.sync`, `membar`, `prefetch`).
    Nop,
    Other,
}

/// Where a memory instruction points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mem {
    /// `.global`, `.const` or generic: read-only inputs and write-only outputs.
    Global,
    Shared,
    Local,
    Param,
}

/// A run of operands in [`Program::arena`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

/// An operand with registers resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LOp {
    Reg(u32),
    Special(Sym),
    Sym(Sym),
    Int(i64),
    F32(u32),
    F64(u64),
    Float(Sym),
    Vec(Span),
    Addr {
        base: Base,
        off: i64,
    },
    /// `!x`, with `x` at this index of the arena.
    Not(u32),
    Pair(u32, u32),
    Sink,
    Unsupported,
}

/// The base of an address operand.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Base {
    None,
    Reg(u32),
    Special(Sym),
    Sym(Sym),
}

/// The non-type modifiers of an instruction, as far as evaluation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Only type modifiers (`add.u64`).
    Plain,
    /// `mul.lo`, `mad.lo`.
    Lo,
    /// `mul.wide`, `mad.wide`.
    Wide,
    /// One comparison (`setp.lt.u32`).
    Cmp(Cmp),
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
}

impl Cmp {
    fn from_name(s: &str) -> Option<Cmp> {
        Some(match s {
            "eq" => Cmp::Eq,
            "ne" => Cmp::Ne,
            "lt" => Cmp::Lt,
            "le" => Cmp::Le,
            "gt" => Cmp::Gt,
            "ge" => Cmp::Ge,
            "lo" => Cmp::Lo,
            "ls" => Cmp::Ls,
            "hi" => Cmp::Hi,
            "hs" => Cmp::Hs,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LInstr {
    pub opc: Opc,
    /// Opcode and modifiers: `add.rn.f32`.
    pub key: Sym,
    /// The last type modifier.
    pub ty: Option<Type>,
    /// The first type modifier (the destination type of `cvt`).
    pub ty_first: Option<Type>,
    pub mem: Mem,
    pub shape: Shape,
    /// `bar.red`.
    pub red: bool,
    /// The opcode, for constant folding.
    pub fop: FoldOp,
    /// `(negated, register)`.
    pub guard: Option<(bool, u32)>,
    pub ops: Span,
}

/// A natural loop.
#[derive(Debug, Clone)]
pub(crate) struct LoopInfo {
    pub header: usize,
    /// Per block: inside the loop (inner loops included).
    pub body: Vec<bool>,
    /// The one block control reaches when the loop ends (`None`: it only ends by `ret`).
    pub exit: Option<usize>,
    /// Registers (and memory-chain slots) written inside, sorted.
    pub defs: Vec<u32>,
}

/// An entry ready for evaluation.
pub(crate) struct Program<'a> {
    pub src: Vec<SrcInstr<'a>>,
    pub code: Vec<LInstr>,
    /// Every operand of every instruction.
    pub arena: Vec<LOp>,
    pub reg_names: Vec<&'a str>,
    /// Memory-chain slots in the register file: shared, then local.
    pub shared_slot: u32,
    pub local_slot: u32,
    pub blocks: Vec<(usize, usize)>,
    /// Per block ending in `bra`: the target block.
    pub target: Vec<Option<usize>>,
    pub ipdom: Vec<usize>,
    pub loops: Vec<LoopInfo>,
    pub header_of: Vec<Option<usize>>,
}

impl Program<'_> {
    pub(crate) fn ops(&self, i: &LInstr) -> &[LOp] {
        self.span(i.ops)
    }

    pub(crate) fn span(&self, s: Span) -> &[LOp] {
        &self.arena[s.start as usize..(s.start + s.len) as usize]
    }

    pub(crate) fn exit(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn nslots(&self) -> usize {
        self.local_slot as usize + 1
    }
}

/// The entry named `name` of `m`.
pub(crate) fn find_entry<'m>(m: &'m Module, name: &str) -> Result<&'m Function, String> {
    let entries = || {
        m.functions()
            .filter(|f| f.kind == FnKind::Entry && f.body.is_some())
    };
    match entries().find(|f| f.name == name) {
        Some(f) => Ok(f),
        None => {
            let names: Vec<&str> = entries().map(|f| f.name.as_str()).collect();
            Err(format!(
                "no `.entry {name}` in the PTX (entries: {})",
                names.join(", ")
            ))
        }
    }
}

const SPECIALS: &[&str] = &[
    "%tid.x",
    "%tid.y",
    "%tid.z",
    "%ntid.x",
    "%ntid.y",
    "%ntid.z",
    "%ctaid.x",
    "%ctaid.y",
    "%ctaid.z",
    "%nctaid.x",
    "%nctaid.y",
    "%nctaid.z",
    "%laneid",
    "%warpid",
    "%nwarpid",
    "%smid",
    "%nsmid",
    "%gridid",
    "%lanemask_eq",
    "%lanemask_le",
    "%lanemask_lt",
    "%lanemask_ge",
    "%lanemask_gt",
    "%clock",
    "%clock_hi",
    "%clock64",
    "%globaltimer",
    "%globaltimer_lo",
    "%globaltimer_hi",
    "%dynamic_smem_size",
    "%total_smem_size",
];

pub(crate) fn is_special(name: &str) -> bool {
    // Cheap filter first: register names (`%r`, `%rd`, `%f`, `%p`, `%rs`, `%h`) never
    // start like a special register.
    matches!(
        name.as_bytes().get(1),
        Some(b't' | b'n' | b'c' | b'l' | b'w' | b's' | b'g' | b'd')
    ) && SPECIALS.contains(&name)
}

/// What lowering derives from an instruction's opcode and modifiers (computed once per
/// distinct `opcode.mods` key).
#[derive(Debug, Clone, Copy)]
struct Template {
    opc: Opc,
    ty: Option<Type>,
    ty_first: Option<Type>,
    mem: Mem,
    shape: Shape,
    red: bool,
    fop: FoldOp,
}

/// The template of a fast-parsed `opcode.mod.mod...` key (the parser's modifiers hold no
/// `.`, so the key splits back into the opcode and its modifiers).
fn key_template(key: &str) -> Template {
    let mut parts = key.split('.');
    let op = parts.next().unwrap_or("");
    let mods: Vec<&str> = parts.collect();
    template(op, &mods)
}

fn template(op: &str, mods: &[&str]) -> Template {
    let has_mod = |m: &str| mods.contains(&m);
    let opc = match op {
        "ld" | "ldu" => Opc::Ld,
        "st" => Opc::St,
        "red" => Opc::Red,
        "atom" => Opc::Atom,
        "bar" | "barrier" if has_mod("warp") => Opc::Nop,
        "bar" | "barrier" => Opc::Bar,
        "mov" => Opc::Mov,
        "cvt" => Opc::Cvt,
        "add" => Opc::Add,
        "sub" => Opc::Sub,
        "mul" => Opc::Mul,
        "mad" => Opc::Mad,
        "shl" => Opc::Shl,
        "neg" => Opc::Neg,
        "setp" => Opc::Setp,
        "selp" => Opc::Selp,
        "bra" => Opc::Bra,
        "ret" | "exit" | "trap" => Opc::Ret,
        "call" | "brx" => Opc::Call,
        "membar" | "fence" | "prefetch" | "prefetchu" | "nanosleep" | "pmevent"
        | "griddepcontrol" | "applypriority" | "discard" => Opc::Nop,
        _ => Opc::Other,
    };
    let mem = if has_mod("shared") || mods.iter().any(|m| m.starts_with("shared::")) {
        Mem::Shared
    } else if has_mod("local") {
        Mem::Local
    } else if has_mod("param") {
        Mem::Param
    } else {
        Mem::Global
    };
    let mut flags = mods.iter().filter(|m| Type::from_name(m).is_none());
    let shape = match (flags.next().copied(), flags.next()) {
        (None, _) => Shape::Plain,
        (Some("lo"), None) => Shape::Lo,
        (Some("wide"), None) => Shape::Wide,
        (Some(c), None) if opc == Opc::Setp => Cmp::from_name(c).map_or(Shape::Other, Shape::Cmp),
        _ => Shape::Other,
    };
    Template {
        opc,
        ty: mods.iter().rev().find_map(|m| Type::from_name(m)),
        ty_first: mods.iter().find_map(|m| Type::from_name(m)),
        mem,
        shape,
        red: has_mod("red"),
        fop: FoldOp::of(op),
    }
}

struct Lower<'a, 'n> {
    names: &'n mut Names,
    buf: String,
    /// `%rd` -> register id by number (the usual `%prefix<N>` names, looked up without
    /// hashing).
    numbered: Vec<(u64, &'a str, Vec<u32>)>,
    regs: FxMap<&'a str, u32>,
    reg_names: Vec<&'a str>,
    arena: Vec<LOp>,
    tmp: Vec<LOp>,
    templates: FxMap<Sym, Template>,
}

impl<'a> Lower<'a, '_> {
    fn reg(&mut self, name: &'a str) -> u32 {
        let b = name.as_bytes();
        // `%prefix<N>` with N of 1 to 6 digits, no leading zero: looked up by number.
        let mut pre_len = b.len();
        let mut n = 0usize;
        let mut scale = 1usize;
        while pre_len > 0 && b[pre_len - 1].is_ascii_digit() && b.len() - pre_len < 7 {
            n += usize::from(b[pre_len - 1] - b'0') * scale;
            scale *= 10;
            pre_len -= 1;
        }
        let digits = b.len() - pre_len;
        let more = pre_len > 0 && b[pre_len - 1].is_ascii_digit();
        let plain = (1..=6).contains(&digits) && !more && !(digits > 1 && b[pre_len] == b'0');
        if plain {
            let pre = &name[..pre_len];
            // Prefixes of up to 7 bytes compare as one word.
            let key = if pre_len <= 7 {
                let mut k = pre_len as u64;
                for (i, &c) in b[..pre_len].iter().enumerate() {
                    k |= u64::from(c) << (8 * (i + 1));
                }
                k
            } else {
                u64::MAX
            };
            let slot = match self
                .numbered
                .iter()
                .position(|(k, p, _)| *k == key && (key != u64::MAX || *p == pre))
            {
                Some(k) => k,
                None => {
                    self.numbered.push((key, pre, Vec::new()));
                    self.numbered.len() - 1
                }
            };
            let next = self.reg_names.len() as u32;
            let tbl = &mut self.numbered[slot].2;
            if tbl.len() <= n {
                tbl.resize(n + 1, u32::MAX);
            }
            if tbl[n] != u32::MAX {
                return tbl[n];
            }
            tbl[n] = next;
            self.reg_names.push(name);
            return next;
        }
        if let Some(&r) = self.regs.get(name) {
            return r;
        }
        let r = self.reg_names.len() as u32;
        self.reg_names.push(name);
        self.regs.insert(name, r);
        r
    }

    fn operand(&mut self, op: &'a Operand) -> LOp {
        match op {
            Operand::Reg(r) if is_special(r) => LOp::Special(self.names.id(r)),
            Operand::Reg(r) => LOp::Reg(self.reg(r)),
            Operand::Symbol(s) if s == "_" => LOp::Sink,
            Operand::Symbol(s) => LOp::Sym(self.names.id(s)),
            Operand::Int(lit) => {
                let v = lit.value();
                // Values past i64 keep their 64-bit pattern.
                LOp::Int(if v > i64::MAX as i128 {
                    v as u64 as i64
                } else {
                    v as i64
                })
            }
            Operand::F32(b) => LOp::F32(*b),
            Operand::F64(b) => LOp::F64(*b),
            Operand::FloatDec(s) => LOp::Float(self.names.id(s)),
            Operand::Vector(items) => {
                let lowered: Vec<LOp> = items.iter().map(|o| self.operand(o)).collect();
                let start = self.arena.len() as u32;
                self.arena.extend(lowered);
                LOp::Vec(Span {
                    start,
                    len: items.len() as u32,
                })
            }
            Operand::Address(a) => {
                let base = match &a.base {
                    None => Base::None,
                    Some(AddrBase::Reg(r)) if is_special(r) => Base::Special(self.names.id(r)),
                    Some(AddrBase::Reg(r)) => Base::Reg(self.reg(r)),
                    Some(AddrBase::Symbol(s)) => Base::Sym(self.names.id(s)),
                };
                LOp::Addr {
                    base,
                    off: a.offset,
                }
            }
            Operand::Not(inner) => {
                let x = self.operand(inner);
                self.arena.push(x);
                LOp::Not(self.arena.len() as u32 - 1)
            }
            Operand::PredPair(a, b) => LOp::Pair(self.reg(a), self.reg(b)),
            Operand::Tuple(_) => LOp::Unsupported,
        }
    }

    /// The template of `key`, computed by `of` the first time the key is met.
    fn template(&mut self, key: Sym, of: impl FnOnce() -> Template) -> Template {
        match self.templates.get(&key) {
            Some(t) => *t,
            None => {
                let t = of();
                self.templates.insert(key, t);
                t
            }
        }
    }

    fn finish(&mut self, t: Template, key: Sym, guard: Option<(bool, u32)>) -> LInstr {
        let ops = Span {
            start: self.arena.len() as u32,
            len: self.tmp.len() as u32,
        };
        // A few operands: element by element beats a call to `memcpy`.
        for &x in &self.tmp {
            self.arena.push(x);
        }
        LInstr {
            opc: t.opc,
            key,
            ty: t.ty,
            ty_first: t.ty_first,
            mem: t.mem,
            shape: t.shape,
            red: t.red,
            fop: t.fop,
            guard,
            ops,
        }
    }

    fn instr(&mut self, i: &'a Instruction) -> LInstr {
        self.buf.clear();
        self.buf.push_str(&i.opcode);
        for m in &i.mods {
            self.buf.push('.');
            self.buf.push_str(m);
        }
        let key = self.names.id(&self.buf);
        let t = self.template(key, || {
            let mods: Vec<&str> = i.mods.iter().map(String::as_str).collect();
            template(&i.opcode, &mods)
        });
        let guard = i.guard.as_ref().map(|g| (g.negated, self.reg(&g.pred)));
        let mut tmp = std::mem::take(&mut self.tmp);
        tmp.clear();
        for o in &i.operands {
            let x = self.operand(o);
            tmp.push(x);
        }
        self.tmp = tmp;
        self.finish(t, key, guard)
    }

    /// A fast-parsed operand, lowered exactly as [`Self::operand`] lowers the tree the real
    /// parser makes of the same text.
    fn fop(&mut self, o: FOp<'a>, ops: &[FOp<'a>]) -> LOp {
        match o {
            FOp::Name(r) if r.starts_with('%') => {
                if is_special(r) {
                    LOp::Special(self.names.id(r))
                } else {
                    LOp::Reg(self.reg(r))
                }
            }
            FOp::Name("_") => LOp::Sink,
            FOp::Name(s) => LOp::Sym(self.names.id(s)),
            FOp::Int(lit) => {
                let v = lit.value();
                // Values past i64 keep their 64-bit pattern.
                LOp::Int(if v > i64::MAX as i128 {
                    v as u64 as i64
                } else {
                    v as i64
                })
            }
            FOp::F32(b) => LOp::F32(b),
            FOp::F64(b) => LOp::F64(b),
            FOp::Vec(start, len) => {
                // Items are names and numbers: lowering them adds nothing to the arena.
                let at = self.arena.len() as u32;
                for k in start..start + len {
                    let x = self.fop(ops[k as usize], ops);
                    self.arena.push(x);
                }
                LOp::Vec(Span { start: at, len })
            }
            FOp::Addr(base, off) => {
                let base = match base {
                    None => Base::None,
                    Some(r) if r.starts_with('%') => {
                        if is_special(r) {
                            Base::Special(self.names.id(r))
                        } else {
                            Base::Reg(self.reg(r))
                        }
                    }
                    Some(s) => Base::Sym(self.names.id(s)),
                };
                LOp::Addr { base, off }
            }
            FOp::Pair(a, b) => LOp::Pair(self.reg(a), self.reg(b)),
        }
    }

    fn lean_instr(&mut self, i: &FInstr<'a>, ops: &[FOp<'a>]) -> LInstr {
        let key = self.names.id(i.key);
        let t = self.template(key, || key_template(i.key));
        let guard = i.guard.map(|(negated, p)| (negated, self.reg(p)));
        let mut tmp = std::mem::take(&mut self.tmp);
        tmp.clear();
        let (start, len) = (i.ops.0 as usize, i.ops.1 as usize);
        for &o in &ops[start..start + len] {
            let x = self.fop(o, ops);
            tmp.push(x);
        }
        self.tmp = tmp;
        self.finish(t, key, guard)
    }
}

/// Registers (and chain slots) an instruction writes.
pub(crate) fn defs_of(
    arena: &[LOp],
    i: &LInstr,
    shared_slot: u32,
    local_slot: u32,
    out: &mut Vec<u32>,
) {
    let first = arena.get(i.ops.start as usize).filter(|_| i.ops.len > 0);
    let chain = |out: &mut Vec<u32>| match i.mem {
        Mem::Shared => out.push(shared_slot),
        Mem::Local => out.push(local_slot),
        _ => {}
    };
    match i.opc {
        Opc::St | Opc::Red => chain(out),
        Opc::Bar => {
            out.push(shared_slot);
            if i.red {
                dest_regs(arena, first, out);
            }
        }
        Opc::Atom => {
            chain(out);
            dest_regs(arena, first, out);
        }
        Opc::Bra | Opc::Ret | Opc::Nop | Opc::Call => {}
        _ => dest_regs(arena, first, out),
    }
}

fn dest_regs(arena: &[LOp], op: Option<&LOp>, out: &mut Vec<u32>) {
    match op {
        Some(LOp::Reg(r)) => out.push(*r),
        Some(LOp::Pair(a, b)) => out.extend([*a, *b]),
        Some(LOp::Vec(s)) => {
            for it in &arena[s.start as usize..(s.start + s.len) as usize] {
                if let LOp::Reg(r) = it {
                    out.push(*r);
                }
            }
        }
        _ => {}
    }
}

/// Lowers `entry` and analyses its control flow.
pub(crate) fn lower<'a>(entry: Entry<'a>, names: &mut Names) -> Result<Program<'a>, String> {
    let mut src: Vec<SrcInstr<'a>> = Vec::new();
    let mut labels: FxMap<&'a str, usize> = FxMap::default();
    let mut lw = Lower {
        names,
        buf: String::new(),
        numbered: Vec::new(),
        regs: FxMap::default(),
        reg_names: Vec::new(),
        arena: Vec::new(),
        tmp: Vec::new(),
        templates: FxMap::default(),
    };
    let mut code: Vec<LInstr> = Vec::new();
    match entry {
        Entry::Ast(f) => {
            for s in f.statements() {
                match s {
                    Statement::Label(l) => {
                        labels.insert(l.as_str(), src.len());
                    }
                    Statement::Instr(i) => src.push(SrcInstr::Ast(i)),
                    _ => {}
                }
            }
            lw.arena.reserve(src.len() * 3);
            code.reserve(src.len());
            for i in &src {
                if let SrcInstr::Ast(i) = i {
                    code.push(lw.instr(i));
                }
            }
        }
        Entry::Lean(e) => {
            src.reserve(e.stmts.len());
            code.reserve(e.stmts.len());
            lw.arena.reserve(e.ops.len() + e.stmts.len());
            for s in &e.stmts {
                match s {
                    LStmt::Label(l) => {
                        labels.insert(*l, src.len());
                    }
                    LStmt::OwnedLabel(k) => {
                        labels.insert(e.owned_labels[*k as usize].as_str(), src.len());
                    }
                    LStmt::Instr(i) => {
                        src.push(SrcInstr::Text(i.text));
                        code.push(lw.lean_instr(i, &e.ops));
                    }
                    LStmt::Owned(k) => {
                        let i = &e.owned[*k as usize];
                        src.push(SrcInstr::Ast(i));
                        code.push(lw.instr(i));
                    }
                }
            }
        }
    }
    let Lower {
        arena,
        reg_names,
        names,
        ..
    } = lw;
    let mut reg_names = reg_names;
    let shared_slot = reg_names.len() as u32;
    reg_names.push("<shared memory>");
    let local_slot = reg_names.len() as u32;
    reg_names.push("<local memory>");
    if let Some(k) = code.iter().position(|i| i.opc == Opc::Call) {
        return Err(format!(
            "`{}`: calls and indirect branches are not analysed",
            src[k].text()
        ));
    }

    // Basic blocks.
    let n = code.len();
    let mut leader = vec![false; n + 1];
    leader[0] = true;
    for &k in labels.values() {
        leader[k.min(n)] = true;
    }
    for (k, i) in code.iter().enumerate() {
        if matches!(i.opc, Opc::Bra | Opc::Ret) {
            leader[k + 1] = true;
        }
    }
    let starts: Vec<usize> = (0..n).filter(|&k| leader[k]).collect();
    let blocks: Vec<(usize, usize)> = starts
        .iter()
        .enumerate()
        .map(|(b, &s)| (s, starts.get(b + 1).copied().unwrap_or(n)))
        .collect();
    let mut block_at = vec![0usize; n + 1];
    for (b, &(s, e)) in blocks.iter().enumerate() {
        block_at[s..e].iter_mut().for_each(|x| *x = b);
    }
    let exit = blocks.len();
    block_at[n] = exit;
    let mut label_block: FxMap<&str, usize> = FxMap::default();
    for (l, &k) in &labels {
        label_block.insert(l, block_at[k.min(n)]);
    }
    let mut succs: Vec<Vec<usize>> = Vec::with_capacity(exit);
    let mut target = vec![None; exit];
    for (b, &(_, e)) in blocks.iter().enumerate() {
        let last = &code[e - 1];
        let fall = block_at[e];
        let mut next = match last.opc {
            Opc::Bra => {
                // The first operand, when it is a symbol (`_` lowers to a sink).
                let first = (last.ops.len > 0).then(|| arena[last.ops.start as usize]);
                let dest = match first {
                    Some(LOp::Sym(l)) => label_block.get(names.str(l)).copied(),
                    Some(LOp::Sink) => label_block.get("_").copied(),
                    _ => None,
                };
                let Some(t) = dest else {
                    return Err(format!(
                        "`{}`: branch target is not a label of the entry",
                        src[e - 1].text()
                    ));
                };
                target[b] = Some(t);
                vec![t]
            }
            Opc::Ret => vec![exit],
            _ => vec![fall],
        };
        if matches!(last.opc, Opc::Bra | Opc::Ret) && last.guard.is_some() {
            next.push(fall);
        }
        next.sort_unstable();
        next.dedup();
        succs.push(next);
    }
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); exit + 1];
    for (b, ss) in succs.iter().enumerate() {
        for &s in ss {
            preds[s].push(b);
        }
    }
    // Blocks that cannot reach the exit (endless loops) get an edge to it, so that every
    // block has a post-dominator.
    let mut reaches = vec![false; exit + 1];
    let mut stack = vec![exit];
    reaches[exit] = true;
    while let Some(x) = stack.pop() {
        for &p in &preds[x] {
            if !reaches[p] {
                reaches[p] = true;
                stack.push(p);
            }
        }
    }
    for b in 0..exit {
        if !reaches[b] {
            succs[b].push(exit);
            preds[exit].push(b);
        }
    }
    let mut fsuccs = succs.clone();
    fsuccs.push(Vec::new());
    let ipdom = dominators(exit + 1, exit, &preds, &fsuccs);
    let (idom, po) = {
        let d = dominators(exit + 1, 0, &fsuccs, &preds);
        let po = postorder(exit + 1, 0, &fsuccs);
        (d, po)
    };

    // Natural loops from back edges; a retreating edge that is not one is irreducible.
    let mut by_header: FxMap<usize, Vec<usize>> = FxMap::default();
    for (u, ss) in succs.iter().enumerate() {
        if idom[u] == UNDEF {
            continue;
        }
        for &h in ss {
            if h == exit || po[h] < po[u] {
                continue;
            }
            if !dominates(&idom, h, u) {
                let at = src[blocks[u].1 - 1].text();
                return Err(format!("`{at}`: irreducible control flow is not analysed"));
            }
            by_header.entry(h).or_default().push(u);
        }
    }
    let mut headers: Vec<usize> = by_header.keys().copied().collect();
    headers.sort_unstable();
    let mut loops = Vec::new();
    let mut header_of = vec![None; exit];
    for h in headers {
        let mut body = vec![false; exit];
        body[h] = true;
        let mut stack: Vec<usize> = by_header[&h].clone();
        while let Some(x) = stack.pop() {
            if !body[x] {
                body[x] = true;
                stack.extend(preds[x].iter().copied().filter(|&p| p < exit));
            }
        }
        let mut exits: Vec<usize> = (0..exit)
            .filter(|&b| body[b])
            .flat_map(|b| succs[b].iter().copied())
            .filter(|&s| s != exit && !body[s])
            .collect();
        exits.sort_unstable();
        exits.dedup();
        if exits.len() > 1 {
            let at = src[blocks[h].0].text();
            return Err(format!(
                "the loop starting at `{at}` has {} exits; only loops with one exit are analysed",
                exits.len()
            ));
        }
        let mut defs = Vec::new();
        for b in (0..exit).filter(|&b| body[b]) {
            for i in &code[blocks[b].0..blocks[b].1] {
                defs_of(&arena, i, shared_slot, local_slot, &mut defs);
            }
        }
        defs.sort_unstable();
        defs.dedup();
        header_of[h] = Some(loops.len());
        loops.push(LoopInfo {
            header: h,
            body,
            exit: exits.first().copied(),
            defs,
        });
    }

    Ok(Program {
        src,
        code,
        arena,
        reg_names,
        shared_slot,
        local_slot,
        blocks,
        target,
        ipdom,
        loops,
        header_of,
    })
}

const UNDEF: usize = usize::MAX;

fn postorder(n: usize, root: usize, succ: &[Vec<usize>]) -> Vec<usize> {
    let mut po = vec![UNDEF; n];
    let mut seen = vec![false; n];
    let mut next = 0;
    let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
    seen[root] = true;
    while let Some(&mut (x, ref mut k)) = stack.last_mut() {
        if let Some(&s) = succ[x].get(*k) {
            *k += 1;
            if !seen[s] {
                seen[s] = true;
                stack.push((s, 0));
            }
        } else {
            po[x] = next;
            next += 1;
            stack.pop();
        }
    }
    po
}

/// Immediate dominators (Cooper, Harvey, Kennedy) of the graph given by `succ`/`pred`
/// from `root`; `UNDEF` for unreachable nodes.
fn dominators(n: usize, root: usize, succ: &[Vec<usize>], pred: &[Vec<usize>]) -> Vec<usize> {
    let po = postorder(n, root, succ);
    let mut order: Vec<usize> = (0..n).filter(|&x| po[x] != UNDEF).collect();
    order.sort_unstable_by_key(|&x| std::cmp::Reverse(po[x]));
    let mut idom = vec![UNDEF; n];
    idom[root] = root;
    let mut changed = true;
    while changed {
        changed = false;
        for &b in order.iter().skip(1) {
            let mut new = UNDEF;
            for &p in &pred[b] {
                if p >= n || idom[p] == UNDEF {
                    continue;
                }
                new = if new == UNDEF {
                    p
                } else {
                    let (mut a, mut c) = (p, new);
                    while a != c {
                        while po[a] < po[c] {
                            a = idom[a];
                        }
                        while po[c] < po[a] {
                            c = idom[c];
                        }
                    }
                    a
                };
            }
            if new != UNDEF && idom[b] != new {
                idom[b] = new;
                changed = true;
            }
        }
    }
    idom
}

fn dominates(idom: &[usize], a: usize, mut b: usize) -> bool {
    loop {
        if a == b {
            return true;
        }
        let up = idom[b];
        if up == UNDEF || up == b {
            return false;
        }
        b = up;
    }
}
