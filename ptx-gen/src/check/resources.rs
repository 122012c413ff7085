//! Per-entry resources: static shared memory (check 4, and the public
//! [`static_shared_memory`] it is computed by) and `.entry` parameters that are never read
//! (check 5).
//!
//! Both look across the module rather than down one body: shared memory counts every
//! function an entry may call and the module-scope variables they name.

use std::collections::{HashMap, HashSet};

use super::registers::Body;
use super::{finding, CheckKind, Finding, MAX_STATIC_SHARED_BYTES};
use crate::ast::{
    AddrBase, DeclSuffix, Function, Initializer, Item, Linkage, Module, Operand, StateSpace,
    Statement, VarDecl,
};

/// Check 5: every `.entry` parameter is named by some instruction (`ld.param`, or a
/// `mov`/`cvta` of its address).
pub(super) fn unused_params(f: &Function, body: &Body<'_>) -> Vec<Finding> {
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
pub(super) fn shared_memory(m: &Module, entry: &Function) -> Vec<Finding> {
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
