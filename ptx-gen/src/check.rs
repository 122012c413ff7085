//! Static checks on parsed PTX: the third rung of the verification ladder.
//!
//! Each check catches a class of bug that ptxas either accepts silently or reports far from
//! its cause, and that our generators could introduce:
//!
//! 1. [`CheckKind::UndeclaredRegister`], [`CheckKind::OperandType`]: every register is
//!    declared in scope (or is a special register) and its declared type fits the
//!    instruction's operand type ([`Type::fits`], with the relaxed rule PTX allows for the
//!    data operands of `ld`/`st`/`cvt`).
//! 2. [`CheckKind::BranchTarget`]: every `bra`/`brx.idx` target is a label of the function
//!    and every `call` target is a function of the module.
//! 3. [`CheckKind::DivergentBarrier`]: no CTA barrier where only some threads can reach it
//!    (the `divergence` module documents the analysis and its limits).
//! 4. [`CheckKind::SharedMemory`]: static shared memory of an entry fits in 48 KiB.
//! 5. [`CheckKind::UnusedParam`]: every `.entry` parameter is read.
//! 6. [`CheckKind::FallsOffEnd`]: no path runs off the end of a body.
//!
//! Findings are values, not errors: callers decide which checks gate what. Nothing here
//! panics on any tree, however malformed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use crate::ast::{
    AddrBase, DeclSuffix, FnKind, Function, Initializer, Instruction, Item, Linkage, Module,
    Operand, StateSpace, Statement, Type, TypeClass, VarDecl,
};
use crate::emit::instruction_text;

/// The static shared memory one CTA may declare without opting in to more (48 KiB on every
/// architecture we target).
pub const MAX_STATIC_SHARED_BYTES: u64 = 48 * 1024;

/// Which check a finding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckKind {
    /// A register is used but not declared in scope.
    UndeclaredRegister,
    /// A register's declared type does not fit the instruction.
    OperandType,
    /// A branch or call target does not exist.
    BranchTarget,
    /// A CTA barrier that only some threads may reach.
    DivergentBarrier,
    /// Static shared memory over [`MAX_STATIC_SHARED_BYTES`].
    SharedMemory,
    /// An `.entry` parameter that is never read.
    UnusedParam,
    /// A path that runs off the end of the body.
    FallsOffEnd,
}

impl CheckKind {
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::UndeclaredRegister => "undeclared-register",
            CheckKind::OperandType => "operand-type",
            CheckKind::BranchTarget => "branch-target",
            CheckKind::DivergentBarrier => "divergent-barrier",
            CheckKind::SharedMemory => "shared-memory",
            CheckKind::UnusedParam => "unused-param",
            CheckKind::FallsOffEnd => "falls-off-end",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One problem found in one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub function: String,
    pub check: CheckKind,
    pub message: String,
    /// The instruction it is about, as printed by `emit::instruction_text`.
    pub instruction: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.function, self.check, self.message)?;
        if let Some(i) = &self.instruction {
            write!(f, " in `{i}`")?;
        }
        Ok(())
    }
}

/// Runs every check on every function of the module that has a body.
pub fn check_module(m: &Module) -> Vec<Finding> {
    m.functions().flat_map(|f| check_function(m, f)).collect()
}

/// Runs every check on one function of `m` (the module resolves call targets and
/// module-scope shared variables). A prototype has nothing to check.
pub fn check_function(m: &Module, f: &Function) -> Vec<Finding> {
    let Some(stmts) = &f.body else {
        return Vec::new();
    };
    let mut body = body::Body::new(f, stmts);
    let mut out = std::mem::take(&mut body.findings);
    out.extend(branch_targets(m, &body));
    out.extend(divergence::divergent_barriers(m, &body));
    if f.kind == FnKind::Entry {
        out.extend(shared_memory(m, f));
        out.extend(unused_params(f, &body));
    }
    out.extend(falls_off_end(&body));
    out
}

fn finding(f: &str, check: CheckKind, message: String, instr: Option<&Instruction>) -> Finding {
    Finding {
        function: f.to_string(),
        check,
        message,
        instruction: instr.map(instruction_text),
    }
}

/// Special registers and the type they read as (PTX ISA, "Special Registers"). `%tid`,
/// `%ntid`, `%ctaid`, `%nctaid` and the cluster ids are read one `.x/.y/.z` component at
/// a time.
fn special_register(name: &str) -> Option<Type> {
    const DIMS: &[&str] = &[
        "%tid",
        "%ntid",
        "%ctaid",
        "%nctaid",
        "%clusterid",
        "%nclusterid",
        "%cluster_ctaid",
        "%cluster_nctaid",
    ];
    const U32: &[&str] = &[
        "%laneid",
        "%warpid",
        "%nwarpid",
        "%smid",
        "%nsmid",
        "%clock",
        "%clock_hi",
        "%lanemask_eq",
        "%lanemask_le",
        "%lanemask_lt",
        "%lanemask_ge",
        "%lanemask_gt",
        "%dynamic_smem_size",
        "%total_smem_size",
        "%aggr_smem_size",
        "%cluster_ctarank",
        "%cluster_nctarank",
        "%globaltimer_lo",
        "%globaltimer_hi",
        "%reserved_smem_offset_begin",
        "%reserved_smem_offset_end",
        "%reserved_smem_offset_cap",
    ];
    const U64: &[&str] = &["%gridid", "%clock64", "%globaltimer", "%current_graph_exec"];
    if let Some((base, comp)) = name.split_once('.') {
        return (DIMS.contains(&base) && matches!(comp, "x" | "y" | "z" | "w"))
            .then_some(Type::U32);
    }
    if DIMS.contains(&name) || U32.contains(&name) {
        return Some(Type::U32);
    }
    if U64.contains(&name) {
        return Some(Type::U64);
    }
    if name == "%is_explicit_cluster" {
        return Some(Type::Pred);
    }
    let numbered = |prefix: &str, max: u32| {
        name.strip_prefix(prefix)
            .and_then(decimal_index)
            .is_some_and(|k| k < u64::from(max))
    };
    if numbered("%envreg", 32) {
        return Some(Type::B32);
    }
    if let Some(pm) = name.strip_suffix("_64") {
        if pm
            .strip_prefix("%pm")
            .and_then(decimal_index)
            .is_some_and(|k| k < 8)
        {
            return Some(Type::U64);
        }
    }
    if numbered("%pm", 8) {
        return Some(Type::U32);
    }
    None
}

