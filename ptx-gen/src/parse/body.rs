//! Function bodies: declarations, labels, instructions, nested `{ }` blocks and the
//! directives the tree keeps raw (`.pragma`, `.loc`).
//!
//! A comment written between the tokens of one statement (nvcc splits `call` over lines)
//! becomes a `Comment` statement right after that statement, so no text is lost.

use crate::ast::{Comment, Guard, Instruction, StateSpace, Statement};

use super::decl::{linkage_from_name, var_decl};
use super::fast;
use super::layout::lines_into;
use super::lex::{
    comments_in, consumed, dot_word, fail, failure, ident, is_ident_start, modifier,
    name_with_component, peek_dot_word, raw_args, skip_hspace, sp, word, PResult, MAX_NESTING,
};
use super::operand::operand;

/// The statements of a block whose `{` is just before `i`, through its `}`. `depth`
/// counts the enclosing blocks, the function body being 1.
pub(crate) fn block_body(i: &str, depth: usize) -> PResult<'_, Vec<Statement>> {
    // Labels and plainly written instructions (nearly every line we emit) take the fast
    // path, which reads them exactly as `statement` does (`parse::fast`).
    let mut scratch = fast::Scratch::default();
    let (rest, stmts) = lines_into(i, false, |s, out: &mut Vec<Statement>| {
        if let Some((r, st)) = fast::statement_tree(s, &mut scratch) {
            out.push(st);
            return Ok((r, ()));
        }
        let (r, mut parsed) = statement(s, depth)?;
        out.append(&mut parsed);
        Ok((r, ()))
    })?;
    match rest.strip_prefix('}') {
        Some(r) => Ok((r, stmts)),
        None => fail(rest, "`}` closing the block"),
    }
}

/// One statement and the comments inside it.
pub(crate) fn statement(i: &str, depth: usize) -> PResult<'_, Vec<Statement>> {
    match i.chars().next() {
        Some('{') => {
            if depth >= MAX_NESTING {
                return failure(i, "blocks nested at most 64 deep");
            }
            let (rest, inner) = block_body(&i[1..], depth + 1)?;
            Ok((rest, vec![Statement::Block(inner)]))
        }
        Some('.') => directive_or_decl(i),
        Some('@') => with_comments(i, instruction, Statement::Instr),
        Some(c) if is_ident_start(c) => {
            if let Ok((after, name)) = ident(i) {
                let ahead = skip_hspace(after);
                if let Some(r) = ahead.strip_prefix(':') {
                    if !r.starts_with(':') {
                        return Ok((r, vec![Statement::Label(name.into())]));
                    }
                }
            }
            with_comments(i, instruction, Statement::Instr)
        }
        _ => fail(i, "a statement (instruction, label, declaration or `}`)"),
    }
}

/// Runs `parse` and appends the comments found between its tokens as statements.
fn with_comments<'a, T>(
    i: &'a str,
    parse: impl FnOnce(&'a str) -> PResult<'a, T>,
    wrap: impl FnOnce(T) -> Statement,
) -> PResult<'a, Vec<Statement>> {
    let (rest, x) = parse(i)?;
    let mut out = vec![wrap(x)];
    out.extend(
        comments_in(consumed(i, rest))
            .into_iter()
            .map(Statement::Comment),
    );
    Ok((rest, out))
}

/// `.reg ...;`, `.shared ...;`, `.extern .shared ...;` become declarations; any other
/// directive is kept raw.
fn directive_or_decl(i: &str) -> PResult<'_, Vec<Statement>> {
    let Some(name) = peek_dot_word(i) else {
        return fail(i, "a directive name after `.`");
    };
    if let Some(linkage) = linkage_from_name(name) {
        let (after, _) = dot_word(i)?;
        let (at, ()) = sp(after)?;
        return with_comments(i, |_| var_decl(at, Some(linkage)), Statement::Decl);
    }
    if StateSpace::from_name(name).is_some() {
        return with_comments(i, |s| var_decl(s, None), Statement::Decl);
    }
    let (after, name) = dot_word(i)?;
    let (rest, (args, semicolon)) = raw_args(after, name)?;
    let stmt = Statement::Directive {
        name: name.into(),
        args,
        semicolon,
    };
    Ok((rest, vec![stmt]))
}

