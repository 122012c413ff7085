//! Register declarations in scope and the register operands of each instruction.
//!
//! `Body` flattens a function body to its instructions in program order and resolves
//! every register operand to its declaration (block scopes, `%r<N>` ranges, register
//! parameters, special registers) once, so the other checks read resolved `Site`s instead
//! of walking the tree again. Check 1 ([`CheckKind::UndeclaredRegister`],
//! [`CheckKind::OperandType`]) is reported while resolving; the operand type rules
//! themselves are in `operand_types`.

use std::collections::HashMap;

use super::operand_types::{barrier_expectations, expectations, writes_first_operand, Expect};
use super::{finding, CheckKind, Finding};
use crate::ast::{
    AddrBase, DeclSuffix, Function, Instruction, Operand, StateSpace, Statement, Type, VarDecl,
};

/// Special registers and the type they read as (PTX ISA, "Special Registers"). `%tid`,
/// `%ntid`, `%ctaid`, `%nctaid` and the cluster ids are read one `.x/.y/.z` component at
/// a time.
fn special_register(name: &str) -> Option<Type> {
    // The usual virtual register names (`%r12`, `%rd3`, `%f7`, `%p1`: `%`, letters,
    // digits) are no special register, except `%clock64`, `%envregN` and `%pmN`.
    let b = name.as_bytes();
    let letters = b
        .iter()
        .skip(1)
        .take_while(|c| c.is_ascii_lowercase())
        .count();
    let digits = b[(1 + letters).min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if b.first() == Some(&b'%')
        && letters > 0
        && digits > 0
        && 1 + letters + digits == b.len()
        && !matches!(&name[1..1 + letters], "clock" | "envreg" | "pm")
    {
        return None;
    }
    special_register_slow(name)
}

fn special_register_slow(name: &str) -> Option<Type> {
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
pub(super) fn is_thread_dependent_special(name: &str) -> bool {
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

/// Where a register was declared: the block scope (0 for the function's own), or one
/// of the markers below. Two registers are the same only if name and scope agree, so an
/// inline-asm block's `p` is not the `p` of another block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct RegId<'a> {
    pub scope: usize,
    pub name: &'a str,
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

/// One instruction with its registers resolved.
pub(super) struct Site<'a> {
    pub instr: &'a Instruction,
    /// Registers written.
    pub defs: Vec<RegId<'a>>,
    /// Registers read (address bases included, the guard not).
    pub uses: Vec<RegId<'a>>,
    pub guard: Option<RegId<'a>>,
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
            defs: Vec::with_capacity(1),
            uses: Vec::with_capacity(i.operands.len()),
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
        name: &'a str,
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
    fn register(
        &mut self,
        name: &'a str,
        expect: Expect,
        pos: usize,
        i: &Instruction,
    ) -> RegId<'a> {
        let (scope, declared) = if let Some(t) = special_register(name) {
            (SPECIAL, t)
        } else if let Some(d) = self.scopes.lookup(name) {
            (d.scope, d.ty)
        } else {
            let msg = format!("`{name}` is not declared in this function");
            self.report(CheckKind::UndeclaredRegister, msg, i);
            return RegId {
                scope: UNDECLARED,
                name,
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
        RegId { scope, name }
    }

    fn report(&mut self, check: CheckKind, message: String, i: &Instruction) {
        self.findings
            .push(finding(&self.function.name, check, message, Some(i)));
    }
}