/// Special registers whose value differs between the threads of one CTA: the sources of
/// thread-dependence for the divergence analysis.
fn is_thread_dependent_special(name: &str) -> bool {
    let base = name.split_once('.').map_or(name, |(b, _)| b);
    matches!(
        base,
        "%tid" | "%laneid" | "%warpid" | "%clock" | "%clock_hi" | "%clock64"
    ) || base.starts_with("%lanemask_")
        || base.starts_with("%globaltimer")
}

/// `12` -> 12; no sign, no leading zero (so `%r012` is not `%r12`).
fn decimal_index(digits: &str) -> Option<u64> {
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if ok {
        digits.parse().ok()
    } else {
        None
    }
}

/// Register declarations in scope and the register operands of each instruction.
mod body {
    use super::*;

    /// Where a register was declared: the block scope (0 for the function's own), or one
    /// of the markers below. Two registers are the same only if name and scope agree, so an
    /// inline-asm block's `p` is not the `p` of another block.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub(super) struct RegId {
        pub scope: usize,
        pub name: String,
    }

    pub(super) const SPECIAL: usize = usize::MAX;
    pub(super) const UNDECLARED: usize = usize::MAX - 1;

    #[derive(Debug, Clone, Copy)]
    struct RegDecl {
        ty: Type,
        scope: usize,
    }

    #[derive(Default)]
    struct Scope {
        id: usize,
        names: HashMap<String, RegDecl>,
        /// `%r<N>` declares `%r0` .. `%r{N-1}`.
        ranges: Vec<(String, u32, RegDecl)>,
    }

    #[derive(Default)]
    struct Scopes {
        stack: Vec<Scope>,
        next_id: usize,
    }

    impl Scopes {
        fn push(&mut self) {
            let id = self.next_id;
            self.next_id += 1;
            self.stack.push(Scope {
                id,
                ..Scope::default()
            });
        }

        fn declare(&mut self, d: &VarDecl) {
            if d.space != StateSpace::Reg {
                return;
            }
            let Some(scope) = self.stack.last_mut() else {
                return;
            };
            let decl = RegDecl {
                ty: d.ty,
                scope: scope.id,
            };
            for n in &d.names {
                match n.suffix {
                    DeclSuffix::Range(count) => scope.ranges.push((n.name.clone(), count, decl)),
                    _ => {
                        scope.names.insert(n.name.clone(), decl);
                    }
                }
            }
        }

        fn declare_param(&mut self, name: &str, ty: Type) {
            if let Some(scope) = self.stack.last_mut() {
                let decl = RegDecl {
                    ty,
                    scope: scope.id,
                };
                scope.names.insert(name.to_string(), decl);
            }
        }

        /// The innermost declaration of `name`; `%v.x` finds the vector register `%v`.
        fn lookup(&self, name: &str) -> Option<RegDecl> {
            let found = self.stack.iter().rev().find_map(|s| {
                s.names.get(name).copied().or_else(|| {
                    s.ranges.iter().find_map(|(prefix, count, d)| {
                        let k = name.strip_prefix(prefix.as_str()).and_then(decimal_index)?;
                        (k < u64::from(*count)).then_some(*d)
                    })
                })
            });
            match found {
                Some(d) => Some(d),
                None => {
                    let (base, _) = name.split_once('.')?;
                    self.lookup(base)
                }
            }
        }
    }

    /// What an operand position wants of the registers in it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
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
        fn element(self, n: usize) -> Expect {
            match self {
                Expect::Packed(t) => u32::try_from(n)
                    .ok()
                    .filter(|&n| n > 0 && t.bits() % n == 0)
                    .and_then(|n| bits_type(t.bits() / n))
                    .map_or(Expect::Any, Expect::Exact),
                other => other,
            }
        }

        fn accepts(self, declared: Type) -> bool {
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

        fn describe(self) -> String {
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
    fn expectations(i: &Instruction) -> Vec<Expect> {
        use Expect::{Any, Exact, Packed, Relaxed};
        let types: Vec<Type> = i.mods.iter().filter_map(|m| Type::from_name(m)).collect();
        let Some(&t) = types.last() else {
            return Vec::new();
        };
        let pair = (types.len() == 2).then(|| (types[0], types[1]));
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
    fn barrier_expectations(i: &Instruction) -> Vec<Expect> {
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

    fn writes_first_operand(i: &Instruction) -> bool {
        let op = i.opcode.as_str();
        if op == "bar" || op == "barrier" {
            return i.has_mod("red");
        }
        if NO_DESTINATION.contains(&op) || (op == "wmma" && i.has_mod("store")) {
            return false;
        }
        !matches!(i.operands.first(), None | Some(Operand::Address(_)))
    }

    /// One instruction with its registers resolved.
    pub(super) struct Site<'a> {
        pub instr: &'a Instruction,
        /// Registers written.
        pub defs: Vec<RegId>,
        /// Registers read (address bases included, the guard not).
        pub uses: Vec<RegId>,
        pub guard: Option<RegId>,
        /// Names that are not registers: labels, parameters, variables, functions.
        pub symbols: Vec<&'a str>,
    }

    /// A function body flattened to its instructions in program order.
    pub(super) struct Body<'a> {
        pub function: &'a Function,
        pub sites: Vec<Site<'a>>,
        /// Label -> index of the first instruction after it (`sites.len()` at the end).
        pub labels: HashMap<&'a str, usize>,
        /// `.branchtargets` lists, by the label that names them.
        pub tables: HashMap<&'a str, Vec<String>>,
        /// Check 1, found while resolving registers.
        pub findings: Vec<Finding>,
        scopes: Scopes,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Role {
        Def,
        Use,
    }

    impl<'a> Body<'a> {
        pub(super) fn new(function: &'a Function, stmts: &'a [Statement]) -> Body<'a> {
            let mut body = Body {
                function,
                sites: Vec::new(),
                labels: HashMap::new(),
                tables: HashMap::new(),
                findings: Vec::new(),
                scopes: Scopes::default(),
            };
            body.scopes.push();
            let reg_params = function.returns.iter().flatten().chain(&function.params);
            for p in reg_params.filter(|p| p.space == StateSpace::Reg) {
                body.scopes.declare_param(&p.name, p.ty);
            }
            body.walk(stmts);
            body
        }

        /// Declarations apply to their whole block, wherever in it they are written.
        fn walk(&mut self, stmts: &'a [Statement]) {
            self.scopes.push();
            for s in stmts {
                if let Statement::Decl(d) = s {
                    self.scopes.declare(d);
                }
            }
            let mut last_label = None;
            for s in stmts {
                match s {
                    Statement::Label(l) => {
                        self.labels.entry(l.as_str()).or_insert(self.sites.len());
                        last_label = Some(l.as_str());
                        continue;
                    }
                    Statement::Instr(i) => self.site(i),
                    Statement::Block(inner) => self.walk(inner),
                    Statement::Directive { name, args, .. } if name == "branchtargets" => {
                        if let Some(l) = last_label {
                            let targets = args.split(',').map(|t| t.trim().to_string());
                            self.tables
                                .insert(l, targets.filter(|t| !t.is_empty()).collect());
                        }
                    }
                    _ => {}
                }
                last_label = None;
            }
            self.scopes.stack.pop();
        }

        fn site(&mut self, i: &'a Instruction) {
            let mut site = Site {
                instr: i,
                defs: Vec::new(),
                uses: Vec::new(),
                guard: None,
                symbols: Vec::new(),
            };
            if let Some(g) = &i.guard {
                site.guard = Some(self.register(&g.pred, Expect::Exact(Type::Pred), 0, i));
            }
            let expects = match i.opcode.as_str() {
                "bar" | "barrier" => barrier_expectations(i),
                _ => expectations(i),
            };
            let first_is_def = writes_first_operand(i)
                || (i.opcode == "call" && matches!(i.operands.first(), Some(Operand::Tuple(_))));
            for (k, op) in i.operands.iter().enumerate() {
                let expect = expects.get(k).copied().unwrap_or(Expect::Any);
                let role = if k == 0 && first_is_def {
                    Role::Def
                } else {
                    Role::Use
                };
                self.operand(op, expect, role, k + 1, &mut site);
            }
            self.sites.push(site);
        }

        fn operand(
            &mut self,
            op: &'a Operand,
            expect: Expect,
            role: Role,
            pos: usize,
            site: &mut Site<'a>,
        ) {
            match op {
                Operand::Reg(name) => self.named(name, expect, role, pos, site),
                Operand::Symbol(name) => {
                    if self.scopes.lookup(name).is_some() {
                        self.named(name, expect, role, pos, site);
                    } else if name != "_" {
                        site.symbols.push(name);
                    }
                }
                Operand::Vector(items) => {
                    let element = expect.element(items.len());
                    for it in items {
                        self.operand(it, element, role, pos, site);
                    }
                }
                Operand::Address(a) => match &a.base {
                    Some(AddrBase::Reg(name)) => {
                        self.named(name, Expect::Pointer, Role::Use, pos, site)
                    }
                    Some(AddrBase::Symbol(name)) => {
                        if self.scopes.lookup(name).is_some() {
                            self.named(name, Expect::Pointer, Role::Use, pos, site);
                        } else {
                            site.symbols.push(name);
                        }
                    }
                    None => {}
                },
                Operand::Not(inner) => self.operand(inner, expect, role, pos, site),
                Operand::PredPair(a, b) => {
                    self.named(a, expect, role, pos, site);
                    self.named(b, Expect::Exact(Type::Pred), role, pos, site);
                }
                Operand::Tuple(items) => {
                    for it in items {
                        self.operand(it, Expect::Any, role, pos, site);
                    }
                }
                Operand::Int(_) | Operand::F32(_) | Operand::F64(_) | Operand::FloatDec(_) => {}
            }
        }

        fn named(
            &mut self,
            name: &str,
            expect: Expect,
            role: Role,
            pos: usize,
            site: &mut Site<'a>,
        ) {
            let id = self.register(name, expect, pos, site.instr);
            match role {
                Role::Def => site.defs.push(id),
                Role::Use => site.uses.push(id),
            }
        }

        /// Resolves one register, reporting check-1 findings. `pos` is the 1-based operand
        /// position (0 for the guard).
        fn register(&mut self, name: &str, expect: Expect, pos: usize, i: &Instruction) -> RegId {
            let (scope, declared) = if let Some(t) = special_register(name) {
                (SPECIAL, t)
            } else if let Some(d) = self.scopes.lookup(name) {
                (d.scope, d.ty)
            } else {
                let msg = format!("`{name}` is not declared in this function");
                self.report(CheckKind::UndeclaredRegister, msg, i);
                return RegId {
                    scope: UNDECLARED,
                    name: name.into(),
                };
            };
            if !expect.accepts(declared) {
                let what = if pos == 0 {
                    "the guard".to_string()
                } else {
                    format!("operand {pos}")
                };
                let msg = format!(
                    "`{name}` is {declared} but {what} needs {}",
                    expect.describe()
                );
                self.report(CheckKind::OperandType, msg, i);
            }
            RegId {
                scope,
                name: name.into(),
            }
        }

        fn report(&mut self, check: CheckKind, message: String, i: &Instruction) {
            self.findings
                .push(finding(&self.function.name, check, message, Some(i)));
        }
    }
}

/// Check 2: `bra` and `brx.idx` targets are labels of this function (and every label of a
/// `.branchtargets` list is), `call` targets are functions of the module.
fn branch_targets(m: &Module, body: &body::Body<'_>) -> Vec<Finding> {
    let functions: HashSet<&str> = m.functions().map(|f| f.name.as_str()).collect();
    let name = &body.function.name;
    let mut out = Vec::new();
    let mut report = |msg: String, i: &Instruction| {
        out.push(finding(name, CheckKind::BranchTarget, msg, Some(i)));
    };
    for site in &body.sites {
        let i = site.instr;
        match i.opcode.as_str() {
            "bra" => match i.operands.first() {
                Some(Operand::Symbol(l)) if body.labels.contains_key(l.as_str()) => {}
                Some(Operand::Symbol(l)) => report(format!("no label `{l}` in this function"), i),
                _ => report("`bra` needs a label as its target".into(), i),
            },
            "brx" => match i.operands.get(1) {
                Some(Operand::Symbol(t)) => match body.tables.get(t.as_str()) {
                    Some(targets) => {
                        for l in targets
                            .iter()
                            .filter(|l| !body.labels.contains_key(l.as_str()))
                        {
                            report(format!("`.branchtargets` list `{t}` names `{l}`, which is no label of this function"), i);
                        }
                    }
                    None => report(
                        format!("`{t}` is not a `.branchtargets` list of this function"),
                        i,
                    ),
                },
                _ => report(
                    "`brx.idx` needs an index and a `.branchtargets` label".into(),
                    i,
                ),
            },
            "call" => {
                let target = i.operands.iter().find(|o| !matches!(o, Operand::Tuple(_)));
                match target {
                    Some(Operand::Symbol(f)) if functions.contains(f.as_str()) => {}
                    Some(Operand::Symbol(f)) => {
                        report(format!("no function `{f}` in this module"), i)
                    }
                    Some(Operand::Reg(_)) => {} // an indirect call; the register is check 1's
                    _ => report("`call` needs a function as its target".into(), i),
                }
            }
            _ => {}
        }
    }
    out
}

/// Check 5: every `.entry` parameter is named by some instruction (`ld.param`, or a
/// `mov`/`cvta` of its address).
fn unused_params(f: &Function, body: &body::Body<'_>) -> Vec<Finding> {
    let named: HashSet<&str> = body
        .sites
        .iter()
        .flat_map(|s| s.symbols.iter().copied())
        .collect();
    f.params
        .iter()
        .filter(|p| !named.contains(p.name.as_str()))
        .map(|p| {
            let msg = format!("parameter `{}` is never read", p.name);
            finding(&f.name, CheckKind::UnusedParam, msg, None)
        })
        .collect()
}

/// Whether control can leave instruction `i` only by jumping (or stopping).
fn ends_path(i: &Instruction) -> bool {
    i.guard.is_none() && matches!(i.opcode.as_str(), "ret" | "exit" | "trap" | "bra" | "brx")
}

/// Check 6: the last instruction of the body ends every path through it (an unguarded
/// `ret`, `exit`, `trap`, `bra` or `brx`), and no branch targets a label written after the
/// last instruction. Together these mean no path falls off the end, since falling through
/// past the end can only happen from the last instruction or by jumping past it.
fn falls_off_end(body: &body::Body<'_>) -> Vec<Finding> {
    let name = &body.function.name;
    let mut out = Vec::new();
    match body.sites.last() {
        None => out.push(finding(
            name,
            CheckKind::FallsOffEnd,
            "the body has no instructions; it needs at least a `ret` or `exit`".into(),
            None,
        )),
        Some(last) if !ends_path(last.instr) => out.push(finding(
            name,
            CheckKind::FallsOffEnd,
            "the last instruction can fall through past the end of the body; end it with an \
             unguarded `ret`, `exit`, `trap` or `bra`"
                .into(),
            Some(last.instr),
        )),
        Some(_) => {}
    }
    let end = body.sites.len();
    for site in &body.sites {
        if site.instr.opcode != "bra" {
            continue;
        }
        if let Some(Operand::Symbol(l)) = site.instr.operands.first() {
            if body.labels.get(l.as_str()) == Some(&end) {
                let msg = format!("`{l}` labels the end of the body, so this branch falls off it");
                out.push(finding(name, CheckKind::FallsOffEnd, msg, Some(site.instr)));
            }
        }
    }
    out
}

/// The bytes of one declared variable of `d`: element size times vector width times every
/// array dimension. An unsized dimension (`[]`) takes the initializer's length, or 0 without
/// one (an `.extern` array sized at launch). Saturates instead of overflowing.
fn declarator_bytes(d: &VarDecl, suffix: &DeclSuffix) -> u64 {
    let element = u64::from(d.ty.bytes()).saturating_mul(u64::from(d.vector.unwrap_or(1)));
    let count = match suffix {
        DeclSuffix::None => 1,
        DeclSuffix::Range(n) => u64::from(*n),
        DeclSuffix::Array(dims) => {
            if dims.iter().any(Option::is_none) {
                d.init.as_ref().map_or(0, initializer_len)
            } else {
                dims.iter()
                    .flatten()
                    .fold(1u64, |acc, &n| acc.saturating_mul(n))
            }
        }
    };
    element.saturating_mul(count)
}

fn initializer_len(init: &Initializer) -> u64 {
    match init {
        Initializer::Scalar(_) => 1,
        Initializer::List(items) => items
            .iter()
            .map(initializer_len)
            .fold(0, u64::saturating_add),
    }
}

/// The functions `entry` may run: itself and every function it calls, transitively, that
/// the module defines.
fn reachable_functions<'m>(m: &'m Module, entry: &'m Function) -> Vec<&'m Function> {
    let by_name: HashMap<&str, &Function> = m
        .functions()
        .filter(|f| f.body.is_some())
        .map(|f| (f.name.as_str(), f))
        .collect();
    let mut seen: HashSet<&str> = HashSet::from([entry.name.as_str()]);
    let mut order = vec![entry];
    let mut k = 0;
    while let Some(f) = order.get(k).copied() {
        k += 1;
        for i in f.instructions().into_iter().filter(|i| i.opcode == "call") {
            for op in &i.operands {
                if let Operand::Symbol(name) = op {
                    if let Some(&callee) = by_name.get(name.as_str()) {
                        if seen.insert(callee.name.as_str()) {
                            order.push(callee);
                        }
                    }
                }
            }
        }
    }
    order
}

/// Every name an instruction of `f` mentions outside register position (operands,
/// address bases, list elements), for deciding which module variables it uses.
fn symbols_named(f: &Function) -> HashSet<&str> {
    fn walk<'a>(op: &'a Operand, out: &mut HashSet<&'a str>) {
        match op {
            Operand::Symbol(s) => {
                out.insert(s);
            }
            Operand::Address(a) => {
                if let Some(AddrBase::Symbol(s)) = &a.base {
                    out.insert(s);
                }
            }
            Operand::Vector(items) | Operand::Tuple(items) => {
                items.iter().for_each(|o| walk(o, out))
            }
            Operand::Not(inner) => walk(inner, out),
            _ => {}
        }
    }
    let mut out = HashSet::new();
    for i in f.instructions() {
        i.operands.iter().for_each(|o| walk(o, &mut out));
    }
    out
}

