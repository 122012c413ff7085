//! Tiny arithmetic over dimensions, for tensor shapes (`heads * head_dim`) and dimension
//! defaults (`hidden / heads`, `layers == 62 ? hidden / heads : head_dim`).
//!
//! Deliberately small: numbers, dimension names, `+ - * / %`, comparisons (1 or 0), one
//! conditional `c ? a : b`, parentheses. Evaluation is over `f64`, whose integers are exact
//! up to 2^53 (far above any tensor dimension), so nothing can overflow or panic; callers that
//! need a count use [`Formula::eval_count`], which rejects fractions.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::dim::Dim;

/// Why a formula failed to parse; `at` is the byte offset inside the formula text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("formula `{text}`: {problem} at offset {at}")]
pub struct FormulaSyntaxError {
    pub text: String,
    pub problem: String,
    pub at: usize,
}

/// Why a formula could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormulaEvalError {
    #[error("`{formula}` needs `{dim}`, which has no value")]
    Unset { formula: String, dim: Dim },
    #[error("`{formula}` divides by zero")]
    DivisionByZero { formula: String },
    #[error("`{formula}` is not finite")]
    NotFinite { formula: String },
    #[error("`{formula}` = {value}, expected a whole number >= 0")]
    NotACount { formula: String, value: f64 },
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Num(f64),
    Dim(Dim),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Copy, Clone, Debug, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed formula, with its source text for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    text: String,
    expr: Expr,
}

/// Nesting limit, so a hostile contract can't overflow the parser's stack.
const MAX_DEPTH: usize = 32;

impl Formula {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Formula, FormulaSyntaxError> {
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        let expr = p.cond()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(p.error("unexpected trailing input"));
        }
        Ok(Formula {
            text: text.to_string(),
            expr,
        })
    }

    /// A formula that is just a constant.
    pub fn constant(value: f64) -> Formula {
        Formula {
            text: format!("{value}"),
            expr: Expr::Num(value),
        }
    }

    /// A formula that is just one dimension.
    pub fn dim(dim: Dim) -> Formula {
        Formula {
            text: dim.name().to_string(),
            expr: Expr::Dim(dim),
        }
    }

    /// The source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every dimension the formula mentions (in any branch), deduplicated.
    pub fn dims(&self) -> Vec<Dim> {
        fn walk(e: &Expr, out: &mut Vec<Dim>) {
            match e {
                Expr::Num(_) => {}
                Expr::Dim(d) => {
                    if !out.contains(d) {
                        out.push(*d)
                    }
                }
                Expr::Neg(a) => walk(a, out),
                Expr::Bin(_, a, b) => {
                    walk(a, out);
                    walk(b, out)
                }
                Expr::Cond(c, a, b) => {
                    walk(c, out);
                    walk(a, out);
                    walk(b, out)
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.expr, &mut out);
        out
    }

    /// Evaluates with `value` giving each dimension's value (`None`: unset).
    pub fn eval(&self, value: &dyn Fn(Dim) -> Option<f64>) -> Result<f64, FormulaEvalError> {
        let v = self.eval_expr(&self.expr, value)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(FormulaEvalError::NotFinite {
                formula: self.text.clone(),
            })
        }
    }

    /// Evaluates and requires a whole number in `0..=2^53`.
    pub fn eval_count(&self, value: &dyn Fn(Dim) -> Option<f64>) -> Result<u64, FormulaEvalError> {
        let v = self.eval(value)?;
        as_count(v).ok_or_else(|| FormulaEvalError::NotACount {
            formula: self.text.clone(),
            value: v,
        })
    }

    fn eval_expr(
        &self,
        e: &Expr,
        value: &dyn Fn(Dim) -> Option<f64>,
    ) -> Result<f64, FormulaEvalError> {
        Ok(match e {
            Expr::Num(n) => *n,
            Expr::Dim(d) => value(*d).ok_or(FormulaEvalError::Unset {
                formula: self.text.clone(),
                dim: *d,
            })?,
            Expr::Neg(a) => -self.eval_expr(a, value)?,
            Expr::Cond(c, a, b) => {
                if self.eval_expr(c, value)? != 0.0 {
                    self.eval_expr(a, value)?
                } else {
                    self.eval_expr(b, value)?
                }
            }
            Expr::Bin(op, a, b) => {
                let (x, y) = (self.eval_expr(a, value)?, self.eval_expr(b, value)?);
                let truth = |t: bool| if t { 1.0 } else { 0.0 };
                match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    Op::Div | Op::Rem if y == 0.0 => {
                        return Err(FormulaEvalError::DivisionByZero {
                            formula: self.text.clone(),
                        })
                    }
                    Op::Div => x / y,
                    Op::Rem => x % y,
                    Op::Eq => truth(x == y),
                    Op::Ne => truth(x != y),
                    Op::Lt => truth(x < y),
                    Op::Le => truth(x <= y),
                    Op::Gt => truth(x > y),
                    Op::Ge => truth(x >= y),
                }
            }
        })
    }
}

/// `v` as a count if it is a whole number in `0..=2^53`.
pub(crate) fn as_count(v: f64) -> Option<u64> {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_EXACT {
        Some(v as u64)
    } else {
        None
    }
}

