//! `2^x` in f32 built only from IEEE-rounded operations, so that a CPU computes the same bits
//! as the GPU: the kernels' exponentials (attention's softmax and soft-cap, the combine
//! kernel's merge, GLU's activation) use [`emit_exp2`], and the CPU mirror of every kernel
//! uses its twin [`exp2_f32`]. (`ex2.approx` is not specified to the bit, so no CPU can
//! reproduce it.)
//!
//! The steps, each one PTX instruction with one IEEE rounding (or none), mirrored one to one
//! by [`exp2_f32`]:
//! 1. `xc = min(max(x, -151), 128)` (`max` returns -151 for NaN, -inf, and anything below):
//!    below -151, `2^x` rounds to 0; from 128 on it is +inf.
//! 2. `n = cvt.rni(xc)` (nearest integer, ties to even) and `f = xc - n` (exact, `|f| <= 1/2`).
//! 3. `p = 1 + f q(f)`, `q` a degree-6 polynomial (Horner, `fma.rn`): `p ~ 2^f`.
//!    The coefficients are a Chebyshev fit of `(2^f - 1) / f` on `[-1/2, 1/2]` (mpmath's
//!    `chebyfit`, 50 digits), rounded to f32; the fit's own relative error is 2.3e-9
//!    (0.04 ulp), so the result is within a few tenths of an ulp after the roundings of the
//!    evaluation, within 2 ulp of `2^x` everywhere (tested below on a dense sweep).
//! 4. `2^n = 2^n1 * 2^n2` with `n1 = n >> 1`, `n2 = n - n1` (both normal f32 built from their
//!    bits, `(e + 127) << 23`), and `y = (p * 2^n1) * 2^n2`: the first product is exact, the
//!    second rounds once, also where `y` is subnormal (no flush to zero) or overflows.
//! 5. NaN in, the same NaN out (`selp` on `setp.num`).
//!
//! So `exp2(-inf) = 0`, `exp2(0) = 1` exactly, `exp2(+inf) = +inf`, and results are
//! monotone enough for softmax (every input of the kernels is `<= 0` or in `[-1/2, 1/2]`).

use crate::ast::Type;
use crate::ir::{BinOp, Cmp, FMode, KernelBuilder, Reg, Round, Value};

/// Below this, `2^x` rounds to 0 in f32 (the smallest subnormal is `2^-149`).
const LOW: f32 = -151.0;
/// From this on, `2^x` is +inf.
const HIGH: f32 = 128.0;

/// The coefficients of `q(f) ~ (2^f - 1) / f`, highest degree first (f32 bits).
pub const EXP2_COEFFS: [u32; 7] = [
    0x3780_52c1, // 1.5297324e-5
    0x3922_2000, // 1.5461445e-4
    0x3aae_c3cf, // 1.3333502e-3
    0x3c1d_950e, // 9.618057e-3
    0x3d63_5847, // 5.5504110e-2
    0x3e75_fdf0, // 0.24022651
    0x3f31_7218, // 0.69314718 (ln 2)
];

fn coeff(i: usize) -> f32 {
    f32::from_bits(EXP2_COEFFS[i])
}

/// Emits `2^x` (f32) as documented in the module; returns the register holding it.
pub(crate) fn emit_exp2(b: &mut KernelBuilder, x: Reg) -> Reg {
    let rn = FMode::rn();
    let lo = b.max(Type::F32, x, LOW);
    let xc = b.min(Type::F32, lo, HIGH);
    let rni = FMode {
        round: Some(Round::Rni),
        ..FMode::NONE
    };
    let n = b.cvt(Type::F32, Type::F32, rni, xc);
    let f = b.bin(BinOp::Sub, Type::F32, rn, xc, n);
    let mut q = b.fma(f, coeff(0), coeff(1));
    for i in 2..EXP2_COEFFS.len() {
        q = b.fma(q, f, coeff(i));
    }
    let p = b.fma(q, f, 1.0f32);
    let rzi = FMode {
        round: Some(Round::Rzi),
        ..FMode::NONE
    };
    let ni = b.cvt(Type::S32, Type::F32, rzi, n);
    let n1 = b.shr(Type::S32, ni, 1u32);
    let n2 = b.sub(Type::S32, ni, n1);
    let pow2 = |b: &mut KernelBuilder, e: Reg| {
        let biased = b.add(Type::S32, e, 127i32);
        let bits = b.shl(Type::B32, biased, 23u32);
        b.mov(Type::F32, bits)
    };
    let s1 = pow2(b, n1);
    let s2 = pow2(b, n2);
    let y1 = b.bin(BinOp::Mul, Type::F32, rn, p, s1);
    let y = b.bin(BinOp::Mul, Type::F32, rn, y1, s2);
    let num = b.setp(Cmp::Num, Type::F32, x, x);
    b.selp(Type::F32, y, Value::Reg(x), num)
}