/// Static shared memory of one entry, in bytes, and the variables it is made of.
///
/// What counts: the `.shared` declarations in the bodies of the entry and of every function
/// it calls (transitively), and the module-scope `.shared` variables any of them names.
/// Module-scope variables no reachable function names are left out (ptxas drops them for
/// this kernel too). `.extern .shared` arrays are dynamic shared memory, sized at launch:
/// they count 0. Variables are laid out in declaration order, module scope first, each at
/// its `.align` (or its element size), so padding counts as ptxas would lay it out for
/// this order; ptxas may reorder to pack tighter, which can only make the real total
/// smaller.
pub fn static_shared_memory(m: &Module, entry: &Function) -> SharedMemory {
    let reachable = reachable_functions(m, entry);
    let named: HashSet<&str> = reachable.iter().flat_map(|f| symbols_named(f)).collect();
    let mut decls: Vec<&VarDecl> = m
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Var(v) if v.space == StateSpace::Shared && v.linkage != Some(Linkage::Extern) => {
                Some(v)
            }
            _ => None,
        })
        .filter(|v| v.names.iter().any(|n| named.contains(n.name.as_str())))
        .collect();
    for f in &reachable {
        for s in f.statements() {
            if let Statement::Decl(v) = s {
                if v.space == StateSpace::Shared && v.linkage != Some(Linkage::Extern) {
                    decls.push(v);
                }
            }
        }
    }
    let mut total = 0u64;
    let mut parts = Vec::new();
    for v in decls {
        for n in &v.names {
            let bytes = declarator_bytes(v, &n.suffix);
            let natural = u64::from(v.ty.bytes()).saturating_mul(u64::from(v.vector.unwrap_or(1)));
            let align = v.align.map_or(natural, u64::from).max(1);
            total = total
                .div_ceil(align)
                .saturating_mul(align)
                .saturating_add(bytes);
            parts.push((n.name.clone(), bytes));
        }
    }
    SharedMemory {
        bytes: total,
        variables: parts,
    }
}

