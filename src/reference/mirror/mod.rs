//! CPU mirrors of the kernels: the f32 arithmetic of each generated kernel in exactly the
//! order and rounding its PTX uses (which thread sums which values, the butterfly of
//! `shfl.xor` 16, 8, 4, 2, 1, the warps' partials, `fma.rn` where the kernel fuses,
//! `mul.rn` + `add.rn` where it does not, `sqrt.rn`, `rcp.rn`, `div.rn`, and the software
//! 2^x of `ptx_gen::kernels::exp2_f32`), so a GPU launch and its mirror give the same bits.
//!
//! The f64 references next to this module say what a kernel should compute; a mirror says
//! what it does compute, to the bit. A whole decode step run with the mirrors
//! ([`super::forward::Arithmetic::Mirror`]) is therefore equal to the GPU's, where a step
//! run with the references drifts from it once a 1-ulp difference flips a Q8_1 rounding.
//! Every mirror is tested against its family's f64 reference (so it is also right), and
//! `tests/gpu_mirror.rs` checks it against the GPU kernel bit for bit.
//!
//! Each function computes one vector (one sequence for attention): vector `v` of a batched
//! launch (`spec.m > 1`) computes exactly what the single kernel computes on it (the parity
//! report proves it), so `spec.m` is not consulted. Inputs of the wrong size are a
//! [`MirrorError`].

pub mod argmax;
pub mod attention;
pub mod attention_combine;
pub mod embed;
pub mod gemv;
pub mod glu;
pub mod head_rmsnorm;
pub mod quantize_q8_1;
pub mod reduce;
pub mod residual_add;
pub mod residual_rmsnorm;
pub mod rmsnorm;
pub mod rmsnorm_q8_1;
pub mod rope_kv;

/// Inputs a mirror can't compute with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MirrorError {
    #[error("{kernel}: `{what}` holds {found} values, the kernel reads {expected}")]
    Length {
        kernel: &'static str,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{kernel}: invalid spec: {message}")]
    Spec {
        kernel: &'static str,
        message: String,
    },
}

/// `Ok` when `found == expected`.
pub(crate) fn check_len(
    kernel: &'static str,
    what: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), MirrorError> {
    if found == expected {
        Ok(())
    } else {
        Err(MirrorError::Length {
            kernel,
            what,
            expected,
            found,
        })
    }
}

/// The spec's own validation, as a [`MirrorError`].
pub(crate) fn check_spec(
    kernel: &'static str,
    spec: &impl ptx_gen::kernels::FamilySpec,
) -> Result<(), MirrorError> {
    spec.validate().map_err(|e| MirrorError::Spec {
        kernel,
        message: e.to_string(),
    })
}

#[cfg(test)]
pub(crate) mod testing {
    /// A small deterministic generator (splitmix64) for the mirrors' tests.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in `[-a, a)`, never exactly zero.
        pub fn f32(&mut self, a: f32) -> f32 {
            let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
            let v = (2.0 * u - 1.0) * a;
            if v == 0.0 {
                a * 0.5
            } else {
                v
            }
        }

        pub fn vec(&mut self, n: usize, a: f32) -> Vec<f32> {
            (0..n).map(|_| self.f32(a)).collect()
        }
    }

    /// Largest `|a - b| / max(|b|, floor)` over two vectors.
    pub fn max_rel(a: &[f32], b: &[f64], floor: f64) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - y).abs() / y.abs().max(floor))
            .fold(0.0, f64::max)
    }
}
