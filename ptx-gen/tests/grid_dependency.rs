//! Programmatic dependent launch: on sm_90 every kernel may be launched while its
//! predecessor finishes, and waits for it (`griddepcontrol.wait`) before it touches memory
//! another kernel may write. Only the GEMV does work before the wait, and that work may read
//! nothing but its weights. No kernel triggers its successor early (the trigger is implicit,
//! as each block exits).

use std::collections::BTreeSet;

use ptx_gen::emit::emit_module;
use ptx_gen::ir::{IrError, KernelBuilder, Module};
use ptx_gen::kernels::{generate, sample_specs, KernelSpec};
use ptx_gen::Target;

/// The instruction lines of a PTX module's body (no directives, labels, braces, comments).
fn instructions(ptx: &str) -> Vec<String> {
    let body = ptx.split_once('{').map_or("", |(_, b)| b);
    body.lines()
        .map(|l| l.split("//").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('.') && !l.ends_with(':') && *l != "}")
        .filter(|l| !l.starts_with('{') && !l.starts_with('}'))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect()
}

fn opcode(i: &str) -> &str {
    let i = i.strip_prefix('@').map_or(i, |rest| {
        rest.split_once(char::is_whitespace)
            .map_or("", |(_, tail)| tail.trim_start())
    });
    i.split_whitespace().next().unwrap_or("")
}

