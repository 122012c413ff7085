//! Every kernel of the sample catalogue assembles with ptxas for sm_75..sm_90 with no spills
//! and no stack frame. ptxas comes from `PTXAS` or `PATH`; with `CI=true` a missing ptxas
//! fails the test, elsewhere the test says it skipped.

use ptx_gen::kernels::{generate, sample_specs};
use ptx_gen::target::ASSEMBLY_TARGETS;
use ptx_gen::Target;
use ptxforge::ptxas::{parse_verbose, Ptxas, PtxasError};

fn ptxas_or_skip(test: &str) -> Option<Ptxas> {
    match Ptxas::locate(std::env::var_os("PTXAS"), std::env::var_os("PATH")) {
        Ok(p) => Some(p),
        Err(e) => {
            if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
                panic!("{test}: CI=true and {e}");
            }
            println!("{test}: skipped: {e}");
            None
        }
    }
}

#[test]
fn every_sample_kernel_assembles_for_every_target_without_spills() {
    let Some(ptxas) = ptxas_or_skip("ptxas") else {
        return;
    };
    println!("ptxas: {}", ptxas.version().unwrap_or_default());
    let mut count = 0;
    for spec in sample_specs() {
        let kernel =
            generate(&spec, Target::dp4a_default()).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        for sm in ASSEMBLY_TARGETS {
            let report = ptxas
                .assemble(&kernel.ptx, sm)
                .unwrap_or_else(|e| panic!("{}: {e}", kernel.name));
            assert_eq!(
                report.kernels.len(),
                1,
                "{} sm_{sm}: one entry expected",
                kernel.name
            );
            let k = &report.kernels[0];
            assert_eq!(k.name, kernel.name);
            assert_eq!(
                (k.spill_store_bytes, k.spill_load_bytes, k.stack_frame_bytes),
                (0, 0, 0),
                "{} sm_{sm} spills: {k:?}",
                kernel.name
            );
            assert!(
                k.registers > 0 && k.registers <= 255,
                "{}: {k:?}",
                kernel.name
            );
            assert!(
                report.warnings.is_empty(),
                "{} sm_{sm}: {:?}",
                kernel.name,
                report.warnings
            );
            count += 1;
        }
    }
    println!("ptxas: {count} kernel/target pairs assembled, 0 spill bytes");
}

#[test]
fn kernels_generated_for_newer_targets_assemble_too() {
    let Some(ptxas) = ptxas_or_skip("ptxas newer targets") else {
        return;
    };
    for sm in ASSEMBLY_TARGETS {
        for spec in sample_specs().into_iter().step_by(5) {
            let kernel = generate(&spec, Target::sm(sm)).unwrap();
            assert!(kernel.ptx.contains(&format!(".target sm_{sm}\n")));
            ptxas
                .assemble(&kernel.ptx, sm)
                .unwrap_or_else(|e| panic!("{}: {e}", kernel.name));
        }
    }
}

#[test]
fn a_broken_module_is_rejected_with_a_command_to_reproduce() {
    let Some(ptxas) = ptxas_or_skip("ptxas rejection") else {
        return;
    };
    let bad = ".version 7.8\n.target sm_61\n.address_size 64\n.visible .entry k()\n{\n\tadd.u32 %r1, %r2, 1;\n\tret;\n}\n";
    match ptxas.assemble(bad, 80) {
        Err(PtxasError::Rejected {
            sm,
            stderr,
            command,
            ..
        }) => {
            assert_eq!(sm, 80);
            assert!(
                stderr.contains("%r1") || stderr.contains("undefined"),
                "{stderr}"
            );
            assert!(command.contains("-arch=sm_80"), "{command}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn verbose_output_is_read_into_typed_resources() {
    let text = "ptxas info    : 0 bytes gmem\n\
        ptxas info    : Compiling entry function 'alpha' for 'sm_90'\n\
        ptxas info    : Function properties for alpha\n    \
        16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n\
        ptxas info    : Used 40 registers, used 1 barriers, 128 bytes smem\n\
        ptxas info    : Compiling entry function 'beta' for 'sm_90'\n\
        ptxas info    : Function properties for beta\n    \
        0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
        ptxas info    : Used 7 registers, used 0 barriers\n";
    let r = parse_verbose(text, 90).unwrap();
    assert_eq!(r.kernels.len(), 2);
    let a = &r.kernels[0];
    assert_eq!(
        (
            a.name.as_str(),
            a.registers,
            a.barriers,
            a.shared_bytes,
            a.stack_frame_bytes,
            a.spill_store_bytes,
            a.spill_load_bytes
        ),
        ("alpha", 40, 1, 128, 16, 8, 12)
    );
    assert_eq!(
        (
            r.kernels[1].name.as_str(),
            r.kernels[1].registers,
            r.kernels[1].shared_bytes
        ),
        ("beta", 7, 0)
    );
}
