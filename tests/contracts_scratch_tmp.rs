use ptxforge::contract::Contract;
use std::path::Path;
#[test]
fn show() {
    let good = include_str!("../contracts/architectures/llama.yaml");
    let cases = [
        good.replace("architecture: llama", "architecture: llama\nbogus: 1"),
        good.replace("  qkv_bias: false", "  qkv_bias: false\n  qkv_bias: true"),
        good.replace("  qkv_bias: false", "  qkv_bias: maybe"),
        good.replace(
            "shape: [heads * head_dim, hidden] }",
            "shape: [heads * headdim, hidden] }",
        ),
        good.replace("  qk_norm: none\n", ""),
        good.replace("  ffn_gate:    { gguf", "  ffn_gatey:    { gguf"),
        good.replace(
            "rope: { style: { gguf: norm, hf: neox } }",
            "rope: { style: { gguf: norm, hf: sideways } }",
        ),
        good.replace("default: \"hidden / heads\" }", "default: \"hidden / \" }"),
        "a: [".to_string(),
        good.replace(
            "{ gguf: \"{arch}.block_count\", hf: num_hidden_layers }",
            "{ gguf: 3 }",
        ),
    ];
    for c in cases {
        match Contract::from_yaml(Path::new("x.yaml"), &c) {
            Ok(_) => println!("OK??"),
            Err(e) => println!("{} | {e}", e.code()),
        }
    }
}