/// `(destination, sources)` registers of an instruction (braces and brackets flattened).
fn regs(i: &str) -> Vec<String> {
    let operands = i.split_once(char::is_whitespace).map_or("", |(_, o)| o);
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in operands.chars() {
        if c == '%' || (!cur.is_empty() && (c.is_ascii_alphanumeric() || c == '_')) {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The register inside an instruction's `[...]` address.
fn address_reg(i: &str) -> Option<String> {
    let inner = i.split_once('[')?.1.split_once(']')?.0;
    regs(&format!("x {inner}")).into_iter().next()
}

/// The parameters that hold weights (no kernel writes them): a GEMV's matrices, a norm's gamma.
const WEIGHT_PARAMS: [&str; 4] = ["[w]", "[w1]", "[w2]", "[rw]"];

/// Checks everything before the first `griddepcontrol.wait`: global loads only through
/// addresses derived from weight parameters, no stores or atomics, nothing from shared memory.
fn check_prologue(name: &str, ptx: &str) -> usize {
    let instrs = instructions(ptx);
    assert!(
        !ptx.contains("launch_dependents"),
        "{name}: no early trigger of the next kernel"
    );
    let waits = instrs
        .iter()
        .filter(|i| opcode(i) == "griddepcontrol.wait")
        .count();
    assert_eq!(waits, 1, "{name}: exactly one griddepcontrol.wait");
    let wait = instrs
        .iter()
        .position(|i| opcode(i) == "griddepcontrol.wait")
        .unwrap_or(0);
    let mut from_w: BTreeSet<String> = BTreeSet::new();
    let mut loads = 0;
    for i in &instrs[..wait] {
        let op = opcode(i);
        assert!(
            !(op.starts_with("st.") || op.starts_with("atom") || op.starts_with("red")),
            "{name}: `{i}` writes memory before the grid dependency wait"
        );
        if op.starts_with("ld.param") {
            if WEIGHT_PARAMS.iter().any(|p| i.contains(p)) {
                from_w.extend(regs(i).into_iter().take(1));
            }
            continue;
        }
        if op.starts_with("ld.") {
            assert!(
                op.starts_with("ld.global"),
                "{name}: `{i}` reads non-global memory before the wait"
            );
            let a = address_reg(i).unwrap_or_default();
            assert!(
                from_w.contains(&a),
                "{name}: `{i}` reads through {a}, not derived from the weights, before the wait"
            );
            loads += 1;
            continue;
        }
        let rs = regs(i);
        if let Some((dst, srcs)) = rs.split_first() {
            if srcs.iter().any(|s| from_w.contains(s)) {
                from_w.insert(dst.clone());
            }
        }
    }
    loads
}

#[test]
fn every_sm_90_kernel_waits_before_touching_what_other_kernels_write() {
    let target = Target::sm(90);
    let (mut gemv_prefetching, mut post_norm_prefetching) = (0, 0);
    for spec in sample_specs() {
        let k = generate(&spec, target).unwrap_or_else(|e| panic!("{}: {e}", spec.name()));
        let loads = check_prologue(&k.name, &k.ptx);
        match spec {
            // A row of at least one full pass loads its first passes before the wait.
            KernelSpec::Gemv(_) => gemv_prefetching += usize::from(loads > 0),
            // A post-norm whose row stays in registers loads its residual's gamma; the head
            // norms load theirs.
            KernelSpec::ResidualRmsNorm(r) if r.post_norm => {
                post_norm_prefetching += usize::from(loads > 0)
            }
            KernelSpec::HeadRmsNorm(_) => assert!(loads > 0, "{}: gamma before the wait", k.name),
            _ => assert_eq!(
                loads, 0,
                "{}: only the GEMV and the norms load before their wait",
                k.name
            ),
        }
    }
    assert!(
        gemv_prefetching > 20,
        "GEMVs with weight loads before the wait: {gemv_prefetching}"
    );
    assert!(
        post_norm_prefetching >= 3,
        "post-norms with weight loads before the wait: {post_norm_prefetching}"
    );
}

#[test]
fn targets_before_sm_90_have_no_grid_dependency_control() {
    for spec in sample_specs().into_iter().step_by(7) {
        let k = generate(&spec, Target::sm(89)).expect("generates");
        assert!(
            !k.ptx.contains("griddepcontrol"),
            "{}: griddepcontrol on sm_89",
            k.name
        );
    }
}

#[test]
fn a_moved_wait_is_caught_by_the_prologue_check() {
    // The checker itself: a GEMV whose x load comes before the wait must fail it.
    let spec = sample_specs()
        .into_iter()
        .find(|s| matches!(s, KernelSpec::Gemv(g) if g.m == 1 && g.k >= 4096))
        .expect("a GEMV sample");
    let k = generate(&spec, Target::sm(90)).expect("generates");
    let instrs = instructions(&k.ptx);
    let wait = instrs
        .iter()
        .position(|i| opcode(i) == "griddepcontrol.wait")
        .expect("a wait");
    // Move the wait past the first load through x.
    let mut from_x = BTreeSet::new();
    let mut past = None;
    for (n, i) in instrs.iter().enumerate() {
        if opcode(i).starts_with("ld.param") && i.contains("[x]") {
            from_x.extend(regs(i).into_iter().take(1));
        } else if opcode(i).starts_with("ld.global") {
            if address_reg(i).is_some_and(|a| from_x.contains(&a)) {
                past = Some(n);
                break;
            }
        } else if let Some((dst, srcs)) = regs(i).split_first() {
            if srcs.iter().any(|s| from_x.contains(s)) {
                from_x.insert(dst.clone());
            }
        }
    }
    let past = past.expect("a load through x");
    assert!(past > wait, "x is first read after the wait");
    let mut moved: Vec<String> = instrs.clone();
    let w = moved.remove(wait);
    moved.insert(past, w);
    let text = format!("{{\n{}\n}}", moved.join(";\n"));
    let caught = std::panic::catch_unwind(|| check_prologue("moved", &text));
    assert!(
        caught.is_err(),
        "a load through x before the wait must be refused"
    );
}

#[test]
fn the_builder_waits_first_unless_told_where_and_refuses_two_waits() {
    let build = |f: &dyn Fn(&mut KernelBuilder)| -> Result<String, IrError> {
        let mut b = KernelBuilder::new("k", Target::sm(90));
        f(&mut b);
        Ok(emit_module(&Module::single(b.finish()?)))
    };
    let plain = build(&|_| {}).expect("builds");
    assert_eq!(instructions(&plain), vec!["griddepcontrol.wait", "ret"]);
    let placed = build(&|b| {
        b.comment("before");
        b.grid_dependency_wait();
    })
    .expect("builds");
    assert_eq!(instructions(&placed), vec!["griddepcontrol.wait", "ret"]);
    let twice = build(&|b| {
        b.grid_dependency_wait();
        b.grid_dependency_wait();
    });
    assert!(
        matches!(&twice, Err(IrError::Invalid { message, .. }) if message.contains("twice")),
        "{twice:?}"
    );
    let old = {
        let mut b = KernelBuilder::new("k", Target::sm(80));
        b.grid_dependency_wait();
        emit_module(&Module::single(b.finish().expect("builds")))
    };
    assert_eq!(instructions(&old), vec!["ret"]);
}
