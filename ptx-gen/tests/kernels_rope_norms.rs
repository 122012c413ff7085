//! Generator-level tests of the norm variants, rope_kv and glu: every sample passes the static
//! checks, names encode the spec, bad specs are typed errors naming the field, and the PTX has
//! the properties the GPU tests rely on (IEEE-rounded math, no `.nc` read of a buffer the kernel
//! writes, the position guard before any store).

use ptx_gen::check::check_module;
use ptx_gen::kernels::{
    generate, FamilySpec, GenError, Glu, GluAct, HeadRmsNorm, KernelSpec, OutFormat,
    ResidualRmsNorm, RmsNorm, RmsNormQ8_1, RopeKv, RopeStyle,
};
use ptx_gen::parse::parse_module;
use ptx_gen::Target;

fn mine() -> Vec<KernelSpec> {
    let mut all: Vec<KernelSpec> = Vec::new();
    all.extend(
        RmsNormQ8_1::samples()
            .into_iter()
            .map(KernelSpec::RmsNormQ8_1),
    );
    all.extend(
        ResidualRmsNorm::samples()
            .into_iter()
            .map(KernelSpec::ResidualRmsNorm),
    );
    all.extend(
        HeadRmsNorm::samples()
            .into_iter()
            .map(KernelSpec::HeadRmsNorm),
    );
    all.extend(RopeKv::samples().into_iter().map(KernelSpec::RopeKv));
    all.extend(Glu::samples().into_iter().map(KernelSpec::Glu));
    all
}

fn ptx(spec: KernelSpec) -> String {
    generate(&spec, Target::dp4a_default()).unwrap().ptx
}

#[test]
fn every_sample_passes_the_static_checks() {
    for spec in mine() {
        for target in [Target::dp4a_default(), Target::sm(90)] {
            let k = generate(&spec, target).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
            let m = parse_module(&k.ptx).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            let findings = check_module(&m);
            assert!(findings.is_empty(), "{}: {findings:#?}", k.name);
            assert!(
                k.ptx.contains(&format!("// {}", spec.describe())),
                "{}: header",
                k.name
            );
            assert_eq!(
                k.params.len(),
                k.ptx.matches(".param .u64").count(),
                "{}",
                k.name
            );
        }
    }
}

#[test]
fn names_encode_the_spec() {
    let cases: Vec<(KernelSpec, &str)> = vec![
        (
            KernelSpec::RmsNormQ8_1(RmsNormQ8_1 {
                hidden: 4096,
                eps: 1e-5,
                weight_offset: 0.0,
                m: 1,
            }),
            "rmsnorm_q8_1_n4096_eps3727c5ac",
        ),
        (
            KernelSpec::RmsNormQ8_1(RmsNormQ8_1 {
                hidden: 640,
                eps: 1e-6,
                weight_offset: 1.0,
                m: 1,
            }),
            "rmsnorm_q8_1_n640_eps358637bd_woff3f800000",
        ),
        (
            KernelSpec::ResidualRmsNorm(ResidualRmsNorm {
                hidden: 896,
                eps: 1e-6,
                weight_offset: 0.0,
                out: OutFormat::Q8_1,
                post_norm: false,
                m: 1,
            }),
            "residual_rmsnorm_q8_1_n896_eps358637bd",
        ),
        (
            KernelSpec::HeadRmsNorm(HeadRmsNorm {
                n_heads: 16,
                head_dim: 128,
                eps: 1e-6,
                weight_offset: 0.0,
                k_heads: 0,
                m: 1,
            }),
            "head_rmsnorm_h16_d128_eps358637bd",
        ),
        (
            KernelSpec::RopeKv(RopeKv {
                style: RopeStyle::Neox,
                n_heads: 14,
                n_kv_heads: 2,
                head_dim: 64,
                rope_dims: 64,
                max_ctx: 32768,
                m: 1,
            }),
            "rope_kv_neox_h14_kv2_d64_r64_ctx32768",
        ),
        (
            KernelSpec::Glu(Glu {
                act: GluAct::Geglu,
                ffn: 2048,
                out: OutFormat::Q8_1,
                m: 1,
            }),
            "glu_geglu_q8_1_n2048",
        ),
    ];
    for (spec, name) in cases {
        assert_eq!(spec.name(), name);
        assert!(name.starts_with(spec.family()), "{name}");
    }
}

#[test]
fn the_cli_parses_every_family() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        KernelSpec::from_cli("rope_kv", &s(&["norm", "32", "8", "128", "128", "8192"]))
            .unwrap()
            .name(),
        "rope_kv_norm_h32_kv8_d128_r128_ctx8192"
    );
    assert_eq!(
        KernelSpec::from_cli("glu", &s(&["swiglu", "q8_1", "14336"]))
            .unwrap()
            .name(),
        "glu_swiglu_q8_1_n14336"
    );
    assert_eq!(
        KernelSpec::from_cli("residual_rmsnorm", &s(&["f32", "4096"]))
            .unwrap()
            .name(),
        "residual_rmsnorm_f32_n4096_eps3727c5ac"
    );
    assert_eq!(
        KernelSpec::from_cli("head_rmsnorm", &s(&["8", "128"]))
            .unwrap()
            .name(),
        "head_rmsnorm_h8_d128_eps358637bd"
    );
    assert_eq!(
        KernelSpec::from_cli("rmsnorm_q8_1", &s(&["896", "1e-6"]))
            .unwrap()
            .name(),
        "rmsnorm_q8_1_n896_eps358637bd"
    );
    assert!(KernelSpec::from_cli("rope_kv", &s(&["sideways", "1", "1", "2", "2", "1"])).is_err());
    assert!(KernelSpec::from_cli("glu", &s(&["relu", "f32", "32"])).is_err());
}

