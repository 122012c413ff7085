//! The builder refuses ill-typed or unsupported instructions when the kernel is built, and
//! emits what it is told deterministically.

use ptx_gen::ast::{StateSpace, Type};
use ptx_gen::emit::emit_module;
use ptx_gen::ir::{
    Addr, BinOp, CacheHint, Cmp, FMode, IrError, KernelBuilder, L2Evict, Module, Sreg, UnOp, Value,
};
use ptx_gen::Target;

fn build(target: Target, f: impl FnOnce(&mut KernelBuilder)) -> Result<String, IrError> {
    let mut b = KernelBuilder::new("k", target);
    f(&mut b);
    Ok(emit_module(&Module::single(b.finish()?)))
}

fn mismatch(r: Result<String, IrError>) -> (String, String, String) {
    match r {
        Err(IrError::TypeMismatch {
            instr,
            operand,
            expected,
            ..
        }) => (instr, operand, expected),
        other => panic!("expected a type mismatch, got {other:?}"),
    }
}

fn invalid(r: Result<String, IrError>) -> String {
    match r {
        Err(IrError::Invalid { message, .. }) => message,
        other => panic!("expected an invalid-kernel error, got {other:?}"),
    }
}

#[test]
fn a_float_register_in_an_integer_add_is_refused() {
    let r = build(Target::sm(80), |b| {
        let f = b.mov(Type::F32, 1.0f32);
        b.add(Type::U32, f, 1u32);
    });
    assert_eq!(mismatch(r), ("add".into(), "a".into(), "u32".into()));
}

#[test]
fn integer_immediates_in_float_operations_and_out_of_range_immediates_are_refused() {
    let r = build(Target::sm(80), |b| {
        let f = b.mov(Type::F32, 1.0f32);
        b.bin(BinOp::Add, Type::F32, FMode::rn(), f, 1u32);
    });
    assert_eq!(mismatch(r).1, "b");
    let r = build(Target::sm(80), |b| {
        let x = b.mov(Type::U16, 1u32);
        b.add(Type::U16, x, 70000u32);
    });
    assert_eq!(mismatch(r).1, "b");
}

#[test]
fn a_destination_of_the_wrong_type_is_refused() {
    let r = build(Target::sm(80), |b| {
        let acc = b.mov(Type::S32, 0i32);
        let x = b.mov(Type::F32, 2.0f32);
        b.to(acc).fma(x, x, x);
    });
    let (_, operand, expected) = mismatch(r);
    assert_eq!(
        (operand.as_str(), expected.as_str()),
        ("destination", "f32")
    );
}

#[test]
fn signed_and_unsigned_and_bit_registers_mix_as_ptx_allows() {
    let ptx = build(Target::sm(80), |b| {
        let u = b.mov(Type::U32, 7u32);
        let s = b.add(Type::S32, u, -1i32);
        let bits = b.and(Type::B32, s, 0xffu32);
        let f = b.mov(Type::F32, bits);
        let _ = b.mov(Type::B32, f);
    })
    .unwrap();
    assert!(ptx.contains("add.s32 %r1, %r0, -1;"), "{ptx}");
}

#[test]
fn logic_on_non_bit_types_and_arithmetic_on_bit_types_are_refused() {
    assert!(invalid(build(Target::sm(80), |b| {
        let u = b.mov(Type::U32, 7u32);
        b.and(Type::U32, u, 1u32);
    }))
    .contains("and is not defined for .u32"));
    assert!(invalid(build(Target::sm(80), |b| {
        let u = b.mov(Type::B32, 7u32);
        b.add(Type::B32, u, 1u32);
    }))
    .contains("add is not defined for .b32"));
}

#[test]
fn target_features_are_enforced() {
    let dp4a = |b: &mut KernelBuilder| {
        let a = b.mov(Type::S32, 1i32);
        b.dp4a(Type::S32, Type::S32, a, a, a);
    };
    assert!(matches!(
        build(Target::sm(60), dp4a),
        Err(IrError::Unsupported { .. })
    ));
    assert!(build(Target::sm(61), dp4a).is_ok());
    let hinted = |b: &mut KernelBuilder| {
        let p = b.param(Type::U64, "p");
        let a = b.global_ptr(&p);
        b.load(
            StateSpace::Global,
            Type::U32,
            4,
            Addr::reg(a),
            &[CacheHint::NonCoherent, CacheHint::L1NoAllocate],
            None,
        );
    };
    assert!(matches!(
        build(Target::sm(61), hinted),
        Err(IrError::Unsupported { .. })
    ));
    let ptx = build(Target::sm(80), hinted).unwrap();
    assert!(
        ptx.contains("ld.global.nc.L1::no_allocate.v4.u32 {%r0, %r1, %r2, %r3}, [%rd1];"),
        "{ptx}"
    );
    let policy = |b: &mut KernelBuilder| {
        b.l2_policy(L2Evict::First);
    };
    assert!(matches!(
        build(Target::sm(75), policy),
        Err(IrError::Unsupported { .. })
    ));
}