/// The static shared memory of one entry (see [`static_shared_memory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedMemory {
    /// Total bytes, alignment padding included.
    pub bytes: u64,
    /// Each variable that counts, with its own size, in layout order.
    pub variables: Vec<(String, u64)>,
}

/// Check 4: static shared memory of an entry fits in [`MAX_STATIC_SHARED_BYTES`].
fn shared_memory(m: &Module, entry: &Function) -> Vec<Finding> {
    let SharedMemory {
        bytes: total,
        variables: mut parts,
    } = static_shared_memory(m, entry);
    if total <= MAX_STATIC_SHARED_BYTES {
        return Vec::new();
    }
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let list: Vec<String> = parts
        .iter()
        .take(4)
        .map(|(n, b)| format!("`{n}` {b}"))
        .collect();
    let msg = format!(
        "static shared memory is {total} bytes, over the {MAX_STATIC_SHARED_BYTES}-byte limit ({})",
        list.join(", ")
    );
    vec![finding(&entry.name, CheckKind::SharedMemory, msg, None)]
}

/// Check 3: CTA barriers in thread-dependent control flow.
///
/// A `bar.sync` that some threads of a CTA skip deadlocks the CTA or corrupts the next
/// barrier, and ptxas cannot know. The analysis is the classic divergence analysis:
///
/// - **Thread-dependent values.** A register is tainted if an instruction that writes it
///   reads `%tid.*`, `%laneid`, `%warpid`, `%lanemask_*`, `%clock*`, `%globaltimer*` or a
///   tainted register, runs under a tainted guard, is an `atom` or `activemask` (different
///   per thread even at one address), or sits in a divergent block (below): a value merged
///   from paths only some threads took differs between threads. `.param`/`.local` variables
///   written with tainted values taint what is loaded from them, and a `call` taints its
///   return values if an argument is tainted or the callee may read a thread-dependent
///   special register (callees outside the module are assumed to).
/// - **Divergent blocks.** On the CFG of basic blocks (from labels, `bra`, `brx.idx` with
///   its `.branchtargets`, `ret`/`exit`/`trap`), block Y is control-dependent on branch X
///   when Y post-dominates a successor of X but does not strictly post-dominate X (computed
///   from post-dominator sets). A branch is tainted if its guard (or `brx` index) is; the
///   divergent blocks are those control-dependent on a tainted branch, closed under control
///   dependence (a uniform branch inside a divergent block still only runs for some
///   threads). Taint and divergence are iterated together to a fixed point.
/// - **Findings.** A barrier (`bar`/`barrier` `.sync`/`.red`, not `.warp`, not `.arrive`)
///   is flagged if its guard is tainted or its block is divergent. A barrier that
///   post-dominates the tainted branch (`if (tid < n) {...} __syncthreads();`) is not
///   control-dependent on it and passes; so does a loop whose trip count depends only on
///   parameters, `%ctaid`, `%ntid` and immediates.
///
/// Limits, all documented trade-offs: registers are tracked by name, not by definition, so
/// a register reused for a thread-dependent and a uniform value is tainted everywhere (a
/// false positive, never a miss); values loaded from global or shared memory at uniform
/// addresses count as uniform (memory written per thread and read back at one address is a
/// miss); barriers with an explicit thread count (`bar.sync 1, 64`) are exempt, since they
/// are meant for a subset of warps; a `.func`'s parameters are taken as uniform and its
/// barriers are checked within the function only; an early `ret`/`exit` of some threads
/// before a barrier is flagged, as CUDA requires all threads of the CTA to reach it; blocks
/// that cannot reach the exit (infinite loops) are given an edge to it.
mod divergence {
    use super::body::{Body, RegId, SPECIAL};
    use super::*;