fn field_of(spec: KernelSpec) -> &'static str {
    match generate(&spec, Target::default()).unwrap_err() {
        GenError::InvalidSpec { field, .. } => field,
        e => panic!("{e}"),
    }
}

#[test]
fn bad_specs_name_the_field() {
    let rope = RopeKv {
        style: RopeStyle::Norm,
        n_heads: 8,
        n_kv_heads: 8,
        head_dim: 128,
        rope_dims: 128,
        max_ctx: 16,
        m: 1,
    };
    assert_eq!(
        field_of(KernelSpec::RopeKv(RopeKv {
            rope_dims: 130,
            ..rope
        })),
        "rope_dims"
    );
    assert_eq!(
        field_of(KernelSpec::RopeKv(RopeKv {
            rope_dims: 63,
            ..rope
        })),
        "rope_dims"
    );
    assert_eq!(
        field_of(KernelSpec::RopeKv(RopeKv {
            head_dim: 127,
            rope_dims: 64,
            ..rope
        })),
        "head_dim"
    );
    assert_eq!(
        field_of(KernelSpec::RopeKv(RopeKv { max_ctx: 0, ..rope })),
        "max_ctx"
    );
    assert_eq!(
        field_of(KernelSpec::RopeKv(RopeKv {
            n_kv_heads: 0,
            ..rope
        })),
        "n_kv_heads"
    );
    assert_eq!(
        field_of(KernelSpec::RmsNormQ8_1(RmsNormQ8_1 {
            hidden: 100,
            eps: 1e-5,
            weight_offset: 0.0,
            m: 1,
        })),
        "hidden"
    );
    assert_eq!(
        field_of(KernelSpec::ResidualRmsNorm(ResidualRmsNorm {
            hidden: 99,
            eps: 1e-5,
            weight_offset: 0.0,
            out: OutFormat::Q8_1,
            post_norm: false,
            m: 1,
        })),
        "hidden"
    );
    // f32 output takes any length.
    generate(
        &KernelSpec::ResidualRmsNorm(ResidualRmsNorm {
            hidden: 99,
            eps: 1e-5,
            weight_offset: 0.0,
            out: OutFormat::F32,
            post_norm: false,
            m: 1,
        }),
        Target::default(),
    )
    .unwrap();
    assert_eq!(
        field_of(KernelSpec::HeadRmsNorm(HeadRmsNorm {
            n_heads: 4,
            head_dim: 0,
            eps: 1e-6,
            weight_offset: 0.0,
            k_heads: 0,
            m: 1,
        })),
        "head_dim"
    );
    assert_eq!(
        field_of(KernelSpec::HeadRmsNorm(HeadRmsNorm {
            n_heads: 4,
            head_dim: 64,
            eps: 0.0,
            weight_offset: 0.0,
            k_heads: 0,
            m: 1,
        })),
        "eps"
    );
    assert_eq!(
        field_of(KernelSpec::Glu(Glu {
            act: GluAct::Swiglu,
            ffn: 33,
            out: OutFormat::Q8_1,
            m: 1,
        })),
        "ffn"
    );
    assert_eq!(
        field_of(KernelSpec::Glu(Glu {
            act: GluAct::Swiglu,
            ffn: 0,
            out: OutFormat::F32,
            m: 1,
        })),
        "ffn"
    );
}

#[test]
fn the_fused_norm_computes_the_scale_exactly_as_rmsnorm() {
    // From the first load to the scale, every instruction of the sum of squares and its
    // reduction comes in the same sequence (the fused kernel issues all its loads first, pass
    // 2's scalar loads with them, before the reduction); the same row loads.
    let fused = ptx(KernelSpec::RmsNormQ8_1(RmsNormQ8_1 {
        hidden: 4096,
        eps: 1e-5,
        weight_offset: 0.0,
        m: 1,
    }));
    let plain = ptx(KernelSpec::RmsNorm(RmsNorm {
        hidden: 4096,
        eps: 1e-5,
        weight_offset: 0.0,
        m: 1,
    }));
    let pass1 = |text: &str| -> Vec<String> {
        let body: Vec<&str> = text.lines().filter(|l| l.starts_with('\t')).collect();
        let from = body
            .iter()
            .position(|l| l.contains("ld.global.nc"))
            .unwrap();
        let to = body.iter().position(|l| l.contains("rcp.rn.f32")).unwrap();
        let kept = [
            "fma.",
            "shfl.",
            "add.f32",
            "bar.",
            "st.shared",
            "ld.shared",
            "div.",
            "add.rn",
            "sqrt.",
            "rcp.",
        ];
        body[from..=to]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .filter(|op| kept.iter().any(|k| op.starts_with(k)))
            .collect()
    };
    let (f, p) = (pass1(&fused), pass1(&plain));
    assert!(f.len() > 40, "{f:?}");
    assert_eq!(f, p);
    // Up to the scale: the row's 4 float4 loads per thread in both (the plain kernel's
    // weights come after it).
    let row_loads = |text: &str| {
        let upto = &text[..text.find("rcp.rn.f32").unwrap()];
        upto.matches("ld.global.nc.v4.f32").count()
    };
    assert_eq!((row_loads(&fused), row_loads(&plain)), (4, 4));
}

