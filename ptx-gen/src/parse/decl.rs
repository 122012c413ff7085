//! Declarations: variables and registers (`.reg .b32 %r<12>;`, `.shared .align 16 .b8
//! smem[1024];`, `.global .b8 s[2] = {1, 2};`) and function parameters (`.param .u64 .ptr
//! .global .align 16 p`, `.reg .b32 x`).

use crate::ast::{
    DeclSuffix, Declarator, Initializer, Linkage, ParamDecl, StateSpace, Type, VarDecl,
};

use super::lex::{
    comma_list, delimited_list, dot_word, fail, failure, ident, sp, u32_value, u64_value, PResult,
    MAX_NESTING,
};
use super::operand::operand;

pub(crate) fn linkage_from_name(name: &str) -> Option<Linkage> {
    match name {
        "visible" => Some(Linkage::Visible),
        "extern" => Some(Linkage::Extern),
        "weak" => Some(Linkage::Weak),
        "common" => Some(Linkage::Common),
        _ => None,
    }
}

/// `.space`: the state space that starts a declaration or a parameter.
fn state_space(i: &str) -> PResult<'_, StateSpace> {
    match dot_word(i) {
        Ok((rest, name)) => match StateSpace::from_name(name) {
            Some(space) => Ok((rest, space)),
            None => fail(i, "a state space (.reg, .param, .shared, .global, ...)"),
        },
        Err(_) => fail(i, "a state space (.reg, .param, .shared, .global, ...)"),
    }
}

/// What may stand between the state space and the type of a declaration.
#[derive(Default)]
struct Attrs {
    align: Option<u32>,
    vector: Option<u32>,
}

/// `.align N` and `.vN` in any order, then the type.
fn attrs_and_type(i: &str) -> PResult<'_, (Attrs, Type)> {
    let mut attrs = Attrs::default();
    let mut rest = i;
    loop {
        let (at, ()) = sp(rest)?;
        let Ok((after, w)) = dot_word(at) else {
            return fail(at, "a type (.b32, .f32, .pred, ...)");
        };
        if w == "align" {
            let (r, ()) = sp(after)?;
            let (r, a) = u32_value(r)?;
            attrs.align = Some(a);
            rest = r;
        } else if let Some(n) = vector_width(w) {
            attrs.vector = Some(n);
            rest = after;
        } else if let Some(ty) = Type::from_name(w) {
            return Ok((after, (attrs, ty)));
        } else {
            return fail(at, "a type (.b32, .f32, .pred, ...)");
        }
    }
}

/// `v2`, `v4`, `v8` ... as the number.
fn vector_width(w: &str) -> Option<u32> {
    let digits = w.strip_prefix('v')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A declaration from its state space to its `;`; `linkage` was read by the caller.
pub(crate) fn var_decl(i: &str, linkage: Option<Linkage>) -> PResult<'_, VarDecl> {
    let (rest, space) = state_space(i)?;
    let (rest, (attrs, ty)) = attrs_and_type(rest)?;
    let (rest, ()) = sp(rest)?;
    let (rest, names) = comma_list(rest, declarator)?;
    let (rest, ()) = sp(rest)?;
    let (rest, init) = match rest.strip_prefix('=') {
        Some(r) => {
            let (r, ()) = sp(r)?;
            let (r, init) = initializer(r, 0)?;
            (sp(r)?.0, Some(init))
        }
        None => (rest, None),
    };
    let Some(rest) = rest.strip_prefix(';') else {
        return fail(rest, "`;` ending the declaration");
    };
    let decl = VarDecl {
        linkage,
        space,
        align: attrs.align,
        vector: attrs.vector,
        ty,
        names,
        init,
    };
    Ok((rest, decl))
}

/// `name`, `%r<12>`, `name[4][8]`, `name[]`.
fn declarator(i: &str) -> PResult<'_, Declarator> {
    let Ok((after_name, name)) = ident(i) else {
        return fail(i, "a name to declare");
    };
    let (ahead, ()) = sp(after_name)?;
    let (rest, suffix) = if let Some(r) = ahead.strip_prefix('<') {
        let (r, ()) = sp(r)?;
        let (r, n) = u32_value(r)?;
        let (r, ()) = sp(r)?;
        let Some(r) = r.strip_prefix('>') else {
            return fail(r, "`>` closing the register range");
        };
        (r, DeclSuffix::Range(n))
    } else if ahead.starts_with('[') {
        let mut dims = Vec::new();
        let mut rest = after_name;
        loop {
            let (at, ()) = sp(rest)?;
            if !at.starts_with('[') {
                break;
            }
            let (r, dim) = dimension(at)?;
            dims.push(dim);
            rest = r;
        }
        (rest, DeclSuffix::Array(dims))
    } else {
        (after_name, DeclSuffix::None)
    };
    let decl = Declarator {
        name: name.into(),
        suffix,
    };
    Ok((rest, decl))
}