    /// Basic blocks over the instructions of a body.
    struct Cfg {
        /// `[start, end)` instruction ranges.
        blocks: Vec<(usize, usize)>,
        block_of: Vec<usize>,
        /// Successor blocks; `exit` (== blocks.len()) is the virtual exit.
        succs: Vec<Vec<usize>>,
        exit: usize,
    }

    fn is_transfer(i: &Instruction) -> bool {
        matches!(i.opcode.as_str(), "bra" | "brx" | "ret" | "exit" | "trap")
    }

    impl Cfg {
        fn new(body: &Body<'_>) -> Cfg {
            let n = body.sites.len();
            let mut leaders: BTreeSet<usize> = BTreeSet::new();
            if n > 0 {
                leaders.insert(0);
            }
            leaders.extend(body.labels.values().copied().filter(|&k| k < n));
            for (k, s) in body.sites.iter().enumerate() {
                if is_transfer(s.instr) && k + 1 < n {
                    leaders.insert(k + 1);
                }
            }
            let starts: Vec<usize> = leaders.into_iter().collect();
            let blocks: Vec<(usize, usize)> = starts
                .iter()
                .enumerate()
                .map(|(b, &s)| (s, starts.get(b + 1).copied().unwrap_or(n)))
                .collect();
            let mut block_of = vec![0; n];
            for (b, &(s, e)) in blocks.iter().enumerate() {
                block_of[s..e].iter_mut().for_each(|x| *x = b);
            }
            let exit = blocks.len();
            let block_at = |k: usize| if k < n { block_of[k] } else { exit };
            let label_block = |l: &str| body.labels.get(l).map(|&k| block_at(k));
            let mut succs = Vec::with_capacity(blocks.len());
            for &(_, e) in &blocks {
                let last = &body.sites[e - 1];
                let i = last.instr;
                let fallthrough = block_at(e);
                let mut next: Vec<usize> = match i.opcode.as_str() {
                    "bra" => match i.operands.first() {
                        Some(Operand::Symbol(l)) => label_block(l).into_iter().collect(),
                        _ => Vec::new(),
                    },
                    "brx" => {
                        let table = match i.operands.get(1) {
                            Some(Operand::Symbol(t)) => body.tables.get(t.as_str()),
                            _ => None,
                        };
                        match table {
                            Some(ls) => ls.iter().filter_map(|l| label_block(l)).collect(),
                            // Unknown table: any label may be the target.
                            None => body.labels.values().map(|&k| block_at(k)).collect(),
                        }
                    }
                    "ret" | "exit" | "trap" => vec![exit],
                    _ => vec![fallthrough],
                };
                if is_transfer(i) && i.guard.is_some() {
                    next.push(fallthrough);
                }
                if next.is_empty() {
                    next.push(exit);
                }
                next.sort_unstable();
                next.dedup();
                succs.push(next);
            }
            let mut cfg = Cfg {
                blocks,
                block_of,
                succs,
                exit,
            };
            cfg.connect_dead_ends();
            cfg
        }