/// `[@[!]pred] opcode[.mod]* [operand[, operand]*];`
pub(crate) fn instruction(i: &str) -> PResult<'_, Instruction> {
    let (rest, guard) = guard(i)?;
    let opcode_at = rest;
    let (mut rest, opcode) = match word(rest) {
        Ok((r, w)) if w.starts_with(|c: char| c.is_ascii_alphabetic()) => (r, w),
        _ => return fail(opcode_at, "an instruction opcode"),
    };
    let mut mods = Vec::new();
    while let Some(after_dot) = rest.strip_prefix('.') {
        let (r, m) = match modifier(after_dot) {
            Ok(ok) => ok,
            Err(_) => return fail(after_dot, "an instruction modifier after `.`"),
        };
        mods.push(m.to_string());
        rest = r;
    }
    let (mut rest, ()) = sp(rest)?;
    let mut operands = Vec::new();
    if let Some(r) = rest.strip_prefix(';') {
        rest = r;
    } else {
        loop {
            let (r, op) = match operand(rest, 0) {
                Err(nom::Err::Error(e)) if e.at.len() == rest.len() && operands.is_empty() => {
                    return fail(rest, "an operand or the `;` that ends the instruction");
                }
                other => other?,
            };
            operands.push(op);
            let (r, ()) = sp(r)?;
            if let Some(r) = r.strip_prefix(',') {
                rest = sp(r)?.0;
            } else if let Some(r) = r.strip_prefix(';') {
                rest = r;
                break;
            } else {
                return fail(r, "`,` or `;` after an operand");
            }
        }
    }
    let instr = Instruction {
        guard,
        opcode: opcode.into(),
        mods,
        operands,
    };
    Ok((rest, instr))
}

/// `@%p1 `, `@!%p1 ` (or nothing).
fn guard(i: &str) -> PResult<'_, Option<Guard>> {
    let Some(rest) = i.strip_prefix('@') else {
        return Ok((i, None));
    };
    let (rest, ()) = sp(rest)?;
    let (rest, negated) = match rest.strip_prefix('!') {
        Some(r) => (sp(r)?.0, true),
        None => (rest, false),
    };
    let Ok((rest, pred)) = name_with_component(rest) else {
        return fail(rest, "a predicate after `@`");
    };
    let (rest, ()) = sp(rest)?;
    let guard = Guard {
        negated,
        pred: pred.into(),
    };
    Ok((rest, Some(guard)))
}

/// Comments inside the header of a function, for the caller to place.
pub(crate) fn header_comments(start: &str, end: &str) -> Vec<Comment> {
    comments_in(consumed(start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Operand;

    #[test]
    fn instructions_with_guards_mods_and_comments() {
        let (rest, i) =
            instruction("@!%p1 ld.global.nc.L1::no_allocate.v4.u32 {%r1, %r2}, [%rd2+16];")
                .unwrap();
        assert_eq!(rest, "");
        assert_eq!(
            i.guard,
            Some(Guard {
                negated: true,
                pred: "%p1".into()
            })
        );
        assert_eq!(i.mods, vec!["global", "nc", "L1::no_allocate", "v4", "u32"]);
        assert_eq!(i.operands.len(), 2);

        let (_, stmts) =
            statement("call.uni (retval0), /* f */\n\tvprintf, \n(\nparam0\n);", 1).unwrap();
        assert!(
            matches!(&stmts[0], Statement::Instr(i) if i.operands[1] == Operand::Symbol("vprintf".into()))
        );
        assert_eq!(stmts[1], Statement::Comment(Comment::Block(" f ".into())));
    }

    #[test]
    fn labels_and_raw_directives() {
        let (_, s) = statement("$L__BB0_2:\n", 1).unwrap();
        assert_eq!(s, vec![Statement::Label("$L__BB0_2".into())]);
        let (_, s) = statement(".pragma \"nounroll\";", 1).unwrap();
        assert_eq!(
            s,
            vec![Statement::Directive {
                name: "pragma".into(),
                args: "\"nounroll\"".into(),
                semicolon: true
            }]
        );
        assert!(instruction("ret").is_err());
    }
}
