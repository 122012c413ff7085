//! A GEMV over several matrices in one launch (`Gemv::more_rows`) and its prologues: typed errors,
//! parameters, and that its grid and every matrix's rows are the separate GEMVs' own.

use ptx_gen::kernels::{
    generate, generate_tiled, FamilySpec, Gemv, GemvNorm, GemvPrologue, GemvRope, GenError, GluAct,
    KernelSpec, ParamKind, RopeOutputs, RopeStyle, WeightType,
};
use ptx_gen::launch::Extent;
use ptx_gen::Target;

fn grid_x(k: &ptx_gen::kernels::GeneratedKernel) -> u32 {
    match k.launch.grid[0] {
        Extent::Const(c) => c,
        ref other => panic!("{}: grid {other:?}", k.name),
    }
}

fn bytes(k: &ptx_gen::kernels::GeneratedKernel, name: &str) -> u64 {
    match &k.params.iter().find(|p| p.name == name).unwrap().kind {
        ParamKind::Buffer(b) => b.bytes,
        other => panic!("{name}: {other:?}"),
    }
}

fn qkv(m: u32) -> Gemv {
    Gemv {
        weight: WeightType::Q8_0,
        n: 896,
        k: 896,
        bias: true,
        residual: false,
        m,
        more_rows: [128, 128],
        rope: None,
        prologue: None,
        tile: None,
    }
}

fn field(spec: Gemv) -> String {
    match spec.validate() {
        Err(GenError::InvalidSpec { field, .. }) => field.to_string(),
        other => panic!("{spec:?}: expected an invalid spec, got {other:?}"),
    }
}

#[test]
fn bad_part_layouts_are_typed_errors() {
    let s = qkv(1);
    assert_eq!(
        field(Gemv {
            residual: true,
            ..s
        }),
        "residual"
    );
    assert_eq!(
        field(Gemv {
            more_rows: [0, 128],
            rope: None,
            ..s
        }),
        "more_rows"
    );
    // A thread block of the tile takes several rows: one fewer would put rows of two
    // matrices in one block.
    let per_block = s.tile().rows * s.tile().warps / s.tile().split;
    assert!(per_block > 1 && 128 % per_block == 0);
    assert_eq!(
        field(Gemv {
            more_rows: [128 - 1, 128],
            rope: None,
            ..s
        }),
        "n / more_rows"
    );
    assert!(s.validate().is_ok());
}

#[test]
fn bad_rope_epilogues_are_typed_errors() {
    let rope = |outputs| GemvRope {
        style: RopeStyle::Neox,
        head_dim: 64,
        rope_dims: 64,
        max_ctx: 4096,
        outputs,
    };
    let s = Gemv {
        rope: Some(rope(RopeOutputs::Qkv)),
        ..qkv(1)
    };
    assert!(s.validate().is_ok());
    // Three outputs need three matrices, K and V alike, of whole heads.
    for more_rows in [[128, 0], [128, 64], [96, 96]] {
        assert_eq!(field(Gemv { more_rows, ..s }), "more_rows", "{more_rows:?}");
    }
    // Q and K need two matrices; V alone one.
    let qk = Gemv {
        rope: Some(rope(RopeOutputs::Qk)),
        ..s
    };
    assert_eq!(field(qk), "more_rows");
    assert!(Gemv {
        more_rows: [128, 0],
        ..qk
    }
    .validate()
    .is_ok());
    let v = Gemv {
        n: 128,
        more_rows: [0, 0],
        rope: Some(rope(RopeOutputs::V)),
        ..s
    };
    assert!(v.validate().is_ok());
    // Odd rope dims, a cache of no positions.
    let bad = |r: GemvRope| field(Gemv { rope: Some(r), ..s });
    assert_eq!(
        bad(GemvRope {
            rope_dims: 63,
            ..rope(RopeOutputs::Qkv)
        }),
        "rope"
    );
    assert_eq!(
        bad(GemvRope {
            max_ctx: 0,
            ..rope(RopeOutputs::Qkv)
        }),
        "rope"
    );
    // A matrix that ends inside a thread block (a pair's writer would store past it).
    let per_block = v.tile().rows * v.tile().warps / v.tile().split;
    assert!(per_block > 2);
    let short = Gemv {
        n: 2,
        rope: Some(GemvRope {
            head_dim: 2,
            rope_dims: 2,
            ..rope(RopeOutputs::V)
        }),
        ..v
    };
    assert_eq!(field(short), "n / more_rows");
    // A tile whose rows of a pair land in different thread blocks.
    let err = generate_tiled(&v, "r1w4l1".parse().unwrap(), Target::sm(90));
    assert!(
        matches!(err, Err(GenError::InvalidSpec { field: "rope", .. })),
        "{err:?}"
    );
}

