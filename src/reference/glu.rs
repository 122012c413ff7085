//! Gated FFN activations, `y = act(gate) * up` evaluated in f64 from the f32 inputs and
//! rounded once to f32:
//! * SwiGLU: `silu(g) = g / (1 + exp(-g))`;
//! * GeGLU (tanh approximation): `gelu(g) = 0.5 g (1 + tanh(u))`,
//!   `u = sqrt(2/pi) (g + 0.044715 g^3)`, evaluated as `g / (1 + exp(-2u))` — the same function
//!   (`0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u))`), but without the cancellation of `1 + tanh(u)`
//!   for negative `u`, which would cost f64 its accuracy.

use ptx_gen::kernels::{GluAct, GELU_COEF_A};

use crate::quant::q8_1::quantize_row_bytes;

/// `silu(g)` in f64.
pub fn silu(g: f64) -> f64 {
    g / (1.0 + (-g).exp())
}

/// `gelu(g)` with the tanh approximation, in f64.
pub fn gelu_tanh(g: f64) -> f64 {
    let u = (2.0 / std::f64::consts::PI).sqrt() * (g + GELU_COEF_A * g * g * g);
    g / (1.0 + (-2.0 * u).exp())
}

/// `act(gate) * up`, each value computed in f64 and rounded to f32.
pub fn glu(act: GluAct, gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "glu: gate and up differ in length");
    let f = match act {
        GluAct::Swiglu => silu,
        GluAct::Geglu => gelu_tanh,
    };
    gate.iter()
        .zip(up)
        .map(|(g, u)| (f(*g as f64) * *u as f64) as f32)
        .collect()
}

/// The Q8_1 bytes of [`glu`]; `None` when the length is not a multiple of 32.
pub fn glu_q8_1(act: GluAct, gate: &[f32], up: &[f32]) -> Option<Vec<u8>> {
    quantize_row_bytes(&glu(act, gate, up))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_at_known_points() {
        assert_eq!(silu(0.0), 0.0);
        // silu(1) = 1 / (1 + 1/e) = e / (e + 1).
        let e = std::f64::consts::E;
        assert!((silu(1.0) - e / (e + 1.0)).abs() < 1e-15);
        // silu(-g) = silu(g) - g.
        assert!((silu(-2.5) - (silu(2.5) - 2.5)).abs() < 1e-15);
        assert_eq!(silu(800.0), 800.0);
        assert_eq!(silu(-800.0), 0.0);
    }

    #[test]
    fn gelu_is_the_tanh_formula() {
        for g in [-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 2.0, 4.0] {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g);
            let tanh_form = 0.5 * g * (1.0 + f64::tanh(u));
            assert!(
                (gelu_tanh(g) - tanh_form).abs() <= 1e-14 * (1.0 + g.abs()),
                "{g}"
            );
        }
        // gelu(1) with the tanh approximation: 0.8411919906082768 (published value).
        assert!((gelu_tanh(1.0) - 0.841_191_990_608_276_8).abs() < 1e-15);
    }

    #[test]
    fn the_product_is_rounded_once() {
        let y = glu(GluAct::Swiglu, &[1.0, 0.0, -1.0], &[2.0, 5.0, 3.0]);
        let e = std::f64::consts::E;
        assert_eq!(y[0], (2.0 * e / (e + 1.0)) as f32);
        assert_eq!(y[1], 0.0);
        assert_eq!(y[2], (-3.0 / (1.0 + e)) as f32);
        assert_eq!(
            glu_q8_1(GluAct::Geglu, &[1.0; 32], &[1.0; 32])
                .unwrap()
                .len(),
            36
        );
    }
}
