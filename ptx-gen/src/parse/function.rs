//! `.entry` and `.func`: the header (return list, name, parameters, performance
//! directives), then a body or the `;` of a prototype.

use crate::ast::{Comment, FnKind, Function, Linkage, PerfDirective};

use super::body::{block_body, header_comments};
use super::decl::param_decl;
use super::lex::{
    comma_list, delimited_list, dot_word, fail, failure, ident, peek_dot_word, sp, u64_value,
    PResult,
};

/// A function whose `.entry`/`.func` keyword is at `i`; `start` is where its item began
/// (at the linkage, if any), so that comments anywhere in the header are returned too.
pub(crate) fn function<'a>(
    start: &'a str,
    i: &'a str,
    linkage: Option<Linkage>,
) -> PResult<'a, (Function, Vec<Comment>)> {
    let (rest, kind) = match dot_word(i) {
        Ok((r, "entry")) => (r, FnKind::Entry),
        Ok((r, "func")) => (r, FnKind::Func),
        _ => return fail(i, "`.entry` or `.func`"),
    };
    let (rest, ()) = sp(rest)?;
    let (rest, returns) = if rest.starts_with('(') {
        let (r, rets) = delimited_list(rest, '(', ')', param_decl)?;
        (sp(r)?.0, Some(rets))
    } else {
        (rest, None)
    };
    let Ok((rest, name)) = ident(rest) else {
        return fail(rest, "the function name");
    };
    let (ahead, ()) = sp(rest)?;
    let (mut rest, params) = if ahead.starts_with('(') {
        delimited_list(ahead, '(', ')', param_decl)?
    } else {
        (rest, Vec::new())
    };
    let mut directives = Vec::new();
    loop {
        let (at, ()) = sp(rest)?;
        if peek_dot_word(at).is_none() {
            break;
        }
        let (r, d) = perf_directive(at)?;
        directives.push(d);
        rest = r;
    }
    let (at, ()) = sp(rest)?;
    let comments = header_comments(start, at);
    let (rest, body) = if let Some(r) = at.strip_prefix(';') {
        (r, None)
    } else if let Some(r) = at.strip_prefix('{') {
        let (r, stmts) = block_body(r, 1)?;
        (r, Some(stmts))
    } else {
        return fail(at, "`{` or `;` after the function header");
    };
    let f = Function {
        linkage,
        kind,
        returns,
        name: name.into(),
        params,
        directives,
        body,
    };
    Ok((rest, (f, comments)))
}

/// `.maxntid 256, 1, 1`, `.minnctapersm 2`, `.noreturn`, ...
fn perf_directive(i: &str) -> PResult<'_, PerfDirective> {
    let (rest, name) = dot_word(i)?;
    if name == "pragma" {
        return failure(
            i,
            "a performance directive with integer values (a `.pragma` string before a \
             function body has no place in ast::PerfDirective)",
        );
    }
    let (ahead, ()) = sp(rest)?;
    let (rest, values) = if ahead.starts_with(|c: char| c.is_ascii_digit()) {
        comma_list(ahead, u64_value)?
    } else {
        (rest, Vec::new())
    };
    let d = PerfDirective {
        name: name.into(),
        values,
    };
    Ok((rest, d))
}
