//! Static checks on parsed PTX: the third rung of the verification ladder.
//!
//! Each check catches a class of bug that ptxas either accepts silently or reports far from
//! its cause, and that our generators could introduce:
//!
//! 1. [`CheckKind::UndeclaredRegister`], [`CheckKind::OperandType`]: every register is
//!    declared in scope (or is a special register) and its declared type fits the
//!    instruction's operand type ([`Type::fits`](crate::ast::Type::fits), with the relaxed
//!    rule PTX allows for the data operands of `ld`/`st`/`cvt`).
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
//!
//! The checks live in one file each, by what they look at:
//!
//! - `registers`: the register declarations in scope and the resolved register operands of
//!   each instruction, which checks 2, 3, 5 and 6 read (check 1 is reported while resolving).
//! - `operand_types`: the operand type rules of each instruction (check 1's types).
//! - `cfg`: basic blocks, branch and call targets (check 2), falling off the end (check 6).
//! - `divergence`: thread-dependence and control dependence for barriers (check 3).
//! - `resources`: static shared memory (check 4) and unused `.entry` parameters (check 5).

use std::fmt;

use crate::ast::{FnKind, Function, Instruction, Module};
use crate::emit::instruction_text;

mod cfg;
mod divergence;
mod operand_types;
mod registers;
mod resources;

pub use resources::{static_shared_memory, SharedMemory};

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
    let mut body = registers::Body::new(f, stmts);
    let mut out = std::mem::take(&mut body.findings);
    out.extend(cfg::branch_targets(m, &body));
    out.extend(divergence::divergent_barriers(m, &body));
    if f.kind == FnKind::Entry {
        out.extend(resources::shared_memory(m, f));
        out.extend(resources::unused_params(f, &body));
    }
    out.extend(cfg::falls_off_end(&body));
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
