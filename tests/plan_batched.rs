//! The batched decode steps derived from the single step: every preset, every M; offsets
//! move to `offset * m`, kernels to their batched twins, fused tensors read by parts.

use ptxforge::contract::Role;
use ptxforge::plan::{Arg, Buffer, KernelPlan, PlanError, PlanOptions};
use ptxforge::quant::GgmlType;
use ptxforge::Registry;

fn plan(name: &str) -> KernelPlan {
    let r = Registry::builtin().unwrap();
    KernelPlan::build(r.preset_spec(name).unwrap(), PlanOptions::new(512)).unwrap()
}

#[test]
fn every_preset_derives_every_batch_size() {
    let r = Registry::builtin().unwrap();
    for preset in r.presets() {
        let p = plan(&preset.name);
        for m in 2..=16 {
            let step = p.step_for(m).unwrap();
            assert_eq!(step.len(), p.step.len(), "{} m={m}", preset.name);
            for (s, b) in p.step.iter().zip(&step) {
                let spec = p.kernels.iter().find(|k| k.name() == s.kernel).unwrap();
                assert_eq!(b.kernel, spec.batched(m).unwrap().name());
                assert_eq!(s.layer, b.layer);
                for ((ps, a), (pb, ab)) in s.args.iter().zip(&b.args) {
                    assert_eq!(ps, pb);
                    match (a, ab) {
                        (
                            Arg::Buffer { buffer, offset },
                            Arg::Buffer {
                                buffer: bb,
                                offset: ob,
                            },
                        ) => {
                            assert_eq!(buffer, bb);
                            assert_eq!(*ob, offset * m as u64, "{} {ps}", s.kernel);
                        }
                        _ => assert_eq!(a, ab),
                    }
                }
            }
        }
        assert_eq!(p.step_for(1).unwrap(), p.step);
    }
}

#[test]
fn fused_qkv_and_gate_up_are_read_by_parts() {
    let r = Registry::builtin().unwrap();
    let spec = r.preset_spec("phi3-mini").unwrap();
    let p = plan("phi3-mini");
    let d = &spec.dims;
    let ty = spec.weights.get(Role::AttnQkv, Some(0)).unwrap();
    let row = ty.row_bytes(d.hidden as u64).unwrap();
    let offsets: Vec<u64> = p
        .step
        .iter()
        .flat_map(|l| &l.args)
        .filter_map(|(_, a)| match a {
            Arg::Weight {
                role: Role::AttnQkv,
                layer: Some(0),
                offset,
            } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(
        offsets,
        vec![
            0,
            d.q_dim() as u64 * row,
            (d.q_dim() + d.kv_dim()) as u64 * row
        ]
    );
    let gu_ty = spec.weights.get(Role::FfnGateUp, Some(0)).unwrap();
    assert_ne!(gu_ty, GgmlType::F32);
    let gu: Vec<u64> = p
        .step
        .iter()
        .flat_map(|l| &l.args)
        .filter_map(|(_, a)| match a {
            Arg::Weight {
                role: Role::FfnGateUp,
                layer: Some(0),
                offset,
            } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(
        gu,
        vec![0, d.ffn as u64 * gu_ty.row_bytes(d.hidden as u64).unwrap()]
    );
}

/// The `y` binding of the GEMV reading weight `role` in the first layer it appears in.
fn gemv_output(p: &mut KernelPlan, role: Role) -> &mut Arg {
    let launch = p
        .step
        .iter_mut()
        .find(|l| {
            l.kernel.starts_with("gemv")
                && l.args
                    .iter()
                    .any(|(_, a)| matches!(a, Arg::Weight { role: r, .. } if *r == role))
        })
        .unwrap();
    // The matrix is `w` of its own GEMV or `w1`/`w2` of one launch over several matrices:
    // its output is the `y` of the same suffix.
    let w_name = launch
        .args
        .iter()
        .find(|(_, a)| matches!(a, Arg::Weight { role: r, .. } if *r == role))
        .map(|(name, _)| name.to_string())
        .unwrap();
    let y_name = w_name.replacen('w', "y", 1);
    launch
        .args
        .iter_mut()
        .find(|(name, _)| *name == y_name)
        .map(|(_, a)| a)
        .unwrap()
}

#[test]
fn a_region_used_with_two_strides_is_refused() {
    let mut p = plan("llama3.2-1b");
    // Bind the K projection's output where Q's region starts: Q (q_dim) and K (kv_dim)
    // would then share offset 0 with different per-vector strides.
    let k = gemv_output(&mut p, Role::AttnK);
    *k = Arg::Buffer {
        buffer: Buffer::Qkv,
        offset: 0,
    };
    match p.step_for(4) {
        Err(PlanError::Batch { what, m: 4, .. }) => {
            assert!(what.contains("strides"), "{what}")
        }
        other => panic!("expected a batch error, got {other:?}"),
    }
}

#[test]
fn overlapping_regions_are_refused() {
    let mut p = plan("llama3.2-1b");
    // Move V's region 4 bytes into K's: K [q, q + kv) and V [q + kv - 4, ...) overlap.
    let v = gemv_output(&mut p, Role::AttnV);
    if let Arg::Buffer { offset, .. } = v {
        *offset -= 4;
    }
    match p.step_for(2) {
        Err(PlanError::Batch { what, .. }) => assert!(what.contains("overlap"), "{what}"),
        other => panic!("expected an overlap error, got {other:?}"),
    }
}
