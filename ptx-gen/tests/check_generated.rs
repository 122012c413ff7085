//! Every kernel the library generates passes every static check, on the default target and
//! on sm_90.

use ptx_gen::check::check_module;
use ptx_gen::kernels::{generate, sample_specs};
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
