//! Rule 1 (parameters and performance directives) and the launch shapes.

use crate::ast::{DeclSuffix, Function, ParamDecl, StateSpace, Type, VarDecl};
use crate::kernels::{ParamKind, ParamSpec};
use crate::launch::{Extent, LaunchSpec};

use super::decl::{per_vector_shared_name, BatchDecl, ParamRole, VectorIndex};
use super::report::{CheckKind, Finding};

fn finding(check: CheckKind, message: String) -> Finding {
    Finding {
        check,
        vectors: Vec::new(),
        message,
        single: None,
        batched: None,
        output: None,
    }
}

fn decl_text(p: &ParamDecl) -> String {
    let mut s = format!(".param {}", p.ty);
    if let Some(Some(n)) = p.array {
        s.push_str(&format!(" [{n}]"));
    }
    format!("{s} {}", p.name)
}

fn same_decl(a: &ParamDecl, b: &ParamDecl) -> bool {
    a.ty == b.ty && a.array == b.array && a.space == b.space && a.align == b.align
}

/// Rule 1: the batched kernel's parameters are the single kernel's, in order and with the
/// same types, except that a declared table may take the place of the by-value parameter
/// it replaces; every batched parameter has a declared role; the declared strides fit the
/// buffers described by the generators' parameter specs (when given).
pub(crate) fn check_params(
    sf: &Function,
    bf: &Function,
    decl: &BatchDecl,
    s_specs: Option<&[ParamSpec]>,
    b_specs: Option<&[ParamSpec]>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let p = CheckKind::Params;
    if decl.m == 0 {
        out.push(finding(
            p,
            "M = 0: a batch has at least one vector".to_string(),
        ));
    }
    for (k, pd) in decl.params.iter().enumerate() {
        if decl.params[..k].iter().any(|q| q.name == pd.name) {
            out.push(finding(
                p,
                format!("parameter `{}` is declared twice", pd.name),
            ));
        }
        if !bf.params.iter().any(|q| q.name == pd.name) {
            out.push(finding(
                p,
                format!(
                    "declared parameter `{}` is not a parameter of the batched kernel",
                    pd.name
                ),
            ));
        }
    }
    // What the batched list must be.
    let mut expected: Vec<(String, Option<&ParamDecl>)> = Vec::new();
    for sp in &sf.params {
        let table = decl.params.iter().find(
            |d| matches!(&d.role, ParamRole::ScalarTable { replaces, .. } if *replaces == sp.name),
        );
        match table {
            Some(t) => expected.push((t.name.clone(), None)),
            None => expected.push((sp.name.clone(), Some(sp))),
        }
    }
    for d in &decl.params {
        if let ParamRole::ScalarTable { replaces, .. } = &d.role {
            if !sf.params.iter().any(|q| q.name == *replaces) {
                out.push(finding(p, format!("table `{}` replaces `{replaces}`, which is not a parameter of the single kernel", d.name)));
            }
        }
    }
    for (name, sd) in &expected {
        match bf.params.iter().find(|q| q.name == *name) {
            None => out.push(finding(
                p,
                format!(
                    "parameter `{name}` of the single kernel is missing from the batched kernel"
                ),
            )),
            Some(bd) => {
                if let Some(sd) = sd {
                    if !same_decl(sd, bd) {
                        out.push(finding(
                            p,
                            format!("parameter `{name}` is `{}` in the single kernel but `{}` in the batched", decl_text(sd), decl_text(bd)),
                        ));
                    }
                } else if bd.ty.bits() != 64 {
                    out.push(finding(
                        p,
                        format!(
                            "table `{name}` must be a 64-bit pointer, found `{}`",
                            decl_text(bd)
                        ),
                    ));
                }
            }
        }
    }
    for bd in &bf.params {
        if !expected.iter().any(|(n, _)| *n == bd.name) {
            out.push(finding(p, format!("the batched kernel adds parameter `{}`, which is not a declared batching table", bd.name)));
        }
        if decl.role(&bd.name).is_none() {
            out.push(finding(
                p,
                format!("no batching role is declared for parameter `{}`", bd.name),
            ));
        }
    }
    let order: Vec<&str> = bf
        .params
        .iter()
        .map(|q| q.name.as_str())
        .filter(|n| expected.iter().any(|(e, _)| e == n))
        .collect();
    let want: Vec<&str> = expected
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| order.contains(n))
        .collect();
    if order != want {
        out.push(finding(
            p,
            format!(
                "parameter order differs: single (batched names) [{}], batched [{}]",
                want.join(", "),
                order.join(", ")
            ),
        ));
    }
    if sf.directives != bf.directives {
        let show = |f: &Function| {
            let vals = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
            f.directives
                .iter()
                .map(|d| format!(".{} {}", d.name, vals(&d.values)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push(finding(
            p,
            format!(
                "performance directives differ: single `{}`, batched `{}`",
                show(sf),
                show(bf)
            ),
        ));
    }
    // Strides against the generators' buffer descriptions.
    let bytes = |specs: Option<&[ParamSpec]>, name: &str| {
        specs
            .and_then(|ps| ps.iter().find(|q| q.name == name))
            .map(|q| match &q.kind {
                ParamKind::Buffer(b) => Some(b.bytes),
                ParamKind::Scalar { .. } => None,
            })
    };
    for d in &decl.params {
        match &d.role {
            ParamRole::PerVector { stride_bytes } | ParamRole::ScalarTable { stride_bytes, .. }
                if *stride_bytes == 0 =>
            {
                out.push(finding(
                    p,
                    format!(
                        "`{}`: a per-vector stride of 0 makes every vector share one region",
                        d.name
                    ),
                ));
            }
            _ => {}
        }
        let (sb, bb) = (bytes(s_specs, &d.name), bytes(b_specs, &d.name));
        match &d.role {
            ParamRole::PerVector { stride_bytes } => {
                if matches!(sb, Some(None)) || matches!(bb, Some(None)) {
                    out.push(finding(
                        p,
                        format!(
                            "`{}` is a by-value parameter; only buffers can be per-vector",
                            d.name
                        ),
                    ));
                }
                if let Some(Some(single)) = sb {
                    if *stride_bytes < single {
                        out.push(finding(
                            p,
                            format!("`{}`: stride {stride_bytes} is smaller than the single kernel's buffer ({single} bytes): vectors overlap", d.name),
                        ));
                    }
                    if let Some(Some(batched)) = bb {
                        let need = u64::from(decl.m.saturating_sub(1)) * stride_bytes + single;
                        if batched < need {
                            out.push(finding(
                                p,
                                format!("`{}`: the batched buffer has {batched} bytes; M = {} vectors at stride {stride_bytes} need {need}", d.name, decl.m),
                            ));
                        }
                    }
                }
            }
            ParamRole::Shared => {
                if let (Some(Some(s)), Some(Some(b))) = (sb, bb) {
                    if s != b {
                        out.push(finding(p, format!("shared buffer `{}` has {s} bytes in the single kernel but {b} in the batched", d.name)));
                    }
                }
            }
            ParamRole::ScalarTable { stride_bytes, .. } => {
                if let Some(Some(b)) = bb {
                    if b < u64::from(decl.m) * stride_bytes {
                        out.push(finding(p, format!("table `{}` has {b} bytes; M = {} entries at stride {stride_bytes} do not fit", d.name, decl.m)));
                    }
                }
            }
        }
    }
    out
}

fn extent(e: &Extent) -> String {
    match e {
        Extent::Const(n) => n.to_string(),
        Extent::CeilDiv { value, by, times } => format!("ceil({value:?} / {by}) * {times}"),
    }
}

/// The launch shapes: identical for an unrolled batch; for a batch over the grid, the
/// single kernel has one block on the batching axis and the batched kernel M, all else
/// identical. `None` when either spec is missing.
pub(crate) fn check_launch(
    s: Option<&LaunchSpec>,
    b: Option<&LaunchSpec>,
    decl: &BatchDecl,
) -> Option<Vec<Finding>> {
    let (s, b) = (s?, b?);
    let mut out = Vec::new();
    let l = CheckKind::Launch;
    let axis = match decl.index {
        VectorIndex::Unrolled => None,
        VectorIndex::Grid { axis } => Some(axis),
    };
    for d in 0..3 {
        let (gs, gb) = (&s.grid[d], &b.grid[d]);
        let name = ["x", "y", "z"][d];
        if Some(d) == axis.map(|a| a.index()) {
            if *gs != Extent::Const(1) {
                out.push(finding(
                    l,
                    format!(
                        "the single kernel's grid must have 1 block along {name}, has {}",
                        extent(gs)
                    ),
                ));
            }
            if *gb != Extent::Const(decl.m) {
                out.push(finding(
                    l,
                    format!(
                        "the batched grid must have M = {} blocks along {name}, has {}",
                        decl.m,
                        extent(gb)
                    ),
                ));
            }
        } else if gs != gb {
            out.push(finding(
                l,
                format!(
                    "grid {name} differs: single {}, batched {}",
                    extent(gs),
                    extent(gb)
                ),
            ));
        }
    }
    if s.block != b.block {
        out.push(finding(
            l,
            format!("block differs: single {:?}, batched {:?}", s.block, b.block),
        ));
    }
    if s.dynamic_shared_bytes != b.dynamic_shared_bytes {
        out.push(finding(
            l,
            format!(
                "dynamic shared memory differs: single {}, batched {}",
                extent(&s.dynamic_shared_bytes),
                extent(&b.dynamic_shared_bytes)
            ),
        ));
    }
    Some(out)
}

/// The shared-memory variable `name` among `decls`: its declaration without the name (space,
/// alignment, type, array shape), or `None` when no such variable is declared.
fn shared_var(
    decls: &[&VarDecl],
    name: &str,
) -> Option<(Option<u32>, Option<u32>, Type, DeclSuffix)> {
    decls
        .iter()
        .filter(|d| d.space == StateSpace::Shared)
        .find_map(|d| {
            d.names
                .iter()
                .find(|n| n.name == name)
                .map(|n| (d.align, d.vector, d.ty, n.suffix.clone()))
        })
}

/// Per-vector shared variables: only for a batch unrolled in every thread; the single
/// kernel declares `base` and no later vector's copy, the batched kernel declares a copy
/// for each of its M vectors, each exactly as the single kernel declares `base`.
pub(crate) fn check_shared_vars(
    s_decls: &[&VarDecl],
    b_decls: &[&VarDecl],
    decl: &BatchDecl,
) -> Vec<Finding> {
    let p = CheckKind::Params;
    let mut out = Vec::new();
    if !decl.per_vector_shared.is_empty() && decl.index != VectorIndex::Unrolled {
        out.push(finding(
            p,
            "per-vector shared variables need a batch unrolled in every thread (one vector per block has one copy)".to_string(),
        ));
    }
    for base in &decl.per_vector_shared {
        let Some(single) = shared_var(s_decls, base) else {
            out.push(finding(
                p,
                format!("per-vector shared variable `{base}` is not declared in the single kernel"),
            ));
            continue;
        };
        for v in 1..decl.m.max(2) {
            let name = per_vector_shared_name(base, v);
            if shared_var(s_decls, &name).is_some() {
                out.push(finding(
                    p,
                    format!(
                        "the single kernel declares `{name}`, a later vector's copy of `{base}`"
                    ),
                ));
            }
        }
        for v in 0..decl.m {
            let name = per_vector_shared_name(base, v);
            match shared_var(b_decls, &name) {
                None => out.push(finding(
                    p,
                    format!("the batched kernel does not declare `{name}`, vector {v}'s copy of `{base}`"),
                )),
                Some(b) if b != single => out.push(finding(
                    p,
                    format!("`{name}` is declared unlike the single kernel's `{base}`: {b:?} against {single:?}"),
                )),
                Some(_) => {}
            }
        }
    }
    out
}
