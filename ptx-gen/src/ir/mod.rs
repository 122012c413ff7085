//! Typed PTX IR: kernels built through [`KernelBuilder`] from typed virtual registers,
//! checked as they are built, and lowered to the syntactic tree that `emit` prints.

mod builder;
mod instr;
mod print;
mod reg;

pub use builder::KernelBuilder;
pub use instr::{
    Addr, AtomOp, Base, BinOp, CacheHint, Cmp, FMode, Instr, L2Evict, Label, Op, PrmtMode, Round,
    ShflMode, UnOp,
};
pub use reg::{Bank, Reg, Sreg, Value};

use crate::ast::{self, Type};
use crate::target::Target;

/// An error found while building a kernel: the kernel is not produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IrError {
    #[error("{kernel}: `{instr}` {operand}: expected a {expected} operand, found {found}")]
    TypeMismatch {
        kernel: String,
        instr: String,
        operand: String,
        expected: String,
        found: String,
    },
    #[error("{kernel}: {feature} is not available on {target}")]
    Unsupported {
        kernel: String,
        feature: String,
        target: String,
    },
    #[error("{kernel}: {message}")]
    Invalid { kernel: String, message: String },
}

/// A kernel parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub ty: Type,
}

/// A static shared-memory array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedVar {
    pub name: String,
    pub ty: Type,
    pub len: u32,
    pub align: u32,
}

impl SharedVar {
    pub fn bytes(&self) -> u32 {
        self.ty.bytes() * self.len
    }
}

/// Entry performance directives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerfDirective {
    MaxNtid(u32),
    ReqNtid(u32),
    MinNctaPerSm(u32),
}

/// A finished, checked kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub target: Target,
    pub comments: Vec<String>,
    pub params: Vec<Param>,
    pub shared: Vec<SharedVar>,
    pub directives: Vec<PerfDirective>,
    pub body: Vec<Instr>,
    /// Registers used per bank, in bank order.
    pub reg_counts: Vec<(Bank, u32)>,
}

impl Kernel {
    /// Bytes of static shared memory.
    pub fn shared_bytes(&self) -> u32 {
        let mut total = 0u32;
        for v in &self.shared {
            total = total.next_multiple_of(v.align) + v.bytes();
        }
        total
    }

    fn lower(&self) -> ast::Function {
        let mut body = Vec::new();
        for (bank, n) in &self.reg_counts {
            if *n > 0 {
                body.push(ast::Statement::Decl(ast::VarDecl {
                    linkage: None,
                    space: ast::StateSpace::Reg,
                    align: None,
                    vector: None,
                    ty: bank.decl_type(),
                    names: vec![ast::Declarator {
                        name: bank.prefix().to_string(),
                        suffix: ast::DeclSuffix::Range(*n),
                    }],
                    init: None,
                }));
            }
        }
        for v in &self.shared {
            body.push(ast::Statement::Decl(ast::VarDecl {
                linkage: None,
                space: ast::StateSpace::Shared,
                align: Some(v.align),
                vector: None,
                ty: v.ty,
                names: vec![ast::Declarator {
                    name: v.name.clone(),
                    suffix: ast::DeclSuffix::Array(vec![Some(v.len as u64)]),
                }],
                init: None,
            }));
        }
        body.push(ast::Statement::Blank);
        body.extend(self.body.iter().map(Instr::lower));
        let directives = self
            .directives
            .iter()
            .map(|d| match d {
                PerfDirective::MaxNtid(x) => ("maxntid", vec![*x as u64, 1, 1]),
                PerfDirective::ReqNtid(x) => ("reqntid", vec![*x as u64, 1, 1]),
                PerfDirective::MinNctaPerSm(n) => ("minnctapersm", vec![*n as u64]),
            })
            .map(|(name, values)| ast::PerfDirective {
                name: name.to_string(),
                values,
            })
            .collect();
        ast::Function {
            linkage: Some(ast::Linkage::Visible),
            kind: ast::FnKind::Entry,
            returns: None,
            name: self.name.clone(),
            params: self
                .params
                .iter()
                .map(|p| ast::ParamDecl {
                    space: ast::StateSpace::Param,
                    align: None,
                    ty: p.ty,
                    ptr_attrs: Vec::new(),
                    name: p.name.clone(),
                    array: None,
                })
                .collect(),
            directives,
            body: Some(body),
        }
    }
}

/// A PTX module: a target and its kernels.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub target: Target,
    /// Comment lines at the top of the module.
    pub comments: Vec<String>,
    pub kernels: Vec<Kernel>,
}

impl Module {
    pub fn new(target: Target) -> Module {
        Module {
            target,
            comments: Vec::new(),
            kernels: Vec::new(),
        }
    }

    /// A module holding one kernel.
    pub fn single(kernel: Kernel) -> Module {
        Module {
            target: kernel.target,
            comments: Vec::new(),
            kernels: vec![kernel],
        }
    }

    /// The syntactic tree of the module.
    pub fn lower(&self) -> ast::Module {
        let line = |t: &str| ast::Item::Comment(ast::Comment::Line(format!(" {t}")));
        let mut items: Vec<ast::Item> = self.comments.iter().map(|c| line(c)).collect();
        items.push(ast::Item::Version {
            major: self.target.ptx_version.0,
            minor: self.target.ptx_version.1,
        });
        items.push(ast::Item::Target(vec![format!("sm_{}", self.target.sm)]));
        items.push(ast::Item::AddressSize(64));
        for k in &self.kernels {
            items.push(ast::Item::Blank);
            items.extend(k.comments.iter().map(|c| line(c)));
            items.push(ast::Item::Function(k.lower()));
        }
        ast::Module { items }
    }
}