        /// Gives every block that cannot reach the exit an edge to it, so that
        /// post-dominance is defined everywhere.
        fn connect_dead_ends(&mut self) {
            let mut preds = vec![Vec::new(); self.exit + 1];
            for (b, ss) in self.succs.iter().enumerate() {
                for &s in ss {
                    preds[s].push(b);
                }
            }
            let mut reaches = vec![false; self.exit + 1];
            let mut stack = vec![self.exit];
            reaches[self.exit] = true;
            while let Some(x) = stack.pop() {
                for &p in &preds[x] {
                    if !reaches[p] {
                        reaches[p] = true;
                        stack.push(p);
                    }
                }
            }
            for (b, ss) in self.succs.iter_mut().enumerate() {
                if !reaches[b] {
                    ss.push(self.exit);
                }
            }
        }

        fn is_branch(&self, b: usize) -> bool {
            self.succs.get(b).is_some_and(|s| s.len() > 1)
        }

        /// Post-dominator sets (bitsets over blocks and the exit), by the iterative
        /// dataflow pdom(b) = {b} ∪ ⋂ pdom(successors).
        fn post_dominators(&self) -> Vec<BitSet> {
            let size = self.exit + 1;
            let mut pdom: Vec<BitSet> = (0..size).map(|_| BitSet::full(size)).collect();
            pdom[self.exit] = BitSet::single(size, self.exit);
            let mut changed = true;
            while changed {
                changed = false;
                for b in (0..self.exit).rev() {
                    let mut next = BitSet::full(size);
                    for &s in &self.succs[b] {
                        next.intersect(&pdom[s]);
                    }
                    next.insert(b);
                    if next != pdom[b] {
                        pdom[b] = next;
                        changed = true;
                    }
                }
            }
            pdom
        }

