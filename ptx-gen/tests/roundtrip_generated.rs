//! Every generated kernel survives emit -> parse -> print byte for byte, and the parsed
//! tree is the tree the IR lowered to.

use ptx_gen::emit::print_module;
use ptx_gen::kernels::{generate, sample_specs};
use ptx_gen::parse::parse_module;
use ptx_gen::Target;

#[test]
fn emit_parse_print_is_the_identity_on_every_sample_kernel() {
    for target in [Target::dp4a_default(), Target::sm(90)] {
        for spec in sample_specs() {
            let k = generate(&spec, target).unwrap();
            let tree = parse_module(&k.ptx).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            assert_eq!(
                print_module(&tree),
                k.ptx,
                "{}: print(parse(emit)) differs",
                k.name
            );
        }
    }
}

#[test]
fn the_parsed_tree_equals_the_lowered_ir() {
    use ptx_gen::ast::Type;
    use ptx_gen::ir::{KernelBuilder, Module};
    let mut b = KernelBuilder::new("tiny", Target::sm(80));
    b.header_comment("spec: tiny");
    let p = b.param(Type::U64, "out");
    let a = b.global_ptr(&p);
    let v = b.mov(Type::F32, 0.5f32);
    b.st_global(Type::F32, ptx_gen::ir::Addr::reg_off(a, -8), v);
    let m = Module::single(b.finish().unwrap());
    let text = ptx_gen::emit::emit_module(&m);
    assert_eq!(parse_module(&text).unwrap(), m.lower());
}