#[test]
fn rounding_modes_are_required_where_ptx_requires_them() {
    let r = build(Target::sm(80), |b| {
        let f = b.mov(Type::F32, 1.5f32);
        b.cvt(Type::S32, Type::F32, FMode::NONE, f);
    });
    assert!(invalid(r).contains("needs a rounding mode"));
    let r = build(Target::sm(80), |b| {
        let f = b.mov(Type::F32, 1.5f32);
        b.cvt(Type::S32, Type::F32, FMode::rn(), f);
    });
    assert!(invalid(r).contains("integer rounding mode"));
    let r = build(Target::sm(80), |b| {
        let f = b.mov(Type::F32, 1.5f32);
        b.mad(Type::F32, FMode::NONE, f, f, f);
    });
    assert!(invalid(r).contains("needs a rounding mode"));
    let r = build(Target::sm(80), |b| {
        let f = b.mov(Type::F32, 1.5f32);
        b.un(UnOp::Ex2, Type::F32, FMode::rn(), f);
    });
    assert!(invalid(r).contains("only as .approx"));
}

#[test]
fn branches_to_labels_never_placed_and_dangling_guards_are_refused() {
    let r = build(Target::sm(80), |b| {
        let l = b.label("nowhere");
        b.bra(&l);
    });
    assert!(invalid(r).contains("never placed"));
    let r = build(Target::sm(80), |b| {
        let p = b.setp(Cmp::Eq, Type::U32, 1u32, 1u32);
        b.when(p);
    });
    assert!(invalid(r).contains("no instruction followed"));
}

#[test]
fn float_immediates_are_written_as_their_exact_bits() {
    let ptx = build(Target::sm(80), |b| {
        let x = b.mov(Type::F32, 1e-5f32);
        b.bin(BinOp::Mul, Type::F32, FMode::rn(), x, Value::f32(-0.0));
        b.mov(Type::F64, Value::f64(0.1));
    })
    .unwrap();
    assert!(
        ptx.contains(&format!("mov.f32 %f0, 0f{:08X};", 1e-5f32.to_bits())),
        "{ptx}"
    );
    assert!(ptx.contains("mul.rn.f32 %f1, %f0, 0f80000000;"), "{ptx}");
    assert!(
        ptx.contains(&format!("mov.f64 %fd0, 0d{:016X};", 0.1f64.to_bits())),
        "{ptx}"
    );
}

#[test]
fn structured_control_flow_gives_unique_labels_and_ends_in_ret() {
    let ptx = build(Target::sm(80), |b| {
        let t = b.special(Sreg::TidX);
        for _ in 0..3 {
            let p = b.setp(Cmp::Lt, Type::U32, t, 16u32);
            b.if_else(p, |b| b.comment("then"), |b| b.comment("else"));
        }
        b.for_range(Type::U32, 0u32, 10u32, 2, |b, i| {
            let q = b.setp(Cmp::Eq, Type::U32, i, 4u32);
            b.if_then(q, |b| b.comment("four"));
        });
    })
    .unwrap();
    let labels: Vec<&str> = ptx.lines().filter(|l| l.ends_with(':')).collect();
    let mut unique = labels.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(labels.len(), 3 * 2 + 2 + 1, "{ptx}");
    assert_eq!(unique.len(), labels.len(), "duplicate labels in\n{ptx}");
    assert_eq!(ptx.lines().rev().nth(1), Some("\tret;"));
}

#[test]
fn the_same_kernel_is_emitted_byte_identically() {
    for spec in ptx_gen::kernels::sample_specs() {
        let a = ptx_gen::generate(&spec, Target::dp4a_default()).unwrap();
        let b = ptx_gen::generate(&spec, Target::dp4a_default()).unwrap();
        assert_eq!(a.ptx, b.ptx, "{}", a.name);
        assert!(a.ptx.contains(&format!(".visible .entry {}(", a.name)));
    }
}

#[test]
fn invalid_specs_are_typed_errors_naming_the_field() {
    use ptx_gen::kernels::{GenError, KernelSpec, QuantizeQ8_1, RmsNorm};
    let e = ptx_gen::generate(
        &KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: 100, m: 1 }),
        Target::default(),
    )
    .unwrap_err();
    assert!(matches!(e, GenError::InvalidSpec { field: "k", .. }), "{e}");
    let e = ptx_gen::generate(
        &KernelSpec::RmsNorm(RmsNorm {
            hidden: 4096,
            eps: -1.0,
            weight_offset: 0.0,
            m: 1,
        }),
        Target::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, GenError::InvalidSpec { field: "eps", .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("rmsnorm: eps must be a positive finite number, got -1"),
        "{e}"
    );
}
