//! parse(print(m)) == m for random modules the printer can print, and so
//! print(parse(text)) == text for every text the printer prints.
//!
//! The generators cover every tree shape: all operand variants (nested vectors, tuples,
//! `!`, pred pairs, every integer radix and sign, float bits, decimal floats, addresses
//! with any i64 offset), declarations with ranges, arrays and nested initializers,
//! functions with return lists, pointer attributes and performance directives, nested
//! blocks, labels, raw directives, comments and blank lines. They only avoid trees that no
//! text can express (a line comment holding a newline, a block comment holding `*/`, a
//! scalar initializer that is a vector, which prints like a list). The same trees also
//! feed the static checks, which must read any tree without panicking.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use ptx_gen::ast::{
    AddrBase, Address, Comment, DeclSuffix, Declarator, FnKind, Function, Guard, Initializer,
    Instruction, IntLit, Item, Linkage, Module, Operand, ParamDecl, PerfDirective, Radix,
    StateSpace, Statement, Type, VarDecl,
};
use ptx_gen::check::check_module;
use ptx_gen::emit::print_module;
use ptx_gen::parse::parse_module;

fn symbol() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_$][a-zA-Z0-9_$]{0,10}",
        Just("_".to_string()),
        "\\$L__BB[0-9]_[0-9]{1,2}",
    ]
}

fn reg() -> impl Strategy<Value = String> {
    prop_oneof![
        "%(r|rd|rs|f|fd|p)[0-9]{1,3}",
        "%[a-zA-Z_][a-zA-Z0-9_$]{0,6}",
        prop::sample::select(vec!["%tid.x", "%ctaid.y", "%ntid.z", "%laneid", "%envreg3"])
            .prop_map(String::from),
    ]
}

fn linkage() -> impl Strategy<Value = Linkage> {
    prop::sample::select(vec![
        Linkage::Visible,
        Linkage::Extern,
        Linkage::Weak,
        Linkage::Common,
    ])
}

fn ty() -> impl Strategy<Value = Type> {
    prop::sample::select(Type::ALL.to_vec())
}

fn comment() -> impl Strategy<Value = Comment> {
    prop_oneof![
        "[^\n\r]{0,24}".prop_map(Comment::Line),
        "[^\n\r]{0,24}"
            .prop_filter("a block comment cannot hold */", |s| !s.contains("*/"))
            .prop_map(Comment::Block),
    ]
}

fn int_lit() -> impl Strategy<Value = IntLit> {
    let radix = prop::sample::select(vec![Radix::Dec, Radix::Hex, Radix::Octal, Radix::Binary]);
    (any::<bool>(), any::<u64>(), radix, any::<bool>()).prop_map(
        |(negative, magnitude, radix, unsigned_suffix)| IntLit {
            negative,
            magnitude,
            radix,
            unsigned_suffix,
        },
    )
}

fn float_dec() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,4}\\.[0-9]{0,4}([eE][+-]?[0-9]{1,2})?",
        "-?[0-9]{1,3}[eE][+-]?[0-9]{1,2}",
    ]
}

fn address() -> impl Strategy<Value = Address> {
    let base = option::of(prop_oneof![
        reg().prop_map(AddrBase::Reg),
        symbol().prop_map(AddrBase::Symbol),
    ]);
    (base, prop_oneof![Just(0i64), -64i64..64, any::<i64>()])
        .prop_map(|(base, offset)| Address { base, offset })
}

/// Operands that can stand alone as an initializer value.
fn scalar() -> impl Strategy<Value = Operand> {
    prop_oneof![
        int_lit().prop_map(Operand::Int),
        any::<u32>().prop_map(Operand::F32),
        any::<u64>().prop_map(Operand::F64),
        float_dec().prop_map(Operand::FloatDec),
        symbol().prop_map(Operand::Symbol),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    let leaf = prop_oneof![
        3 => reg().prop_map(Operand::Reg),
        2 => scalar(),
        1 => address().prop_map(Operand::Address),
        1 => (reg(), reg()).prop_map(|(a, b)| Operand::PredPair(a, b)),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Operand::Vector),
            vec(inner.clone(), 0..3).prop_map(Operand::Tuple),
            inner.prop_map(|o| Operand::Not(Box::new(o))),
        ]
    })
}

fn modifier() -> impl Strategy<Value = String> {
    prop_oneof![
        ty().prop_map(|t| t.name().to_string()),
        prop::sample::select(vec![
            "global",
            "shared",
            "nc",
            "L1::no_allocate",
            "L2::256B",
            "v4",
            "x4",
            "sync",
            "aligned",
            "rn",
            "wide",
            "lo",
            "shared::cta",
            "approx",
            "ftz",
        ])
        .prop_map(String::from),
        "[a-z0-9_]{1,6}",
    ]
}

fn instruction() -> impl Strategy<Value = Instruction> {
    let guard =
        option::of((any::<bool>(), reg()).prop_map(|(negated, pred)| Guard { negated, pred }));
    (
        guard,
        "[a-z][a-z0-9_]{0,6}",
        vec(modifier(), 0..4),
        vec(operand(), 0..5),
    )
        .prop_map(|(guard, opcode, mods, operands)| Instruction {
            guard,
            opcode,
            mods,
            operands,
        })
}

fn initializer() -> impl Strategy<Value = Initializer> {
    scalar()
        .prop_map(Initializer::Scalar)
        .prop_recursive(3, 16, 4, |inner| {
            vec(inner, 0..4).prop_map(Initializer::List)
        })
}