/// `[N]` or `[]`.
fn dimension(i: &str) -> PResult<'_, Option<u64>> {
    let Some(r) = i.strip_prefix('[') else {
        return fail(i, "`[`");
    };
    let (r, ()) = sp(r)?;
    let (r, n) = if r.starts_with(']') {
        (r, None)
    } else {
        let (r, n) = u64_value(r)?;
        (sp(r)?.0, Some(n))
    };
    match r.strip_prefix(']') {
        Some(r) => Ok((r, n)),
        None => fail(r, "`]` closing the array size"),
    }
}

/// `{1, 2, {3, 4}}` or one scalar operand.
fn initializer(i: &str, depth: usize) -> PResult<'_, Initializer> {
    if depth > MAX_NESTING {
        return failure(i, "initializer lists nested at most 64 deep");
    }
    if i.starts_with('{') {
        let (rest, items) = delimited_list(i, '{', '}', |x| initializer(x, depth + 1))?;
        Ok((rest, Initializer::List(items)))
    } else {
        let (rest, op) = operand(i, depth)?;
        Ok((rest, Initializer::Scalar(op)))
    }
}

/// A parameter: `.param [.align N] .type [.ptr .global .align 16] name[[N]]`, or a `.reg`
/// parameter of a `.func`.
pub(crate) fn param_decl(i: &str) -> PResult<'_, ParamDecl> {
    let (rest, space) = state_space(i)?;
    let (rest, (attrs, ty)) = attrs_and_type(rest)?;
    if attrs.vector.is_some() {
        return fail(
            i,
            "a parameter without .vN (vector parameters are not supported)",
        );
    }
    let mut ptr_attrs = Vec::new();
    let mut rest = rest;
    loop {
        let (at, ()) = sp(rest)?;
        let Ok((after, w)) = dot_word(at) else {
            rest = at;
            break;
        };
        if w == "align" {
            let (r, ()) = sp(after)?;
            let (r, a) = u32_value(r)?;
            ptr_attrs.push(format!("align {a}"));
            rest = r;
        } else {
            ptr_attrs.push(w.to_string());
            rest = after;
        }
    }
    let Ok((after_name, name)) = ident(rest) else {
        return fail(rest, "the parameter name");
    };
    let (ahead, ()) = sp(after_name)?;
    let (rest, array) = if ahead.starts_with('[') {
        let (r, dim) = dimension(ahead)?;
        (r, Some(dim))
    } else {
        (after_name, None)
    };
    let param = ParamDecl {
        space,
        align: attrs.align,
        ty,
        ptr_attrs,
        name: name.into(),
        array,
    };
    Ok((rest, param))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{IntLit, Operand};

    #[test]
    fn register_and_shared_declarations() {
        let (rest, d) = var_decl(".reg .b32 \t%r<12>;", None).unwrap();
        assert_eq!(rest, "");
        assert_eq!(d.ty, Type::B32);
        assert_eq!(d.names[0].suffix, DeclSuffix::Range(12));

        let (_, d) = var_decl(".shared .align 16 .v4 .f32 a[2][], b;", None).unwrap();
        assert_eq!((d.align, d.vector), (Some(16), Some(4)));
        assert_eq!(d.names[0].suffix, DeclSuffix::Array(vec![Some(2), None]));
        assert_eq!(d.names[1].suffix, DeclSuffix::None);
    }

    #[test]
    fn initializers_nest_but_not_forever() {
        let (_, d) = var_decl(".global .b8 t[4] = {{1, 2}, {3, 0f3F800000}};", None).unwrap();
        let Some(Initializer::List(outer)) = d.init else {
            panic!("list")
        };
        assert_eq!(
            outer[0],
            Initializer::List(vec![
                Initializer::Scalar(Operand::Int(IntLit::dec(1))),
                Initializer::Scalar(Operand::Int(IntLit::dec(2)))
            ])
        );
        let deep = format!(".global .b8 t[1] = {}1;", "{".repeat(10_000));
        assert!(matches!(var_decl(&deep, None), Err(nom::Err::Failure(_))));
    }

    #[test]
    fn parameters() {
        let (_, p) = param_decl(".param .u64 .ptr .global .align 16 p_0").unwrap();
        assert_eq!(p.ptr_attrs, vec!["ptr", "global", "align 16"]);
        let (_, p) = param_decl(".param .align 4 .b8 p_1[16]").unwrap();
        assert_eq!((p.align, p.array), (Some(4), Some(Some(16))));
        let (_, p) = param_decl(".reg .b32 x").unwrap();
        assert_eq!(p.space, StateSpace::Reg);
    }
}