#[test]
fn parameters_and_grid_are_the_parts_own() {
    for m in [1, 4] {
        let s = qkv(m);
        let k = generate(&KernelSpec::Gemv(s), Target::dp4a_default()).unwrap();
        let names: Vec<&str> = k.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["w", "w1", "w2", "x", "bias", "bias1", "bias2", "y", "y1", "y2"]
        );
        assert_eq!(
            k.name,
            format!(
                "gemv_q8_0_q8_1_n896_k896_and128_and128_bias{}",
                if m > 1 {
                    format!("_m{m}")
                } else {
                    String::new()
                }
            )
        );
        let mut grid = 0;
        for (i, rows) in s.parts().into_iter().enumerate() {
            let part = s.part(i);
            assert_eq!(part.n, rows);
            assert_eq!(
                part.tile(),
                s.tile(),
                "each matrix keeps its own GEMV's tile"
            );
            let alone = generate(&KernelSpec::Gemv(part), Target::dp4a_default()).unwrap();
            grid += grid_x(&alone);
            for base in ["w", "bias", "y"] {
                let name = ptx_gen::kernels::part_param(base, i);
                assert_eq!(bytes(&k, &name), bytes(&alone, base), "{name}");
            }
        }
        assert_eq!(grid_x(&k), grid);
        // The batched claim: weights and biases shared, x and every output per vector.
        if m > 1 {
            let d = KernelSpec::Gemv(s).batch_decl().unwrap();
            let text = format!("{d:?}");
            for p in ["y1", "y2", "w1", "bias2"] {
                assert!(text.contains(p), "{p} missing from {text}");
            }
        }
    }
}

#[test]
fn cli_takes_more_matrices() {
    let dims: Vec<String> = ["q8_0", "896", "896", "bias", "+128", "+128"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(Gemv::from_cli(&dims).unwrap(), qkv(1));
    let three: Vec<String> = ["q8_0", "896", "896", "+128", "+128", "+128"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(Gemv::from_cli(&three).is_err());
}

#[test]
fn bad_norm_prologues_are_typed_errors() {
    let norm = GemvNorm {
        eps: 1e-5,
        weight_offset: 0.0,
    };
    let s = Gemv {
        weight: WeightType::Q8_0,
        n: 256,
        k: 2048,
        bias: false,
        residual: false,
        m: 1,
        more_rows: [0, 0],
        rope: None,
        prologue: Some(GemvPrologue::Norm(norm)),
        tile: None,
    };
    assert!(s.validate().is_ok());
    assert!(Gemv { m: 16, ..s }.validate().is_ok());
    // eps must be positive and finite; the weight offset finite.
    for eps in [0.0, -1e-5, f32::NAN, f32::INFINITY] {
        let bad = Gemv {
            prologue: Some(GemvPrologue::Norm(GemvNorm { eps, ..norm })),
            tile: None,
            ..s
        };
        assert_eq!(field(bad), "eps", "eps {eps}");
    }
    let bad = Gemv {
        prologue: Some(GemvPrologue::Norm(GemvNorm {
            weight_offset: f32::NAN,
            ..norm
        })),
        ..s
    };
    assert_eq!(field(bad), "weight_offset");
    // A row of 8192 values is summed by 512 threads in `rmsnorm_q8_1`'s layout: more than
    // the GEMV's 256.
    assert_eq!(field(Gemv { k: 8192, ..s }), "norm");
    // 16 vectors of 4096 values staged: 74 KiB of shared memory.
    assert_eq!(
        field(Gemv {
            k: 4096,
            m: 16,
            ..s
        }),
        "prologue"
    );
    assert!(Gemv { k: 4096, m: 8, ..s }.validate().is_ok());
    // The generator refuses what validation refuses.
    assert!(matches!(
        generate(
            &KernelSpec::Gemv(Gemv { k: 8192, ..s }),
            Target::dp4a_default()
        ),
        Err(GenError::InvalidSpec { .. })
    ));
}

#[test]
fn a_norm_prologue_reads_f32_x_and_the_norm_weight() {
    let s = Gemv {
        weight: WeightType::Q4_1,
        n: 1536,
        k: 576,
        bias: false,
        residual: false,
        m: 3,
        more_rows: [1536, 0],
        rope: None,
        prologue: Some(GemvPrologue::Norm(GemvNorm {
            eps: 1e-5,
            weight_offset: 0.0,
        })),
        tile: None,
    };
    let k = generate(&KernelSpec::Gemv(s), Target::dp4a_default()).expect("generates");
    // x: 3 vectors of 576 f32 values; norm_w: one of 576, shared.
    assert_eq!(bytes(&k, "x"), 3 * 576 * 4);
    assert_eq!(bytes(&k, "norm_w"), 576 * 4);
    let names: Vec<&str> = k.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["w", "w1", "x", "norm_w", "y", "y1"]);
    // The same grid as the GEMV without the prologue.
    let plain = generate(
        &KernelSpec::Gemv(Gemv {
            prologue: None,
            tile: None,
            ..s
        }),
        Target::dp4a_default(),
    )
    .expect("generates");
    assert_eq!(grid_x(&k), grid_x(&plain));
}

#[test]
fn a_glu_prologue_reads_the_gate_and_up_and_fits_its_shared_memory() {
    let s = Gemv {
        weight: WeightType::Q8_0,
        n: 576,
        k: 1536,
        bias: false,
        residual: true,
        m: 2,
        more_rows: [0, 0],
        rope: None,
        prologue: Some(GemvPrologue::Glu(GluAct::Swiglu)),
        tile: None,
    };
    let k = generate(&KernelSpec::Gemv(s), Target::dp4a_default()).expect("generates");
    let names: Vec<&str> = k.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["w", "x", "up", "residual", "y"]);
    assert_eq!(bytes(&k, "x"), 2 * 1536 * 4);
    assert_eq!(bytes(&k, "up"), 2 * 1536 * 4);
    assert!(k.name.ends_with("_glu_swiglu_m2"), "{}", k.name);
    // 16 vectors of 4864 values staged: 87 KiB.
    assert_eq!(
        field(Gemv {
            k: 4864,
            m: 16,
            ..s
        }),
        "prologue"
    );
}