#[test]
fn written_buffers_are_never_read_through_the_non_coherent_path() {
    // residual_rmsnorm 4096: 256 threads x 4 float4; x plain, residual and w through .nc.
    let res = ptx(KernelSpec::ResidualRmsNorm(ResidualRmsNorm {
        hidden: 4096,
        eps: 1e-5,
        weight_offset: 0.0,
        out: OutFormat::F32,
        post_norm: false,
        m: 1,
    }));
    assert_eq!(res.matches("ld.global.v4.f32").count(), 4, "{res}");
    assert_eq!(res.matches("ld.global.nc.v4.f32").count(), 8, "{res}");
    // Q8_1 output: pass 2 reads x (written by other threads) after a barrier, coherently.
    let res_q8 = ptx(KernelSpec::ResidualRmsNorm(ResidualRmsNorm {
        hidden: 4096,
        eps: 1e-5,
        weight_offset: 0.0,
        out: OutFormat::Q8_1,
        post_norm: false,
        m: 1,
    }));
    // (pass 2 loads a group of 8 blocks per warp before quantizing them: 8 loads of x)
    assert_eq!(res_q8.matches("ld.global.f32").count(), 8, "{res_q8}");
    let bar = res_q8.rfind("bar.sync").unwrap();
    assert!(bar < res_q8.find("ld.global.f32").unwrap());
    // head_rmsnorm: x plain, w through .nc.
    let head = ptx(KernelSpec::HeadRmsNorm(HeadRmsNorm {
        n_heads: 8,
        head_dim: 256,
        eps: 1e-6,
        weight_offset: 0.0,
        k_heads: 0,
        m: 1,
    }));
    assert_eq!(head.matches("ld.global.v4.f32").count(), 2, "{head}");
    assert_eq!(head.matches("ld.global.nc.v4.f32").count(), 2, "{head}");
    // rope_kv: q and k are read with plain loads, v and the table with .nc.
    let rope = ptx(KernelSpec::RopeKv(RopeKv {
        style: RopeStyle::Norm,
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 128,
        rope_dims: 128,
        max_ctx: 4096,
        m: 1,
    }));
    assert_eq!(
        rope.matches("ld.global.v2.f32").count(),
        4,
        "q (2 steps) and k (2 steps)\n{rope}"
    );
    assert_eq!(
        rope.matches("ld.global.nc.v2.f32").count(),
        4 + 2,
        "table (q, k) and v\n{rope}"
    );
}

#[test]
fn rope_returns_before_any_store_when_pos_is_out_of_range() {
    for spec in RopeKv::samples() {
        let text = ptx(KernelSpec::RopeKv(spec));
        let load = text.find("ld.global.u32").unwrap();
        let guard = text[load..].find("setp.ge.u32 %p").unwrap() + load;
        let ret = text[guard..].find("ret;").unwrap() + guard;
        let first_store = text.find("st.global").unwrap();
        assert!(ret < first_store, "{}", spec.name());
        assert!(
            text[guard..ret].contains(&format!(", {};", spec.max_ctx)),
            "{}",
            spec.name()
        );
        // The rotation uses IEEE-rounded products and fused multiply-adds only.
        assert!(
            !text.contains("mul.f32") && !text.contains("fma.f32"),
            "{}",
            spec.name()
        );
        assert!(text.contains("cvt.rn.f16.f32"));
    }
}

#[test]
fn glu_uses_exp2_only_on_the_fraction_and_rounds_once() {
    for spec in Glu::samples() {
        let text = ptx(KernelSpec::Glu(spec));
        // One software 2^x per value (its one `cvt.rni.f32.f32`), on the fraction of the
        // exponent; one division, in f64; no approximate instruction at all.
        let values = text.matches("cvt.rni.f32.f32").count();
        assert!(values >= 1, "{}", spec.name());
        assert_eq!(
            text.matches("div.rn.f64").count(),
            values,
            "{}",
            spec.name()
        );
        assert_eq!(
            text.matches("cvt.rni.f64.f64").count(),
            values,
            "{}",
            spec.name()
        );
        assert_eq!(
            text.matches("cvt.rn.f32.f64").count(),
            2 * values,
            "{}",
            spec.name()
        );
        assert!(!text.contains("approx"), "{}", spec.name());
    }
}
