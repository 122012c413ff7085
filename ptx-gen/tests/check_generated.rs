//! Every kernel the library generates passes every static check, on the default target and
//! on sm_90.

use ptx_gen::check::check_module;
use ptx_gen::kernels::{generate, generate_tiled, sample_specs, Gemv, KernelSpec, WeightType};
use ptx_gen::parse::parse_module;
use ptx_gen::Target;

#[test]
fn every_sample_kernel_passes_the_static_checks() {
    let mut count = 0;
    for target in [Target::dp4a_default(), Target::sm(90)] {
        for spec in sample_specs() {
            let k = generate(&spec, target).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
            let m = parse_module(&k.ptx).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            let findings = check_module(&m);
            assert!(
                findings.is_empty(),
                "{}:\n{}",
                k.name,
                findings
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            count += 1;
        }
    }
    println!("{count} generated kernels pass the static checks");
}

/// GEMV tiles of the bench's search, splits that are not powers of two included (their warp
/// groups are found by division), pass the static checks.
#[test]
fn gemv_tiles_of_the_search_pass_the_static_checks() {
    for (weight, k, tile) in [
        (WeightType::Q4K, 14336, "r1w7l1s7"),
        (WeightType::Q4K, 14336, "r1w6l1s3"),
        (WeightType::Q6K, 4096, "r1w6l3s3"),
        (WeightType::Q5_0, 2048, "r2w5l2s5"),
    ] {
        let spec = Gemv {
            weight,
            n: 96,
            k,
            bias: true,
            residual: false,
            m: 2,
            more_rows: [0, 0],
            rope: None,
            prologue: None,
            tile: None,
        };
        let k = generate_tiled(&spec, tile.parse().unwrap(), Target::sm(90))
            .unwrap_or_else(|e| panic!("{:?} {tile}: {e}", KernelSpec::Gemv(spec)));
        let m = parse_module(&k.ptx).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        let findings = check_module(&m);
        assert!(findings.is_empty(), "{}: {findings:?}", k.name);
    }
}