impl fmt::Display for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Formula {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Formula;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a formula of dimensions such as `heads * head_dim`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Formula, E> {
                Formula::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Formula, E> {
                Ok(Formula {
                    text: v.to_string(),
                    expr: Expr::Num(v as f64),
                })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Formula, E> {
                Ok(Formula {
                    text: v.to_string(),
                    expr: Expr::Num(v as f64),
                })
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Formula, E> {
                Ok(Formula {
                    text: v.to_string(),
                    expr: Expr::Num(v),
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, problem: &str) -> FormulaSyntaxError {
        FormulaSyntaxError {
            text: self.text.to_string(),
            problem: problem.to_string(),
            at: self.pos,
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    /// Consumes `tok` (after whitespace) if it comes next.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn cond(&mut self) -> Result<Expr, FormulaSyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        let c = self.cmp()?;
        let e = if self.eat("?") {
            let a = self.cond()?;
            if !self.eat(":") {
                return Err(self.error("expected `:`"));
            }
            let b = self.cond()?;
            Expr::Cond(Box::new(c), Box::new(a), Box::new(b))
        } else {
            c
        };
        self.depth -= 1;
        Ok(e)
    }

    fn cmp(&mut self) -> Result<Expr, FormulaSyntaxError> {
        let a = self.sum()?;
        // Two-character operators first so `<=` is not read as `<`.
        for (tok, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.eat(tok) {
                let b = self.sum()?;
                return Ok(Expr::Bin(op, Box::new(a), Box::new(b)));
            }
        }
        Ok(a)
    }

    fn sum(&mut self) -> Result<Expr, FormulaSyntaxError> {
        let mut a = self.product()?;
        loop {
            let op = if self.eat("+") {
                Op::Add
            } else if self.eat("-") {
                Op::Sub
            } else {
                return Ok(a);
            };
            let b = self.product()?;
            a = Expr::Bin(op, Box::new(a), Box::new(b));
        }
    }

    fn product(&mut self) -> Result<Expr, FormulaSyntaxError> {
        let mut a = self.unary()?;
        loop {
            let op = if self.eat("*") {
                Op::Mul
            } else if self.eat("/") {
                Op::Div
            } else if self.eat("%") {
                Op::Rem
            } else {
                return Ok(a);
            };
            let b = self.unary()?;
            a = Expr::Bin(op, Box::new(a), Box::new(b));
        }
    }

    fn unary(&mut self) -> Result<Expr, FormulaSyntaxError> {
        if self.eat("-") {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.error("nested too deeply"));
            }
            let e = Expr::Neg(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, FormulaSyntaxError> {
        if self.eat("(") {
            let e = self.cond()?;
            if !self.eat(")") {
                return Err(self.error("expected `)`"));
            }
            return Ok(e);
        }
        self.skip_ws();
        let rest = self.rest();
        let first = rest
            .chars()
            .next()
            .ok_or_else(|| self.error("expected a number or a dimension"))?;
        if first.is_ascii_digit() || first == '.' {
            // Digits, one optional fraction and exponent: what `f64::from_str` accepts.
            let len = rest
                .char_indices()
                .take_while(|&(i, c)| {
                    c.is_ascii_digit()
                        || c == '.'
                        || c == 'e'
                        || c == 'E'
                        || ((c == '-' || c == '+')
                            && i > 0
                            && matches!(rest.as_bytes()[i - 1], b'e' | b'E'))
                })
                .count();
            let n: f64 = rest[..len]
                .parse()
                .map_err(|_| self.error("malformed number"))?;
            self.pos += len;
            return Ok(Expr::Num(n));
        }
        if first.is_ascii_alphabetic() || first == '_' {
            let len = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .count();
            let name = &rest[..len];
            let dim = Dim::from_name(name)
                .ok_or_else(|| self.error(&format!("unknown dimension `{name}`")))?;
            self.pos += len;
            return Ok(Expr::Dim(dim));
        }
        Err(self.error(&format!("unexpected `{first}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(d: Dim) -> Option<f64> {
        match d {
            Dim::Hidden => Some(640.0),
            Dim::Heads => Some(4.0),
            Dim::HeadDim => Some(256.0),
            Dim::Layers => Some(18.0),
            _ => None,
        }
    }

    #[test]
    fn evaluates_precedence_and_conditionals() {
        let f = |s: &str| Formula::parse(s).unwrap().eval(&dims).unwrap();
        assert_eq!(f("heads * head_dim"), 1024.0);
        assert_eq!(f("hidden / heads"), 160.0);
        assert_eq!(f("2 + 3 * 4"), 14.0);
        assert_eq!(f("(2 + 3) * 4"), 20.0);
        assert_eq!(f("-2 + 5"), 3.0);
        assert_eq!(f("layers == 62 ? hidden / heads : head_dim"), 256.0);
        assert_eq!(f("layers == 18 ? hidden / heads : head_dim"), 160.0);
        assert_eq!(f("1e-6 * 2"), 2e-6);
        assert_eq!(f("head_dim * 0.5"), 128.0);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "heads *",
            "bogus + 1",
            "(heads",
            "heads heads",
            "1..2",
            "#",
        ] {
            assert!(Formula::parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(Formula::parse(&deep).is_err());
        let negs = format!("{}1", "-".repeat(100));
        assert!(Formula::parse(&negs).is_err());
    }

    #[test]
    fn eval_errors_are_typed() {
        let e = |s: &str| Formula::parse(s).unwrap().eval_count(&dims).unwrap_err();
        assert!(matches!(
            e("vocab * 2"),
            FormulaEvalError::Unset {
                dim: Dim::Vocab,
                ..
            }
        ));
        assert!(matches!(
            e("hidden / 0"),
            FormulaEvalError::DivisionByZero { .. }
        ));
        assert!(matches!(
            e("hidden / 3"),
            FormulaEvalError::NotACount { .. }
        ));
        assert!(matches!(e("0 - 1"), FormulaEvalError::NotACount { .. }));
    }
}