        /// For each block X, the blocks control-dependent on X's branch.
        fn control_dependents(&self) -> Vec<Vec<usize>> {
            let pdom = self.post_dominators();
            (0..self.exit)
                .map(|x| {
                    if !self.is_branch(x) {
                        return Vec::new();
                    }
                    let mut deps = BTreeSet::new();
                    for &s in &self.succs[x] {
                        for y in pdom[s].iter().filter(|&y| y < self.exit) {
                            let strictly_pdoms_x = y != x && pdom[x].contains(y);
                            if !strictly_pdoms_x {
                                deps.insert(y);
                            }
                        }
                    }
                    deps.into_iter().collect()
                })
                .collect()
        }
    }

    #[derive(Clone, PartialEq, Eq)]
    struct BitSet(Vec<u64>);

    impl BitSet {
        fn full(n: usize) -> BitSet {
            let mut words = vec![u64::MAX; n.div_ceil(64)];
            if n % 64 != 0 {
                if let Some(last) = words.last_mut() {
                    *last = (1u64 << (n % 64)) - 1;
                }
            }
            BitSet(words)
        }

        fn single(n: usize, k: usize) -> BitSet {
            let mut s = BitSet(vec![0; n.div_ceil(64)]);
            s.insert(k);
            s
        }

        fn insert(&mut self, k: usize) {
            if let Some(w) = self.0.get_mut(k / 64) {
                *w |= 1 << (k % 64);
            }
        }

        fn contains(&self, k: usize) -> bool {
            self.0.get(k / 64).is_some_and(|w| w & (1 << (k % 64)) != 0)
        }

        fn intersect(&mut self, other: &BitSet) {
            for (a, b) in self.0.iter_mut().zip(&other.0) {
                *a &= b;
            }
        }