fn declarator() -> impl Strategy<Value = Declarator> {
    let suffix = prop_oneof![
        Just(DeclSuffix::None),
        any::<u32>().prop_map(DeclSuffix::Range),
        vec(option::of(any::<u64>()), 1..3).prop_map(DeclSuffix::Array),
    ];
    ("%?[a-zA-Z_$][a-zA-Z0-9_$]{0,8}", suffix)
        .prop_map(|(name, suffix)| Declarator { name, suffix })
}

fn var_decl() -> impl Strategy<Value = VarDecl> {
    (
        option::of(linkage()),
        prop::sample::select(StateSpace::ALL.to_vec()),
        option::of(any::<u32>()),
        option::of(prop::sample::select(vec![2u32, 4, 8])),
        ty(),
        vec(declarator(), 1..3),
        option::of(initializer()),
    )
        .prop_map(|(linkage, space, align, vector, ty, names, init)| VarDecl {
            linkage,
            space,
            align,
            vector,
            ty,
            names,
            init,
        })
}

/// Directive names that are not declarations; `section` is left out of bodies because a
/// `.section` takes the `{ }` group that may follow it on the next line.
fn raw_directive(names: Vec<&'static str>) -> impl Strategy<Value = (String, String, bool)> {
    let args = prop_oneof![
        Just(String::new()),
        "[a-z0-9_]{1,5}( [a-z0-9_,]{1,5}){0,3}",
        "\"[a-z ;{}/*]{0,8}\"",
    ];
    (
        prop::sample::select(names).prop_map(String::from),
        args,
        any::<bool>(),
    )
}

fn statement() -> impl Strategy<Value = Statement> {
    let leaf = prop_oneof![
        1 => Just(Statement::Blank),
        1 => comment().prop_map(Statement::Comment),
        1 => var_decl().prop_map(Statement::Decl),
        1 => symbol().prop_map(Statement::Label),
        4 => instruction().prop_map(Statement::Instr),
        1 => raw_directive(vec!["pragma", "loc", "alias", "branchtargets"]).prop_map(
            |(name, args, semicolon)| Statement::Directive { name, args, semicolon }
        ),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        vec(inner, 0..6).prop_map(Statement::Block)
    })
}

fn param() -> impl Strategy<Value = ParamDecl> {
    let attr = prop::sample::select(vec!["ptr", "global", "shared", "align 16", "align 4"])
        .prop_map(String::from);
    (
        prop::sample::select(vec![StateSpace::Param, StateSpace::Reg]),
        option::of(any::<u32>()),
        ty(),
        vec(attr, 0..3),
        "[a-zA-Z_$][a-zA-Z0-9_$]{0,12}",
        option::of(option::of(any::<u64>())),
    )
        .prop_map(|(space, align, ty, ptr_attrs, name, array)| ParamDecl {
            space,
            align,
            ty,
            ptr_attrs,
            name,
            array,
        })
}

fn function() -> impl Strategy<Value = Function> {
    let perf = (
        prop::sample::select(vec![
            "maxntid",
            "reqntid",
            "minnctapersm",
            "maxnreg",
            "maxnctapersm",
            "noreturn",
        ]),
        vec(any::<u64>(), 0..3),
    )
        .prop_map(|(name, values)| PerfDirective {
            name: name.into(),
            values,
        });
    (
        option::of(linkage()),
        prop::sample::select(vec![FnKind::Entry, FnKind::Func]),
        option::of(vec(param(), 0..2)),
        "[a-zA-Z_$][a-zA-Z0-9_$]{0,12}",
        vec(param(), 0..4),
        vec(perf, 0..3),
        option::of(vec(statement(), 0..12)),
    )
        .prop_map(
            |(linkage, kind, returns, name, params, directives, body)| Function {
                linkage,
                kind,
                returns,
                name,
                params,
                directives,
                body,
            },
        )
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        1 => Just(Item::Blank),
        1 => comment().prop_map(Item::Comment),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(major, minor)| Item::Version { major, minor }),
        1 => vec("[a-z0-9_]{1,8}", 1..3).prop_map(Item::Target),
        1 => any::<u32>().prop_map(Item::AddressSize),
        1 => var_decl().prop_map(Item::Var),
        3 => function().prop_map(Item::Function),
        1 => raw_directive(vec!["file", "section", "pragma", "alias"]).prop_map(
            |(name, args, semicolon)| Item::Directive { name, args, semicolon }
        ),
    ]
}

fn module() -> impl Strategy<Value = Module> {
    vec(item(), 0..8).prop_map(|items| Module { items })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn printed_modules_parse_back_to_the_same_tree(m in module()) {
        let text = print_module(&m);
        let parsed = parse_module(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&parsed, &m, "{}", text);
        prop_assert_eq!(print_module(&parsed), text);
    }

    /// The checks read any tree the parser can produce without panicking, however odd.
    #[test]
    fn random_trees_never_panic_the_checks(m in module()) {
        for f in check_module(&m) {
            // Every finding names its check in its message line.
            prop_assert!(f.to_string().contains(f.check.name()));
        }
    }

    #[test]
    fn printed_instructions_parse_back(i in instruction()) {
        let body = vec![Statement::Instr(i)];
        let f = Function {
            linkage: None,
            kind: FnKind::Entry,
            returns: None,
            name: "k".into(),
            params: vec![],
            directives: vec![],
            body: Some(body),
        };
        let m = Module { items: vec![Item::Function(f)] };
        let text = print_module(&m);
        let parsed = parse_module(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed, m, "{}", text);
    }
}
