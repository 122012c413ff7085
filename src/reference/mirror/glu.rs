//! Mirror of the `glu` kernel, whose arithmetic is f64 apart from one f32 2^x: with
//! `z = g` (SwiGLU) or `z = c g (1 + 0.044715 g^2)` (GeGLU, `c = 2 sqrt(2 / pi)`), each step
//! as the kernel emits it (`mul.rn.f64`, `fma.rn.f64`, `min`/`max`, `cvt.rni`, `sub.rn`,
//! `cvt.rn.f32.f64`):
//! `t = clamp(-z log2(e), +-1000) = n + f`, `2^f = exp2_f32(f32(f)) * fma(f - f32(f), ln 2, 1)`,
//! `y = f32((g u) / (2^f 2^n + 1))`, then Q8_1 blocks with `quantize_q8_1`'s code where the
//! output is Q8_1.

use ptx_gen::kernels::{exp2_f32, Glu, GluAct, OutFormat, GELU_COEF_A};

use super::{check_len, check_spec, MirrorError};

/// `act(g) * u` for one value, as the kernel computes it.
pub fn glu_value(act: GluAct, g: f32, u: f32) -> f32 {
    use std::f64::consts::{LN_2, LOG2_E, PI};
    let (g64, u64) = (f64::from(g), f64::from(u));
    let z = match act {
        GluAct::Swiglu => g64,
        GluAct::Geglu => {
            let g2 = g64 * g64;
            let p = g2.mul_add(GELU_COEF_A, 1.0);
            (g64 * p) * (2.0 * (2.0 / PI).sqrt())
        }
    };
    // `min.f64`/`max.f64` as PTX takes them (a NaN operand yields the other; `clamp` would not).
    #[allow(clippy::manual_clamp)]
    let t = (z * -LOG2_E).min(1000.0).max(-1000.0);
    let n = t.round_ties_even();
    let f = t - n;
    let f_hi = f as f32;
    let f_lo = f - f64::from(f_hi);
    let p = f64::from(exp2_f32(f_hi));
    let two_f = p * f_lo.mul_add(LN_2, 1.0);
    let two_n = f64::from_bits(((n as i32 + 1023) as u64) << 52);
    let den = two_f * two_n + 1.0;
    ((g64 * u64) / den) as f32
}

/// The `glu` kernel on one vector: f32 little-endian bytes or Q8_1 blocks.
pub fn glu(spec: &Glu, gate: &[f32], up: &[f32]) -> Result<Vec<u8>, MirrorError> {
    const K: &str = "glu";
    check_spec(K, spec)?;
    check_len(K, "gate", spec.ffn as usize, gate.len())?;
    check_len(K, "up", spec.ffn as usize, up.len())?;
    let y: Vec<f32> = gate
        .iter()
        .zip(up)
        .map(|(g, u)| glu_value(spec.act, *g, *u))
        .collect();
    match spec.out {
        OutFormat::F32 => Ok(y.iter().flat_map(|v| v.to_le_bytes()).collect()),
        OutFormat::Q8_1 => super::quantize_q8_1::quantize_row(K, &y),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Rng;
    use super::*;
    use crate::reference::glu::{gelu_tanh, silu};

    #[test]
    fn agrees_with_the_f64_reference() {
        let mut rng = Rng(9);
        for act in [GluAct::Swiglu, GluAct::Geglu] {
            let f = match act {
                GluAct::Swiglu => silu,
                GluAct::Geglu => gelu_tanh,
            };
            let mut worst = 0f64;
            for i in 0..200_000 {
                let g = if i % 2 == 0 {
                    rng.f32(12.0)
                } else {
                    rng.f32(120.0)
                };
                let u = rng.f32(3.0);
                let got = f64::from(glu_value(act, g, u));
                let want = f(f64::from(g)) * f64::from(u);
                if want.abs() > 1e-30 {
                    worst = worst.max((got - want).abs() / want.abs());
                }
            }
            // 2 ulp of 2^f (2^-22) plus the final rounding to f32 (2^-24).
            assert!(worst < 3.1e-7, "{act:?}: {worst}");
        }
        assert_eq!(glu_value(GluAct::Swiglu, -2000.0, 1.0), 0.0);
        assert_eq!(glu_value(GluAct::Swiglu, 2000.0, 0.5), 1000.0);
    }

    #[test]
    fn outputs_and_lengths() {
        let spec = Glu {
            act: GluAct::Swiglu,
            ffn: 64,
            out: OutFormat::Q8_1,
            m: 1,
        };
        // Two blocks, planar: 64 quants and 2 x {d, s}, padded from 72 to 80 bytes.
        assert_eq!(glu(&spec, &[1.0; 64], &[1.0; 64]).unwrap().len(), 80);
        assert!(glu(&spec, &[1.0; 63], &[1.0; 64]).is_err());
    }
}