        fn iter(&self) -> impl Iterator<Item = usize> + '_ {
            self.0.iter().enumerate().flat_map(|(w, &bits)| {
                (0..64)
                    .filter(move |k| bits & (1 << k) != 0)
                    .map(move |k| w * 64 + k)
            })
        }
    }

    fn is_cta_barrier(i: &Instruction) -> bool {
        if !matches!(i.opcode.as_str(), "bar" | "barrier") || i.has_mod("warp") {
            return false;
        }
        match i.mods.first().map(String::as_str) {
            None | Some("sync") => i.operands.len() < 2,
            Some("red") => i.operands.len() < 4,
            _ => false,
        }
    }

    /// Whether a call to `name` may return a thread-dependent value on its own.
    /// Whether a call to `name` may return a thread-dependent value although its arguments
    /// are uniform: the callee, or anything it calls, reads a thread-dependent special
    /// register, or is not defined in the module (external, or an indirect call's
    /// prototype). Iterative, so a long call chain cannot overflow the stack.
    fn callee_is_thread_dependent(m: &Module, name: &str) -> bool {
        let bodies: HashMap<&str, &Function> = m
            .functions()
            .filter(|f| f.body.is_some())
            .map(|f| (f.name.as_str(), f))
            .collect();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut work = vec![name];
        while let Some(n) = work.pop() {
            if !seen.insert(n) {
                continue;
            }
            let Some(f) = bodies.get(n) else {
                return true;
            };
            for i in f.instructions() {
                if i.operands.iter().any(mentions_thread_special) {
                    return true;
                }
                if i.opcode == "call" {
                    work.extend(i.operands.iter().filter_map(|op| match op {
                        Operand::Symbol(c) => Some(c.as_str()),
                        _ => None,
                    }));
                }
            }
        }
        false
    }

    fn mentions_thread_special(op: &Operand) -> bool {
        match op {
            Operand::Reg(r) => is_thread_dependent_special(r),
            Operand::Vector(items) | Operand::Tuple(items) => {
                items.iter().any(mentions_thread_special)
            }
            Operand::Not(inner) => mentions_thread_special(inner),
            Operand::PredPair(a, b) => {
                is_thread_dependent_special(a) || is_thread_dependent_special(b)
            }
            _ => false,
        }
    }

    /// A `call`'s return-tuple symbols, argument-tuple symbols and target name.
    fn call_lists<'a>(i: &'a Instruction) -> (Vec<&'a str>, Vec<&'a str>, Option<&'a str>) {
        let names = |op: Option<&'a Operand>| -> Vec<&'a str> {
            match op {
                Some(Operand::Tuple(items)) => items
                    .iter()
                    .filter_map(|o| match o {
                        Operand::Symbol(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        let rets = match i.operands.first() {
            Some(first @ Operand::Tuple(_)) => names(Some(first)),
            _ => Vec::new(),
        };
        let target = i.operands.iter().find_map(|o| match o {
            Operand::Symbol(s) => Some(s.as_str()),
            _ => None,
        });
        let args = names(
            i.operands
                .iter()
                .skip(1)
                .find(|o| matches!(o, Operand::Tuple(_))),
        );
        (rets, args, target)
    }

    pub(super) fn divergent_barriers(m: &Module, body: &Body<'_>) -> Vec<Finding> {
        if !body.sites.iter().any(|s| is_cta_barrier(s.instr)) {
            return Vec::new();
        }
        let cfg = Cfg::new(body);
        let deps = cfg.control_dependents();
        let nb = cfg.exit;
        let mut tainted: HashSet<RegId> = HashSet::new();
        let mut tainted_syms: HashSet<&str> = HashSet::new();
        // For each divergent block, the tainted branch (its block) it depends on.
        let mut divergent_by: Vec<Option<usize>> = vec![None; nb];
        let thread_callee: HashMap<&str, bool> = body
            .sites
            .iter()
            .filter(|s| s.instr.opcode == "call")
            .filter_map(|s| call_lists(s.instr).2)
            .map(|t| (t, callee_is_thread_dependent(m, t)))
            .collect();
        let is_tainted = |tainted: &HashSet<RegId>, r: &RegId| {
            tainted.contains(r) || (r.scope == SPECIAL && is_thread_dependent_special(&r.name))
        };
        loop {
            let mut changed = false;
            for (k, site) in body.sites.iter().enumerate() {
                let i = site.instr;
                let block = cfg.block_of.get(k).copied().unwrap_or(0);
                let source = divergent_by.get(block).is_some_and(Option::is_some)
                    || site.guard.as_ref().is_some_and(|g| is_tainted(&tainted, g))
                    || site.uses.iter().any(|r| is_tainted(&tainted, r))
                    || site.symbols.iter().any(|s| tainted_syms.contains(s))
                    || matches!(i.opcode.as_str(), "atom" | "activemask");
                if source {
                    for d in &site.defs {
                        changed |= tainted.insert(d.clone());
                    }
                }
                let memory = i.opcode == "st" && (i.has_mod("param") || i.has_mod("local"));
                if memory && source {
                    if let Some(Operand::Address(a)) = i.operands.first() {
                        if let Some(AddrBase::Symbol(s)) = &a.base {
                            changed |= tainted_syms.insert(s.as_str());
                        }
                    }
                }
                if i.opcode == "call" {
                    let (rets, args, target) = call_lists(i);
                    let callee = target
                        .and_then(|t| thread_callee.get(t))
                        .copied()
                        .unwrap_or(true);
                    if source || callee || args.iter().any(|a| tainted_syms.contains(a)) {
                        for r in rets {
                            changed |= tainted_syms.insert(r);
                        }
                    }
                }
            }
            // Tainted branches, then everything control-dependent on them, transitively.
            let mut next: Vec<Option<usize>> = vec![None; nb];
            let mut work: Vec<(usize, usize)> = Vec::new();
            for (b, &(_, e)) in cfg.blocks.iter().enumerate() {
                let Some(last) = e.checked_sub(1).and_then(|k| body.sites.get(k)) else {
                    continue;
                };
                let guard_tainted = last.guard.as_ref().is_some_and(|g| is_tainted(&tainted, g));
                let index_tainted =
                    last.instr.opcode == "brx" && last.uses.iter().any(|r| is_tainted(&tainted, r));
                if cfg.is_branch(b) && (guard_tainted || index_tainted) {
                    work.push((b, b));
                }
            }
            while let Some((x, root)) = work.pop() {
                for &y in deps.get(x).map_or(&[][..], Vec::as_slice) {
                    if next[y].is_none() {
                        next[y] = Some(root);
                        if cfg.is_branch(y) {
                            work.push((y, root));
                        }
                    }
                }
            }
            // Which blocks are divergent decides termination; which root each names is
            // only for the message.
            let grew = next
                .iter()
                .zip(&divergent_by)
                .any(|(a, b)| a.is_some() != b.is_some());
            divergent_by = next;
            changed |= grew;
            if !changed {
                break;
            }
        }
        let mut out = Vec::new();
        for (k, site) in body.sites.iter().enumerate() {
            if !is_cta_barrier(site.instr) {
                continue;
            }
            let name = &body.function.name;
            if let Some(g) = site.guard.as_ref().filter(|g| is_tainted(&tainted, g)) {
                let msg = format!(
                    "barrier runs under `{}`, which depends on the thread index; the threads \
                     that skip it leave the others waiting",
                    g.name
                );
                out.push(finding(
                    name,
                    CheckKind::DivergentBarrier,
                    msg,
                    Some(site.instr),
                ));
                continue;
            }
            let block = cfg.block_of.get(k).copied().unwrap_or(0);
            if let Some(root) = divergent_by.get(block).copied().flatten() {
                let branch = cfg
                    .blocks
                    .get(root)
                    .and_then(|&(_, e)| body.sites.get(e.wrapping_sub(1)))
                    .map_or_else(String::new, |s| instruction_text(s.instr));
                let msg = format!(
                    "barrier is reached only by the threads that take one side of `{branch}`, \
                     a branch that depends on the thread index"
                );
                out.push(finding(
                    name,
                    CheckKind::DivergentBarrier,
                    msg,
                    Some(site.instr),
                ));
            }
        }
        out
    }
}