/// The CPU twin of `emit_exp2` (the generator above): the same operations in the same
/// order, so the same bits.
pub fn exp2_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    // PTX's max/min return the other operand for NaN, as Rust's do (`clamp` would not).
    #[allow(clippy::manual_clamp)]
    let xc = x.max(LOW).min(HIGH);
    let n = xc.round_ties_even();
    let f = xc - n;
    let mut q = f.mul_add(coeff(0), coeff(1));
    for i in 2..EXP2_COEFFS.len() {
        q = q.mul_add(f, coeff(i));
    }
    let p = q.mul_add(f, 1.0);
    let ni = n as i32;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    (p * pow2(n1)) * pow2(n2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in ulps between `got` and the exact `want` (in units of the ulp of `want`
    /// rounded to f32; subnormals in units of the smallest subnormal).
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        if w == 0.0 && got == 0.0 {
            return 0.0;
        }
        let ulp = if w.abs() < f32::MIN_POSITIVE {
            f32::from_bits(1) as f64
        } else {
            let next = f32::from_bits(w.abs().to_bits() + 1) as f64;
            next - w.abs() as f64
        };
        (got as f64 - want).abs() / ulp
    }

    #[test]
    fn within_two_ulp_on_a_dense_sweep() {
        let mut worst = (0.0f64, 0.0f32);
        // Every 2^-12 from -160 to 130 (1.2 million points, subnormals and overflow included)
        // plus every f32 of [-1/2, 1/2] at a stride of 97 bit patterns.
        let sweep = (-160 * 4096..=130 * 4096).map(|i| i as f32 / 4096.0);
        let small = (0..0x3f00_0000u32)
            .step_by(97)
            .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)]);
        for x in sweep.chain(small) {
            let got = exp2_f32(x);
            let want = (x as f64).exp2();
            if want > f32::MAX as f64 * (1.0 + 2f64.powi(-25)) {
                assert_eq!(got, f32::INFINITY, "2^{x}");
                continue;
            }
            let e = ulps(got, want);
            if e > worst.0 {
                worst = (e, x);
            }
        }
        assert!(worst.0 <= 2.0, "worst {} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn special_values() {
        assert_eq!(exp2_f32(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(exp2_f32(-1e30).to_bits(), 0);
        assert_eq!(exp2_f32(-151.0).to_bits(), 0);
        assert_eq!(exp2_f32(-149.0).to_bits(), 1, "the smallest subnormal");
        assert_eq!(exp2_f32(-126.0), f32::MIN_POSITIVE);
        assert_eq!(exp2_f32(0.0), 1.0);
        assert_eq!(exp2_f32(-0.0), 1.0);
        for k in -149..=127 {
            assert_eq!(exp2_f32(k as f32), 2f64.powi(k) as f32, "2^{k} is exact");
        }
        assert!(exp2_f32(127.99999).is_finite());
        assert_eq!(exp2_f32(128.0), f32::INFINITY);
        assert_eq!(exp2_f32(1e30), f32::INFINITY);
        assert_eq!(exp2_f32(f32::INFINITY), f32::INFINITY);
        let nan = f32::from_bits(0x7fc0_1234);
        assert_eq!(exp2_f32(nan).to_bits(), nan.to_bits());
    }

    #[test]
    fn monotone_on_the_softmax_range() {
        // Non-positive arguments, as the softmax uses them: never increasing as x decreases.
        let mut prev = exp2_f32(0.0);
        for i in 1..=2_000_000 {
            let y = exp2_f32(i as f32 * -2e-5);
            assert!(y <= prev, "2^{} = {y} > {prev}", i as f32 * -2e-5);
            prev = y;
        }
    }

    #[test]
    fn emits_only_ieee_rounded_operations() {
        let target = crate::Target::sm(90);
        let mut b = KernelBuilder::new("exp2_probe", target);
        let p = b.param(Type::U64, "p");
        let a = b.global_ptr(&p);
        let x = b.ld_global(Type::F32, crate::ir::Addr::reg(a));
        let y = emit_exp2(&mut b, x);
        b.st_global(Type::F32, crate::ir::Addr::reg(a), y);
        let k = b.finish().unwrap();
        let ptx = crate::emit::emit_module(&crate::ir::Module::single(k));
        assert!(!ptx.contains("approx") && !ptx.contains("ex2"), "{ptx}");
        assert_eq!(ptx.matches("fma.rn.f32").count(), 7, "{ptx}");
        // The steps in exp2_f32's order, the coefficients highest degree first.
        let mut steps: Vec<String> = vec![
            "max.f32".into(),
            "min.f32".into(),
            "cvt.rni.f32.f32".into(),
            "sub.rn.f32".into(),
        ];
        steps.extend(EXP2_COEFFS.iter().map(|c| format!("0f{c:08X}")));
        steps.extend(
            [
                "0f3F800000;",
                "cvt.rzi.s32.f32",
                "shr.s32",
                "sub.s32",
                "shl.b32",
                "shl.b32",
                "mul.rn.f32",
                "mul.rn.f32",
                "setp.num.f32",
                "selp.f32",
            ]
            .map(String::from),
        );
        let mut at = 0;
        for step in &steps {
            let pos = ptx[at..]
                .find(step.as_str())
                .unwrap_or_else(|| panic!("`{step}` missing or out of order:\n{ptx}"));
            at += pos + step.len();
        }
    }
}
